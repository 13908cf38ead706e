"""The offchip pass through the CLI: dumps, the report section, explain, and the infeasible error."""
from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = """name: tiny
backends: [mdc]
pe_array: {rows: 2, cols: 2}
l1_bytes_per_pe: 16
l2_bytes: %d
noc_bw_elems_per_cycle: 4
offchip_bw_elems_per_cycle: 1
"""


def test_dump_after_offchip_prints_the_tiled_nest(run_cli, tmp_path):
    code, out, err = run_cli("compile", EXAMPLES / "conv3x3.yaml", "--target", "edge", "-o", tmp_path,
                             "--dump-after", "offchip", "--stop-after", "offchip")
    assert code == 0, err
    assert "IR after offchip" in out and "solver OPTIMAL" in out
    assert "for c2 in 0..128 step 2:" in out          # the reduction is tiled, k split in two
    assert "L2 used 106,256 of 108,000 B" in out
    report = json.loads((tmp_path / "resnet50_res3_conv3x3.report.json").read_text())
    oc = report["offchip"]
    assert set(oc) >= {"l2_tile", "order", "chiplet_split", "dram_traffic_elements", "compulsory_elements",
                       "l2_elements_used", "solver_status", "seconds", "space_size"}
    assert oc["dram_traffic_elements"]["total"] == sum(v for k, v in oc["dram_traffic_elements"].items()
                                                       if k != "total")
    assert oc["dram_traffic_elements"]["total"] >= oc["compulsory_elements"]["total"]
    assert oc["l2_elements_used"] <= 108000
    assert report["passes"][-1] == {"name": "offchip", "seconds": report["passes"][-1]["seconds"],
                                    "space_size": oc["space_size"], "solver_status": "OPTIMAL"}


def test_chiplet4_splits_across_all_chiplets(run_cli, tmp_path):
    code, out, err = run_cli("compile", EXAMPLES / "conv3x3.yaml", "--target", "chiplet4", "-o", tmp_path,
                             "--dump-after", "offchip", "--stop-after", "offchip")
    assert code == 0, err
    assert "parallel-for chiplet in" in out
    oc = json.loads((tmp_path / "resnet50_res3_conv3x3.report.json").read_text())["offchip"]
    factors = [f for _, f in oc["chiplet_split"]]
    assert factors and eval("*".join(map(str, factors))) == 4
    assert oc["l2_elements_used"] <= 65536


def test_explain_narrates_the_offchip_choice(run_cli):
    code, out, err = run_cli("explain", EXAMPLES / "conv3x3.yaml", "--target", "edge")
    assert code == 0, err
    assert "off-chip part" in out and "compulsory" in out and "OPTIMAL" in out


def test_no_tiling_fits_exits_2_naming_the_tensor(run_cli, write, tmp_path):
    target = write("tiny.yaml", TINY % 5)      # unit tiles of O, I, W double-buffered need 6 B
    code, out, err = run_cli("compile", EXAMPLES / "gemm.yaml", "--target", target, "-o", tmp_path / "o")
    assert code == 2
    assert "tiny.yaml:l2_bytes:" in err and "tensor W" in err and "short by 1 B" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_smallest_l2_that_fits_gives_unit_tiles(run_cli, write, tmp_path):
    target = write("tiny.yaml", TINY % 6)
    code, out, err = run_cli("compile", EXAMPLES / "gemm.yaml", "--target", target, "-o", tmp_path,
                             "--stop-after", "offchip")
    assert code == 0, err
    oc = json.loads((tmp_path / "bert_q_proj.report.json").read_text())["offchip"]
    assert set(oc["l2_tile"].values()) == {1} and oc["l2_elements_used"] == 6


def test_mdc_needs_whole_filter_taps(run_cli, write, tmp_path):
    """MDC's R/S rule: a 3x3 conv's smallest L2 tiles hold whole 3x3 windows (O 1, I 9, W 9)
    (with an L1 that holds them too: a smaller one splits the filter into tap groups)."""
    tiny = TINY.replace("l1_bytes_per_pe: 16", "l1_bytes_per_pe: 64")
    target = write("tiny.yaml", tiny % 37)
    code, out, err = run_cli("compile", EXAMPLES / "conv3x3.yaml", "--target", target, "-o", tmp_path / "o")
    assert code == 2
    assert "tensor W" in err and "smallest tile the backend allows" in err and "short by 1 B" in err
    target = write("tiny.yaml", tiny % 38)
    code, out, err = run_cli("compile", EXAMPLES / "conv3x3.yaml", "--target", target, "-o", tmp_path,
                             "--stop-after", "offchip")
    assert code == 0, err
    oc = json.loads((tmp_path / "resnet50_res3_conv3x3.report.json").read_text())["offchip"]
    assert oc["l2_tile"]["r"] == oc["l2_tile"]["s"] == 3 and oc["l2_elements_used"] == 38

"""`mapc eval` and `mapc check` end to end."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.cli import main

REF = Path(__file__).resolve().parents[2] / "shared" / "maestro-reference"
needs_ref = pytest.mark.skipif(not REF.is_dir(), reason="maestro-reference not available")

GOOD = """Network n {
 Layer conv {
  Type: CONV
  Stride { X: 1, Y: 1 }
  Dimensions { K: 64, C: 64, R: 3, S: 3, Y: 58, X: 58 }
  Dataflow {
   SpatialMap(1,1) K; TemporalMap(64,64) C; TemporalMap(Sz(R),Sz(R)) R;
   TemporalMap(Sz(S),Sz(S)) S; TemporalMap(Sz(R),1) Y; TemporalMap(Sz(S),1) X;
   Cluster(64, P);
   SpatialMap(1,1) C; TemporalMap(Sz(R),1) Y; TemporalMap(Sz(S),1) X;
   TemporalMap(Sz(R),Sz(R)) R; TemporalMap(Sz(S),Sz(S)) S;
  }
 }
}
"""
HW = "num_pes: 256\nl1_size_cstr: 512\nl2_size_cstr: 108000\nnoc_bw_cstr: 64\noffchip_bw_cstr: 16\n"


@pytest.fixture()
def files(tmp_path):
    m, h = tmp_path / "conv.m", tmp_path / "edge.m"
    m.write_text(GOOD)
    h.write_text(HW)
    return m, h


def test_eval_json(files):
    m, h = files
    res = CliRunner().invoke(main, ["eval", str(m), "--hw", str(h), "--json"])
    assert res.exit_code == 0, res.output
    layer = json.loads(res.output)["layers"][0]
    assert layer["macs"] == 115605504
    for key in ("runtime_cycles", "energy_mac_units", "l1_elements", "l2_elements",
                "noc_bw_required", "offchip_bw_required", "utilization", "avg_util_pes"):
        assert key in layer


def test_eval_table_and_target(files):
    m, _ = files
    res = CliRunner().invoke(main, ["eval", str(m), "--target", "edge"])
    assert res.exit_code == 0, res.output
    assert "conv" in res.output and "115,605,504" in res.output


def test_check_clean_and_dirty(files, tmp_path):
    m, h = files
    res = CliRunner().invoke(main, ["check", str(m), "--hw", str(h)])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.m"
    bad.write_text(GOOD.replace("TemporalMap(64,64) C;", "TemporalMap(8,16) C;"))
    res = CliRunner().invoke(main, ["check", str(bad), "--hw", str(h)])
    assert res.exit_code == 2
    assert "[S1]" in res.output and "[S6]" in res.output


def test_errors_are_one_line(tmp_path, files):
    _, h = files
    bad = tmp_path / "x.m"
    bad.write_text(GOOD.replace("Type: CONV", "Type: FC"))
    for cmd in (["eval", str(bad), "--hw", str(h)], ["check", str(bad)]):
        res = CliRunner().invoke(main, cmd)
        assert res.exit_code == 2
        assert "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["eval", str(bad)])
    assert res.exit_code == 2


@needs_ref
def test_eval_matches_reference_row():
    res = CliRunner().invoke(main, ["eval", str(REF / "mappings" / "rn50_conv1__kcp_ws.m"),
                                    "--hw", str(REF / "hw" / "edge.m"), "--json"])
    layer = json.loads(res.output)["layers"][0]
    assert layer["runtime_cycles"] == 10838028 and layer["l2_elements"] == 1478

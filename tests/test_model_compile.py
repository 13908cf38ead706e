"""`mapc compile MODEL.yaml`: dedupe, parallel = sequential, model reports, plots and errors."""
from __future__ import annotations

import csv
import json

import pytest

from compiler.model_compile import CSV_COLUMNS, compile_model, distinct_layers, is_model_file
from compiler.model import load_model
from targets import load_target

SMALL = """\
name: small
layers:
  - {name: a, kind: conv2d, params: {K: 16, C: 8, P: 8, Q: 8, R: 3, S: 3}}
  - {name: b, kind: gemm, params: {M: 32, K: 64, N: 16}, repeat: 2}
  - {name: c, kind: conv2d, params: {K: 16, C: 8, P: 8, Q: 8, R: 3, S: 3}, repeat: 3}
  - {name: d/x, kind: conv2d, params: {K: 32, C: 16, P: 4, Q: 4, R: 1, S: 1}}
"""
BROKEN = """\
name: broken
layers:
  - {name: fine, kind: gemm, params: {M: 8, K: 8, N: 8}}
  - {name: diag, statement: "O[m,n] += I[m+n,k] * W[k,n]", dims: {m: 4, n: 4, k: 4}}
  - {name: other, statement: "O[m,n] += I[m,k+1] * W[k,n]", dims: {m: 4, n: 4, k: 4}}
"""


@pytest.fixture
def small(write):
    return write("small.yaml", SMALL)


def test_model_detection(small, write):
    assert is_model_file(small)
    assert not is_model_file(write("op.yaml", "name: g\nkind: gemm\nparams: {M: 4, K: 4, N: 4}\n"))
    assert not is_model_file(small.parent / "missing.yaml")


def test_dedupe_and_safe_names(small):
    layers, merged = distinct_layers(load_model(small))
    assert [(l.name, l.repeat, l.op.name) for l in layers] == [("a", 4, "a"), ("b", 2, "b"), ("d/x", 1, "d_x")]
    assert merged == (("a", "c"), ("b",), ("d/x",))


def test_layer_names_never_take_the_hardware_or_model_files(write):
    """A layer named like a target's hardware file (``edge.hw`` -> edge.hw.m) or the model report
    gets another file stem; distinct layers stay distinct case-insensitively."""
    text = "name: clash\nlayers:\n" + "".join(
        f"  - {{name: {n}, kind: gemm, params: {{M: 8, K: {8 * (i + 1)}, N: 8}}}}\n"
        for i, n in enumerate(["edge.hw", "Cloud.HW", "model", "edge_hw", "x.hw.y"]))
    layers, _ = distinct_layers(load_model(write("clash.yaml", text)))
    assert [l.op.name for l in layers] == ["edge_hw", "Cloud_hw", "model_2", "edge_hw_2", "x.hw.y"]


def test_compile_writes_reports(small, tmp_path, run_cli):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("compile", small, "--target", "edge", "-o", out)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "a.m", "a.report.json", "b.m", "b.report.json", "d_x.m", "d_x.report.json", "edge.hw.m",
        "model.report.csv", "model.report.json"]
    assert "small on edge: 3 distinct of 4 layers (7 ops)" in stdout
    report = json.loads((out / "model.report.json").read_text())
    assert report["model"] == "small" and report["target"] == "edge"
    rows = report["layers"]
    assert [(r["name"], r["repeat"], r["merged"]) for r in rows] == [("a", 4, ["a", "c"]), ("b", 2, ["b"]),
                                                                      ("d/x", 1, ["d/x"])]
    for r in rows:  # the model report agrees with each layer's own report
        layer = json.loads((out / r["report"]).read_text())
        assert r["runtime_cycles"] == layer["metrics"]["runtime_cycles"]
        assert r["roofline_cycles"] == layer["bounds"]["roofline_cycles"]
        assert r["dram_traffic_elements"] == layer["metrics"]["dram_traffic_elements"]
        assert r["compile_seconds"] > 0
    t = report["totals"]
    assert t["runtime_cycles"] == sum(r["runtime_cycles"] * r["repeat"] for r in rows)
    assert t["energy_mac_units"] == pytest.approx(sum(r["energy_mac_units"] * r["repeat"] for r in rows))
    assert t["dram_traffic_elements"] == sum(r["dram_traffic_elements"] * r["repeat"] for r in rows)
    assert t["macs"] == load_model(small).macs and (t["ops"], t["failed"]) == (7, 0)
    busy = sum(r["utilization"] * r["runtime_cycles"] * r["repeat"] for r in rows)
    assert t["utilization"] == pytest.approx(busy / t["runtime_cycles"], abs=1e-6)
    with open(out / "model.report.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [r["name"] for r in table] == ["a", "b", "d/x", "TOTAL"]
    assert int(table[-1]["runtime_cycles"]) == t["runtime_cycles"] and int(table[-1]["repeat"]) == 7
    assert {r["bound"] for r in table[:-1]} <= {"compute", "dram"}


def test_jobs_do_not_change_the_output(small, tmp_path, run_cli):
    for jobs in ("1", "2"):
        code, _, stderr = run_cli("compile", small, "-t", "edge", "-o", tmp_path / jobs, "-j", jobs, "--no-timings")
        assert code == 0, stderr
    one = {p.name: p.read_bytes() for p in (tmp_path / "1").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "2").iterdir()}
    assert one == two and len(one) == 9
    assert json.loads(one["model.report.json"])["totals"]["compile_seconds"] == 0


def test_results_in_model_order_whatever_finishes_first(small):
    seen = []
    result = compile_model(small, load_target("edge"), jobs=2, progress=lambda d, n, name: seen.append((d, n)))
    assert [r.name for r in result.results] == ["a", "b", "d/x"]
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]


def test_failed_layers_are_listed_and_nothing_is_written(write, tmp_path, run_cli):
    model = write("broken.yaml", BROKEN)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("compile", model, "-t", "edge", "-o", out, "-j", "2")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"mapc: error: layer diag: {model}:layers[1]:statement: tensor I, index 'm+n'")
    assert lines[1].startswith(f"mapc: error: layer other: {model}:layers[2]:statement: tensor I, index 'k+1'")
    assert lines[2] == f"mapc: error: {model}: 2 of 3 distinct layers failed; nothing written"
    assert "FAILED" in stdout and not out.exists()


def test_model_option_errors(small, write, tmp_path, run_cli):
    code, _, err = run_cli("compile", small, "-t", "edge", "-o", tmp_path / "o", "--stop-after", "offchip")
    assert code == 2 and err == f"mapc: error: {small}:--stop-after: --stop-after applies to operator files, not to a model\n"
    op = write("op.yaml", "name: g\nkind: gemm\nparams: {M: 4, K: 4, N: 4}\n")
    code, _, err = run_cli("compile", op, "-t", "edge", "-o", tmp_path / "o", "--plot")
    assert code == 2 and "--plot applies to model files" in err
    dup = write("dup.yaml", "name: d\nlayers:\n  - {name: x, kind: gemm, params: {M: 4, K: 4, N: 4}}\n"
                            "  - {name: x, kind: gemm, params: {M: 8, K: 4, N: 4}}\n")
    code, _, err = run_cli("compile", dup, "-t", "edge", "-o", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "duplicate layer name 'x'" in err
    assert not (tmp_path / "o").exists()


def test_plot_is_a_png(small, tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    code, stdout, stderr = run_cli("compile", small, "-t", "edge", "-o", tmp_path, "--plot")
    assert code == 0, stderr
    png = (tmp_path / "small.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

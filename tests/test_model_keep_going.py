"""Whole models keep going: --keep-going writes what compiled, and a layer one backend cannot
take goes to the target's next backend."""
from __future__ import annotations

import json

MODEL = """name: mixed
layers:
  - {name: gemm, kind: gemm, params: {M: 16, K: 16, N: 16}}
  - {name: three, statement: "O[i] += A[i,j] * B[j] * C[j]", dims: {i: 8, j: 8}}
  - {name: scale, statement: "O[i,j] += I[i,j] * W[i,j]", dims: {i: 8, j: 8}, repeat: 2}
"""
THREE = "MDC needs exactly two operands (input * weight), statement has 3"


def test_a_failed_layer_stops_the_model_without_keep_going(tmp_path, write, run_cli):
    model = write("mixed.yaml", MODEL)
    out = tmp_path / "out"
    code, _, err = run_cli("compile", model, "--target", "edge", "-o", out)
    assert code == 2 and not out.exists()
    assert f"mapc: error: layer three: {model}:layers[1]:statement: {THREE}" in err
    assert "2 of 3 distinct layers failed; nothing written" in err


def test_keep_going_writes_what_compiled(tmp_path, write, run_cli):
    model = write("mixed.yaml", MODEL)
    out = tmp_path / "out"
    code, stdout, err = run_cli("compile", model, "--target", "edge", "-o", out, "--keep-going", "--no-timings")
    assert code == 0, err
    assert "mapc: warning: 2 of 3 distinct layers failed" in err and "2 FAILED, totals incomplete" in stdout
    report = json.loads((out / "model.report.json").read_text())
    assert [f["name"] for f in report["failed"]] == ["three", "scale"]
    assert report["failed"][0]["reason"].startswith(f"{model}:layers[1]:statement: {THREE}")
    assert "\n" not in report["failed"][1]["reason"]
    assert report["totals"]["complete"] is False and report["totals"]["compiled"] == 1
    assert report["totals"]["macs"] == 16 ** 3          # the compiled layer only
    assert [r["backend"] for r in report["layers"] if "error" not in r] == ["mdc"]
    assert sorted(p.name for p in out.iterdir()) == ["edge.hw.m", "gemm.m", "gemm.report.json",
                                                     "model.report.csv", "model.report.json"]
    # a single operator has no layers to keep going with
    code, _, err = run_cli("compile", tmp_path / "out" / "gemm.m", "--target", "edge", "--keep-going")
    assert code == 2


def test_next_backend_takes_what_the_first_cannot(tmp_path, write, run_cli):
    """chiplet4 has mdc then gemm: the elementwise product (no reduction) has no MDC form and runs
    on the GEMM backend; the three-operand product fails on both, with one reason."""
    model = write("mixed.yaml", MODEL)
    out = tmp_path / "out"
    code, stdout, err = run_cli("compile", model, "--target", "chiplet4", "-o", out, "--keep-going")
    assert code == 0, err
    report = json.loads((out / "model.report.json").read_text())
    assert {r["name"]: r.get("backend") for r in report["layers"]} == {"gemm": "mdc", "three": None,
                                                                        "scale": "gemm"}
    assert [f["name"] for f in report["failed"]] == ["three"]
    assert report["failed"][0]["reason"].startswith(f"{model}:layers[1]:statement: {THREE}")
    assert "mdc:" not in report["failed"][0]["reason"]
    assert json.loads((out / "scale.report.json").read_text())["backend"] == "gemm"
    assert (out / "scale.schedule.yaml").exists() and (out / "gemm.m").exists()
    assert "backend" in stdout and report["totals"]["ops"] == 4
    csv_rows = (out / "model.report.csv").read_text().splitlines()
    assert csv_rows[0].endswith(",backend") and csv_rows[3].endswith(",gemm")
    # a chosen backend is not second-guessed
    code, _, err = run_cli("compile", model, "--target", "chiplet4", "-o", tmp_path / "o2", "--backend", "mdc",
                           "--keep-going")
    assert code == 0 and "layer scale: " in err and "gemm:" not in err

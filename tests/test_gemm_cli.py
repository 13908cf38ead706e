"""End to end: `mapc compile` with the gemm backend, `--emit loops`, `mapc verify`."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def compile_(tmp_path, example, target, *extra):
    out = tmp_path / f"{example}-{target}"
    res = CliRunner().invoke(main, ["compile", str(EXAMPLES / f"{example}.yaml"), "--target", target,
                                    "-o", str(out), *extra])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_bert_qkv_on_systolic_verifies(tmp_path):
    out, _ = compile_(tmp_path, "gemm", "systolic")
    schedule = out / "bert_q_proj.schedule.yaml"
    res = CliRunner().invoke(main, ["verify", str(schedule)])
    assert res.exit_code == 0, res.output
    assert "product: equal to A @ B" in res.output and "traffic: matches the claims" in res.output
    report = json.loads((out / "bert_q_proj.report.json").read_text())
    assert report["metrics"]["dram_traffic_elements"] == sum(report["gemm"]["traffic"]["dram_to_l2"].values())
    assert report["bounds"]["compute_cycles"] == -(-512 * 768 * 768 // (128 * 128))
    assert report["metrics"]["runtime_cycles"] >= report["bounds"]["roofline_cycles"]
    gemm_pass = next(p for p in report["passes"] if p["name"] == "gemm-schedule")
    assert gemm_pass["solver_status"] in ("OPTIMAL-IN-SPACE", "FEASIBLE") and gemm_pass["space_size"] > 0


@pytest.mark.parametrize("example, target, backend", [
    ("conv3x3", "os32", None), ("dwconv", "systolic", None), ("attention", "os32", None),
    ("conv_strided", "chiplet4", "gemm"), ("gconv", "chiplet4", "gemm")])
def test_other_ops_and_targets_verify(tmp_path, example, target, backend):
    out, _ = compile_(tmp_path, example, target, *(["--backend", backend] if backend else []))
    schedule = next(out.glob("*.schedule.yaml"))
    res = CliRunner().invoke(main, ["verify", str(schedule)])
    assert res.exit_code == 0, res.output


def test_chiplet_level_in_schedule(tmp_path):
    out, _ = compile_(tmp_path, "gemm", "chiplet4", "--backend", "gemm")
    text = next(out.glob("*.schedule.yaml")).read_text()
    assert "level: chiplet" in text and "chiplets: 4" in text


def test_same_input_same_bytes(tmp_path):
    a, _ = compile_(tmp_path / "a", "conv3x3", "systolic")
    b, _ = compile_(tmp_path / "b", "conv3x3", "systolic")
    name = "resnet50_res3_conv3x3.schedule.yaml"
    assert (a / name).read_bytes() == (b / name).read_bytes()


def test_emit_loops_and_dump_after_lowering(tmp_path):
    _, text = compile_(tmp_path, "conv3x3", "systolic", "--emit", "loops", "--dump-after", "gemm-lowering")
    assert "m <- n * p * q = 784" in text and "k <- c * r * s = 1152" in text
    assert "input duplication: 115,200 -> 903,168 elements (7.840x)" in text
    assert "parallel for" in text and "# array, rows" in text and "C[" in text


def test_emit_loops_needs_gemm_backend(tmp_path):
    res = CliRunner().invoke(main, ["compile", str(EXAMPLES / "conv3x3.yaml"), "--target", "edge",
                                    "-o", str(tmp_path), "--emit", "loops"])
    assert res.exit_code == 2 and "--emit loops needs the gemm backend" in res.output


def test_verify_rejects_tampered_claims(tmp_path):
    out, _ = compile_(tmp_path, "gemm", "systolic")
    schedule = out / "bert_q_proj.schedule.yaml"
    text = schedule.read_text()
    head, tail = text.split("dram_to_l2: {A: ", 1)
    number, rest = tail.split(",", 1)
    schedule.write_text(f"{head}dram_to_l2: {{A: {int(number) + 5},{rest}")
    res = CliRunner().invoke(main, ["verify", str(schedule)])
    assert res.exit_code == 2 and "MISMATCH" in res.output


def test_verify_bad_file(tmp_path):
    bad = tmp_path / "x.schedule.yaml"
    bad.write_text("schedule_version: 1\ndims: {m: 2}\n")
    res = CliRunner().invoke(main, ["verify", str(bad)])
    assert res.exit_code == 2 and res.output.startswith("mapc: error: ")

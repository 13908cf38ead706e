"""Package schedules through the compiler: real per-layer costs, the report, explain and errors."""
from __future__ import annotations

import json

import pytest

from compiler.context import Options
from compiler.package import lockstep
from compiler.package_costs import compile_package
from compiler.package_schedule import solve, solve_kind
from compiler.package_sim import simulate
from targets import load_target

# Two tiny models: per-layer compiles take a fraction of a second each.
CNN = """\
name: cnn
layers:
  - {name: c1, kind: conv2d, params: {K: 16, C: 8, P: 8, Q: 8, R: 3, S: 3}}
  - {name: c2, kind: conv2d, params: {K: 16, C: 16, P: 8, Q: 8, R: 1, S: 1}, repeat: 2}
"""
MLP = """\
name: mlp
layers:
  - {name: up, kind: gemm, params: {M: 16, K: 64, N: 128}}
  - {name: down, kind: gemm, params: {M: 16, K: 128, N: 64}}
"""
WORKLOAD = """\
name: pair
models:
  - {name: cnn, include: cnn.yaml}
  - {name: mlp, include: mlp.yaml, weight: 2}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    for name, text in (("cnn.yaml", CNN), ("mlp.yaml", MLP), ("pair.yaml", WORKLOAD)):
        (d / name).write_text(text)
    return d


@pytest.fixture(scope="module")
def compiled(files):
    return compile_package(files / "pair.yaml", load_target("chiplet4"), Options(), jobs=2, timings=False)


def test_costs_come_from_per_layer_compiles_on_every_set_size(compiled):
    pc = compiled
    assert [c.name for c in pc.problem.chains] == ["cnn", "mlp"]
    assert [l.name for l in pc.problem.chains[0].layers] == ["cnn.c1", "cnn.c2#1", "cnn.c2#2"]
    assert all(l.mult == 2 for l in pc.problem.chains[1].layers)
    for (stem, kind, k), r in pc.results.items():
        assert r.error is None
        assert r.report["target"] == ("chiplet4" if k == 4 else f"chiplet4.k{k}")
        assert pc.problem.costs[stem, kind, k].cycles == r.report["metrics"]["runtime_cycles"]
    assert {k for _, _, k in pc.results} == {1, 2, 4}            # no 3-chiplet sets


def test_real_schedules_replay_in_the_simulation_and_auto_never_loses(compiled):
    problem = compiled.problem
    for objective in ("throughput", "latency"):
        chosen, tried = solve(problem, "auto", objective, time_limit=20.0)
        assert set(tried) == {"lockstep", "pipeline", "concurrent"}
        assert chosen.figures.key(objective) <= lockstep(problem).key(objective)
        for s in tried.values():
            sim = simulate(s.figures, frames=8)
            assert (sim.interval, sim.latency) == (s.figures.cycles_per_frame, s.figures.latency_cycles)
    conc = solve_kind(problem, "concurrent", "throughput", 20.0).figures
    assert {s.placement.chain for s in conc.stages} == {0, 1}


def test_compile_report_files_plot_and_explain(files, tmp_path, run_cli):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("compile", files / "pair.yaml", "-t", "chiplet4", "-o", out, "--no-timings",
                                   "--objective", "throughput", "--plot", "-j", "2")
    assert code == 0, stderr
    rep = json.loads((out / "model.report.json").read_text())
    s = rep["schedule"]
    assert s["solver"] in ("CP-SAT", "none") and s["requested"] == "auto" and s["objective"] == "throughput"
    assert s["lockstep"]["kind"] == "lockstep" and s["cycles_per_frame"] <= s["lockstep"]["cycles_per_frame"]
    assert sorted(l for st in s["stages"] for l in st["layers"]) == sorted(
        ["cnn.c1", "cnn.c2#1", "cnn.c2#2", "mlp.up", "mlp.down"])
    for key in ("cycles_per_frame", "latency_cycles", "dram_elements_per_frame", "link_element_hops_per_frame"):
        assert isinstance(s[key], int) and isinstance(s["lockstep"][key], int)
    for per_set in s["layer_files"].values():
        assert set(per_set) == {"chiplet4.k1", "chiplet4.k2", "chiplet4.k4"}
        assert all((out / f).is_file() for f in per_set.values())
    assert (out / "cnn.c1.k2.m").is_file() and (out / "chiplet4.k2.hw.m").is_file()
    assert (out / "pair.schedule.png").read_bytes()[:4] == b"\x89PNG"
    assert "Package schedule on chiplet4" in stdout
    code, text, stderr = run_cli("explain", files / "pair.yaml", "-t", "chiplet4", "--objective", "throughput")
    assert code == 0, stderr
    assert f"Chosen: {s['kind']}" in text and "stage 0:" in text and "lockstep" in text


def test_compile_with_no_solution_in_time_keeps_lockstep(files, tmp_path, run_cli, cp_sat_parameters):
    solves = cp_sat_parameters(stop_after_presolve=True)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("compile", files / "pair.yaml", "-t", "chiplet4", "-o", out, "--no-timings",
                                   "--objective", "throughput", "-j", "2")
    assert code == 0, stderr
    assert solves == [("UNKNOWN", True)] * 2                 # pipeline, concurrent
    s = json.loads((out / "model.report.json").read_text())["schedule"]
    for kind in ("pipeline", "concurrent"):
        assert s["kinds"][kind]["status"] == "UNKNOWN" and "time limit" in s["kinds"][kind]["note"]
    assert "note" not in s["lockstep"]
    assert s["kinds"]["pipeline"]["cycles_per_frame"] == s["lockstep"]["cycles_per_frame"]
    # the kept concurrent placement (each model on two chiplets) beats lockstep here: auto takes it
    assert s["kind"] == "concurrent" and s["status"] == "UNKNOWN" and s["note"] == s["kinds"]["concurrent"]["note"]
    assert [st["chiplets"] for st in s["stages"]] == [[0, 1], [2, 3]]
    assert s["cycles_per_frame"] < s["lockstep"]["cycles_per_frame"]
    assert "UNKNOWN" in stdout and "one-stage placement it started from is kept" in stdout


def test_bad_schedules_and_workloads_are_one_line_errors(files, write, tmp_path, run_cli):
    out = tmp_path / "none"
    code, _, err = run_cli("compile", files / "cnn.yaml", "-t", "chiplet4", "--schedule", "concurrent", "-o", out)
    assert code == 2 and err.startswith("mapc: error:") and "at least two models" in err and not out.exists()
    bad = write("bad.yaml", "name: bad\nmodels:\n  - {include: cnn.yaml, weight: 2, fps: 30}\n")
    code, _, err = run_cli("compile", bad, "-t", "chiplet4", "-o", out)
    assert code == 2 and "bad.yaml" in err and "not both" in err and err.count("\n") == 1
    code, _, err = run_cli("compile", files / "cnn.yaml", "-t", "chiplet4_hetero", "-o", out, "--schedule", "lockstep")
    assert code == 0, err
    code, _, err = run_cli("compile", str(files / "cnn.yaml").replace("cnn.yaml", "../x.yaml"), "-t", "chiplet4",
                           "-o", out)
    assert code == 2


def test_hetero_package_prices_each_kind(files):
    pc = compile_package(files / "mlp.yaml", load_target("chiplet4_hetero"), Options(), timings=False)
    assert pc.problem.package.kinds == ("nvdla", "nvdla", "flex", "flex")
    assert {(kind, k) for _, kind, k in pc.results} == {(kd, k) for kd in ("nvdla", "flex") for k in (1, 2, 4)}
    layer = pc.problem.chains[0].layers[0]
    mixed = pc.problem.cost(layer, (0, 2))[0]
    assert mixed == max(pc.problem.costs[layer.key, "nvdla", 2].cycles, pc.problem.costs[layer.key, "flex", 2].cycles)

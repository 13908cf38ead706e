"""Package schedules on chiplet targets: lockstep vs pipeline vs concurrent vs one monolithic chip.

Usage: ``python bench/chiplets.py [--jobs 2] [--time-limit 20] [--out docs/chiplets-bench.md]``

For ResNet-50, MobileNetV2, a BERT-base encoder layer, a GPT-2 block and the two workloads in
``examples/workloads/`` (a CNN with a transformer; a vision model with an LLM decode step), on
``chiplet4`` and ``chiplet4_hetero``: every distinct layer is compiled for every chiplet-set size
and kind (compiles are cached under ``--cache``, keyed by operator, target and options, so reruns
only solve), then each schedule kind is solved for throughput.  Reported per period: cycles
(interval) and latency of each kind, auto's choice and its throughput and latency over lockstep,
one monolithic chip with the package's total PEs, L2, NoC and DRAM bandwidth running the layers
one after another (compiled by mapc for that chip), the aggregate bound max(sum MACs / all PEs,
sum compulsory DRAM / DRAM bandwidth) and the CP-SAT solve time.  Every schedule is also replayed
by the discrete-event simulation; a mismatch aborts the run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.context import Options  # noqa: E402
from compiler.model_compile import LayerJob, LayerResult, compile_layer, distinct_layers, run_jobs  # noqa: E402
from compiler.package_costs import compile_package  # noqa: E402
from compiler.package_schedule import solve  # noqa: E402
from compiler.package_sim import simulate  # noqa: E402
from targets import load_target  # noqa: E402

CASES = [("ResNet-50", "examples/models/resnet50.yaml"), ("MobileNetV2", "examples/models/mobilenetv2.yaml"),
         ("BERT-base layer", "examples/models/bert_base.yaml"), ("GPT-2 block", "examples/models/gpt2_small.yaml"),
         ("ResNet-50 + BERT layer", "examples/workloads/cnn_transformer.yaml"),
         ("MobileNetV2 + GPT-2 decode", "examples/workloads/vision_llm.yaml")]
TARGETS = ("chiplet4", "chiplet4_hetero")
CACHE = Path("/tmp/mapc-chiplets-cache")


def cached(job: LayerJob) -> LayerResult:
    """compile_layer, remembered on disk by (operator shape, target, options); the bench reads only
    the metrics, so a layer of the same shape under another name reuses the compile."""
    op = job.layer.op
    key = repr((op.statement, tuple((d.name, d.extent) for d in op.dims), op.dtype,
                tuple(t.element_bytes for t in op.tensors), job.target, job.options))
    path = CACHE / (hashlib.sha256(key.encode()).hexdigest() + ".pickle")
    if path.exists():
        return replace(pickle.loads(path.read_bytes()), index=job.index, name=job.layer.name)
    result = compile_layer(job)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def monolithic(target) -> object:
    """One chip with the package's total PEs (a square array), L2, NoC and DRAM bandwidth; any
    dims across PEs; L1 per PE and energies of the first chiplet kind."""
    kinds = [dict(target.kinds)[k] for k in target.chiplets.layout] if target.kinds else [target] * target.num_chiplets
    pes = sum(k.num_pes for k in kinds)
    side = int(pes ** 0.5)
    return replace(kinds[0], name=f"{target.name}-mono", chiplets=None, kinds=(), pe_rows=side, pe_cols=pes // side,
                   l2_bytes=sum(k.l2_bytes for k in kinds), noc_bw=sum(k.noc_bw for k in kinds),
                   offchip_bw=target.offchip_bw, spatial_roles=None,
                   description="monolithic equivalent")


def run_case(name: str, path: str, target_name: str, jobs: int, limit: float) -> dict:
    target = load_target(target_name)
    options = Options(time_limit_s=limit)
    start = time.perf_counter()
    pc = compile_package(ROOT / path, target, options, jobs=jobs, worker=cached)
    compile_s = time.perf_counter() - start
    if pc.model_result.failures:
        return {"name": name, "target": target_name, "error": pc.model_result.failures[0].error}
    chosen, tried = solve(pc.problem, "auto", "throughput", limit)
    sim_ok = all((sim.interval, sim.latency) == (s.figures.cycles_per_frame, s.figures.latency_cycles)
                 for s in tried.values() for sim in [simulate(s.figures, frames=8)])
    lat_choice, _ = solve(pc.problem, "auto", "latency", limit)
    mono_t = monolithic(target)
    layers, _ = distinct_layers(pc.workload.union())
    mono = run_jobs([LayerJob(i, l, mono_t, options, True) for i, l in enumerate(layers)], jobs, None, cached)
    weights = {m.name: w for m, w in zip(pc.workload.models, pc.workload.weights)}
    mono_cycles = 0
    for layer, r in zip(layers, mono):
        model = layer.name.split(".", 1)[0] if len(weights) > 1 else next(iter(weights))
        mono_cycles += layer.repeat * weights[model] * r.report["metrics"]["runtime_cycles"]
    base = tried["lockstep"].figures
    row = {"name": name, "target": target_name, "compile_s": compile_s, "bound": pc.bound_cycles,
           "lockstep": (base.cycles_per_frame, base.latency_cycles), "mono": mono_cycles,
           "chosen": chosen.figures.kind, "chosen_status": chosen.status,
           "chosen_t": chosen.figures.cycles_per_frame, "chosen_lat": chosen.figures.latency_cycles,
           "lat_choice": (lat_choice.figures.kind, lat_choice.figures.latency_cycles),
           "stages": len(chosen.figures.stages), "solve_s": sum(s.seconds for s in tried.values()),
           "sim_ok": sim_ok}
    for k in ("pipeline", "concurrent"):
        if k in tried:
            f = tried[k].figures
            row[k] = (f.cycles_per_frame, f.latency_cycles, tried[k].status)
    return row


def table(rows: list[dict]) -> str:
    head = ("| workload | target | lockstep cycles/period (latency) | pipeline: cycles (latency), status | "
            "concurrent: cycles (latency), status | auto (throughput): kind, stages, x lockstep throughput, "
            "x lockstep latency | auto (latency): kind, x lockstep latency | monolithic: cycles, x auto | "
            "bound cycles, auto ÷ bound | simulation agrees | solve s | compile s |\n|" + "---|" * 12)
    out = [head]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['name']} | {r['target']} | failed: {r['error']} |" + " |" * 10)
            continue
        lt, ll = r["lockstep"]

        def kind(k):
            return f"{r[k][0]:,} ({r[k][1]:,}), {r[k][2]}" if k in r else "–"
        out.append(f"| {r['name']} | {r['target']} | {lt:,} ({ll:,}) | {kind('pipeline')} | {kind('concurrent')} | "
                   f"{r['chosen']}, {r['stages']}, {lt / r['chosen_t']:.3f}, {r['chosen_lat'] / ll:.3f} | "
                   f"{r['lat_choice'][0]}, {r['lat_choice'][1] / ll:.3f} | {r['mono']:,}, "
                   f"{r['mono'] / r['chosen_t']:.3f} | {r['bound']:,}, {r['chosen_t'] / r['bound']:.2f} | "
                   f"{'yes' if r['sim_ok'] else 'NO'} | {r['solve_s']:.1f} | {r['compile_s']:.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--rows", type=Path, default=Path("/tmp/mapc-chiplets-rows.jsonl"),
                    help="rows are appended here as they finish")
    ap.add_argument("--table-from", type=Path, default=None, help="only print the table of a rows file")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "chiplets-bench.md")
    args = ap.parse_args()
    if args.table_from:
        rows = [json.loads(line) for line in args.table_from.read_text().splitlines()]
        order = {(t, n): i for i, (t, n) in enumerate((t, n) for t in TARGETS for n, _ in CASES)}
        rows.sort(key=lambda r: order[r["target"], r["name"]])
        text = table(rows)
        print(text)
        args.out.write_text("# Package schedules on chiplet targets (`python bench/chiplets.py`)\n\n"
                            + (__doc__.split("\n\n", 2)[2].strip()) + "\n\n" + text)
        return
    rows = []
    for target in args.targets.split(","):
        for name, path in CASES:
            if args.only and args.only not in name:
                continue
            rows.append(run_case(name, path, target, args.jobs, args.time_limit))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            with open(args.rows, "a") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    text = table(rows)
    print(text)
    if args.only is None:
        args.out.write_text("# Package schedules on chiplet targets (`python bench/chiplets.py`)\n\n"
                            + (__doc__.split("\n\n", 2)[2].strip()) + "\n\n" + text)


if __name__ == "__main__":
    main()

"""Compile-time benchmark: one model compiled cold several times, each run with the machine's state.

Usage: ``python bench/compile_time.py [--model examples/models/resnet50.yaml] [--target edge]
[--jobs 2] [--runs 5]``

A shared machine's speed drifts (on the 2-core machines mapc is measured on, by up to 1.8x within
minutes), so a wall time means little without the state it was measured in.  Before each cold
compile (:func:`bench.models.cold_compile`: a fresh process, imports and worker start-up included)
this records the load average and a *speed probe*: the seconds a fixed numpy workload of the kind
the cost model runs (many operations on small arrays) takes in this process; and, during the
compile, the share of CPU time the hypervisor gave to other guests (*steal*, from ``/proc/stat``;
blank where there is none).  The table pairs each wall time with all three; the goal (ResNet-50
on edge, ``-j 2``, at most 5 s) is judged on the runs whose probe is near the machine's usual
value and little steal, and the others are reported as such.

mapc's bytecode is compiled first, as any first run leaves it (with ``PYTHONDONTWRITEBYTECODE``
set, edited modules would otherwise be compiled from source in every run: 0.1-0.2 s of imports).
"""
from __future__ import annotations

import argparse
import compileall
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import ROOT, cold_compile  # noqa: E402


def speed_probe() -> float:
    """Seconds for 100,000 small-array numpy operations (lower is faster)."""
    x = np.arange(1000)
    start = time.perf_counter()
    for _ in range(50_000):
        x * 2 + 1
    return time.perf_counter() - start


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal), or
    None off Linux."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Steal time between two :func:`cpu_times` readings, in % of all CPU time then (None: unknown)."""
    if not before or not after or len(before) < 8:
        return None
    delta = [b - a for a, b in zip(before, after)]
    return 100 * delta[7] / max(sum(delta), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "examples/models/resnet50.yaml")
    ap.add_argument("--target", default="edge")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for package in ("compiler", "passes", "targets"):
        compileall.compile_dir(ROOT / package, quiet=1)
    walls, quiet = [], []       # all runs; those with under 1 % steal
    print(f"{args.model.name} on {args.target}, -j {args.jobs}, cold process per run")
    print("| run | load avg (1 min) | speed probe s | steal % | wall s |\n|---|---|---|---|---|")
    for run in range(1, args.runs + 1):
        load, probe = os.getloadavg()[0], speed_probe()
        before = cpu_times()
        wall, code, _, stderr = cold_compile(args.model, args.target, args.jobs)
        steal = steal_share(before, cpu_times())
        if code != 0:
            raise SystemExit(f"mapc exited {code}:\n{stderr}")
        walls.append(wall)
        if steal is not None and steal < 1.0:
            quiet.append(wall)
        shown = "" if steal is None else f"{steal:.1f}"
        print(f"| {run} | {load:.2f} | {probe:.3f} | {shown} | {wall:.2f} |", flush=True)
    print(f"median wall {statistics.median(walls):.2f} s, min {min(walls):.2f} s, max {max(walls):.2f} s")
    if quiet and len(quiet) < len(walls):
        print(f"runs with under 1 % steal: {len(quiet)} of {len(walls)}, median wall {statistics.median(quiet):.2f} s")


if __name__ == "__main__":
    main()

"""Speed of the MAESTRO cost model: many candidates of one layer, and one mapping alone.

Usage: python bench/costmodel_speed.py [--n 10000] [--repeat 3] [--divisors-only] [--single]
       python bench/costmodel_speed.py --compile [--targets edge,cloud] [--all]

Throughput: the candidates share a two-level template (an output-stationary style dataflow on
ResNet-50 conv2 3x3, K64 C64 R3 S3 Y58 X58, on a 256-PE edge HW) and differ in the K,
C, X tile sizes and the cluster size.

``--single``: the latency of one mapping, what ``mapc eval``/``mapc check`` and the emit pass
pay: the three-level mapping mapc emits for ``examples/conv3x3.yaml`` on ``edge`` (compiled
into a temporary folder first), scored by ``evaluate_layer`` (best of ``--repeat`` x 20 calls,
none answered from its cache)
and by a whole ``mapc eval`` process (best of ``--repeat`` wall times).

``--compile``: per-layer compile time of the layers ``bench/quality.py --quick`` selects (``--all``:
its whole suite), ``run_pipeline`` in-process as that bench times it, but as CPU time
(``time.process_time``) besides wall time, so that runs on a shared machine compare.

Measured on the 2-core machine with a load average of 6.6-8.2 (other jobs running), the batched
model against the scalar copy it replaced (commit 4c5750f, same bench): one mapping 27 ms as a
batch of one, 2.5-3.1 ms in the scalar copy; a ``mapc eval`` process 2.2 s against 1.6-2.1 s
(start-up dominates: the difference is within the spread between runs).  Throughput, arbitrary
tiles 6,100-9,400 candidates/s (4,500-8,600 before), divisor tiles 12,100-17,300 (13,900-19,100).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compiler.mdc.costmodel import MappingTemplate, evaluate_batch, evaluate_layer
from compiler.mdc.hw import HwConfig
from compiler.mdc.parser import parse_mdc_file
from compiler.mdc.syntax import make_layer

ROOT = Path(__file__).resolve().parent.parent

HW = HwConfig(num_pes=256, l1_size=512, l2_size=108000, noc_bw=64, offchip_bw=16)
DIMS = {"K": 64, "C": 64, "R": 3, "S": 3, "Y": 58, "X": 58}
# (kind, dim) of the template; sizes/offsets are supplied per candidate.
ITEMS = (("T", "K"), ("S", "Y"), ("T", "X"), ("T", "C"), ("T", "R"), ("T", "S"), ("C", ""),
         ("S", "K"), ("T", "Y"), ("T", "X"), ("T", "R"), ("T", "S"))


def template() -> MappingTemplate:
    """The shared template (its directives are placeholders; values come from arrays)."""
    layer = make_layer("rn50_conv2_3x3", "CONV", DIMS, [], stride={"X": 1, "Y": 1})
    return MappingTemplate(layer, ITEMS)


def candidates(n: int, seed: int = 0, divisors_only: bool = False):
    """Random sizes, offsets and clusters for ``n`` candidates of :func:`template`."""
    rng = np.random.default_rng(seed)
    div64 = np.array([1, 2, 4, 8, 16, 32, 64])
    kt = rng.choice(div64[2:], n) if divisors_only else rng.integers(1, 65, n)
    ct = rng.choice(div64, n) if divisors_only else rng.integers(1, 65, n)
    xt = rng.choice([3, 4, 6, 8, 10, 16, 30, 58], n) if divisors_only else rng.integers(3, 59, n)
    cl = rng.choice([4, 8, 16, 32, 64], n)
    cl = np.minimum(cl, np.maximum(kt, 1)) if divisors_only else cl
    one, three = np.ones(n, np.int64), np.full(n, 3)
    sizes = np.stack([kt, three, xt, ct, three, three, one, three, three, three, three], 1)
    offs = np.stack([kt, one, xt - 2, ct, three, three, one, one, one, three, three], 1)
    return sizes, offs, cl.reshape(n, 1)


def single(repeat: int) -> None:
    """Print the latency of one emitted mapping: in-process and as a ``mapc eval`` process."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "compiler.cli", "compile",
                        str(ROOT / "examples/conv3x3.yaml"), "--target", "edge", "-o", tmp,
                        "--no-timings"], check=True, capture_output=True)
        path = next(p for p in Path(tmp).glob("*.m") if not p.name.endswith(".hw.m"))
        layer = parse_mdc_file(path).layers[0]
        best = float("inf")
        for r in range(repeat):
            # a new L1 size per call (no metric depends on it): evaluate_layer's cache never answers
            hws = [replace(HW, l1_size=HW.l1_size + 20 * r + i + 1) for i in range(20)]
            t0 = time.perf_counter()
            for hw in hws:
                evaluate_layer(layer, hw)
            best = min(best, (time.perf_counter() - t0) / 20)
        wall = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "compiler.cli", "eval", str(path), "--target",
                            "edge"], check=True, capture_output=True)
            wall = min(wall, time.perf_counter() - t0)
    print(f"one mapping ({path.name}): evaluate_layer {best * 1e3:.2f} ms; "
          f"mapc eval process {wall:.2f} s")


def compile_times(targets: list[str], quick: bool) -> None:
    """Print the median and largest per-layer compile CPU time (and median wall time) per target."""
    import statistics
    sys.path.insert(0, str(ROOT / "bench"))
    import quality
    from compiler.context import Options
    from compiler.pipeline import run_pipeline
    from targets import load_target
    layers = quality.suite(quality.MODELS, quick)
    for name in targets:
        target, cpu, wall = load_target(name), [], []
        for entry in layers:
            c0, w0 = time.process_time(), time.perf_counter()
            run_pipeline(Path(entry["source"]), target, Options(), op=entry["op"])
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        print(f"{name}: {len(layers)} layers, CPU median {statistics.median(cpu):.3f} s, max {max(cpu):.2f} s, "
              f"total {sum(cpu):.1f} s; wall median {statistics.median(wall):.3f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Time evaluate_batch and print candidates per second."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--divisors-only", action="store_true")
    ap.add_argument("--single", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--targets", default="edge,cloud")
    ap.add_argument("--all", action="store_true")
    args = ap.parse_args(argv)
    if args.compile:
        compile_times([t for t in args.targets.split(",") if t], not args.all)
        return 0
    if args.single:
        single(args.repeat)
        return 0
    t = template()
    s, o, c = candidates(args.n, divisors_only=args.divisors_only)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = evaluate_batch(t, s, o, c, HW)
        best = min(best, time.perf_counter() - t0)
    print(f"{args.n} candidates in {best:.3f} s: {args.n / best:,.0f} candidates/s "
          f"({int(res.valid.sum())} valid)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stride-2 depthwise layers of MobileNetV2 on edge and cloud: as written vs decomposed.

Usage: ``python bench/strided_dw.py [--targets edge,cloud] [--layers b3_first_dw,...] [--time-limit 10]``

Compiles each stride-2 depthwise layer of ``examples/models/mobilenetv2.yaml`` and prints, per
target, the plan the ``decompose`` pass kept, the runtime of every plan it tried (the op as
written is MAESTRO's one-output-row-per-step form) and the kept runtime over the roofline bound.
The on-chip search's limit is wall time: on a loaded machine a larger ``--time-limit`` gives it the
CPU time it gets on an idle one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.context import Options  # noqa: E402
from compiler.model import load_model  # noqa: E402
from compiler.pipeline import run_pipeline  # noqa: E402
from targets import load_target  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="edge,cloud")
    ap.add_argument("--layers", default=None, help="comma-separated layer names (default: every one)")
    ap.add_argument("--time-limit", type=float, default=Options().time_limit_s,
                    help="wall seconds per solver call, as mapc compile --time-limit")
    args = ap.parse_args()
    options = Options(time_limit_s=args.time_limit)
    model = load_model(ROOT / "examples" / "models" / "mobilenetv2.yaml")
    layers = [l for l in model.layers if l.op.kind == "dwconv" and any(w.stride == 2 for w in l.op.reads[0].windows)
              and (args.layers is None or l.name in args.layers.split(","))]
    print("| layer | target | plan kept | plans tried (cycles) | runtime | roofline | x roofline | DRAM-bound |")
    print("|---|---|---|---|---|---|---|---|")
    for tname in args.targets.split(","):
        for layer in layers:
            ctx = run_pipeline(Path(layer.source), load_target(tname), options, op=layer.op)
            m, b = ctx.lowered.metrics, ctx.lowered.bounds
            tried = ", ".join(f"{p.kind} {'skipped' if c.skipped else f'{c.runtime_cycles:,}'}"
                              for p, c in ctx.decomposition.tried)
            print(f"| {layer.name} | {tname} | {ctx.decomposition.chosen.kind} | {tried} | {m['runtime_cycles']:,} | "
                  f"{b['roofline_cycles']:,} | {m['runtime_cycles'] / b['roofline_cycles']:.2f} | "
                  f"{'yes' if b['dram_cycles'] > b['compute_cycles'] else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whole-model compile benchmark: every bundled model on one target, each in a fresh process.

Usage: ``python bench/models.py [--target edge] [--jobs 2] [--out docs/models-bench.md]``

For each model in ``examples/models/`` it runs ``mapc compile MODEL --target T -j N`` as a new
Python process (a cold start: imports, model parsing, worker start-up and every layer's solve are
all in the wall time) and reads the per-model totals from ``model.report.json``.  When a layer
fails the command writes nothing, so the totals are then recomputed in this process and the row
says how many distinct layers failed.  The headline is ResNet-50, whose target is 20 s at -j 2.
Prints the table and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.model_compile import compile_model  # noqa: E402
from targets import load_target  # noqa: E402

HEADLINE = "resnet50"
HEADLINE_LIMIT_S = 20.0


def cold_compile(model: Path, target: str, jobs: int) -> tuple[float, int, dict | None, str]:
    """Run the CLI in a fresh process; (wall s, exit code, model report or None, stderr)."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "compiler.cli", "compile", str(model), "--target", target,
                               "-j", str(jobs), "-o", out], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        report_path = Path(out) / "model.report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    return wall, proc.returncode, report, proc.stderr


def measure(model: Path, target: str, jobs: int) -> dict:
    """One table row for ``model``."""
    wall, code, report, stderr = cold_compile(model, target, jobs)
    if code not in (0, 2):
        raise SystemExit(f"{model.name}: mapc exited {code}:\n{stderr}")
    if report is None:  # some layer failed: totals of the layers that did compile, computed here
        report = compile_model(model, load_target(target), jobs=jobs).report()
    t = report["totals"]
    return {"model": report["model"], "wall_s": wall, "exit": code, **t}


def table(rows: list[dict], target: str, jobs: int) -> str:
    """The markdown table."""
    head = ("| model | layers | distinct | failed | MACs (compiled) | runtime cycles | x roofline | utilisation "
            "| energy (MAC units) | DRAM elements | compile CPU s | cold wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['layers']} ({r['ops']} ops) | {r['distinct_layers']} | {r['failed']} "
                     f"| {r['macs']:,} | {r['runtime_cycles']:,} | {r['runtime_over_roofline'] or 0:.3f} "
                     f"| {r['utilization'] or 0:.3f} | {r['energy_mac_units']:.4g} | {r['dram_traffic_elements']:,} "
                     f"| {r['compile_seconds']:.1f} | {r['wall_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="edge")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "models-bench.md")
    args = ap.parse_args()
    models = sorted((ROOT / "examples" / "models").glob("*.yaml"), key=lambda p: (p.stem != HEADLINE, p.stem))
    rows = []
    for model in models:
        row = measure(model, args.target, args.jobs)
        print(f"{row['model']}: {row['wall_s']:.1f} s wall (exit {row['exit']}), "
              f"{row['failed']} of {row['distinct_layers']} distinct layers failed", file=sys.stderr)
        rows.append(row)
    head = rows[0]
    verdict = "within" if head["wall_s"] <= HEADLINE_LIMIT_S else "OVER"
    text = f"""# Whole-model compile benchmark

`python bench/models.py --target {args.target} --jobs {args.jobs}`: each bundled model compiled by
`mapc compile examples/models/MODEL.yaml --target {args.target} -j {args.jobs}` in a fresh process
(cold start: interpreter, imports, worker start-up and every distinct layer's solve).

Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.

**ResNet-50 on {args.target}, -j {args.jobs}, cold: {head['wall_s']:.1f} s wall** ({verdict} the
{HEADLINE_LIMIT_S:.0f} s target); {head['distinct_layers']} distinct shapes of {head['layers']} layers
({head['ops']} ops), {head['failed']} failed.

Totals are per inference, each distinct layer weighted by its repeat.  `x roofline` is the total
runtime over the summed roofline bounds (max of compute and compulsory-DRAM cycles per layer);
`compile CPU s` sums the per-layer compile times (across workers), `cold wall s` is the whole
command.  When a layer fails, `mapc compile` writes nothing and exits 2; the totals in that row
then cover the layers that compiled (`MACs (compiled)`).

{table(rows, args.target, args.jobs)}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

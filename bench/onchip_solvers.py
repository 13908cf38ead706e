"""The on-chip search's solvers against each other: bound-and-prune, CP-SAT and enumeration.

Usage::

    python bench/onchip_solvers.py [--targets edge,cloud] [--layers 3] [--solvers enumerate,prune,cpsat]
                                   [--no-small] [--out docs/onchip-search.md]

``SearchOptions.solver`` (passes/onchip.py) picks how the on-chip pass searches each off-chip plan:

* ``enumerate``: every candidate of the pruned space scored with the cost model, then refined;
* ``prune`` (the default): the same space, templates scored in the order of
  :mod:`compiler.mdc.onchip_bound`'s lower bound and those that cannot beat the best within the
  bandwidth found so far not scored (nor refinement neighbours that cannot beat the current point);
* ``cpsat``: per array structure, CP-SAT's best points of a surrogate integer program
  (:mod:`compiler.mdc.onchip_cpsat`) instead of the enumerated tilings, then the same refinement.

Two sets of ops:

* **small ops** (the 8 tiny ops x 2 tiny targets of tests/test_onchip_exact.py): the reference is
  the brute force over the whole MDC space (:func:`compiler.mdc.fullspace.full_space_best`), so
  each solver's gap to the true optimum is known;
* **suite layers**: the first ``--layers`` distinct layers of each model of bench/quality.py's suite
  (plus its GEMV and grouped conv) on each target; the reference is ``enumerate``.

Per op and solver: the chosen mapping's runtime, the on-chip pass's seconds, cost-model calls
(``evaluate_batch``) and candidates scored, and the status.  With ``enumerate`` every scored
candidate is also checked against the bound (``bound <= runtime`` where it fits).
Writes ``docs/onchip-search.md``.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import compiler.mdc.scoring as scoring  # noqa: E402
import passes.onchip as onchip  # noqa: E402
from compiler.context import Options  # noqa: E402
from compiler.mdc.fullspace import full_space_best  # noqa: E402
from compiler.mdc.lowering import MdcView, chiplet_hw  # noqa: E402
from compiler.mdc.onchip_bound import RuntimeBound  # noqa: E402
from compiler.pipeline import run_pipeline  # noqa: E402
from targets import load_target, parse_target  # noqa: E402

SOLVERS = ("enumerate", "prune", "cpsat")
INTRO = """`SearchOptions.solver` (passes/onchip.py) picks how the on-chip pass searches each off-chip plan:
`enumerate` scores every candidate of its pruned space with the cost model and refines the best;
`prune` (the default) scores the same space template by template in the order of a lower bound on
the model's runtime and skips what cannot beat the best point within the bandwidth found so far
(and refinement neighbours that cannot beat the current point), so it picks what `enumerate`
picks; `cpsat` asks OR-Tools CP-SAT, per array structure, for the best points of an integer
program (cluster sizes, per-unit and per-PE tiles under L1 and the PE count; objective: the work
of one PE with the padding of every fold and step plus the NoC's latency per step) and re-scores
them exactly before the same refinement.

The bound (`compiler/mdc/onchip_bound.py`): runtime >= ceil(MACs / (busy PEs x MACs per PE per
cycle)) + the top level's first NoC fill.  The model's runtime is a sum of steps each at least
its compute part, whose sum is the reported compute delay; the search keeps only candidates whose
compute delay gives each MAC a cycle of a PE the mapping keeps busy (rule S8 asks it of all PEs);
and the first step of the top level takes compute *plus* its NoC ingress, never their maximum.
It holds on every candidate checked below and in tests/test_onchip_search.py.  On edge it is
tight on compute-bound layers (examples/gemm.yaml: bound 1,179,936 for the chosen structure, runtime
1,180,896; examples/conv3x3.yaml: 451,631 and 457,775) and loose on NoC-bound ones
(examples/dwconv.yaml: 16,298 and 30,685), where it prunes little."""
OUT = ROOT / "docs" / "onchip-search.md"


class Probe:
    """Counts cost-model calls and candidates, and checks the bound on every scored candidate."""

    def __init__(self):
        self.calls = self.scored = self.checked = self.violations = 0
        self._batch, self._score = scoring.evaluate_batch, scoring.score_choices
        scoring.evaluate_batch = self.batch
        onchip.score_choices = self.score

    def reset(self):
        self.calls = self.scored = self.checked = self.violations = 0

    def batch(self, *args, **kw):
        self.calls += 1
        return self._batch(*args, **kw)

    def score(self, view, l2_tile, dram_order, choices, hw, **kw):
        s = self._score(view, l2_tile, dram_order, choices, hw, **kw)
        self.scored += s.scored
        if onchip.OPTIONS.solver == "enumerate":
            bound = RuntimeBound(view, l2_tile, dram_order, hw)
            for i, c in enumerate(choices):
                if s.fits[i]:
                    self.checked += 1
                    self.violations += bound(c) > s.runtime[i]
        return s


def compile_with(probe: Probe, solver: str, path: Path, target, op=None) -> dict:
    """One compile with ``solver``: runtime, on-chip seconds, calls, candidates scored, status."""
    onchip.OPTIONS = replace(onchip.OPTIONS, solver=solver)
    probe.reset()
    ctx = run_pipeline(path, target, Options(), op=op)
    seconds = sum(r.seconds for r in ctx.records if r.name == "onchip")
    return {"runtime": ctx.lowered.metrics["runtime_cycles"], "seconds": seconds, "calls": probe.calls,
            "scored": probe.scored, "status": ctx.onchip.status if ctx.onchip else "decomposed",
            "checked": probe.checked, "violations": probe.violations}


def small_ops(probe: Probe, solvers) -> list[dict]:
    """The tiny ops of tests/test_onchip_exact.py against the whole-MDC-space brute force."""
    from test_onchip_exact import FOUR_PES, SIX_PES, TINY
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tname, text in (("4pe", FOUR_PES), ("6pe", SIX_PES)):
            target = parse_target(text, "t.yaml")
            for name, (statement, dims) in sorted(TINY.items()):
                path = Path(tmp) / f"{name}.yaml"
                path.write_text(f"name: {name}\nstatement: {statement}\ndims: {dims}\n")
                row = {"op": name, "target": tname}
                for solver in solvers:
                    row[solver] = compile_with(probe, solver, path, target)
                ctx = run_pipeline(path, target, Options())
                start = time.perf_counter()
                best = full_space_best(MdcView(ctx.op, ctx.mdc_form),
                                       chiplet_hw(target, ctx.op.output.element_bytes), target.spatial_roles)
                row["optimum"], row["optimum_s"], row["points"] = best.key[1], time.perf_counter() - start, best.points
                rows.append(row)
                print(_line(row, solvers), flush=True)
    return rows


def suite_layers(probe: Probe, solvers, targets, per_model: int) -> list[dict]:
    """The first ``per_model`` distinct layers of each model of the quality suite (and its extras)."""
    import quality
    layers, seen = [], {}
    for e in quality.suite(quality.MODELS, False):
        model = e["id"].split("/")[0]
        if seen.get(model, 0) < per_model or model == "examples":
            seen[model] = seen.get(model, 0) + 1
            layers.append(e)
    rows = []
    for tname in targets:
        target = load_target(tname)
        for e in layers:
            row = {"op": e["id"], "target": tname}
            for solver in solvers:
                row[solver] = compile_with(probe, solver, Path(e["source"]), target, e["op"])
            rows.append(row)
            print(_line(row, solvers), flush=True)
    return rows


def _line(row: dict, solvers) -> str:
    return f"{row['target']:6s} {row['op']:34s} " + "  ".join(
        f"{s} {row[s]['runtime']:,} {row[s]['seconds']:.2f}s/{row[s]['calls']}" for s in solvers) + (
        f"  optimum {row['optimum']:,}" if "optimum" in row else "")


def table(rows: list[dict], solvers, reference: str) -> list[str]:
    """Markdown rows: per op the runtime (gap to the reference), seconds, calls and status."""
    head = "| op | target | " + " | ".join(f"{s}: cycles (gap) | {s}: s / calls / scored | {s}: status"
                                           for s in solvers) + (" | whole-space optimum (s) |" if
                                                                reference == "optimum" else " |")
    out = [head, "|" + "---|" * (2 + 3 * len(solvers) + (reference == "optimum"))]
    for r in rows:
        ref = r["optimum"] if reference == "optimum" else r[reference]["runtime"]
        cells = []
        for s in solvers:
            x = r[s]
            cells += [f"{x['runtime']:,} ({(x['runtime'] / ref - 1) * 100:+.2f} %)",
                      f"{x['seconds']:.2f} / {x['calls']} / {x['scored']:,}", x["status"]]
        extra = f" {r['optimum']:,} ({r['optimum_s']:.1f}) |" if reference == "optimum" else ""
        out.append(f"| {r['op']} | {r['target']} | " + " | ".join(cells) + " |" + extra)
    return out


def summary(rows: list[dict], solvers, reference: str) -> list[str]:
    """Per solver: median and worst gap, ops at the reference, total seconds and calls."""
    out = ["| solver | median gap | worst gap | ops at the reference | on-chip seconds (sum) | cost-model calls (sum) |",
           "|---|---|---|---|---|---|"]
    for s in solvers:
        gaps = [r[s]["runtime"] / (r["optimum"] if reference == "optimum" else r[reference]["runtime"]) - 1
                for r in rows]
        out.append(f"| {s} | {statistics.median(gaps) * 100:+.2f} % | {max(gaps) * 100:+.2f} % | "
                   f"{sum(g <= 0 for g in gaps)}/{len(gaps)} | {sum(r[s]['seconds'] for r in rows):.1f} | "
                   f"{sum(r[s]['calls'] for r in rows):,} |")
    return out


def main() -> None:
    """Run both sets and write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="edge,cloud")
    ap.add_argument("--layers", type=int, default=3, help="distinct layers per model of the quality suite")
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--no-small", action="store_true", help="skip the tiny ops and their whole-space brute force")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    solvers = [s for s in args.solvers.split(",") if s]
    probe = Probe()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    small = [] if args.no_small else small_ops(probe, solvers)
    layers = suite_layers(probe, solvers, [t for t in args.targets.split(",") if t], args.layers)
    checked = sum(r["enumerate"]["checked"] for r in small + layers if "enumerate" in r)
    bad = sum(r["enumerate"]["violations"] for r in small + layers if "enumerate" in r)
    lines = ["# On-chip search: bound-and-prune, CP-SAT and enumeration", "",
             f"Measured by `python bench/onchip_solvers.py {' '.join(sys.argv[1:])}` "
             f"({time.perf_counter() - started:.0f} s, load average {load:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores). Seconds are the on-chip "
             "pass's wall time (every off-chip plan it tries); calls are `evaluate_batch` calls.", "",
             f"Bound check: {checked:,} fitting candidates scored by `enumerate`, bound above the runtime "
             f"on {bad}.", "", INTRO, ""]
    if small:
        lines += ["## Small ops against the whole MDC space", "", *summary(small, solvers, "optimum"), "",
                  *table(small, solvers, "optimum"), ""]
    lines += ["## Quality-suite layers (reference: enumerate)", "",
              *summary(layers, solvers, "enumerate" if "enumerate" in solvers else solvers[0]), "",
              *table(layers, solvers, "enumerate" if "enumerate" in solvers else solvers[0]), ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

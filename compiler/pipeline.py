"""The pass pipeline: the ordered pass list (data, in one place) and the driver that runs it.

The driver, not the passes, times each pass, checks that the context has reached the stage a pass
needs, prints the IR after a pass (``--dump-after``) and stops early (``--stop-after``).  Passes
that belong to one backend run only when that backend is selected.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from passes import (conformance, decompose, frontend, gemm_lowering, gemm_schedule, mdc_emit, mdc_limits,
                    offchip, onchip, replan, top_steps)

from . import explain as teaching
from .context import Context, Options, PassRecord, Stage
from .errors import MapcError
from .ir import Op


@dataclass(frozen=True)
class Pass:
    """One entry of the pipeline."""

    name: str
    run: Callable[[Context], Context]
    requires: Stage
    backend: str | None = None      # None: runs for every backend
    leaves: str | None = None       # the Context field this pass fills in (for dumps and explain)

    @property
    def summary(self) -> str:
        """The first docstring line of the pass module, for ``mapc explain`` and ``--help``."""
        doc = (sys.modules[self.run.__module__].__doc__ or "").strip()
        return doc.splitlines()[0].split(":", 1)[-1].strip() if doc else ""


PIPELINE: tuple[Pass, ...] = (
    Pass("frontend", frontend.run, Stage.START, leaves="op"),
    Pass("conformance", conformance.run, Stage.PARSED, leaves="mdc_form"),
    # GEMM backend: lower to (batched) GEMM so that the off-chip pass tiles the GEMM itself
    Pass("gemm-lowering", gemm_lowering.run, Stage.CONFORMING, backend="gemm", leaves="lowered"),
    # MDC backend: an op MDC cannot hold in one layer becomes parts, each compiled by the passes
    # below; when parts win, the op is lowered here and the per-op passes below do not run
    Pass("decompose", decompose.run, Stage.CONFORMING, backend="mdc", leaves="decomposition"),
    # MDC backend: tile caps and MAESTRO's step model for the off-chip search
    Pass("mdc-limits", mdc_limits.run, Stage.CONFORMING, backend="mdc", leaves="offchip_hints"),
    Pass("offchip", offchip.run, Stage.CONFORMING, leaves="offchip"),
    # MDC backend: spatial map, L1 tiles and inner order under MAESTRO's model for the off-chip
    # plan; then other off-chip plans when that one holds the mapping back; then the .m files
    Pass("onchip", onchip.run, Stage.OFFCHIP, backend="mdc", leaves="onchip"),
    Pass("replan", replan.run, Stage.OFFCHIP, backend="mdc", leaves="replan"),
    Pass("top-steps", top_steps.run, Stage.ONCHIP, backend="mdc"),   # retiles offchip, updates onchip
    Pass("mdc-emit", mdc_emit.run, Stage.ONCHIP, backend="mdc", leaves="lowered"),
    # GEMM backend: array tiling, timing model and <op>.schedule.yaml
    Pass("gemm-schedule", gemm_schedule.run, Stage.CONFORMING, backend="gemm", leaves="lowered"),
)

PASS_NAMES = tuple(p.name for p in PIPELINE)


def selected_backend(ctx: Context) -> str:
    """The backend this compilation lowers to: the user's choice or the target's first."""
    backend = ctx.options.backend or ctx.target.backends[0]
    if backend not in ctx.target.backends:
        raise MapcError(f"target '{ctx.target.name}' has no '{backend}' backend "
                        f"(it has: {', '.join(ctx.target.backends)})", place="--backend")
    return backend


def describe(ctx: Context) -> str:
    """The IR in the context as readable text: every part a pass has filled in so far."""
    parts = [f"// stage {ctx.stage.name.lower()}, target {ctx.target.name}"]
    leaves = [p.leaves for p in PIPELINE if p.leaves]
    fields = ["source_op"] + [f for i, f in enumerate(leaves) if f not in leaves[i + 1:]]  # last pass to fill it
    for value in (getattr(ctx, f) for f in fields + ["mapping"]):
        if value is not None and hasattr(value, "pretty"):
            parts.append(value.pretty())
    return "\n".join(parts)


def narrate(ctx: Context) -> str:
    """``mapc explain``: what each pass that ran decided, in plain text, in pipeline order."""
    ran = {r.name: r for r in ctx.records}
    lines: list[str] = []
    for i, p in enumerate((p for p in PIPELINE if p.name in ran), start=1):
        r = ran[p.name]
        lines.append(f"{i}. {p.name}: {p.summary}")
        facts = [f"{r.seconds:.3f} s"]
        if r.space_size is not None:
            facts.append(f"searched {r.space_size:,} points")
        if r.solver_status:
            facts.append(f"solver {r.solver_status}")
        lines.append("   (" + ", ".join(facts) + ")")
        part = _part_left_by(ctx, p)
        text = (part.explain() if hasattr(part, "explain") else part.pretty()) if part is not None else ""
        more, replaces = teaching.extra(p.name, ctx)
        text = more if replaces else "\n".join(t for t in (text, more) if t)
        lines += ["   " + line for line in text.splitlines()]
        lines.append("")
    lines.append(teaching.space_summary(ctx))
    return "\n".join(lines).rstrip() + "\n"


def _part_left_by(ctx: Context, p: Pass):
    """What pass ``p`` left in the context (the frontend's op survives a lowering as source_op)."""
    if p.leaves == "op" and p.name == "frontend" and ctx.source_op is not None:
        return ctx.source_op
    return getattr(ctx, p.leaves) if p.leaves else None


def run_pipeline(op_path: Path, target, options: Options = Options(), *, stop_after: str | None = None,
                 dump_after: tuple[str, ...] = (), dump: Callable[[str], None] = print,
                 op: Op | None = None) -> Context:
    """Compile ``op_path`` for ``target``; returns the final context (nothing is written here).

    ``op``: an operator already parsed (a layer of a model file); ``op_path`` then only names it
    in messages."""
    if target.kinds:  # each chiplet kind compiles its own part: that is the package schedule's job
        raise MapcError(f"target '{target.name}' has chiplets of several kinds; compile a model or workload "
                        "file for it (the package schedule places each layer)", file=str(op_path))
    ctx = Context(op_path=Path(op_path), target=target, options=options, op=op)
    backend = selected_backend(ctx)
    for p in PIPELINE:
        if p.backend not in (None, backend):
            continue
        if ctx.stage is Stage.LOWERED:  # lowered early (a decomposed op): nothing left to do
            break
        if ctx.stage < p.requires:  # pragma: no cover - a pipeline-order bug, not user input
            raise RuntimeError(f"pass {p.name} needs stage {p.requires.name}, context is at {ctx.stage.name}")
        start = time.perf_counter()
        try:
            ctx = p.run(ctx)
        except MapcError as e:  # a pass names the place; the driver knows the file
            raise e.with_file(str(op_path)) from None
        size, status = ctx.search_of(p.name)
        ctx = replace(ctx, records=ctx.records + (PassRecord(p.name, time.perf_counter() - start, size, status),))
        if p.name in dump_after:
            dump(f"// ----- IR after {p.name} -----\n{describe(ctx)}")
        if p.name == stop_after:
            break
    return ctx

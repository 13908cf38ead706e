"""Pass ``decompose``: write an op MDC cannot hold in one layer as MDC layers that add up to it.

Reads:    ``ctx.op``, ``ctx.mdc_form`` (None when conformance found only problems this pass
          rewrites), the target, ``ctx.options.objective``.
Decides:  the plans (:mod:`compiler.decomposition`) that write the op as parts accumulating into
          its output, and which of them runs fastest (by ``--objective``) when each part is
          compiled by the rest of the MDC pipeline (:data:`PART_PASSES`):
          * as written, when MDC holds it and its whole filter fits a PE's L1;
          * ``phases`` of every strided or dilated window (stride-1 parts on sub-sampled views,
            so MAESTRO's one-row-per-step limit on strided layers goes away), and
            ``phases-by-<dim>``: the same per block of an output dim the input shares (a
            depthwise conv's channels), so that one block's partial sums stay in L2;
          * ``gemm`` for non-overlapping windows (kernel = stride);
          * ``taps``: filter tap groups when the whole filter does not fit L1 (the largest groups
            that fit, and equal groups), or one part per tap of a scattered output;
          * ``split-<dim>``: the taps of one of three window axes (one plan per axis).
          Parts that still have a dilated window are split into phases, and parts whose filter
          does not fit into tap groups.  Identical parts are compiled once, plans in the order of
          a lower bound on their runtime (:func:`compiler.mdc.parts.lower_bound`), the op as
          written last among equal bounds (MAESTRO runs a strided window one output row per step,
          which the bound does not see).  For ``--objective latency`` a plan is not compiled when
          a compiled plan runs within 1.5 % (GAP) of its bound, as it could beat that by no more
          (ResNet-50's three stride-2 3x3 convs on edge: their phases run 0.1-1.1 % above the
          bound, so the op as written is not compiled; what it gives up, measured: a 3x3x3 conv
          on edge, split-t 0.08 % above the bound its three split plans share, so split-r and
          split-s, 6 cycles faster of 2.76 M, are not compiled).  When parts that add into the same
          output, each compiled with all of L2, leave it no room there (so the partial sums go to
          DRAM and back), the parts are compiled again with the output's bytes kept free, and the
          cheaper of the two is the plan's cost (MobileNetV2 b4_first_dw on edge: 17,596 -> 10,916
          cycles).  When the output takes over 45 % of L2 (ROOM_FIRST) the room is kept free
          first, and for latency the parts are not compiled with all of L2 at all if that plan
          already runs within GAP of its lower bound: nothing could beat it by more (ResNet-50
          res3a_3x3 and res4a_3x3 on edge: 8 part compilations -> 4, the same mappings; res3a's
          phases run 1.1 % above the bound).
Leaves:   ``ctx.decomposition`` (the plans tried, their runtimes); when a plan of several parts
          wins, also ``ctx.lowered`` (one ``.m`` with a layer per part, metrics of the whole,
          see :mod:`compiler.mdc.parts`), the artefacts and stage LOWERED, so the per-op passes
          after this one do not run.  When the op as written wins, they run on it as usual.
"""
from __future__ import annotations

from dataclasses import replace

from compiler.context import Context, Stage
from compiler.decomposition import (Part, Plan, as_gemm, assert_exact, axis_split, blocks, filter_split,
                                    phase_windows, phases, root, scatter_taps)
from compiler.errors import ConformanceError, InfeasibleError, MapcError
from compiler.ir import Op
from compiler.mdc.lowering import MdcView, chiplet_hw
from compiler.mdc.parts import (Decomposition, PlanCost, combine, lower_bound, plan_cost, plan_rereads,
                                touched_elements)
from compiler.mdc.onchip_space import l1_footprint
from passes import conformance, mdc_emit, mdc_limits, offchip, onchip, replan, top_steps
from passes.conformance import conform
from passes.mdc_emit import MdcOutput, bounds
from passes.onchip import objective_key

MAX_BLOCKS = 32          # blocks of a blocked-phases plan (each block is one part per phase)
# Partial sums taking more of L2 than ROOM_FIRST: the parts are compiled with room for them first,
# and (latency) not again with all of L2 when the plan then runs within GAP of its lower bound.
# ROOM_FIRST decides the compile time (and, within GAP, the plan).  On the quality suite, plans
# whose parts compiled with all of L2 left the room themselves had partial sums of at most 26 % of
# L2, then 35, 40 and 47 %; those that did not, 35, 47 and 93 %: above 45 % the room comes first.
ROOM_FIRST = 0.45
# What --objective latency gives up to skip a compilation: a plan, or a plan's parts with all of L2,
# is not compiled when what is compiled already runs within GAP of its lower bound.
GAP = 0.015


def _within_gap(runtime: int, bound: int) -> bool:
    """A plan that runs in ``runtime`` leaves at most GAP to gain over ``bound`` (latency)."""
    return runtime <= (1 + GAP) * bound

# The per-op MDC passes, run on each distinct part (the same ones the pipeline runs on a whole op).
PART_PASSES = (conformance.run, mdc_limits.run, offchip.run, onchip.run, replan.run, top_steps.run, mdc_emit.run)


def fits(op: Op, target) -> bool:
    """MDC holds ``op`` in one layer and its whole filter (MAESTRO's R/S rule) fits a PE's L1."""
    try:
        form = conform(op)
    except ConformanceError:
        return False
    if form is None:
        return False
    view = MdcView(op, form)
    tile = {d: op.extent(d) if view.mdc_dim(d) in ("R", "S") else 1 for d in view.dims}
    return l1_footprint(view, tile) <= chiplet_hw(target, op.output.element_bytes).l1_size


def tap_groups(part: Part, target, equal: bool = False) -> dict[str, int] | None:
    """Taps per group on each filter axis so that a group fits L1: the most rows (whole
    columns) that fit, else single rows and the most columns; ``equal``: only group sizes that
    divide the axis (one part shape).  None when a single tap does not fit."""
    op = part.op
    filters = [w.filter_dim for w in sorted(op.reads[0].windows, key=lambda w: w.axis)
               if w.filter_dim and op.extent(w.filter_dim) > 1]
    fixed: dict[str, int] = {}
    for f in filters:
        n = op.extent(f)
        for g in range(n - 1, 0, -1):
            if equal and n % g:
                continue
            if all(fits(p.op, target) for p in filter_split(part, {**fixed, f: g})[:2]):
                return {**fixed, f: g}
        fixed[f] = 1
    return None


def normalize(part: Part, target) -> list[Part] | None:
    """``part`` rewritten until every piece is one MDC layer whose filter fits; None if a
    piece cannot be made to fit."""
    op = part.op
    taps = next((t for sub in op.output.index if (t := conformance.scatter_taps(op, sub))), None)
    if taps:
        pieces = scatter_taps(part, taps)
    elif len(op.reads[0].windows) > 2:
        pieces = axis_split(part, min(w.axis for w in op.reads[0].windows if w.filter_dim))
    elif phase_windows(op, dilated_only=True):
        pieces = phases(part, dilated_only=True)
    elif not fits(op, target):
        groups = tap_groups(part, target)
        if groups is None:
            return None
        return filter_split(part, groups)
    else:
        return [part]
    return _flat(pieces, target)


def plans(op: Op, form, target) -> list[Plan]:
    """The ways to write ``op`` worth compiling; empty when the op as written is the only one."""
    whole = root(op)
    found: list[tuple[str, list[Part] | None]] = []
    if form is None:
        wins = [w for w in op.reads[0].windows if w.filter_dim] if len(op.reads) == 2 else []
        if len(op.reads[0].windows) > 2 and not any(conformance.scatter_taps(op, s) for s in op.output.index):
            for w in wins:
                found.append((f"split-{w.filter_dim}", _flat(axis_split(whole, w.axis), target)))
        else:
            kind = "phases" if phase_windows(op, dilated_only=True) else "taps"
            found.append((kind, _flat(phases(whole), target) if kind == "phases" else normalize(whole, target)))
    else:
        whole_fits = fits(op, target)
        if whole_fits:
            found.append(("as-written", [whole]))
        gemm = as_gemm(op)
        if gemm is not None:    # its phases would be one 1x1 layer per tap
            found.append(("gemm", [gemm]))
        elif phase_windows(op):
            found.append(("phases", _flat(phases(whole), target)))
            block = _block(op, target)
            if block is not None:
                dim, size = block
                found.append((f"phases-by-{dim}",
                              _flat([q for b in blocks(whole, dim, size) for q in phases(b)], target)))
        if not whole_fits:
            for equal in (False, True):
                groups = tap_groups(whole, target, equal)
                found.append(("taps", filter_split(whole, groups) if groups else None))
    out, seen = [], set()
    for kind, parts in found:
        key = tuple(_shape(p.op) + (str(p.embed),) for p in parts or ())
        if parts and key not in seen:
            seen.add(key)
            out.append(Plan(kind, tuple(replace(p, op=replace(p.op, name=f"{op.name}_p{i}"))
                                        for i, p in enumerate(parts))))
    return [] if [p.kind for p in out] == ["as-written"] else out


def _block(op: Op, target) -> tuple[str, int] | None:
    """A dim of the output and the input (blocks then read disjoint inputs) and a block size whose
    output block takes at most half of L2, so that the phases of one block keep their partial
    sums there; None when the whole output already does, or it takes over MAX_BLOCKS blocks."""
    out = op.output
    half = chiplet_hw(target, out.element_bytes).l2_size // 2
    if out.size <= half:
        return None
    wins = {w.out_dim for w in op.reads[0].windows}
    plain = [d for d in out.dims if d not in wins and d in op.reads[0].dims
             and all(i.dims != (d,) or i.terms == ((d, 1),) for t in op.tensors for i in t.index)
             and all(d not in i.dims or i.dims == (d,) for t in op.tensors for i in t.index)]
    for d in sorted(plain, key=lambda d: -op.extent(d)):
        rest = out.size // op.extent(d)
        size = max((b for b in range(1, op.extent(d)) if op.extent(d) % b == 0 and b * rest <= half), default=0)
        if size and op.extent(d) // size <= MAX_BLOCKS:
            return d, size
    return None


def _flat(parts: list[Part], target) -> list[Part] | None:
    """Every part normalized, in order; None if one cannot be."""
    out: list[Part] = []
    for p in parts:
        more = normalize(p, target)
        if more is None:
            return None
        out += more
    return out


def _shape(op: Op) -> tuple:
    """What a part's compilation depends on (its name aside)."""
    return (op.statement, tuple((d.name, d.extent) for d in op.dims), op.dtype,
            tuple(t.element_bytes for t in op.tensors))


def compile_part(ctx: Context, op: Op) -> Context:
    """Run :data:`PART_PASSES` on ``op`` in a fresh context of the same target and options."""
    sub = Context(op_path=ctx.op_path, target=ctx.target, options=ctx.options, op=op, stage=Stage.PARSED)
    for run_pass in PART_PASSES:
        sub = run_pass(sub)
    return sub


def _compile_parts(ctx: Context, plan: Plan, target, compiled: dict) -> list:
    """Each part of ``plan`` compiled for ``target`` (or the error it raised), each distinct
    part once per target's L2 (``compiled`` remembers them)."""
    out = []
    for p in plan.parts:
        key = (_shape(p.op), target.l2_bytes)
        if key not in compiled:
            try:
                compiled[key] = compile_part(replace(ctx, target=target), p.op)
            except MapcError as e:
                compiled[key] = e
        out.append(compiled[key])
    return out


def _room(ctx: Context, rereads: list[tuple[int, int]]):
    """The target with L2 less the most output elements a part adds partial sums to (so that
    they stay in L2 beside any part's tiles), or None when nothing would be left."""
    written = max((w for r, w in rereads if r), default=0)
    left = ctx.target.l2_bytes - written * ctx.op.output.element_bytes
    return replace(ctx.target, l2_bytes=left) if written and left > 0 else None


def _l2_order(ctx: Context, room):
    """The targets a plan's parts are compiled for, in order: all of L2, then (when their tiles
    leave the partial sums no room) L2 with ``room`` kept free; the other way round when the
    partial sums take over ROOM_FIRST of L2, as the parts' tiles then seldom leave them room."""
    if room is None:
        return (ctx.target,)
    if ctx.target.l2_bytes - room.l2_bytes > ROOM_FIRST * ctx.target.l2_bytes:
        return room, ctx.target
    return ctx.target, room


def run(ctx: Context) -> Context:
    """Compile the plans in order of their lower bounds (skipping, for latency, those a compiled
    plan runs within GAP of), keep the best."""
    op = ctx.op
    tried = plans(op, ctx.mdc_form, ctx.target)
    if not tried:
        if ctx.mdc_form is None:
            raise InfeasibleError(f"{op.name} has no MDC form and no decomposition whose filter taps fit "
                                  f"{ctx.target.name}'s L1", place="statement")
        return ctx
    objective = ctx.options.objective
    rereads = [plan_rereads(op, plan) for plan in tried]
    bounds_ = [lower_bound(op, plan, r, ctx.target) for plan, r in zip(tried, rereads)]
    compiled: dict[tuple, Context | MapcError] = {}
    costs: list[PlanCost | None] = [None] * len(tried)
    parts_of: list[list] = [[] for _ in tried]    # per plan, its parts' compiled contexts
    fastest = None

    def cost_key(c: PlanCost) -> tuple:
        return objective_key(c.runtime_cycles, c.energy_mac_units, objective)

    for i in sorted(range(len(tried)), key=lambda i: (bounds_[i], tried[i].kind == "as-written", i)):
        plan = tried[i]
        if objective == "latency" and fastest is not None and _within_gap(fastest, bounds_[i]):
            costs[i] = PlanCost(lower_bound_cycles=bounds_[i], skipped=(
                "a plan already compiled runs faster than this one's lower bound" if fastest < bounds_[i] else
                f"a plan already compiled runs within {100 * GAP:g} % of this one's lower bound"))
            continue
        assert_exact(op, plan.parts)
        room = _room(ctx, rereads[i])
        for target in _l2_order(ctx, room):
            done = costs[i]
            if done is not None and done.error is None:
                if target is room and done.partial_sums_in_l2:
                    break       # all of L2 left the partial sums their room already
                if target is ctx.target and objective == "latency" \
                        and _within_gap(done.runtime_cycles, bounds_[i]):
                    costs[i] = replace(done, all_l2_skipped=True)
                    break       # nothing compiled with all of L2 can be faster by more than GAP
            parts = _compile_parts(ctx, plan, target, compiled)
            cost = plan_cost(op, parts, rereads[i], bounds_[i], ctx)
            if target is room:
                cost = replace(cost, l2_kept_free=ctx.target.l2_bytes - room.l2_bytes)
            # (ties go to the parts compiled with all of L2)
            if done is None or done.error is not None or (cost.error is None and (
                    cost_key(cost), target is room) < (cost_key(done), done.l2_kept_free > 0)):
                parts_of[i], costs[i] = parts, cost
        if costs[i].error is None:
            runtime = costs[i].runtime_cycles
            fastest = runtime if fastest is None else min(fastest, runtime)
    ok = [i for i, c in enumerate(costs) if c.error is None and not c.skipped]
    if not ok:
        raise next(c.error for c in costs if c.error is not None)
    best = min(ok, key=lambda i: (cost_key(costs[i]), len(tried[i].parts), i))
    record = Decomposition(tried[best], tuple(zip(tried, costs)))
    ctx = ctx.note_search("decompose", len(tried), None)
    if tried[best].kind == "as-written":
        return replace(ctx, decomposition=record)
    parts = parts_of[best]
    record = replace(record, mappings=tuple(c.mapping for c in parts))
    text, hw_text, metrics, layers = combine(ctx, tried[best], parts, costs[best])
    lowered = MdcOutput(text, hw_text, metrics, bounds(ctx, sum(touched_elements(op))), layers)
    files = ((f"{op.name}.m", text), (f"{ctx.target.name}.hw.m", hw_text))
    return replace(ctx, decomposition=record, lowered=lowered, artifacts=ctx.artifacts + files,
                   stage=Stage.LOWERED)

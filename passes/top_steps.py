"""Pass ``top-steps``: tune MAESTRO's top-level steps (the L2 tiles) with the on-chip choice.

Reads:    ``ctx.onchip`` (the kept on-chip point, after ``replan``), ``ctx.offchip`` (L2 tiles, DRAM order and
          the most DRAM traffic a tiling may cost), ``ctx.offchip_hints`` (dims whose L2 tiles MDC
          restricts), the target.
Decides:  the top-level step of every dim the hints leave free: any tile value (the smallest of
          each trip count over the dim, so also non-divisors such as 9 of 512), together with which
          dim the innermost cluster level spreads, by local search under MAESTRO's cost model.
Leaves:   ``ctx.offchip`` with the new tiles (same DRAM order; traffic and footprints recomputed),
          ``ctx.onchip`` with the new choice and metrics, ``ctx.mapping``, and the same as the kept
          plan of ``ctx.replan``.

Why after the on-chip search: the off-chip pass ranks tilings by DRAM traffic and a per-step
estimate that cannot see the clusters below the top level, while MAESTRO's runtime pays, on every
top-level step, the first NoC fill of each sub-cluster, unoverlapped, and prices the edge step of
a non-divisor tile exactly.  So the step that is fastest depends on the on-chip structure (measured:
VGG16 conv5 on edge, K over 128 top units, 2-PE clusters over the rows, is 54 cycles faster with
C steps of 9 than of 16, and the C-over-2-PEs variant of the same structure is 11 % slower with 9).
A move changes one dim's step, optionally with the innermost level spreading another dim (a tie
at one step is often not one at another); every move of a round is scored in one batch per
template, the best strictly better one is taken, and rounds repeat until none is (at most
``ROUNDS``) or the time limit.  Candidates keep exact MACs, S8, L1 and L2 (MAESTRO's accounting
and the off-chip model's) and the off-chip pass's traffic limit; within the bandwidth ranks first,
as in the on-chip search.  Strided rows (fixed unit counts) and filter taps are never retiled.
"""
from __future__ import annotations

import time
from dataclasses import replace

from compiler.context import Context
from compiler.mdc.costmodel import evaluate_layer
from compiler.mdc.lowering import MdcView, OnchipChoice, SpatialLevel, build_layer, chiplet_hw, chiplet_op, mdc_mapping
from compiler.mdc.onchip_space import l1_footprint, spreadable_dims, trip_tiles
from compiler.mdc.scoring import bandwidth_over, score_choices
from passes import offchip as offchip_pass
from passes.onchip import OnchipResult, key_of, keys

ROUNDS = 4


def _fit(view: MdcView, l2: dict[str, int], choice: OnchipChoice, l1_elements: int) -> OnchipChoice | None:
    """``choice`` under other L2 tiles: per-unit and per-PE tiles clamped to what is left of each
    dim; None if it no longer fits L1."""
    levels, chunk = [], dict(l2)
    for i, lv in enumerate(choice.spatial):
        above = view.op.extent(lv.dim) if choice.merged and i == 0 else chunk[lv.dim]
        levels.append(SpatialLevel(lv.dim, lv.units, min(lv.tile, above)))
        chunk[lv.dim] = levels[-1].tile
    tile = {d: min(t, chunk[d]) for d, t in choice.l1_tile}
    if l1_footprint(view, tile) > l1_elements:
        return None
    return OnchipChoice(tuple(levels), tuple((d, tile[d]) for d, _ in choice.l1_tile), choice.inner_order,
                        choice.merged)


def _steps(extent: int, tile: int) -> list[int]:
    """The step values a move tries: the smallest tile of each trip count from half to twice the
    current one's (non-divisors too)."""
    n = -(-extent // tile)
    return [v for v in trip_tiles(extent) if n // 2 <= -(-extent // v) <= 2 * n]


def _respread(view: MdcView, l2: dict[str, int], choice: OnchipChoice, allowed) -> list[OnchipChoice]:
    """``choice`` and the same with its innermost level spreading each other spreadable dim
    (same units, one element per unit; the dim it gave up keeps its per-unit tile per PE)."""
    out = [choice]
    if len(choice.spatial) < 2:
        return out
    last = choice.spatial[-1]
    taken = {lv.dim for lv in choice.spatial}
    for d in spreadable_dims(view, allowed):
        if d in taken or l2[d] <= 1:
            continue
        spatial = choice.spatial[:-1] + (SpatialLevel(d, last.units, 1),)
        tile = {**dict(choice.l1_tile), d: 1, last.dim: last.tile}
        order = tuple(x for x in choice.inner_order if x != d) + (last.dim,)
        out.append(OnchipChoice(spatial, tuple((x, tile[x]) for x, _ in choice.l1_tile), order, choice.merged))
    return out


def run(ctx: Context) -> Context:
    """Local search over the top-level steps around the on-chip choice (see the module doc)."""
    if not isinstance(ctx.onchip, OnchipResult) or ctx.offchip is None:
        return ctx
    plan, result = ctx.offchip, ctx.onchip
    view = MdcView(chiplet_op(ctx.op, plan), ctx.mdc_form)
    hw = chiplet_hw(ctx.target, ctx.op.output.element_bytes)
    order = tuple(plan.order)
    fixed = {d for d, _ in (ctx.offchip_hints.tile_caps if ctx.offchip_hints else ())}
    top = result.choice.spatial[0].dim if result.choice.merged else None
    free = [d for d in view.dims if d not in fixed and d != top and view.mdc_dim(d) not in ("R", "S")
            and plan.part_extents[d] > 1]
    objective, priced = ctx.options.objective, ctx.options.bandwidth == "priced"
    deadline = time.perf_counter() + ctx.options.time_limit_s
    l2, choice = dict(plan.l2_tile), result.choice
    if not free:
        return ctx
    # Other innermost spreads that tie with the choice (first) at its own steps (a tie at one
    # step is often not one at another); the rest are worse already and stay out of the moves.
    alike = _respread(view, l2, choice, ctx.target.spatial_roles)
    m = result.metrics      # the choice, as the on-chip search measured it
    current = key_of(m.runtime_cycles, m.energy_mac_units,
                     bandwidth_over(m.noc_bw_required, m.offchip_bw_required, hw), objective, priced)
    ties = [current] + keys(score_choices(view, l2, order, alike[1:], hw), objective, priced)
    bases = [c for c, k in zip(alike, ties) if k is not None and k[:2] == current[:2]]
    new_plan, scored = plan, len(alike)
    for _ in range(ROUNDS):
        tiles, choices = [], []
        for base in bases:
            for d in free:
                for v in _steps(plan.part_extents[d], l2[d]):
                    t = {**l2, d: v}
                    c = _fit(view, t, base, hw.l1_size)
                    if c is not None and (c, v) != (choice, l2[d]):
                        tiles.append(t)
                        choices.append(c)
        scores = score_choices(view, l2, order, choices, hw, deadline=deadline, l2_tiles=tiles)
        scored += len(choices)
        ranked = sorted((k, i) for i, k in enumerate(keys(scores, objective, priced)) if k is not None)
        better = None
        for k, i in ranked:
            if k >= current:
                break
            if (p := offchip_pass.retile(ctx, plan, tiles[i])) is not None:
                better = (k, i, p)
                break
        if better is None or time.perf_counter() > deadline:
            break
        current, i, new_plan = better
        l2, choice = tiles[i], choices[i]
        bases = [choice]
    ctx = ctx.note_search("top-steps", scored, None)
    if choice == result.choice and l2 == plan.l2_tile:
        return ctx
    metrics = evaluate_layer(build_layer(view, l2, order, choice, ctx.op.name), hw)
    steps = ", ".join(f"{d}={v}" for d, v in l2.items() if plan.l2_tile[d] != v)
    note = (f"The top-level steps were tuned with the on-chip choice: {steps} (from "
            f"{', '.join(f'{d}={plan.l2_tile[d]}' for d in l2 if plan.l2_tile[d] != l2[d])}), "
            f"{result.metrics.runtime_cycles:,} -> {metrics.runtime_cycles:,} cycles.")
    result = replace(result, choice=choice, metrics=metrics, tuned=note)
    mapping = mdc_mapping(view, offchip_pass.offchip_mapping(new_plan), choice)
    record = ctx.replan
    if record is not None:   # the kept plan is now the retiled one (the report lists what is emitted)
        record = replace(record, candidates=tuple(replace(c, plan=new_plan, result=result) if c.kept else c
                                                  for c in record.candidates))
    return replace(ctx, offchip=new_plan, onchip=result, mapping=mapping, replan=record)

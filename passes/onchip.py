"""Pass ``onchip``: choose the spatial map, per-unit tiles, L1 tile and inner order for an MDC target.

Reads:    ``ctx.op``, ``ctx.mdc_form``, ``ctx.offchip`` (L2 tile per dim, DRAM loop order) and the
          target (PEs, L1/L2, NoC and off-chip bandwidth, spatial-dim restrictions).
Decides:  which dims go across the PE array (one to three cluster levels), the per-unit
          spatial tiles, the per-PE tile and the innermost loop order, minimising the objective
          (``latency``: runtime then energy; ``energy``: energy then runtime; ``edp``) under
          MAESTRO's cost model.  Hard limits: exact MACs, L1 and L2; candidates within the NoC and
          off-chip bandwidth rank before those that are not, unless the best of them is more than
          ``BW_PRICE`` times worse than the best overall (MAESTRO's runtime includes the stalls).
Leaves:   ``ctx.onchip`` (an :class:`OnchipResult`: the choice, its metrics and the counts of the
          space before and after each pruning step); possibly a re-solved ``ctx.offchip``.

The pruned space (:mod:`compiler.onchip_space`) is scored exhaustively in batches by the
vectorised cost model, then the best points of the best structures are refined one tile or order
at a time until nothing improves.  The status is OPTIMAL-IN-SPACE when all of that finished within
the time limit and FEASIBLE when the limit cut it short.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from compiler.context import Context, Stage
from compiler.costmodel import Metrics, evaluate_layer
from compiler.errors import InfeasibleError
from compiler.mdc_lowering import MdcView, OnchipChoice, build_layer, chiplet_hw, chiplet_op
from compiler.mdc_scoring import score_choices
from compiler.onchip_space import inner_choices, l1_footprint, neighbours, spatial_structures
from passes import offchip as offchip_pass

KEEP_UTILIZATION = 0.95   # structures within 5% of the best spatial utilisation are searched
MAX_STRUCTURES = 6
L2_BUDGETS = (1.0, 0.8, 0.6, 0.4, 0.25)   # fractions of L2 the off-chip tiles may use, tried in turn
WIDE_KEEP, WIDE_STRUCTURES = 0.0, 48   # the wider search when nothing fits the bandwidth
BW_PRICE = 1.5            # within bandwidth first, unless that multiplies the objective by more
SEEDS = 2                 # refinement starts from the best point of this many array structures
ROUNDS = 4                # ... and takes at most this many improving steps from each


@dataclass(frozen=True)
class OnchipResult:
    """The chosen on-chip point and how the subspace was searched."""

    choice: OnchipChoice
    metrics: Metrics
    structures: int              # array structures generated
    structures_kept: int         # after the utilisation / restriction pruning
    tilings: int                 # per-PE tilings tried for the kept structures
    candidates: int              # tilings that fit L1, times loop orders: scored with the cost model
    refined: int                 # neighbours scored by the local refinement
    feasible: int                # scored candidates within L1/L2 with exact MACs
    within_bw: int               # ... and within NoC/off-chip bandwidth
    runner_up: tuple[OnchipChoice, Metrics] | None
    status: str

    def pretty(self) -> str:
        m = self.metrics
        return (f"on-chip: {self.choice.describe()}\n"
                f"  runtime {m.runtime_cycles:,} cycles, energy {m.energy_mac_units:,.0f} MAC units, "
                f"L1 {m.l1_elements} / L2 {m.l2_elements} elements, NoC BW {m.noc_bw_required}, "
                f"utilisation {m.utilization:.3f}")

    def explain(self) -> str:
        lines = [f"The on-chip subspace for this L2 tile had {self.structures:,} array structures; "
                 f"{self.structures_kept} survived pruning (spatial utilisation within "
                 f"{1 - KEEP_UTILIZATION:.0%} of the best, the target's spatial-dim restrictions).",
                 f"Their per-PE tilings: {self.tilings:,}; those that fit L1, times loop orders, gave "
                 f"{self.candidates:,} candidates, all scored with the cost model, and refining the best "
                 f"of {SEEDS} structures tile by tile and order by order scored {self.refined:,} more "
                 f"({self.status}); "
                 f"{self.feasible:,} fit L1 and L2 with exact MACs, {self.within_bw:,} of them also the "
                 "NoC and off-chip bandwidth.",
                 self.pretty()]
        if self.runner_up:
            choice, m = self.runner_up
            lines.append(f"Runner-up: {choice.describe()} at {m.runtime_cycles:,} cycles and "
                         f"{m.energy_mac_units:,.0f} MAC units of energy.")
        return "\n".join(lines)

    def report(self) -> dict:
        return {"onchip": {
            "spatial": [{"dim": s.dim, "units": s.units, "tile": s.tile} for s in self.choice.spatial],
            "l1_tile": dict(self.choice.l1_tile), "inner_order": list(self.choice.inner_order),
            "structures": self.structures, "structures_kept": self.structures_kept,
            "candidates": self.candidates, "refined": self.refined, "feasible": self.feasible,
            "within_bw": self.within_bw,
            "solver_status": self.status}}


def keys(scores, objective: str) -> list[tuple]:
    """Sort key per candidate (lower is better; None where it does not fit L1/L2 with exact MACs).

    Candidates within the bandwidth limits come first: MAESTRO's runtime already includes
    bandwidth stalls, but a mapping that stays within them is what the target promises."""
    out = []
    for i in range(len(scores.fits)):
        if not scores.fits[i]:
            out.append(None)
            continue
        rt, en = int(scores.runtime[i]), float(scores.energy[i])
        primary, secondary = {"energy": (en, rt), "edp": (rt * en, rt)}.get(objective, (rt, en))
        out.append((not scores.bw_ok[i], primary, secondary))
    return out


def rank(scores, objective: str) -> list[int]:
    """Indices of the fitting candidates, best first (ties: generation order)."""
    k = keys(scores, objective)
    return sorted((i for i in range(len(k)) if k[i] is not None), key=lambda i: (k[i], i))


def search(ctx: Context, offchip, keep: float = KEEP_UTILIZATION, max_structures: int = MAX_STRUCTURES
           ) -> OnchipResult | None:
    """The best on-chip point for one off-chip plan, or None if no candidate fits L1 and L2.

    ``keep``/``max_structures``: array structures within ``keep`` of the best spatial utilisation
    are searched, at most ``max_structures`` of them."""
    op, target = ctx.op, ctx.target
    view = MdcView(chiplet_op(op, offchip), ctx.mdc_form)
    l2_tile, dram_order = dict(offchip.l2_tile), tuple(offchip.order)
    hw = chiplet_hw(target, op.output.element_bytes)
    structures = spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles)
    if not structures:
        raise InfeasibleError(f"no dim of {op.name} may go across the PEs of {target.name} "
                              f"(allowed: {', '.join(target.spatial_roles or ())})")
    best_u = max(s.utilization for s in structures)
    kept = sorted((s for s in structures if s.utilization >= keep * best_u),
                  key=lambda s: (-s.utilization, len(s.levels), [(l.dim, l.units, l.tile) for l in s.levels]))
    kept = kept[:max_structures]
    candidates: list[OnchipChoice] = []
    tilings = 0
    for s in kept:
        choices, tried = inner_choices(view, l2_tile, s, hw.l1_size)
        candidates += choices
        tilings += tried
    deadline = time.perf_counter() + ctx.options.time_limit_s
    scores = score_choices(view, l2_tile, dram_order, candidates, hw, deadline=deadline)
    complete = scores.scored == len(candidates)
    order = rank(scores, ctx.options.objective)
    if not order:
        return None
    found = {c: k for c, k in zip(candidates, keys(scores, ctx.options.objective)) if k is not None}
    # Local refinement from the best seeds of distinct array structures: every per-PE and
    # per-unit tile value and inner order one step away, until nothing improves.
    seeds: list[OnchipChoice] = []
    for i in order:
        if all(candidates[i].spatial != s.spatial for s in seeds) and len(seeds) < SEEDS:
            seeds.append(candidates[i])
    refined = 0
    for current in seeds:
        for _ in range(ROUNDS):
            near = [c for c in neighbours(view, l2_tile, current, hw.l1_size) if c not in found]
            near_scores = score_choices(view, l2_tile, dram_order, near, hw, deadline=deadline)
            complete &= near_scores.scored == len(near)
            refined += len(near)
            found.update({c: k for c, k in zip(near, keys(near_scores, ctx.options.objective)) if k is not None})
            best_near = min((c for c in near if c in found), key=lambda c: found[c], default=None)
            if best_near is None or found[best_near] >= found[current]:
                break
            current = best_near
    ranked = sorted(found, key=lambda c: found[c])     # stable: generation order breaks ties
    fastest = min(ranked, key=lambda c: found[c][1:])  # bandwidth ignored
    if found[fastest][1] * BW_PRICE < found[ranked[0]][1]:
        # Staying within the bandwidth would cost too much: MAESTRO's runtime already includes
        # the stalls of the faster mapping, so take it (its report shows the overrun).
        ranked.remove(fastest)
        ranked.insert(0, fastest)

    def measured(c: OnchipChoice):
        return c, evaluate_layer(build_layer(view, l2_tile, dram_order, c, op.name), hw)
    return OnchipResult(choice=ranked[0], metrics=measured(ranked[0])[1],
                        structures=len(structures), structures_kept=len(kept), tilings=tilings,
                        candidates=len(candidates), refined=refined, feasible=len(found),
                        within_bw=sum(1 for k in found.values() if not k[0]),
                        runner_up=measured(ranked[1]) if len(ranked) > 1 else None,
                        status="OPTIMAL-IN-SPACE" if complete else "FEASIBLE")


def run(ctx: Context) -> Context:
    """Search the on-chip subspace for the off-chip plan in ``ctx.offchip``.

    When no candidate of the usual space is within the NoC and off-chip bandwidth, a wider space
    (every array structure's top, up to ``WIDE_STRUCTURES``) is searched and taken if it has one.

    MAESTRO's L2 accounting can exceed the off-chip model's (it counts each unit's window halo
    separately on strided layers), so when no candidate fits, the off-chip subspace is solved
    again for a smaller L2 budget and the new plan replaces the old one (its report says so)."""
    offchip = ctx.offchip
    for budget in L2_BUDGETS:
        if budget < 1:
            smaller = replace(ctx.target, l2_bytes=int(ctx.target.l2_bytes * budget))
            offchip = offchip_pass.run(replace(ctx, target=smaller)).offchip
            offchip = replace(offchip, l2_capacity_bytes=ctx.target.l2_bytes, l2_budget=budget)
        result = search(ctx, offchip)
        if result is not None and not result.within_bw:
            # Nothing within the bandwidth: the busiest structures starve the NoC or DRAM, so
            # look further down the utilisation ranking before settling.
            wide = search(ctx, offchip, WIDE_KEEP, WIDE_STRUCTURES)
            if wide is not None and wide.within_bw:
                result = wide
        if result is not None:
            ctx = ctx.note_search("onchip", result.candidates + result.refined, result.status)
            return replace(ctx, offchip=offchip, onchip=result, stage=Stage.ONCHIP)
    view = MdcView(chiplet_op(ctx.op, offchip), ctx.mdc_form)
    least = l1_footprint(view, {d: 1 if view.mdc_dim(d) not in ("R", "S") else ctx.op.extent(d)
                                for d in view.dims})
    l1 = chiplet_hw(ctx.target, ctx.op.output.element_bytes).l1_size
    why = (f"the smallest per-PE tile (whole filter taps, as MDC requires) needs {least} L1 elements "
           f"double-buffered as MAESTRO counts them, and a PE has {l1}" if least > l1 else
           f"even with the L2 tiles shrunk to {L2_BUDGETS[-1]:.0%} of L2")
    raise InfeasibleError(f"no on-chip mapping of {ctx.op.name} fits {ctx.target.name}'s L1 and L2 with "
                          f"exact MACs: {why}", file=ctx.target.source or None, place="l1_bytes_per_pe"
                          if least > l1 else "l2_bytes")

"""Pass ``onchip``: choose the spatial map, per-unit tiles, L1 tile and inner order for an MDC target.

Reads:    ``ctx.op``, ``ctx.mdc_form``, ``ctx.offchip`` (L2 tile per dim, DRAM loop order) and the
          target (PEs, L1/L2, NoC and off-chip bandwidth, spatial-dim restrictions).
Decides:  which dims go across the PE array (one to three cluster levels), the per-unit
          spatial tiles, the per-PE tile and the innermost loop order, minimising the objective
          (``latency``: runtime then energy; ``energy``: energy then runtime; ``edp``) under
          MAESTRO's cost model.  Hard limits: exact MACs, a runtime that gives each of them a
          PE-cycle (checker rule S8), L1 and L2; candidates within the NoC and
          off-chip bandwidth rank before those that are not (a busy array can always be throttled
          into them by leaving units idle, and the search walks there when it must).
Leaves:   ``ctx.onchip`` (an :class:`OnchipResult`: the choice, its metrics and the counts of the
          space before and after each pruning step) and the whole typed ``ctx.mapping``
          (:func:`compiler.mdc.lowering.mdc_mapping`), for ``ctx.offchip`` as the off-chip pass left
          it; or :class:`NothingFits` when no candidate fits L1/L2.  Whether another off-chip plan
          does better is the ``replan`` pass's question (:mod:`passes.replan`).

The pruned space (:mod:`compiler.mdc.onchip_space`) is scored exhaustively in batches by the
vectorised cost model, then the best points of the best structures are refined one tile or order
at a time until nothing improves (a loop swap is tried only where no tile move improves: each
order is a cost-model call of its own, and on the edge quality suite a swap was the improving
move in 1 of 195 moves; trying tile moves first left every suite mapping as it was).
The status is OPTIMAL-IN-SPACE when all of that finished within
the time limit and FEASIBLE when the limit cut it short.

When the whole op is one L2 tile and every kept structure takes its outer level in one step,
MAESTRO's runtime starts with the whole tile's NoC fill, not overlapped with any compute.  If that
fill is more than a quarter of the compute time (small ops), the best structures whose outer level
folds into several steps (a third level filling the PEs) are searched as well, and the best of
them seeds the refinement too.  (Below a quarter the refinement's own folds of the outer level
recover what there is: on the 27 cloud layers of the quality suite between 1 % and 21 % these
structures changed no mapping.)

Besides structures whose cluster sizes multiply to the PE count, the space has *top-level
spreads* (:func:`compiler.mdc.onchip_space.top_spreads`): the outer spread dim on the top level itself,
over any unit count MAESTRO forms from a cluster size (the PEs left over idle: S7 is a warning),
in one to four large steps, so that each NoC fill is amortised over more compute (searched: the
best by utilisation, those with the fewest top-level steps, and those with the most top units,
:func:`compiler.mdc.onchip_space.finest`); and one-level mappings straight across the PEs.  The
``top-steps`` pass then tunes the top-level steps (L2 tiles) of the choice.  The whole-MDC-space brute force of
:mod:`compiler.mdc.fullspace` (tests/test_onchip_exact.py) measures what the pruning loses.

Search: bound-and-prune (``SearchOptions.solver = "prune"``, the default).  With the latency
objective, templates are scored in the order of :mod:`compiler.mdc.onchip_bound`'s lower bound on
the model's runtime (MACs over busy PEs, plus the top level's first NoC fill, which the model never
overlaps; a true bound of every candidate kept, tested against whole spaces), and those whose bound
is above the best runtime within the bandwidth found so far are not scored, nor refinement
neighbours above the current point (measured: ``"enumerate"``'s choice).  ``"cpsat"`` instead takes,
per structure, the best points of an integer program (:mod:`compiler.mdc.onchip_cpsat`: cluster
sizes, per-unit and per-PE tiles under L1 and the PE count, a surrogate objective), re-scored.
Prune is kept (docs/onchip-search.md): on 16 tiny ops all three reach the whole-MDC-space optimum;
on 20 suite layers prune made 489 cost-model calls to enumerate's 618, CP-SAT 763 in ~10x the time
(it beat enumerate on one: a DRAM-bound GEMV on edge, -2.3 %, with 32 of 256 PEs busy).
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, replace

from compiler.context import Context, Stage
from compiler.mdc.costmodel import Metrics, evaluate_layer
from compiler.errors import InfeasibleError
from compiler.mdc.lowering import MdcView, OnchipChoice, build_layer, chiplet_hw, chiplet_op, mdc_mapping
from compiler.mdc.onchip_bound import RuntimeBound
from compiler.mdc.scoring import best_within, score_choices
from compiler.mdc.onchip_space import (Structure, finest, inner_choices, l1_footprint, neighbours, outer_steps,
                                       spatial_structures, spreadable_dims, top_spreads)
from passes import offchip as offchip_pass

@dataclass(frozen=True)
class SearchOptions:
    """The on-chip search's tuning, in one place (the defaults are :data:`OPTIONS`).

    Array structures within ``keep_utilization`` of the best spatial utilisation are searched, at
    most ``max_structures`` of them, plus, of those whose outer spread sits on the top level
    (:func:`compiler.mdc.onchip_space.top_spreads`) within ``top_keep``, the ``top_structures`` best by
    utilisation and the ``top_structures`` with the fewest top-level steps, and, when the op is
    one L2 tile whose first NoC fill takes more than ``exposed_fill`` of the compute, ``overlap_structures`` whose outer
    level folds.  Refinement starts from the best point of ``seeds`` structures and takes at most
    ``rounds`` improving steps from each, plus ``bw_rounds`` while still over the bandwidth.
    When staying within the bandwidth costs more than ``replan_above`` times the runtime (or
    nothing is within it), the structures within ``wide_keep`` of the best utilisation (up to
    ``wide_structures``) are searched too, and the ``replan`` pass solves the off-chip plan again
    (its own record, :class:`passes.replan.ReplanOptions`, says at which L2 budgets).
    ``solver``: ``prune``, ``enumerate`` or ``cpsat`` (the module docstring; ``cpsat_time_s``
    limits each CP-SAT solve)."""

    keep_utilization: float = 0.95
    max_structures: int = 6
    top_structures: int = 3
    top_keep: float = 0.85
    overlap_structures: int = 2
    exposed_fill: float = 0.25
    wide_keep: float = 0.0
    wide_structures: int = 48
    seeds: int = 2
    rounds: int = 4
    bw_rounds: int = 8
    replan_above: float = 1.1
    solver: str = "prune"
    cpsat_time_s: float = 0.5


OPTIONS = SearchOptions()


@dataclass(frozen=True)
class NothingFits:
    """What the on-chip search leaves when no candidate for the off-chip plan fits L1 and L2 with
    exact MACs (MAESTRO's L2 accounting can exceed the off-chip model's): the ``replan`` pass
    then solves the off-chip subspace again."""

    l2_tile: tuple[tuple[str, int], ...]

    def pretty(self) -> str:
        tiles = ", ".join(f"{d}={t}" for d, t in self.l2_tile)
        return (f"on-chip: nothing fits L1/L2 with exact MACs for the L2 tiles {tiles} "
                "(the replan pass solves the off-chip subspace again)")

    def explain(self) -> str:
        return ("No on-chip candidate for this off-chip plan fits L1 and L2 with exact MACs as MAESTRO "
                "counts them; the replan step solves the off-chip subspace again.")

    def report(self) -> dict:
        return {"onchip": {"fits": False}}


@dataclass(frozen=True)
class OnchipResult:
    """The chosen on-chip point and how the subspace was searched."""

    choice: OnchipChoice
    metrics: Metrics
    structures: int              # array structures generated (top spreads: within top_keep)
    structures_kept: int         # after the utilisation / restriction pruning
    overlapping: int             # structures added whose outer level folds (see the module doc)
    tilings: int                 # per-PE tilings tried for the kept structures
    candidates: int              # tilings that fit L1, times loop orders: scored, or skipped by the bound
    seeds: int                   # array structures the refinement started from
    refined: int                 # neighbours scored by the local refinement
    feasible: int                # scored candidates within L1/L2 with exact MACs
    within_bw: int               # ... and within NoC/off-chip bandwidth
    runner_up: tuple[OnchipChoice, int, float] | None   # (choice, runtime cycles, energy MAC units)
    status: str
    held_back: tuple[OnchipChoice, Metrics] | None = None   # the fastest, if over the bandwidth
    tuned: str = ""              # what the top-steps pass changed, if anything

    @property
    def bandwidth_cost(self) -> float:
        """How many times slower the choice is than the fastest candidate (1.0 unless that one
        is over the bandwidth)."""
        return self.metrics.runtime_cycles / self.held_back[1].runtime_cycles if self.held_back else 1.0

    def pretty(self) -> str:
        m = self.metrics
        return (f"on-chip: {self.choice.describe()}\n"
                f"  runtime {m.runtime_cycles:,} cycles, energy {m.energy_mac_units:,.0f} MAC units, "
                f"L1 {m.l1_elements} / L2 {m.l2_elements} elements, NoC BW {m.noc_bw_required}, "
                f"utilisation {m.utilization:.3f}")

    def explain(self) -> str:
        lines = [f"The on-chip subspace for this L2 tile had {self.structures:,} array structures; "
                 f"{self.structures_kept} survived pruning (spatial utilisation within "
                 f"{1 - OPTIONS.keep_utilization:.0%} of the best, the target's spatial-dim restrictions; "
                 "with the top-level spreads and one-level mappings of SearchOptions)"
                 + (f", and {self.overlapping} more whose outer level folds into several steps (the op "
                    "is one L2 tile, so without them its first NoC fill would overlap no compute)."
                    if self.overlapping else "."),
                 f"Their per-PE tilings: {self.tilings:,}; those that fit L1, times loop orders, gave "
                 f"{self.candidates:,} candidates, each scored with the cost model unless its lower bound on the "
                 "runtime could not beat the best found (compiler/mdc/onchip_bound.py), and refining the best "
                 f"of {self.seeds} structures tile by tile and order by order scored {self.refined:,} more "
                 f"({self.status}); "
                 f"{self.feasible:,} fit L1 and L2 with exact MACs, {self.within_bw:,} of them also the "
                 "NoC and off-chip bandwidth.",
                 self.pretty()]
        if self.tuned:
            lines.append(self.tuned)
        if self.held_back and self.within_bw:
            choice, m = self.held_back
            lines.append(f"Staying within the bandwidth costs {self.bandwidth_cost:.2f}x "
                         f"the runtime: the fastest candidate, {choice.describe()}, takes "
                         f"{m.runtime_cycles:,} cycles but asks for {m.noc_bw_required} (NoC) and "
                         f"{m.offchip_bw_required} (off-chip) elements/cycle.")
        if self.runner_up:
            choice, runtime, energy = self.runner_up
            lines.append(f"Runner-up: {choice.describe()} at {runtime:,} cycles and "
                         f"{energy:,.0f} MAC units of energy.")
        return "\n".join(lines)

    def report(self) -> dict:
        return {"onchip": {
            "spatial": [{"dim": s.dim, "units": s.units, "tile": s.tile} for s in self.choice.spatial],
            "l1_tile": dict(self.choice.l1_tile), "inner_order": list(self.choice.inner_order),
            "structures": self.structures, "structures_kept": self.structures_kept,
            "structures_overlapping": self.overlapping,
            "candidates": self.candidates, "refined": self.refined, "feasible": self.feasible,
            "within_bw": self.within_bw,
            # what staying within the bandwidth cost: the fastest candidate's runtime (None when
            # it was within already)
            "fastest_over_bw_cycles": self.held_back[1].runtime_cycles if self.held_back else None,
            "solver_status": self.status}}


def objective_key(runtime: int, energy: float, objective: str) -> tuple:
    """(primary, secondary) of ``--objective``, lower is better: latency is runtime then energy,
    energy the reverse, edp their product then runtime."""
    return {"energy": (energy, runtime), "edp": (runtime * energy, runtime)}.get(objective, (runtime, energy))


def key_of(runtime, energy, bw_over, objective: str, priced: bool = False) -> tuple:
    """Sort key of a candidate that fits L1/L2 with exact MACs (lower is better).

    Candidates within the bandwidth limits come first, the rest by how far they overrun it:
    MAESTRO's runtime already includes bandwidth stalls, but a mapping that stays within them is
    what the target promises, and ranking overruns lets the refinement walk towards one.  With
    ``priced`` (``--bandwidth priced``) every candidate is in the first class: the runtime decides."""
    return (1.0 if priced else max(1.0, float(bw_over)), *objective_key(int(runtime), float(energy), objective))


def keys(scores, objective: str, priced: bool = False) -> list[tuple]:
    """:func:`key_of` per candidate, None where it does not fit L1/L2 with exact MACs."""
    return [key_of(scores.runtime[i], scores.energy[i], scores.bw_over[i], objective, priced)
            if scores.fits[i] else None for i in range(len(scores.fits))]


def rank(scores, objective: str, priced: bool = False) -> list[int]:
    """Indices of the fitting candidates, best first (ties: generation order)."""
    k = keys(scores, objective, priced)
    return sorted((i for i in range(len(k)) if k[i] is not None), key=lambda i: (k[i], i))


def search(ctx: Context, offchip, keep: float = OPTIONS.keep_utilization,
           max_structures: int = OPTIONS.max_structures, memo: dict | None = None) -> OnchipResult | None:
    """The best on-chip point for one off-chip plan, or None if no candidate fits L1 and L2.

    ``keep``/``max_structures``: array structures within ``keep`` of the best spatial utilisation
    are searched, at most ``max_structures`` of them.  ``memo``: the scores of earlier searches of
    the same plan, by choice (:func:`compiler.mdc.scoring.score_choices`)."""
    op, target = ctx.op, ctx.target
    memo = {} if memo is None else memo
    view = MdcView(chiplet_op(op, offchip), ctx.mdc_form)
    l2_tile, dram_order = dict(offchip.l2_tile), tuple(offchip.order)
    hw = chiplet_hw(target, op.output.element_bytes)
    structures = spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles)
    if not structures:
        return None     # every spreadable dim has L2 tile 1
    best_u = max(s.utilization for s in structures)

    def busiest(s: Structure) -> tuple:     # (ties: how they read, for reproducible output)
        return -s.utilization, len(s.levels), s.levels
    kept = heapq.nsmallest(max_structures, (s for s in structures if s.utilization >= keep * best_u), key=busiest)
    # One-level structures are one candidate each: all of them.  Of the others (within
    # ``top_keep`` of the best utilisation: fewer, larger top-level steps, their point, can be
    # worth idle PEs) the best by utilisation and those with the fewest top-level steps.
    tops = top_spreads(view, l2_tile, target.num_pes, target.spatial_roles, keep_above=OPTIONS.top_keep * best_u)
    multi = [s for s in tops if len(s.levels) > 1]
    n = OPTIONS.top_structures
    extents = {d: view.op.extent(d) for d in view.dims}
    few = heapq.nsmallest(n, multi, key=lambda s: (outer_steps(s, extents), *busiest(s)))
    top = [s for s in tops if len(s.levels) == 1] + list(dict.fromkeys(
        heapq.nsmallest(n, multi, key=busiest) + few + finest(multi, n)))
    overlap = []
    fill = l1_footprint(view, l2_tile) / 2 / hw.noc_bw        # cycles to bring the L2 tile in once
    if (math.prod(offchip.trips.values()) == 1 and fill > OPTIONS.exposed_fill * view.layer_macs / hw.num_pes
            and all(outer_steps(s, l2_tile) == 1 for s in kept)):
        overlap = heapq.nsmallest(OPTIONS.overlap_structures,
                                  (s for s in spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles, True)
                                   if outer_steps(s, l2_tile) > 1 and s.utilization >= keep * best_u),
                                  key=lambda s: (-s.utilization, outer_steps(s, l2_tile), len(s.levels), s.levels))
    if OPTIONS.solver == "cpsat":   # CP-SAT's best surrogate points per structure (compiler.mdc.onchip_cpsat)
        from compiler.mdc.onchip_cpsat import structure_choices
        per_structure, solved = structure_choices(view, l2_tile, kept + top + overlap, hw, OPTIONS.cpsat_time_s)
    else:
        per_structure = [inner_choices(view, l2_tile, s, hw.l1_size) for s in kept + top + overlap]
    candidates = [c for choices, _ in per_structure for c in choices]
    tilings = sum(tried for _, tried in per_structure)
    base = sum(len(choices) for choices, _ in per_structure[:len(kept)])   # the top spreads' start
    base_top = base + sum(len(choices) for choices, _ in per_structure[len(kept):len(kept) + len(top)])
    priced = ctx.options.bandwidth == "priced"
    # bound-and-prune (compiler.mdc.onchip_bound): only the latency objective has a bound
    bound = RuntimeBound(view, l2_tile, dram_order, hw) if (
        OPTIONS.solver == "prune" and ctx.options.objective == "latency") else None
    bounds = None
    if bound:   # (a structure's choices share its bound: see compiler.mdc.onchip_bound)
        filled = [choices for choices, _ in per_structure if choices]
        bounds = [b for choices, b in zip(filled, bound.many([c[0] for c in filled])) for _ in choices]
    deadline = time.perf_counter() + ctx.options.time_limit_s
    scores = score_choices(view, l2_tile, dram_order, candidates, hw, deadline=deadline, bounds=bounds,
                           cutoff=lambda s: best_within(s, priced), memo=memo)
    complete = scores.complete
    order = rank(scores, ctx.options.objective, priced)
    if not order:
        return None
    found = {c: k for c, k in zip(candidates, keys(scores, ctx.options.objective, priced)) if k is not None}
    # Local refinement from the best seeds of distinct array structures: every per-PE and
    # per-unit tile value and inner order one step away, until nothing improves.  The fastest
    # structures seed it too, bandwidth aside: idling some of their units may beat the best
    # point that is within the bandwidth already.
    by_speed = sorted(order, key=lambda i: (found[candidates[i]][1:], i))
    seeds: list[OnchipChoice] = []
    for ranking in (order, by_speed) if found[candidates[by_speed[0]]][0] > 1 else (order,):
        picked: list[OnchipChoice] = []
        for i in ranking:
            c = candidates[i]
            if i < base and len(picked) < OPTIONS.seeds and all(c.spatial != s.spatial for s in picked):
                picked.append(candidates[i])
        seeds += [c for c in picked if c not in seeds]
    # the best top spread (a one-level choice has no neighbours) and the best overlapping one
    seeds += [candidates[i] for i in order if base <= i < base_top and len(candidates[i].spatial) > 1][:1]
    seeds += [candidates[i] for i in order if i >= base_top][:1]
    refined = 0
    for current in seeds:
        rounds, walks = OPTIONS.rounds, OPTIONS.bw_rounds     # steps while over the bandwidth use up ``walks``
        while rounds and walks:
            if found[current][0] > 1:
                walks -= 1
            else:
                rounds -= 1
            every = neighbours(view, l2_tile, current, hw.l1_size, idle=found[current][0] > 1)
            # Tile moves first, all in one template; the loop swaps (a template, and a cost-model
            # call, each) only when no tile move improves.
            best_near = None
            for same in (True, False):
                part = [c for c in every if (c.inner_order == current.inner_order) == same]
                near = [c for c in part if c not in found]
                # (a neighbour whose bound is above the current runtime cannot be the next step)
                near_scores = score_choices(view, l2_tile, dram_order, near, hw, deadline=deadline,
                                            bounds=bound.many(near) if bound else None,
                                            cutoff=lambda s, k=found[current]: k[1] if k[0] == 1.0 else None,
                                            memo=memo)
                complete &= near_scores.complete
                refined += len(near)
                found.update({c: k for c, k in zip(near, keys(near_scores, ctx.options.objective, priced))
                              if k is not None})
                # (neighbours scored before, e.g. as another structure's candidates, count too)
                best_near = min((c for c in part if c in found), key=lambda c: found[c], default=None)
                if best_near is not None and found[best_near] < found[current]:
                    break
            else:
                break
            current = best_near
    ranked = sorted(found, key=lambda c: found[c])     # stable: generation order breaks ties
    fastest = min(ranked, key=lambda c: found[c][1:])
    def measured(c: OnchipChoice):
        return c, evaluate_layer(build_layer(view, l2_tile, dram_order, c, op.name), hw)
    return OnchipResult(choice=ranked[0], metrics=measured(ranked[0])[1],
                        structures=len(structures) + len(tops), structures_kept=len(kept) + len(top),
                        overlapping=len(overlap),
                        tilings=tilings,
                        candidates=len(candidates), seeds=len(seeds), refined=refined, feasible=len(found),
                        within_bw=sum(1 for k in found.values() if k[0] == 1.0),
                        # (explain's comparison needs only its runtime and energy, as scored)
                        runner_up=(ranked[1], int(memo[ranked[1]][0]), float(memo[ranked[1]][1]))
                        if len(ranked) > 1 else None,
                        status=("OPTIMAL-IN-SPACE" if complete else "FEASIBLE") if OPTIONS.solver != "cpsat"
                        else f"FEASIBLE (CP-SAT surrogate {solved})",
                        held_back=measured(fastest) if found[fastest][0] > 1 else None)


def best_for(ctx: Context, offchip) -> OnchipResult | None:
    """The on-chip search for one off-chip plan, as the ``onchip`` and ``replan`` passes run it:
    :func:`search`, and when nothing (or only a point more than ``OPTIONS.replan_above`` slower than the
    fastest) is within the bandwidth and pruning left structures out, the wider space of every
    array structure's top (up to ``OPTIONS.wide_structures``) too, whose best is taken if it is
    within the bandwidth and better.  The second search scores only what the first did not."""
    memo: dict = {}
    result = search(ctx, offchip, memo=memo)
    if (result is not None and result.structures_kept < result.structures
            and (not result.within_bw or result.bandwidth_cost > OPTIONS.replan_above)):
        # Nothing (or only a much slower point) within the bandwidth: the busiest
        # structures starve the NoC or DRAM, so look further down the utilisation ranking.
        wide = search(ctx, offchip, OPTIONS.wide_keep, OPTIONS.wide_structures, memo)
        if wide is not None and wide.within_bw and (not result.within_bw or objective_key(
                wide.metrics.runtime_cycles, wide.metrics.energy_mac_units, ctx.options.objective)
                < objective_key(result.metrics.runtime_cycles, result.metrics.energy_mac_units,
                                ctx.options.objective)):
            result = wide
    return result


def run(ctx: Context) -> Context:
    """Search the on-chip subspace for the off-chip plan in ``ctx.offchip`` (:func:`best_for`).

    When no candidate fits L1/L2, :class:`NothingFits` is left in ``ctx.onchip`` and the stage
    stays OFFCHIP: the ``replan`` pass after this one solves the off-chip subspace again."""
    whole = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    if not spreadable_dims(whole, ctx.target.spatial_roles):
        raise InfeasibleError(f"no dim of {ctx.op.name} may go across the PEs of {ctx.target.name} "
                              f"(allowed: {', '.join(ctx.target.spatial_roles or ())})")
    result = best_for(ctx, ctx.offchip)
    if result is None:
        return replace(ctx, onchip=NothingFits(tuple(ctx.offchip.l2_tile.items())))
    ctx = ctx.note_search("onchip", result.candidates + result.refined, result.status)
    mapping = mdc_mapping(whole, offchip_pass.offchip_mapping(ctx.offchip), result.choice)
    return replace(ctx, onchip=result, mapping=mapping, stage=Stage.ONCHIP)

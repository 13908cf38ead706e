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
          space before and after each pruning step); possibly a re-solved ``ctx.offchip``; the
          whole typed ``ctx.mapping`` (:func:`compiler.mdc.lowering.mdc_mapping`).

The pruned space (:mod:`compiler.mdc.onchip_space`) is scored exhaustively in batches by the
vectorised cost model, then the best points of the best structures are refined one tile or order
at a time until nothing improves.  The status is OPTIMAL-IN-SPACE when all of that finished within
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
in one to four large steps, so that each NoC fill is amortised over more compute; and one-level
mappings straight across the PEs.  The whole-MDC-space brute force of
:mod:`compiler.mdc.fullspace` (tests/test_onchip_exact.py) measures what the pruning loses.

No CP-SAT model here, unlike what the design first planned: the objective is MAESTRO's case
analysis, which a solver cannot express, and the constraints are met by construction (cluster
sizes are the PE count's factorisations, tiles are filtered by their L1 footprint as MAESTRO
counts it, restricted dims never spread).  A CP-SAT model choosing, per structure, the L1 tile
with the most MACs per step under the L1 limit was tried: it improved none of the 148 edge and
cloud mappings of the quality suite, and importing OR-Tools alone takes 0.36-0.47 s per process
(`python -c "from ortools.sat.python import cp_model"`, warm, this machine).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from compiler.context import Context, Stage
from compiler.mdc.costmodel import Metrics, evaluate_layer
from compiler.errors import InfeasibleError
from compiler.mdc.lowering import MdcView, OnchipChoice, build_layer, chiplet_hw, chiplet_op, mdc_mapping
from compiler.mdc.scoring import score_choices
from compiler.mdc.onchip_space import (inner_choices, l1_footprint, neighbours, outer_steps, spatial_structures,
                                       spreadable_dims, top_spreads)
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
    The off-chip plan is solved again at the ``l2_budgets`` (fractions of L2) when nothing fits
    MAESTRO's L2 accounting, or when staying within the bandwidth costs more than
    ``replan_above`` times the runtime; then (or when nothing is within the bandwidth) the
    structures within ``wide_keep`` of the best utilisation (up to ``wide_structures``) are
    searched too."""

    keep_utilization: float = 0.95
    max_structures: int = 6
    top_structures: int = 3
    top_keep: float = 0.85
    overlap_structures: int = 2
    exposed_fill: float = 0.25
    l2_budgets: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.25, 0.1, 0.03, 0.01)
    wide_keep: float = 0.0
    wide_structures: int = 48
    seeds: int = 2
    rounds: int = 4
    bw_rounds: int = 8
    replan_above: float = 1.1


OPTIONS = SearchOptions()


@dataclass(frozen=True)
class PlanTried:
    """One off-chip plan the on-chip search solved for: its L2 tiles and budget, and the best
    on-chip runtime it allowed (None: nothing fit L1/L2), within the bandwidth or not."""

    l2_tile: tuple[tuple[str, int], ...]
    l2_budget: float
    runtime_cycles: int | None
    within_bw: bool
    chosen: bool

    def line(self) -> str:
        tiles = ", ".join(f"{d}={t}" for d, t in self.l2_tile)
        got = ("nothing fits L1/L2" if self.runtime_cycles is None else
               f"{self.runtime_cycles:,} cycles{'' if self.within_bw else ' (over the bandwidth)'}")
        return f"{'*' if self.chosen else ' '} L2 budget {self.l2_budget:.0%}: {tiles} -> {got}"


@dataclass(frozen=True)
class OnchipResult:
    """The chosen on-chip point and how the subspace was searched."""

    choice: OnchipChoice
    metrics: Metrics
    structures: int              # array structures generated
    structures_kept: int         # after the utilisation / restriction pruning
    overlapping: int             # structures added whose outer level folds (see the module doc)
    tilings: int                 # per-PE tilings tried for the kept structures
    candidates: int              # tilings that fit L1, times loop orders: scored with the cost model
    seeds: int                   # array structures the refinement started from
    refined: int                 # neighbours scored by the local refinement
    feasible: int                # scored candidates within L1/L2 with exact MACs
    within_bw: int               # ... and within NoC/off-chip bandwidth
    runner_up: tuple[OnchipChoice, Metrics] | None
    status: str
    held_back: tuple[OnchipChoice, Metrics] | None = None   # the fastest, if over the bandwidth
    replanned: str = ""          # why the off-chip plan was solved again, if it was
    plans: tuple[PlanTried, ...] = ()   # every off-chip plan the search tried, in the order tried

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
                f"utilisation {m.utilization:.3f}"
                + ("".join(f"\n  off-chip plan {p.line()}" for p in self.plans) if len(self.plans) > 1 else ""))

    def explain(self) -> str:
        lines = [f"The on-chip subspace for this L2 tile had {self.structures:,} array structures; "
                 f"{self.structures_kept} survived pruning (spatial utilisation within "
                 f"{1 - OPTIONS.keep_utilization:.0%} of the best, the target's spatial-dim restrictions; "
                 "with the top-level spreads and one-level mappings of SearchOptions)"
                 + (f", and {self.overlapping} more whose outer level folds into several steps (the op "
                    "is one L2 tile, so without them its first NoC fill would overlap no compute)."
                    if self.overlapping else "."),
                 f"Their per-PE tilings: {self.tilings:,}; those that fit L1, times loop orders, gave "
                 f"{self.candidates:,} candidates, all scored with the cost model, and refining the best "
                 f"of {self.seeds} structures tile by tile and order by order scored {self.refined:,} more "
                 f"({self.status}); "
                 f"{self.feasible:,} fit L1 and L2 with exact MACs, {self.within_bw:,} of them also the "
                 "NoC and off-chip bandwidth.",
                 self.pretty()]
        if self.replanned:
            lines.append(self.replanned)
        if len(self.plans) > 1:
            lines.append("Off-chip plans tried (* = emitted):")
            lines += [f"  {p.line()}" for p in self.plans]
        if self.held_back and self.within_bw:
            choice, m = self.held_back
            lines.append(f"Staying within the bandwidth costs {self.bandwidth_cost:.2f}x "
                         f"the runtime: the fastest candidate, {choice.describe()}, takes "
                         f"{m.runtime_cycles:,} cycles but asks for {m.noc_bw_required} (NoC) and "
                         f"{m.offchip_bw_required} (off-chip) elements/cycle.")
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
            "structures_overlapping": self.overlapping,
            "candidates": self.candidates, "refined": self.refined, "feasible": self.feasible,
            "within_bw": self.within_bw,
            # what staying within the bandwidth cost: the fastest candidate's runtime (None when
            # it was within already), and why the off-chip plan was solved again (if it was)
            "fastest_over_bw_cycles": self.held_back[1].runtime_cycles if self.held_back else None,
            "replanned": self.replanned or None,
            "offchip_plans": [{"l2_tile": dict(p.l2_tile), "l2_budget": p.l2_budget,
                               "runtime_cycles": p.runtime_cycles, "within_bw": p.within_bw,
                               "chosen": p.chosen} for p in self.plans],
            "solver_status": self.status}}


def objective_key(runtime: int, energy: float, objective: str) -> tuple:
    """(primary, secondary) of ``--objective``, lower is better: latency is runtime then energy,
    energy the reverse, edp their product then runtime."""
    return {"energy": (energy, runtime), "edp": (runtime * energy, runtime)}.get(objective, (runtime, energy))


def keys(scores, objective: str, priced: bool = False) -> list[tuple]:
    """Sort key per candidate (lower is better; None where it does not fit L1/L2 with exact MACs).

    Candidates within the bandwidth limits come first, the rest by how far they overrun it:
    MAESTRO's runtime already includes bandwidth stalls, but a mapping that stays within them is
    what the target promises, and ranking overruns lets the refinement walk towards one.  With
    ``priced`` (``--bandwidth priced``) every candidate is in the first class: the runtime decides."""
    out = []
    for i in range(len(scores.fits)):
        if not scores.fits[i]:
            out.append(None)
            continue
        out.append((1.0 if priced else max(1.0, float(scores.bw_over[i])),
                    *objective_key(int(scores.runtime[i]), float(scores.energy[i]), objective)))
    return out


def rank(scores, objective: str, priced: bool = False) -> list[int]:
    """Indices of the fitting candidates, best first (ties: generation order)."""
    k = keys(scores, objective, priced)
    return sorted((i for i in range(len(k)) if k[i] is not None), key=lambda i: (k[i], i))


def search(ctx: Context, offchip, keep: float = OPTIONS.keep_utilization,
           max_structures: int = OPTIONS.max_structures) -> OnchipResult | None:
    """The best on-chip point for one off-chip plan, or None if no candidate fits L1 and L2.

    ``keep``/``max_structures``: array structures within ``keep`` of the best spatial utilisation
    are searched, at most ``max_structures`` of them."""
    op, target = ctx.op, ctx.target
    view = MdcView(chiplet_op(op, offchip), ctx.mdc_form)
    l2_tile, dram_order = dict(offchip.l2_tile), tuple(offchip.order)
    hw = chiplet_hw(target, op.output.element_bytes)
    structures = spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles)
    if not structures:
        return None     # every spreadable dim has L2 tile 1
    best_u = max(s.utilization for s in structures)
    def spelled(s):      # ties between structures broken by how they read, for reproducible output
        return [(l.dim, l.units, l.tile) for l in s.levels]
    kept = sorted((s for s in structures if s.utilization >= keep * best_u),
                  key=lambda s: (-s.utilization, len(s.levels), spelled(s)))
    kept = kept[:max_structures]
    tops = top_spreads(view, l2_tile, target.num_pes, target.spatial_roles)
    # One-level structures are one candidate each: all of them.  Of the others (within
    # ``top_keep`` of the best utilisation: fewer, larger top-level steps, their point, can be
    # worth idle PEs) the best by utilisation and those with the fewest top-level steps.
    multi = sorted((s for s in tops if len(s.levels) > 1 and s.utilization >= OPTIONS.top_keep * best_u),
                   key=lambda s: (-s.utilization, len(s.levels), spelled(s)))
    few = sorted(multi, key=lambda s: outer_steps(s, {s.levels[0].dim: view.op.extent(s.levels[0].dim)}))
    top = [s for s in tops if len(s.levels) == 1] + list(dict.fromkeys(
        multi[:OPTIONS.top_structures] + few[:OPTIONS.top_structures]))
    overlap = []
    fill = l1_footprint(view, l2_tile) / 2 / hw.noc_bw        # cycles to bring the L2 tile in once
    if (math.prod(offchip.trips.values()) == 1 and fill > OPTIONS.exposed_fill * view.layer_macs / hw.num_pes
            and all(outer_steps(s, l2_tile) == 1 for s in kept)):
        overlap = sorted((s for s in spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles, True)
                          if outer_steps(s, l2_tile) > 1 and s.utilization >= keep * best_u),
                         key=lambda s: (-s.utilization, outer_steps(s, l2_tile), len(s.levels), spelled(s))
                         )[:OPTIONS.overlap_structures]
    per_structure = [inner_choices(view, l2_tile, s, hw.l1_size) for s in kept + top + overlap]
    candidates = [c for choices, _ in per_structure for c in choices]
    tilings = sum(tried for _, tried in per_structure)
    base = sum(len(choices) for choices, _ in per_structure[:len(kept)])   # the top spreads' start
    base_top = base + sum(len(choices) for choices, _ in per_structure[len(kept):len(kept) + len(top)])
    deadline = time.perf_counter() + ctx.options.time_limit_s
    scores = score_choices(view, l2_tile, dram_order, candidates, hw, deadline=deadline)
    complete = scores.scored == len(candidates)
    priced = ctx.options.bandwidth == "priced"
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
            near = [c for c in every if c not in found]
            near_scores = score_choices(view, l2_tile, dram_order, near, hw, deadline=deadline)
            complete &= near_scores.scored == len(near)
            refined += len(near)
            found.update({c: k for c, k in zip(near, keys(near_scores, ctx.options.objective, priced))
                          if k is not None})
            # (neighbours scored before, e.g. as another structure's candidates, count too)
            best_near = min((c for c in every if c in found), key=lambda c: found[c], default=None)
            if best_near is None or found[best_near] >= found[current]:
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
                        runner_up=measured(ranked[1]) if len(ranked) > 1 else None,
                        status="OPTIMAL-IN-SPACE" if complete else "FEASIBLE",
                        held_back=measured(fastest) if found[fastest][0] > 1 else None)


def run(ctx: Context) -> Context:
    """Search the on-chip subspace for the off-chip plan in ``ctx.offchip``.

    MAESTRO's L2 accounting can exceed the off-chip model's (it counts each unit's window halo
    separately on strided layers), so when no candidate fits L1/L2, the off-chip subspace is
    solved again for ever smaller L2 budgets (``OPTIONS.l2_budgets``) and the new plan replaces the old
    one (its report says so).

    When staying within the NoC and off-chip bandwidth holds the fastest mapping back, a wider
    space (every array structure's top, up to ``OPTIONS.wide_structures``) is searched if nothing was
    within them or what was costs more than ``OPTIONS.replan_above``, and on a layer with strided
    rows the off-chip subspace is solved for every other
    allowed number of rows per L2 tile too (those rows are level 0's units: fewer ask less of the
    NoC at once, more share the weights of one L2 tile), each at the largest budget MAESTRO's L2
    accounting accepts, then the best of them at smaller budgets until two in a row do not
    improve it; the best within the bandwidth is taken.  If none is, the budgets keep shrinking
    for every plan until one is: smaller L2 tiles mean fewer busy units per step."""
    whole = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    if not spreadable_dims(whole, ctx.target.spatial_roles):
        raise InfeasibleError(f"no dim of {ctx.op.name} may go across the PEs of {ctx.target.name} "
                              f"(allowed: {', '.join(ctx.target.spatial_roles or ())})")
    memo: dict[tuple, tuple[OnchipResult, object] | None] = {}   # budgets often repeat a plan
    order: list[tuple[tuple, object]] = []                        # ... in the order first tried

    def attempt(hints, budget: float):
        plan = _solve(ctx, hints, budget)
        if plan is None:
            return None
        key = (tuple(plan.l2_tile.items()), tuple(plan.order), tuple(plan.chiplet_split),
               tuple(sorted(plan.part_extents.items())) if plan.chiplet_split else ())
        if key not in memo:
            result = search(ctx, plan)
            if (result is not None and result.structures_kept < result.structures
                    and (not result.within_bw or result.bandwidth_cost > OPTIONS.replan_above)):
                # Nothing (or only a much slower point) within the bandwidth: the busiest
                # structures starve the NoC or DRAM, so look further down the utilisation ranking.
                wide = search(ctx, plan, OPTIONS.wide_keep, OPTIONS.wide_structures)
                if wide is not None and wide.within_bw and (not result.within_bw or objective_key(
                        wide.metrics.runtime_cycles, wide.metrics.energy_mac_units, ctx.options.objective)
                        < objective_key(result.metrics.runtime_cycles, result.metrics.energy_mac_units,
                                        ctx.options.objective)):
                    result = wide
            memo[key] = None if result is None else (result, plan)
            order.append((key, plan))
        return memo[key]

    def largest_budget(hints) -> tuple[int, tuple | None]:
        for i, budget in enumerate(OPTIONS.l2_budgets):
            if (found := attempt(hints, budget)) is not None:
                return i, found
        return len(OPTIONS.l2_budgets), None

    def best(tried):
        return min(tried, key=lambda t: objective_key(t[2][0].metrics.runtime_cycles,
                                                      t[2][0].metrics.energy_mac_units, ctx.options.objective))

    variants = _hint_variants(ctx)
    reached, first = largest_budget(variants[0])
    chosen = first
    if first is not None and (not first[0].within_bw or first[0].bandwidth_cost > OPTIONS.replan_above):
        tried = [(variants[0], reached, first)] + [(h, *largest_budget(h)) for h in variants[1:]]
        fitting = [t for t in tried if t[2] is not None and t[2][0].within_bw]
        if fitting:
            # Smaller L2 tiles of the best plan's kind may beat idling PEs: fewer units are busy
            # per step for the same bandwidth, but none of them idles.
            # Walked for the best plan's kind and the off-chip pass's own (the on-chip space's
            # top spreads already take other row counts, so the best kind at full budget may not
            # be the best one at smaller budgets).
            walks = [best(fitting)[:2]] + [(variants[0], reached)]
            for hints, i in [w for k, w in enumerate(walks) if all(w[0] is not v[0] for v in walks[:k])]:
                misses = 0
                for j in range(i + 1, len(OPTIONS.l2_budgets)):
                    if (f := attempt(hints, OPTIONS.l2_budgets[j])) is not None and f[0].within_bw:
                        fitting.append((hints, j, f))
                        misses = 0 if best(fitting)[2] is f else misses + 1
                        if misses == 2:
                            break   # smaller tiles stopped paying: each step refetches more
        for j in range(reached + 1, len(OPTIONS.l2_budgets)) if not fitting else ():
            fitting = [(h, j, f) for h in variants if (f := attempt(h, OPTIONS.l2_budgets[j])) is not None
                       and f[0].within_bw]
            if fitting:
                break
        if fitting:
            chosen = best(fitting)[2]
    if chosen is not None:
        result, offchip = chosen
        if offchip is not ctx.offchip:
            result = replace(result, replanned=_replanned(ctx, first, chosen))
        result = replace(result, plans=tuple(
            PlanTried(tuple(p.l2_tile.items()), p.l2_budget,
                      memo[k][0].metrics.runtime_cycles if memo[k] else None,
                      bool(memo[k] and memo[k][0].within_bw), memo[k] is not None and memo[k][1] is offchip)
            for k, p in order))
        ctx = ctx.note_search("onchip", result.candidates + result.refined, result.status)
        mapping = mdc_mapping(MdcView(chiplet_op(ctx.op, offchip), ctx.mdc_form),
                              offchip_pass.offchip_mapping(offchip), result.choice)
        return replace(ctx, offchip=offchip, onchip=result, mapping=mapping, stage=Stage.ONCHIP)
    offchip = ctx.offchip
    view = MdcView(chiplet_op(ctx.op, offchip), ctx.mdc_form)
    least = l1_footprint(view, {d: 1 if view.mdc_dim(d) not in ("R", "S") else ctx.op.extent(d)
                                for d in view.dims})
    l1 = chiplet_hw(ctx.target, ctx.op.output.element_bytes).l1_size
    why = (f"the smallest per-PE tile (whole filter taps, as MDC requires) needs {least} L1 elements "
           f"double-buffered as MAESTRO counts them, and a PE has {l1}" if least > l1 else
           f"even with the L2 tiles shrunk to {OPTIONS.l2_budgets[-1]:.0%} of L2")
    raise InfeasibleError(f"no on-chip mapping of {ctx.op.name} fits {ctx.target.name}'s L1 and L2 with "
                          f"exact MACs: {why}", file=ctx.target.source or None, place="l1_bytes_per_pe"
                          if least > l1 else "l2_bytes")


def _hint_variants(ctx: Context) -> list:
    """The off-chip hints to try: the mdc-limits pass's own, then (on a layer whose strided rows
    are level 0's units) one per other allowed number of rows per L2 tile."""
    hints = ctx.offchip_hints
    view = MdcView(ctx.op, ctx.mdc_form)
    if "Y" not in view.strided_windows():
        return [hints]
    rows = view.form.op_dim("Y")
    caps = dict(hints.tile_caps)
    return [hints] + [replace(hints, tile_caps=tuple((d, (v,) if d == rows else c) for d, c in caps.items()))
                      for v in sorted((u for u in caps[rows] if u != ctx.offchip.l2_tile[rows]), reverse=True)]


def _solve(ctx: Context, hints, budget: float):
    """The off-chip plan for ``hints`` with the L2 tiles limited to ``budget`` of L2, or None
    when that cannot hold even the smallest tiles."""
    if budget == 1 and hints is ctx.offchip_hints:
        return ctx.offchip
    target = replace(ctx.target, l2_bytes=int(ctx.target.l2_bytes * budget))
    try:
        plan = offchip_pass.run(replace(ctx, target=target, offchip_hints=hints)).offchip
    except InfeasibleError:
        return None
    return replace(plan, l2_capacity_bytes=ctx.target.l2_bytes, l2_budget=budget) if budget < 1 else plan


def _replanned(ctx: Context, first, chosen) -> str:
    """Why the plan in ``chosen`` replaced the off-chip pass's own (``first``: what that gave)."""
    offchip = chosen[1]
    tiles = ", ".join(f"{d}={t}" for d, t in offchip.l2_tile.items() if ctx.offchip.l2_tile.get(d) != t)
    if first[1] is offchip:
        before = "did not fit L1/L2 as MAESTRO counts them"
    else:
        m = first[0].metrics
        before = (f"{'took' if first[0].within_bw else 'exceeded the bandwidth at'} {m.runtime_cycles:,} "
                  f"cycles" + (f" (L2 budget {first[1].l2_budget:.0%})" if first[1].l2_budget < 1 else ""))
    return (f"The off-chip plan was solved again: with its own L2 tiles the best on-chip mapping {before}; "
            f"with {tiles or 'the same tiles'} (L2 budget {offchip.l2_budget:.0%}) it "
            f"{'is within the bandwidth at' if chosen[0].within_bw else 'takes'} "
            f"{chosen[0].metrics.runtime_cycles:,}.")


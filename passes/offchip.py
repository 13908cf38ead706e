"""Pass ``offchip``: L2 tiles, DRAM loop order and chiplet split, minimising DRAM traffic.

Reads:    ``ctx.op`` (access relations, element sizes), ``ctx.target`` (L2 bytes per chiplet,
          chiplet count, off-chip and link bandwidths), ``ctx.options.time_limit_s``.
Decides:  the L2 tile of every loop dim, the DRAM-level loop order and, on a multi-chiplet target,
          which 1-2 dims are cut across chiplets, by an exact search (proved optimal unless the
          time limit stops it; then the best point found is kept and marked FEASIBLE).
Leaves:   ``ctx.offchip``, an :class:`OffchipSchedule`, and its levels of ``ctx.mapping``
          (:func:`offchip_mapping`); stage ``OFFCHIP``.  Raises
          :class:`InfeasibleError` when even one-element tiles overflow L2.

Cost model: the distinct-block model of :mod:`compiler.offchip_model` (its docstring states it and
why the search is exhaustive).  Chiplets (``docs/offchip.md``): each chiplet runs the same tile
schedule on an equal part of the op (factors divide the extents), in lockstep; a tile several
chiplets need at the same step is read from DRAM once and broadcast on the shared DRAM interface;
partial sums of a reduction dim cut across chiplets are added over the inter-chiplet links
((R-1) transfers per output write for R chiplets sharing an output).  The objective is then
DRAM bytes + link bytes x (off-chip bandwidth / link bandwidth): link traffic counted as the DRAM
traffic that takes as long.  Exhaustive enumeration is used instead of CP-SAT because the
dominance arguments leave at most ~10^5 points per chiplet split, which numpy ranks in
milliseconds with exact integers, and exhaustiveness is then a proof of optimality.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction

from compiler import offchip_model as om
from compiler.context import Context, OffchipHints, Stage
from compiler.errors import InfeasibleError
from compiler.ir import OpMapping, build_mapping, mapping_space_log10


@dataclass(frozen=True)
class OffchipSchedule:
    """The off-chip decision.  Dict fields are keyed by dim or tensor name; treat them as read-only.

    ``l2_tile``/``trips`` are per chiplet (a chiplet's part is ``part_extents``); traffic is for the
    whole package in elements (reads + write-backs)."""

    op_name: str
    extents: dict[str, int]                 # op dims in op order
    l2_tile: dict[str, int]                 # L2 tile per dim (per chiplet)
    trips: dict[str, int]                   # DRAM-level trip count per dim
    order: tuple[str, ...]                  # DRAM loop order, outermost first (one-trip dims first)
    chiplet_split: tuple[tuple[str, int], ...]   # (dim, factor); () on one chiplet
    part_extents: dict[str, int]            # a chiplet's share of each dim
    footprint: dict[str, int]               # elements of one L2 tile per tensor (single buffer)
    traffic: dict[str, int]                 # DRAM elements per tensor
    compulsory: dict[str, int]              # elements each tensor holds that the op touches
    element_bytes: dict[str, int]
    link_traffic_elements: int              # partial sums between chiplets
    l2_capacity_bytes: int
    solver_status: str                      # OPTIMAL or FEASIBLE
    seconds: float
    space_size: int                         # tile vectors x orders x splits the search covers
    evaluated: int                          # points numpy actually ranked
    l2_budget: float = 1.0                  # fraction of L2 the tiles were allowed (a backend may lower it)
    objective_limit: int = 0                # the most DRAM (+ link) cost a tiling may have: optimum x (1 + slack)

    @property
    def dram_traffic_elements(self) -> int:
        return sum(self.traffic.values())

    @property
    def compulsory_elements(self) -> int:
        return sum(self.compulsory.values())

    @property
    def l2_elements_used(self) -> int:
        """Double-buffered L2 elements one chiplet holds."""
        return 2 * sum(self.footprint.values())

    @property
    def l2_bytes_used(self) -> int:
        return 2 * sum(f * self.element_bytes[t] for t, f in self.footprint.items())

    @property
    def ratio(self) -> float:
        """DRAM traffic / compulsory traffic (1.0: every tensor moved once)."""
        return self.dram_traffic_elements / self.compulsory_elements

    def pretty(self) -> str:
        """The tiled DRAM-level loop nest and per-tensor footprint and traffic."""
        lines = [f"offchip {self.op_name}: solver {self.solver_status}, {self.seconds:.3f} s, "
                 f"space {self.space_size:,} ({self.evaluated:,} ranked)"]
        depth = 1
        if self.chiplet_split:
            cut = ", ".join(f"{d}/{f}" for d, f in self.chiplet_split)
            lines.append(f"  parallel-for chiplet in {cut}:   # each chiplet: "
                         + ", ".join(f"{d}={e}" for d, e in self.part_extents.items()))
            depth = 2
        for d in self.order:
            e, t, n = self.part_extents[d], self.l2_tile[d], self.trips[d]
            if n == 1:
                continue
            edge = e - (n - 1) * t
            note = f"# {n} tiles" + (f", last {edge}" if edge != t else "")
            lines.append(f"{'  ' * depth}for {d}2 in 0..{e} step {t}:   {note}")
            depth += 1
        whole = [d for d in self.order if self.trips[d] == 1]
        lines.append(f"{'  ' * depth}L2 tile {', '.join(f'{d}={self.l2_tile[d]}' for d in self.l2_tile)}"
                     + (f"  (whole: {', '.join(whole)})" if whole else ""))
        for name, fp in self.footprint.items():
            lines.append(f"  tensor {name}: footprint {fp:,} el, DRAM traffic {self.traffic[name]:,} el "
                         f"= {self.traffic[name] / self.compulsory[name]:.2f}x compulsory {self.compulsory[name]:,}")
        budget = f" (tiles limited to {self.l2_budget:.0%} of it)" if self.l2_budget < 1 else ""
        lines.append(f"  L2 used {self.l2_bytes_used:,} of {self.l2_capacity_bytes:,} B{budget} (double-buffered); "
                     f"total DRAM {self.dram_traffic_elements:,} el = {self.ratio:.3f}x compulsory"
                     + (f"; chiplet links {self.link_traffic_elements:,} el" if self.chiplet_split else ""))
        return "\n".join(lines)

    def report(self) -> dict:
        """The ``offchip`` section of ``<op>.report.json``."""
        return {"offchip": {
            "l2_tile": dict(self.l2_tile), "trips": dict(self.trips), "order": list(self.order),
            "chiplet_split": [[d, f] for d, f in self.chiplet_split],
            "dram_traffic_elements": dict(self.traffic, total=self.dram_traffic_elements),
            "compulsory_elements": dict(self.compulsory, total=self.compulsory_elements),
            "traffic_ratio": round(self.ratio, 6),
            "link_traffic_elements": self.link_traffic_elements,
            "l2_elements_used": self.l2_elements_used, "l2_bytes_used": self.l2_bytes_used,
            "l2_budget": self.l2_budget,
            "solver_status": self.solver_status, "seconds": round(self.seconds, 6),
            "space_size": self.space_size}}

    def explain(self) -> str:
        """A few sentences for ``mapc explain``."""
        full = mapping_space_log10(list(self.extents.values()))
        split = (" cut across chiplets as " + ", ".join(f"{x} in {f}" for x, f in self.chiplet_split)
                 if self.chiplet_split else " on one L2")
        return (f"A full mapping picks a tile and a loop order at three memory levels and the dims across "
                f"PEs: roughly 10^{full:.0f} choices.  The off-chip part (L2 tile per dim, DRAM loop "
                f"order, chiplet split) has {self.space_size:,} points; dominance arguments cut it to "
                f"{self.evaluated:,} ranked exactly, and the result is {self.solver_status}.\n"
                f"Chosen: tiles {', '.join(f'{k}={v}' for k, v in self.l2_tile.items())}, order "
                f"{' > '.join(x for x in self.order if self.trips[x] > 1) or '(one tile)'} (outermost "
                f"first),{split}.\n"
                f"DRAM traffic {self.dram_traffic_elements:,} elements against a compulsory "
                f"{self.compulsory_elements:,} (each tensor once): {self.ratio:.3f}x; the tiles use "
                f"{self.l2_bytes_used:,} of {self.l2_capacity_bytes:,} L2 bytes double-buffered"
                + (f" (the MDC backend re-solved with the tiles limited to {self.l2_budget:.0%} of L2: "
                   "MAESTRO's buffer accounting or the bandwidth limits did not fit the first plan)." if self.l2_budget < 1 else "."))


def _tie_dims(model: om.TrafficModel) -> list[str]:
    """Dims whose larger tiles break ties: output dims, then reductions, then windows, filters last
    (large channel tiles leave the on-chip pass room to go across PEs)."""
    windows = {w.out_dim for t in model.tensors for w in t.axes if w.filter_dim or w.stride > 1}
    filters = {w.filter_dim for t in model.tensors for w in t.axes if w.filter_dim}
    out = model.output.dims

    def rank(d: str) -> int:
        return 3 if d in filters else 2 if d in windows else 0 if d in out else 1
    return sorted(model.dims, key=lambda d: (rank(d), model.dims.index(d)))


def _check_capacity(model: om.TrafficModel, capacity: int, target_file: str,
                    caps: dict[str, tuple[int, ...]]) -> None:
    """The smallest tiles (1, or the least a backend allows) must fit twice; else name the tensor
    that overflows and by how much."""
    least = {d: min(caps.get(d, (1,))) for d in model.dims}
    sizes = [2 * t.element_bytes * om.footprint(t, least) for t in model.tensors]
    total, need = sum(sizes), 0
    what = "a 1-element tile" if not caps else "its smallest tile the backend allows"
    for t, size in zip(model.tensors, sizes):
        need += size
        if need > capacity:
            raise InfeasibleError(
                f"no L2 tiling fits: tensor {t.name} cannot get even {what}; double-buffered "
                f"smallest tiles need {total} B but L2 holds {capacity} B (short by {total - capacity} B)",
                file=target_file or None, place="l2_bytes")


def run(ctx: Context) -> Context:
    """Solve the off-chip subspace exactly and leave the schedule in ``ctx.offchip``."""
    start = time.perf_counter()
    target, model = ctx.target, om.model_of(ctx.op)
    extents = {d.name: d.extent for d in ctx.op.dims}
    capacity = target.l2_bytes
    hints = ctx.offchip_hints or OffchipHints()
    caps = dict(hints.tile_caps)
    _check_capacity(model, capacity, target.source, caps)
    weight = _link_weight(target)
    link_weight = (weight.numerator, weight.denominator)
    tie = _tie_dims(model)
    candidates = om.splits(model, extents, target.num_chiplets)

    def bound(s: om.Split) -> int:  # a lower bound on a split's objective: every part moved once
        part = s.part_extents(extents)
        low = sum(weight.denominator * s.groups(t) * t.element_bytes * om.distinct_elements(t, part)
                  for t in model.tensors)
        o = model.output
        return low + weight.numerator * (s.chiplets() // s.groups(o) - 1) * s.groups(o) \
            * o.element_bytes * om.distinct_elements(o, part)
    ranked = sorted(enumerate(candidates), key=lambda ic: (bound(ic[1]), ic[0]))
    deadline = start + ctx.options.time_limit_s

    def solve(step: om.StepModel | None, limit: int | None):
        """The best split and point; ``limit`` prunes splits whose bound exceeds it."""
        best, best_split, status, evaluated = None, None, "OPTIMAL", 0
        for i, s in ranked:
            cut = limit if limit is not None else (best.key[0] if best is not None else None)
            if cut is not None and bound(s) > cut:
                break                      # sorted by bound: no later split can win or tie
            if best is not None and time.perf_counter() > deadline:
                status = "FEASIBLE"
                break
            found = om.search(model, extents, capacity, s, link_weight, tie, caps=caps, step=step,
                              deadline=deadline)
            if found is None:
                continue
            evaluated += found.evaluated
            if not found.exhaustive:
                status = "FEASIBLE"
            if best is None or found.key + (i,) < best.key + (best_split[0],):
                best, best_split = found, (i, s)
        return best, best_split, status, evaluated

    best, best_split, status, evaluated = solve(None, None)
    if best is None:  # unit tiles fit (checked above), so this is a model bug, not user input
        raise RuntimeError("offchip search found no feasible point although unit tiles fit")
    optimal = limit = best.key[0]
    if hints.macs_per_cycle:
        step = om.StepModel(hints.macs_per_cycle, hints.dram_bw, hints.noc_bw,
                            limit=int(optimal * (1 + hints.slack)), spread_dims=hints.spread_dims)
        limit = step.limit
        best, best_split, status2, evaluated2 = solve(step, step.limit)
        status = "FEASIBLE" if "FEASIBLE" in (status, status2) else status
        evaluated += evaluated2
    objective = best.key[1] if hints.macs_per_cycle else best.key[0]
    split = best_split[1]
    part = split.part_extents(extents)
    order = om.order_from(model, best.tiles, part, best.prefix)
    traffic, link = om.dram_traffic(model, extents, best.tiles, order, split)
    recomputed = _weighted_cost(model, traffic, link, weight)
    # The search and the plain model agree on the chosen point, except that a search stopped
    # before its last order class may hold a class that over-estimates (offchip_model, point 2);
    # the traffic reported is then the plain model's, which is lower.
    if recomputed != objective and not (status == "FEASIBLE" and recomputed < objective):
        raise RuntimeError(f"offchip: search objective {objective} != model {recomputed}")
    space = sum(math.prod(s.part_extents(extents).values()) for s in candidates) * math.factorial(len(extents))
    schedule = OffchipSchedule(
        op_name=ctx.op.name, extents=extents, l2_tile=dict(best.tiles),
        trips={d: om.trips(part[d], best.tiles[d]) for d in model.dims}, order=order,
        chiplet_split=split.factors, part_extents=part,
        footprint={t.name: om.footprint(t, best.tiles) for t in model.tensors}, traffic=traffic,
        compulsory={t.name: om.distinct_elements(t, extents) for t in model.tensors},
        element_bytes={t.name: t.element_bytes for t in model.tensors}, link_traffic_elements=link,
        l2_capacity_bytes=capacity, solver_status=status, seconds=time.perf_counter() - start,
        space_size=space, evaluated=evaluated, objective_limit=limit)
    ctx = ctx.note_search("offchip", space, status)
    return replace(ctx, offchip=schedule, mapping=offchip_mapping(schedule), stage=Stage.OFFCHIP)


def _weighted_cost(model, traffic: dict[str, int], link: int, weight: Fraction) -> int:
    """The off-chip objective in integers: DRAM bytes plus link bytes at ``weight``, both scaled
    by its denominator."""
    return (weight.denominator * sum(t.element_bytes * traffic[t.name] for t in model.tensors)
            + weight.numerator * model.output.element_bytes * link)


def _link_weight(target) -> Fraction:
    """Link bytes in DRAM bytes that take as long (the objective's weight; 1 on one chiplet)."""
    if target.chiplets:
        return Fraction(str(target.offchip_bw)) / Fraction(str(target.chiplets.link_bw_elems_per_cycle))
    return Fraction(1)


def retile(ctx: Context, plan: OffchipSchedule, tiles: dict[str, int]) -> OffchipSchedule | None:
    """``plan`` with other L2 tiles, in the same DRAM order and chiplet split: its traffic and
    footprints recomputed; None when the tiles overflow L2 or cost more DRAM (+ link) traffic than
    the off-chip search allowed (``objective_limit``)."""
    model = om.model_of(ctx.op)
    footprint = {t.name: om.footprint(t, tiles) for t in model.tensors}
    if 2 * sum(f * plan.element_bytes[t] for t, f in footprint.items()) > plan.l2_capacity_bytes:
        return None
    split = om.Split(plan.chiplet_split)
    traffic, link = om.dram_traffic(model, plan.extents, tiles, plan.order, split)
    if _weighted_cost(model, traffic, link, _link_weight(ctx.target)) > plan.objective_limit:
        return None
    return replace(plan, l2_tile=dict(tiles), trips={d: om.trips(plan.part_extents[d], tiles[d]) for d in tiles},
                   footprint=footprint, traffic=traffic, link_traffic_elements=link)


def offchip_levels(plan: OffchipSchedule) -> list[tuple[str, int, list[tuple[str, int, bool, str]]]]:
    """The plan's levels for :func:`compiler.ir.build_mapping`: the chiplet split (if any) and
    the DRAM loops over L2 tiles in DRAM order (one-trip dims too: they carry the order), DRAM
    keeping every tensor."""
    out = []
    if plan.chiplet_split:
        out.append(("chiplet", math.prod(f for _, f in plan.chiplet_split),
                    [(d, plan.part_extents[d], True, "") for d, _ in plan.chiplet_split]))
    out.append(("dram", 1, [(d, plan.l2_tile[d], False, "") for d in plan.order], tuple(plan.footprint)))
    return out


def offchip_mapping(plan: OffchipSchedule) -> OpMapping:
    """The off-chip part of the typed mapping (what the on-chip decisions then complete)."""
    return build_mapping(plan.op_name, plan.extents, offchip_levels(plan))

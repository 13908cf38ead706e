"""A decomposed op as one MDC file: a layer per part, run one after another, and their sum.

Each part was compiled on its own (its ``.m`` file, checked and evaluated).  The op's file puts
their layers in plan order (MAESTRO reports each layer; their MACs add up to the op's), and the
whole costs what the parts cost plus the partial sums: every part after the first that touches
an output element adds to it, so unless the op's whole output and the largest part's L2 tiles fit
L2 together, those elements are read back from DRAM (counted as DRAM time not overlapped with
compute, and as one L2 write each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import islpy as isl
import numpy as np

from .checker import check_file, is_clean
from .costmodel import evaluate_file
from ..decomposition import Plan, coverage_map
from ..errors import MapcError
from ..ir import AffineIndex, Op
from .hw import parse_hw, print_hw
from .lowering import chiplet_hw
from .parser import parse_mdc
from .syntax import MdcFile, MdcLayer, print_mdc
from .commands import hw_from_target


@dataclass(frozen=True)
class PlanCost:
    """What running a plan's parts one after another costs (or why it cannot run)."""

    runtime_cycles: int = 0
    energy_mac_units: float = 0.0
    dram_traffic_elements: int = 0
    partial_sum_rereads: int = 0        # output elements read back from DRAM between parts
    partial_sums_in_l2: bool = True
    partial_sum_cycles: int = 0         # DRAM time of the re-reads, added to the parts' runtimes
    lower_bound_cycles: int = 0         # see lower_bound(); latency: not compiled if a plan is within GAP of it
    l2_kept_free: int = 0               # L2 bytes the parts were compiled without, for the partial sums
    all_l2_skipped: bool = False        # not compiled with all of L2: within GAP of the bound already
    error: MapcError | None = None
    skipped: str = ""                   # why the plan was not compiled (empty: it was)

    def report(self) -> dict:
        if self.skipped:
            return {"lower_bound_cycles": self.lower_bound_cycles, "skipped": self.skipped}
        if self.error is not None:
            return {"error": str(self.error)}
        return {"runtime_cycles": self.runtime_cycles, "energy_mac_units": round(self.energy_mac_units, 2),
                "dram_traffic_elements": self.dram_traffic_elements,
                "partial_sum_rereads": self.partial_sum_rereads, "partial_sums_in_l2": self.partial_sums_in_l2,
                "partial_sum_cycles": self.partial_sum_cycles, "lower_bound_cycles": self.lower_bound_cycles,
                "l2_bytes_kept_free": self.l2_kept_free, "all_l2_skipped": self.all_l2_skipped}


@dataclass(frozen=True)
class Decomposition:
    """The plan that won and every plan tried, with its cost."""

    chosen: Plan
    tried: tuple[tuple[Plan, PlanCost], ...]
    mappings: tuple = ()                # per chosen part of several: its typed mapping (OpMapping)

    def report(self) -> dict:
        return {"decomposition": {
            "plan": self.chosen.kind,
            "parts": [{**p.report(), **(m.report() if m is not None else {})}
                      for p, m in zip(self.chosen.parts, self.mappings)],
            "plans_tried": [{"plan": p.kind, "parts": len(p.parts), **c.report()} for p, c in self.tried]}}

    def pretty(self) -> str:
        lines = [f"decomposition: {self.chosen.kind} ({len(self.chosen.parts)} part(s))"]
        for p, c in self.tried:
            cost = (f"not compiled (lower bound {c.lower_bound_cycles:,} cycles): {c.skipped}" if c.skipped else
                    f"error: {c.error}" if c.error else f"{c.runtime_cycles:,} cycles" + (
                        f" (parts compiled with {c.l2_kept_free:,} bytes of L2 kept free for the partial sums"
                        + (f"; {c.runtime_cycles / c.lower_bound_cycles - 1:.1%} above its lower bound "
                           f"{c.lower_bound_cycles:,}, so not compiled with all of L2, which could not beat it "
                           "by more" if c.all_l2_skipped else "") + ")" if c.l2_kept_free else ""))
            lines.append(f"  plan {p.kind}: {len(p.parts)} part(s), {cost}")
        if len(self.chosen.parts) > 1:
            for part in self.chosen.parts:
                views = "; ".join(f"{t} = {v}" for t, v in part.views().items())
                lines.append(f"  part {part.op.name}: {part.op.statement} "
                             f"({', '.join(f'{d.name}={d.extent}' for d in part.op.dims)}); {views}")
        return "\n".join(lines)


# Image counts by enumeration stay below this many values per axis (and output bitmap cells);
# beyond it, and for images whose axes share a loop dim, ISL counts.
ENUMERATE_UP_TO = 1 << 24


def _axis_values(index: tuple[AffineIndex, ...], extents: dict[str, int]) -> list[np.ndarray] | None:
    """Per axis, the sorted distinct values of its subscript over the box ``extents``, when no
    loop dim indexes two axes (the image of the box is then their product); else None.  ISL's
    count of such an image (a strided window is an existential) takes tens of milliseconds."""
    dims = [d for ix in index for d in ix.dims]
    if len(dims) != len(set(dims)):
        return None
    out = []
    for ix in index:
        values = np.array([ix.const], np.int64)
        for d, c in ix.terms:
            if values.size * extents[d] > ENUMERATE_UP_TO:
                return None
            values = np.unique(np.add.outer(values, c * np.arange(extents[d], dtype=np.int64)))
        out.append(values)
    return out


def _output_set(op: Op, part) -> isl.Set:
    """The original output elements a part writes."""
    image = coverage_map(part).range()

    def expr(ix: AffineIndex) -> str:
        return " + ".join([f"{c}*o_{d}" for d, c in ix.terms] + [str(ix.const)])
    subs = ", ".join(expr(ix) for ix in op.output.index)
    access = isl.Map(f"{{ [{', '.join('o_' + d for d in op.dim_names)}] -> [{subs}] }}")
    return image.apply(access)


def partial_sum_rereads(op: Op, plan: Plan) -> list[tuple[int, int]]:
    """Per part: output elements it adds to after an earlier part wrote them, and how many
    output elements it writes."""
    counted = _rereads_by_bitmap(op, plan)
    return _rereads_by_isl(op, plan) if counted is None else counted


def _rereads_by_isl(op: Op, plan: Plan) -> list[tuple[int, int]]:
    seen, out = None, []
    for part in plan.parts:
        written = _output_set(op, part)
        again = 0 if seen is None else int(written.intersect(seen).count_val().to_python())
        out.append((again, int(written.count_val().to_python())))
        seen = written if seen is None else seen.union(written)
    return out


def _rereads_by_bitmap(op: Op, plan: Plan) -> list[tuple[int, int]] | None:
    """:func:`partial_sum_rereads` on a bitmap of the output, each part's writes the product of
    its per-axis images (:func:`_axis_values`); None where that does not apply."""
    whole = _axis_values(op.output.index, {d.name: d.extent for d in op.dims})
    if whole is None or math.prod(v[-1] - v[0] + 1 for v in whole) > ENUMERATE_UP_TO:
        return None
    seen = np.zeros([int(v[-1] - v[0] + 1) for v in whole], bool)
    out = []
    for part in plan.parts:
        index = part.original_index(op.output)
        axes = None if index is None else _axis_values(index, {d.name: d.extent for d in part.op.dims})
        if axes is None:
            return None
        written = np.zeros_like(seen)
        written[np.ix_(*[a - v[0] for a, v in zip(axes, whole)])] = True
        out.append((int(np.count_nonzero(written & seen)), math.prod(a.size for a in axes)))
        seen |= written
    return out


def touched_elements(op: Op) -> list[int]:
    """Per tensor, the elements the op touches (its compulsory DRAM traffic): the product of the
    per-axis images where no loop dim indexes two axes, else counted by ISL."""
    extents = {d.name: d.extent for d in op.dims}
    return [math.prod(a.size for a in axes) if (axes := _axis_values(t.index, extents)) is not None
            else int(op.domain.apply(t.access).count_val().to_python()) for t in op.tensors]


def lower_bound(op: Op, plan: Plan, rereads: list[tuple[int, int]], target) -> int:
    """Cycles no compilation of ``plan`` can beat under MAESTRO's model: per part, its MACs on
    every PE, or its compulsory input+weight (or output) traffic at twice the off-chip bandwidth
    (MAESTRO halves the per-step DRAM time; 0.9 for its per-step rounding), plus the partial-sum
    re-reads of parts whose output cannot stay in L2 even beside empty tiles."""
    pes = target.num_pes * target.num_chiplets * target.macs_per_pe
    bw = target.offchip_bw
    total, seen = 0, {}
    for part in plan.parts:
        key = (part.op.statement, tuple((d.name, d.extent) for d in part.op.dims))
        if key not in seen:
            out, *reads = touched_elements(part.op)
            seen[key] = max(math.ceil(part.op.macs / pes), int(0.9 * max(sum(reads), out) / (2 * bw)))
        total += seen[key]
    l2 = hw_from_target(target, op.output.element_bytes).l2_size
    return total + math.ceil(sum(r for r, written in rereads if written > l2) / bw)


def plan_rereads(op: Op, plan: Plan) -> list[tuple[int, int]]:
    """:func:`partial_sum_rereads`, or none for a single part."""
    return partial_sum_rereads(op, plan) if len(plan.parts) > 1 else [(0, 0)]


def plan_cost(op: Op, compiled: list, rereads: list[tuple[int, int]], bound: int, ctx) -> PlanCost:
    """The cost of a plan given each part's compiled context (or the error it raised) and its
    partial-sum re-reads.  A part's partial sums stay in L2 when the output elements it writes
    and the largest part's L2 tiles fit L2 together (the previous part left them there);
    otherwise it reads them back."""
    failed = next((c for c in compiled if isinstance(c, MapcError)), None)
    if failed is not None:
        return PlanCost(error=failed, lower_bound_cycles=bound)
    metrics = [c.lowered.metrics for c in compiled]
    target = ctx.target
    room = hw_from_target(target, op.output.element_bytes).l2_size - max(m["l2_elements"] for m in metrics)
    reread = sum(r for r, _ in rereads)
    extra = sum(r for r, written in rereads if written > room)
    cycles = math.ceil(extra / target.offchip_bw)
    return PlanCost(
        runtime_cycles=sum(m["runtime_cycles"] for m in metrics) + cycles, partial_sum_cycles=cycles,
        energy_mac_units=sum(m["energy_mac_units"] for m in metrics) + extra * target.energy.l2_access,
        dram_traffic_elements=sum(m["dram_traffic_elements"] for m in metrics) + extra,
        partial_sum_rereads=reread, partial_sums_in_l2=extra == 0, lower_bound_cycles=bound)


def combine(ctx, plan: Plan, compiled: list, cost: PlanCost) -> tuple[str, str, dict, int]:
    """One ``.m`` with every part's layers in plan order, re-parsed, checked and evaluated;
    returns its text, the HW text, the metrics of the whole and the number of layers."""
    op, target = ctx.op, ctx.target
    layers: list[MdcLayer] = []
    owner: list[int] = []
    for i, (part, sub) in enumerate(zip(plan.parts, compiled)):
        own = parse_mdc(sub.lowered.mapping_text, f"{part.op.name}.m").layers
        for j, layer in enumerate(own):
            name = part.op.name if len(own) == 1 else f"{part.op.name}_{j}"
            layers.append(MdcLayer(name, layer.type, layer.dims, layer.directives, layer.stride))
            owner.append(i)
    text = print_mdc(MdcFile(constants=(), network=op.name, layers=tuple(layers)))
    hw_text = print_hw(chiplet_hw(target, op.output.element_bytes))   # (parts may have had less L2)
    parsed, hw = parse_mdc(text, f"{op.name}.m"), parse_hw(hw_text, f"{target.name}.hw.m")
    violations = check_file(parsed, hw)
    if not is_clean(violations):  # every part passed the checker on its own: this is a bug
        raise RuntimeError("refusing to write a mapping the checker rejects: " + "; ".join(map(str, violations)))
    per_layer = evaluate_file(parsed, hw)
    metrics = [c.lowered.metrics for c in compiled]
    macs = sum(metrics[i]["chiplets_used"] * m.macs for i, m in zip(owner, per_layer))
    if macs != op.macs:  # the ISL proof passed, so MAESTRO's count of a part is off: a bug
        raise RuntimeError(f"the parts of {op.name} evaluate to {macs:,} MACs, the op has {op.macs:,}")
    if sum(m.runtime_cycles for m in per_layer) != sum(m["runtime_cycles"] for m in metrics):
        raise RuntimeError(f"the layers of {op.name} do not run as long as its parts did alone")
    total = cost.runtime_cycles
    out = {
        "runtime_cycles": total,
        "energy_mac_units": round(cost.energy_mac_units, 2),
        "l1_elements": max(m["l1_elements"] for m in metrics),
        "l2_elements": max(m["l2_elements"] for m in metrics),
        "dram_traffic_elements": cost.dram_traffic_elements,
        "noc_bw_required": max(m["noc_bw_required"] for m in metrics),
        "offchip_bw_required": max(m["offchip_bw_required"] for m in metrics),
        "utilization": round(macs / (total * hw.num_pes * target.num_chiplets * target.macs_per_pe), 6),
        "macs": macs,
        "chiplets_used": max(m["chiplets_used"] for m in metrics),
        "parts": len(plan.parts),
        "partial_sum_cycles": cost.partial_sum_cycles,
    }
    return text, hw_text, out, len(layers)

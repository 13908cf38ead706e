"""Pass ``gemm-schedule``: tile the GEMM for a systolic array and emit ``<op>.schedule.yaml``.

Reads:    ``ctx.op`` (the GEMM form left by ``gemm-lowering``), ``ctx.offchip`` when the off-chip
          pass ran (L2 tile per dim, DRAM loop order, chiplet split), the target (array shape,
          systolic dataflow, L1/L2 capacity, NoC and off-chip bandwidth, chiplets).
Decides:  the array tiling: how many rows/columns each array tile uses, how long the stream is,
          and the order of the L2-level loops; without an off-chip plan it also picks the L2 tile,
          DRAM loop order and chiplet split itself.  Every candidate is scored by
          :mod:`compiler.gemm.model`; the search is exhaustive over its candidate set within the
          time limit (status OPTIMAL-IN-SPACE, or FEASIBLE when the limit cut it short).
Leaves:   ``ctx.lowered`` = a :class:`GemmResult` (schedule, metrics, lowering record),
          ``<op>.schedule.yaml`` in ``ctx.artifacts``, stage LOWERED.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

from compiler.context import Context, Stage
from compiler.errors import InfeasibleError, MapcError
from compiler.gemm.model import GemmMetrics, evaluate, metrics_report
from compiler.ir import OpMapping, build_mapping
from compiler.gemm.schedule import BUFFER_LEVELS, Axis, Buffer, Kind, Level, Loop, Operand, Schedule
from passes.gemm_lowering import GemmLowering
from targets import Target

# dataflow -> (dim across PE rows, dim across PE columns, dim streamed through the array)
DATAFLOWS = {"weight_stationary": ("k", "n", "m"),
             "output_stationary": ("m", "n", "k"),
             "input_stationary": ("k", "m", "n")}
GEMM_ROLES = {"A": ("b", "m", "k"), "B": ("b", "k", "n"), "C": ("b", "m", "n")}


@dataclass(frozen=True)
class L2Plan:
    """The off-chip part of a schedule: chiplet split, L2 tile per dim, DRAM loop order."""

    chiplet: tuple[tuple[str, int, Axis], ...]   # (dim, step, mesh axis), outermost first
    tile: tuple[tuple[str, int], ...]            # dim -> L2 tile
    order: tuple[str, ...]                       # DRAM loop order, outermost first
    source: str                                  # "offchip pass" or "gemm-schedule"


@dataclass(frozen=True)
class GemmResult:
    """What the GEMM backend produced: the schedule, the model's numbers and the lowering."""

    schedule: Schedule
    metrics: GemmMetrics
    lowering: GemmLowering | None
    plan_source: str
    target: Target
    offchip_metrics: GemmMetrics | None = None     # the off-chip plan with a default array tiling

    def pretty(self) -> str:
        m = self.metrics
        return (self.schedule.loop_nest() +
                f"// runtime {m.runtime_cycles:,} cycles (compute {m.compute_cycles:,}, DRAM {m.dram_cycles:,}), "
                f"utilization {m.utilization:.3f}, roofline {m.roofline:,} cycles; "
                f"DRAM traffic {m.total('dram_to_l2'):,} elements; L2 plan from {self.plan_source}")

    def explain(self) -> str:
        m = self.metrics
        s = self.schedule
        lines = [f"{s.dataflow.replace('_', '-')} on {s.array[0]}x{s.array[1]} PEs"
                 + (f" x {s.chiplets} chiplets" if s.chiplets > 1 else "")
                 + f"; L2 tiles from {self.plan_source}",
                 f"runtime {m.runtime_cycles:,} cycles = {m.runtime_cycles / max(m.roofline, 1):.2f}x the roofline "
                 f"({m.roofline:,}); utilization {m.utilization:.1%}"]
        if self.lowering is not None:
            lines.insert(0, self.lowering.pretty())
        return "\n".join(lines)

    def report(self) -> dict:
        s, m = self.schedule, self.metrics
        out = metrics_report(m, self.target)
        out["gemm"] = {"dataflow": s.dataflow, "dims": dict(s.dims), "traffic": m.traffic,
                       "schedule": f"{s.op}.schedule.yaml", "l2_plan_from": self.plan_source,
                       "compute_cycles": m.compute_cycles, "dram_cycles": m.dram_cycles}
        if self.offchip_metrics is not None:
            ref = self.offchip_metrics
            out["gemm"]["offchip_plan"] = {"runtime_cycles": ref.runtime_cycles,
                                           "dram_traffic_elements": ref.total("dram_to_l2")}
        if self.lowering is not None:
            out.update(self.lowering.report())
        return out


def _pow2_steps(base: int, extent: int) -> list[int]:
    """``base * 2**i`` below ``extent``, plus ``extent`` itself."""
    out, step = [], base
    while step < extent:
        out.append(step)
        step *= 2
    return out + [extent]


def gemm_operands(op, lowering: GemmLowering | None) -> tuple[Operand, ...]:
    """A, B and C: the op tensor playing each role and the GEMM dims indexing it."""
    ext = {d.name for d in op.dims}
    names = dict(zip("ABC", lowering.tensors)) if lowering else {"A": op.reads[0].name, "B": op.reads[1].name,
                                                                  "C": op.output.name}
    return tuple(Operand(r, names[r], tuple(d for d in GEMM_ROLES[r] if d in ext)) for r in "ABC")


def gemm_mapping(op, target: Target, dataflow: str, plan: L2Plan, rows: int, cols: int, stream: int,
                 l2_order: tuple[str, ...], operands: tuple[Operand, ...]) -> OpMapping:
    """The typed mapping of one candidate: chiplet split, DRAM loops over L2 tiles, L2 loops over
    array tiles (L2 keeps A, B and C), the array's rows and columns (the PEs keep the stationary
    operand, the one indexed by both), the operand streamed through each PE."""
    r_dim, c_dim, s_dim = DATAFLOWS[dataflow]
    tile = dict(plan.tile)
    inner = {"b": 1, r_dim: rows, c_dim: cols, s_dim: stream}
    tensors = tuple(o.tensor for o in operands)
    stationary = next(o.tensor for o in operands if r_dim in o.dims and c_dim in o.dims)
    levels = [("chiplet", target.num_chiplets, [(d, step, True, axis.value) for d, step, axis in plan.chiplet])
              ] if plan.chiplet else []
    levels += [("dram", 1, [(d, tile[d], False, "") for d in plan.order], tensors),
               ("l2", 1, [(d, inner[d], False, "") for d in l2_order if inner[d] < tile[d]], tensors),
               ("array", target.pe_rows * target.pe_cols, [(r_dim, 1, True, "rows"), (c_dim, 1, True, "cols")],
                (stationary,)),
               ("pe", 1, [(s_dim, 1, False, "")])]
    return build_mapping(op.name, {d.name: d.extent for d in op.dims}, levels)


def schedule_loops(mapping: OpMapping) -> tuple[Loop, ...]:
    """The schedule file's loops: the typed mapping's, level by level (the lowering of it)."""
    return tuple(Loop(lp.dim, lp.tile, Kind.SPATIAL if lp.spatial else Kind.TEMPORAL, Level(lv.name),
                      Axis(lp.axis) if lp.axis else None) for lv in mapping.levels for lp in lv.loops)


def schedule_buffers(mapping: OpMapping, operands: tuple[Operand, ...]) -> tuple[Buffer, ...]:
    """The schedule file's buffers: what the typed mapping's L2 and array levels keep, each the
    tile its level walks within, double-buffered."""
    role = {o.tensor: o for o in operands}
    return tuple(Buffer(Level(level), role[t].role, math.prod(tile[d] for d in role[t].dims), True)
                 for level, t, tile in mapping.buffers() if Level(level) in BUFFER_LEVELS)


def build_schedule(op, target: Target, dataflow: str, plan: L2Plan, rows: int, cols: int, stream: int,
                   l2_order: tuple[str, ...], lowering: GemmLowering | None) -> Schedule:
    """Assemble the loops and buffers of one candidate (no traffic claims yet): a lowering of its
    typed mapping."""
    operands = gemm_operands(op, lowering)
    mapping = gemm_mapping(op, target, dataflow, plan, rows, cols, stream, l2_order, operands)
    info = (("from", lowering.source_kind),) + tuple((d, " * ".join(s) or "1") for d, s in lowering.dims) + \
        (("input_duplication", f"{lowering.duplication:.4f}"),) if lowering else ()
    return Schedule(op=op.name, target=target.name, dataflow=dataflow, array=(target.pe_rows, target.pe_cols),
                    chiplets=target.num_chiplets, dims=tuple((d.name, d.extent) for d in op.dims),
                    operands=operands, loops=schedule_loops(mapping), buffers=schedule_buffers(mapping, operands),
                    lowering=info)


def with_claims(s: Schedule, m: GemmMetrics) -> Schedule:
    """Attach the model's traffic and headline numbers to the schedule file."""
    traffic = tuple((bd, tuple(m.traffic[bd].items())) for bd in ("dram_to_l2", "l2_to_array"))
    metrics = (("runtime_cycles", m.runtime_cycles), ("compute_cycles", m.compute_cycles),
               ("dram_cycles", m.dram_cycles), ("utilization", round(m.utilization, 6)),
               ("roofline_cycles", m.roofline))
    return replace(s, traffic=traffic, metrics=metrics)


def _key(m: GemmMetrics, objective: str) -> tuple:
    noc = m.total("l2_to_array")
    if objective == "energy":
        return (m.energy, m.runtime_cycles, noc)
    if objective == "edp":
        return (m.energy * m.runtime_cycles, m.runtime_cycles, noc)
    return (m.runtime_cycles, m.total("dram_to_l2"), noc, m.energy)


def _array_candidates(ext: dict[str, int], tile: dict[str, int], target: Target, dataflow: str):
    r_dim, c_dim, s_dim = DATAFLOWS[dataflow]

    def fits(size: int, limit: int) -> list[int]:
        full = min(size, limit)
        balanced = math.ceil(size / math.ceil(size / limit))
        return sorted({full, balanced}, reverse=True)
    streams = sorted({min(tile[s_dim], s) for s in _pow2_steps(max(target.pe_rows, target.pe_cols), tile[s_dim])},
                     reverse=True)
    looped = [d for d in ("b", r_dim, c_dim, s_dim) if d in ext]
    for rows, cols, stream in itertools.product(fits(tile[r_dim], target.pe_rows), fits(tile[c_dim], target.pe_cols),
                                                streams[:3]):
        for order in itertools.permutations(looped):
            if "b" in order and order[0] != "b":
                continue          # one GEMM of the batch at a time: b outermost among the L2 loops
            yield rows, cols, stream, order


def _own_plans(ext: dict[str, int], target: Target, dataflow: str, elem: dict[str, int]):
    """L2 tiles (powers of two times the array side, or the whole dim) that fit L2 double-buffered,
    each with every DRAM loop order, and every way of splitting m/n over the chiplets."""
    r_dim, c_dim, s_dim = DATAFLOWS[dataflow]
    base = {r_dim: target.pe_rows, c_dim: target.pe_cols, s_dim: max(target.pe_rows, target.pe_cols), "b": 1}
    splits: list[tuple[tuple[str, int, Axis], ...]] = [()]
    if target.chiplets:
        n = target.num_chiplets
        rows_, cols_ = target.chiplets.mesh
        splits = [((d, math.ceil(ext[d] / n), Axis.COLS),) for d in ("n", "m") if ext[d] > 1]
        if ext["m"] > 1 and ext["n"] > 1 and rows_ > 1 and cols_ > 1:
            splits.append((("m", math.ceil(ext["m"] / rows_), Axis.ROWS), ("n", math.ceil(ext["n"] / cols_), Axis.COLS)))
        splits = splits or [()]
    for split in splits:
        share = dict(ext)
        for d, step, _ in split:
            share[d] = step
        options = {d: ([1, share[d]] if d == "b" else _pow2_steps(base[d], share[d])) for d in ext}
        for sizes in itertools.product(*(sorted(set(options[d])) for d in ext)):
            tile = dict(zip(ext, sizes))
            need = 2 * sum(math.prod(tile[d] for d in dims if d in ext) * elem[r] for r, dims in GEMM_ROLES.items())
            if need > target.l2_bytes:
                continue
            walked = [d for d in ext if tile[d] < share[d]]
            fixed = [d for d in ext if tile[d] >= share[d]]
            for order in itertools.permutations(walked):
                yield L2Plan(split, tuple(tile.items()), tuple(fixed) + order, "gemm-schedule")


def _offchip_plan(ctx: Context) -> tuple[L2Plan | None, str]:
    """The off-chip pass's decision as an :class:`L2Plan`, or None and the reason it is not used."""
    off = ctx.offchip
    if off is None:
        return None, "no off-chip pass ran"
    ext = {d.name: d.extent for d in ctx.op.dims}
    if set(off.l2_tile) != set(ext):
        return None, "the off-chip plan is not in the GEMM's dims"
    reduction = [d for d in ext if d not in ctx.op.output.dims]
    if any(d in reduction for d, _ in off.chiplet_split):
        return None, "the off-chip plan splits the reduction across chiplets, which the GEMM model does not cover"
    axes = (Axis.ROWS, Axis.COLS) if len(off.chiplet_split) == 2 else (Axis.COLS,)
    split = tuple((d, off.part_extents[d], axis) for (d, _), axis in zip(off.chiplet_split, axes))
    return L2Plan(split, tuple((d, off.l2_tile[d]) for d in ext), tuple(off.order), "offchip pass"), ""


def run(ctx: Context) -> Context:
    """Search the array tiling (and the L2 plan when no off-chip pass ran); emit the schedule."""
    op, target = ctx.op, ctx.target
    dataflow = target.systolic_dataflow or "weight_stationary"
    if target.macs_per_pe != 1:
        raise MapcError(f"the GEMM backend models one MAC per PE per cycle; target '{target.name}' has "
                        f"{target.macs_per_pe}", place="macs_per_pe_per_cycle")
    lowering = ctx.lowered if isinstance(ctx.lowered, GemmLowering) else None
    ext = {d.name: d.extent for d in op.dims}
    elem = {"A": op.reads[0].element_bytes, "B": op.reads[1].element_bytes, "C": op.output.element_bytes}
    start, limit = time.perf_counter(), ctx.options.time_limit_s
    given, why_not = _offchip_plan(ctx)
    # The off-chip plan minimises DRAM traffic alone; the array may prefer smaller L2 tiles that
    # overlap transfers with compute, or tiles that fill the array.  Both compete on the model's
    # runtime, the off-chip plan first (it wins ties).
    plans = ([given] if given else []) + list(_own_plans(ext, target, dataflow, elem))
    if not plans:
        smallest = 2 * sum(elem.values())
        raise InfeasibleError(f"no L2 tile fits: even 1x1x1 tiles of A, B, C need {smallest} B double-buffered, "
                              f"L2 has {target.l2_bytes} B")
    r_dim, c_dim, s_dim = DATAFLOWS[dataflow]
    searched, cut = 0, False
    best: tuple | None = None
    # Stage 1: rank L2 plans with a default array tiling; stage 2: search the array tiling of the best.
    for plan in plans:
        tile = dict(plan.tile)
        rows, cols = min(tile[r_dim], target.pe_rows), min(tile[c_dim], target.pe_cols)
        order = tuple(d for d in ("b", c_dim, r_dim, s_dim) if d in ext)
        cand = build_schedule(op, target, dataflow, plan, rows, cols, tile[s_dim], order, lowering)
        m = evaluate(cand, target)
        searched += 1
        key = _key(m, ctx.options.objective)
        if best is None or key < best[0]:
            best = (key, plan, cand, m, (rows, cols, tile[s_dim], order))
        if time.perf_counter() - start > limit:
            cut = True
            break
    _, plan, sched, metrics, array = best
    for rows, cols, stream, order in _array_candidates(ext, dict(plan.tile), target, dataflow):
        cand = build_schedule(op, target, dataflow, plan, rows, cols, stream, order, lowering)
        m = evaluate(cand, target)
        searched += 1
        key = _key(m, ctx.options.objective)
        if key < best[0]:
            best = (key, plan, cand, m, (rows, cols, stream, order))
            sched, metrics, array = cand, m, best[4]
        if time.perf_counter() - start > limit:
            cut = True
            break
    sched = with_claims(sched, metrics)
    reference = None
    if given is not None:
        reference = evaluate(build_schedule(op, target, dataflow, given, min(dict(given.tile)[r_dim], target.pe_rows),
                                            min(dict(given.tile)[c_dim], target.pe_cols), dict(given.tile)[s_dim],
                                            tuple(d for d in ("b", c_dim, r_dim, s_dim) if d in ext), lowering), target)
    result = GemmResult(sched, metrics, lowering, plan.source if given else f"gemm-schedule ({why_not})",
                        target, reference)
    ctx = ctx.note_search("gemm-schedule", searched, "FEASIBLE" if cut else "OPTIMAL-IN-SPACE")
    return replace(ctx, lowered=result, stage=Stage.LOWERED,
                   mapping=gemm_mapping(op, target, dataflow, plan, *array, gemm_operands(op, lowering)),
                   artifacts=ctx.artifacts + ((f"{op.name}.schedule.yaml", sched.to_yaml()),))

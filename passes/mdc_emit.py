"""Pass ``mdc-emit``: lower the off-chip and on-chip decisions to MAESTRO files and measure them.

Reads:    ``ctx.op``, ``ctx.mdc_form``, ``ctx.mapping`` (the typed mapping the on-chip pass
          completed), ``ctx.offchip`` (chiplet parts, traffic for the report), the target.
Decides:  nothing new; lowers the typed mapping to MDC (:func:`compiler.mdc.lowering.build_file`).
Leaves:   ``ctx.lowered`` (an :class:`MdcOutput` whose metrics come from re-parsing and evaluating
          the exact text that will be written) and two artefacts, ``<op>.m`` and
          ``<target>.hw.m``.  A file the checker rejects is never written: that is an internal
          error, not a user error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.mdc.checker import check_file, is_clean
from compiler.context import Context, Stage
from compiler.mdc.costmodel import evaluate_file
from compiler.mdc.hw import parse_hw, print_hw
from compiler.mdc.parser import parse_mdc
from compiler.mdc.syntax import print_mdc
from compiler.mdc.lowering import MdcView, build_file, chiplet_hw, chiplet_op


@dataclass(frozen=True)
class MdcOutput:
    """The emitted MDC text and the metrics/bounds measured on it."""

    mapping_text: str
    hw_text: str
    metrics: dict
    bounds: dict
    layers: int

    def pretty(self) -> str:
        return self.mapping_text

    def report(self) -> dict:
        return {"metrics": self.metrics, "bounds": self.bounds}


def bounds(ctx: Context, compulsory_elements: int | None = None) -> dict:
    """Compute, DRAM (compulsory traffic over off-chip bandwidth) and roofline cycles; the
    compulsory traffic is the off-chip plan's unless given (a decomposed op has one per part)."""
    op, t = ctx.source_op or ctx.op, ctx.target
    compute = math.ceil(op.macs / (t.num_pes * t.num_chiplets * t.macs_per_pe))
    if compulsory_elements is None:
        compulsory_elements = ctx.offchip.compulsory_elements  # elements each tensor touches
    dram = math.ceil(compulsory_elements / t.offchip_bw)
    return {"compute_cycles": compute, "dram_cycles": dram, "roofline_cycles": max(compute, dram)}


def run(ctx: Context) -> Context:
    """Print, re-parse, check and evaluate the MDC files."""
    op, target = ctx.op, ctx.target
    view = MdcView(chiplet_op(op, ctx.offchip), ctx.mdc_form)
    hw = chiplet_hw(target, op.output.element_bytes)
    mdc = build_file(view, ctx.mapping)
    mapping_text, hw_text = print_mdc(mdc), print_hw(hw)
    parsed, parsed_hw = parse_mdc(mapping_text, f"{op.name}.m"), parse_hw(hw_text, f"{target.name}.hw.m")
    violations = check_file(parsed, parsed_hw)
    if not is_clean(violations):  # the search only keeps fitting candidates: this is a bug
        raise RuntimeError("refusing to write a mapping the checker rejects: " + "; ".join(map(str, violations)))
    per_layer = evaluate_file(parsed, parsed_hw)
    runtime = sum(m.runtime_cycles for m in per_layer)
    # The file holds one chiplet's part; the chiplets run it side by side on equal parts.
    parts = math.prod(f for _, f in ctx.offchip.chiplet_split)
    macs = parts * sum(m.macs for m in per_layer)
    metrics = {
        "runtime_cycles": runtime,
        "energy_mac_units": round(parts * sum(m.energy_mac_units for m in per_layer), 2),
        "l1_elements": max(m.l1_elements for m in per_layer),
        "l2_elements": max(m.l2_elements for m in per_layer),
        "dram_traffic_elements": ctx.offchip.report()["offchip"]["dram_traffic_elements"]["total"],
        "noc_bw_required": max(m.noc_bw_required for m in per_layer),
        "offchip_bw_required": max(m.offchip_bw_required for m in per_layer),
        "utilization": round(macs / (runtime * hw.num_pes * target.num_chiplets * target.macs_per_pe), 6),
        "macs": macs,
        "chiplets_used": parts,
    }
    files = ((f"{op.name}.m", mapping_text), (f"{target.name}.hw.m", hw_text))
    out = MdcOutput(mapping_text, hw_text, metrics, bounds(ctx), len(per_layer))
    return replace(ctx, lowered=out, artifacts=ctx.artifacts + files, stage=Stage.LOWERED)

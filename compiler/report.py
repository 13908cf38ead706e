"""``<op>.report.json``: the stable, documented summary of one compilation."""
from __future__ import annotations

import json
from typing import Any

from .context import Context

REPORT_VERSION = 1


def build_report(ctx: Context) -> dict[str, Any]:
    """The report as a plain dict (keys documented in README.md)."""
    op = ctx.op
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "op": op.name if op else None,
        "target": ctx.target.name,
        "statement": op.statement if op else None,
        "macs": op.macs if op else None,
        "tensors": {t.name: {"role": t.role.value, "extents": list(t.extents), "elements": t.size,
                             "bytes": t.size * t.element_bytes} for t in op.tensors} if op else {},
        "mdc_form": ({"layer_type": ctx.mdc_form.layer_type, "dims": dict(ctx.mdc_form.dim_map),
                      "repeat_dims": list(ctx.mdc_form.repeat_dims)} if ctx.mdc_form else None),
    }
    for key in ("decomposition", "offchip", "onchip", "replan", "lowered", "mapping"):
        part = getattr(ctx, key)
        if part is not None and hasattr(part, "report"):
            report.update(part.report())
    report["passes"] = [{"name": r.name, "seconds": round(r.seconds, 6), "space_size": r.space_size,
                         "solver_status": r.solver_status} for r in ctx.records]
    return report


def without_timings(report: Any) -> Any:
    """``report`` with every ``seconds`` entry (at any depth) set to 0.0, for byte-identical reruns."""
    if isinstance(report, dict):
        return {k: 0.0 if k == "seconds" else without_timings(v) for k, v in report.items()}
    if isinstance(report, list):
        return [without_timings(v) for v in report]
    return report


def dump_report(report: dict) -> str:
    """A report dict as the text of a ``.report.json`` file."""
    return json.dumps(report, indent=2) + "\n"


def report_json(ctx: Context, *, timings: bool = True) -> str:
    """The report as JSON text; ``timings=False`` zeroes wall times for byte-identical output."""
    report = build_report(ctx)
    return dump_report(report if timings else without_timings(report))

"""Pass ``frontend``: read the operator file into the polyhedral IR.

Reads:    ``ctx.op_path`` (or an ``ctx.op`` already parsed from a model file, kept as it is).
Decides:  nothing; parses the statement (or expands the preset) and derives per-tensor facts.
Leaves:   ``ctx.op`` (an :class:`compiler.ir.Op` with the ISL domain and access maps).
"""
from __future__ import annotations

from dataclasses import replace

from compiler.context import Context, Stage
from compiler.frontend import load_op


def run(ctx: Context) -> Context:
    """Parse ``ctx.op_path`` unless the op came parsed (a model layer)."""
    return replace(ctx, op=ctx.op or load_op(ctx.op_path), stage=Stage.PARSED)

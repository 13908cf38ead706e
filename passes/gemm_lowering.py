"""Pass ``gemm-lowering``: rewrite the operator as a (batched) GEMM for the tiled-GEMM backend.

Reads:    ``ctx.op`` and ``ctx.mdc_form`` (the MDC roles conformance gave its dims).
Decides:  which op dims make up each GEMM dim: GEMM-like ops map directly (extra dims that index
          all three tensors, such as attention heads, become the batch ``b``); convolutions lower
          by im2col, ``m = n*p*q``, ``k = c*r*s``, ``n = k_out``, grouped ones batched over
          groups; depthwise convolutions become a batch of ``(p*q) x (r*s) . (r*s) x 1`` GEMMs.
Leaves:   ``ctx.op`` = the GEMM op ``C[b,m,n] += A[b,m,k] * B[b,k,n]`` (tensor names kept, its
          input the im2col matrix, so every later pass sees the duplicated input),
          ``ctx.source_op`` = the op as written, ``ctx.mdc_form`` = the GEMM form,
          ``ctx.lowered`` = a :class:`GemmLowering` recording the mapping and the duplication.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.context import Context, MdcForm, Stage
from compiler.errors import ConformanceError, InputError
from compiler.frontend import build_op
from compiler.ir import Op
from passes.conformance import classify

GEMM_DIMS = ("b", "m", "n", "k")

# MDC role -> GEMM dim, per MDC layer type (repeat dims of a GEMM form always go to b).
ROLE_TO_GEMM = {
    "GEMM": {"M": "m", "N": "n", "K": "k"},
    "CONV": {"N": "m", "Y": "m", "X": "m", "C": "k", "R": "k", "S": "k", "K": "n"},
    "NGCONV": {"G": "b", "N": "m", "Y": "m", "X": "m", "C": "k", "R": "k", "S": "k", "K": "n"},
    "DSCONV": {"C": "b", "N": "m", "Y": "m", "X": "m", "R": "k", "S": "k"},
}


@dataclass(frozen=True)
class GemmLowering:
    """How the source op's dims fold into GEMM dims, and what im2col duplicates."""

    source_kind: str                              # MDC layer type of the source op
    dims: tuple[tuple[str, tuple[str, ...]], ...]  # GEMM dim -> source dims (outer to inner)
    extents: tuple[tuple[str, int], ...]
    input_elements: int                           # the source input tensor (padded window)
    lowered_input_elements: int                   # the GEMM's A matrix
    tensors: tuple[str, str, str]                 # A, B, C tensor names

    @property
    def duplication(self) -> float:
        """Elements of the im2col matrix per element of the source input (1.0: none)."""
        return self.lowered_input_elements / self.input_elements

    def pretty(self) -> str:
        ext = dict(self.extents)
        pre = "b," if "b" in ext else ""
        lines = [f"gemm lowering from {self.source_kind}: C[{pre}m,n] += A[{pre}m,k] * B[{pre}k,n]  "
                 f"(A = {self.tensors[0]}, B = {self.tensors[1]}, C = {self.tensors[2]})"]
        for d, src in self.dims:
            lines.append(f"  {d} <- {' * '.join(src) if src else '(none)'} = {ext[d]}")
        lines.append(f"  input duplication: {self.input_elements:,} -> {self.lowered_input_elements:,} "
                     f"elements ({self.duplication:.3f}x)")
        return "\n".join(lines)

    def report(self) -> dict:
        return {"gemm_lowering": {"from": self.source_kind, "dims": {d: list(s) for d, s in self.dims},
                                  "extents": dict(self.extents),
                                  "input_duplication": round(self.duplication, 6)}}


def gemm_dims_of(op: Op, form: MdcForm) -> dict[str, list[str]]:
    """GEMM dim -> the op dims it folds, in the order they index the input (im2col column order)."""
    table = ROLE_TO_GEMM.get(form.layer_type)
    if table is None:
        raise ConformanceError(f"no GEMM lowering for MDC layer type {form.layer_type}", place="statement")
    groups: dict[str, list[str]] = {d: [] for d in GEMM_DIMS}
    for role, dim in form.dim_map:
        groups[table[role]].append(dim)
    groups["b"] = list(form.repeat_dims) + groups["b"]
    order = op.dim_names
    return {g: sorted(ds, key=order.index) for g, ds in groups.items()}


def lower(op: Op, form: MdcForm) -> tuple[Op, GemmLowering]:
    """Build the GEMM op for ``op`` and the record of how it was lowered."""
    groups = gemm_dims_of(op, form)
    ext = {g: math.prod(op.extent(d) for d in ds) for g, ds in groups.items()}
    batched = bool(groups["b"])
    names = [g for g in GEMM_DIMS if g != "b" or batched]
    a, w, o = form.input, form.weight, form.output
    pre = "b," if batched else ""
    statement = f"{o}[{pre}m,n] += {a}[{pre}m,k] * {w}[{pre}k,n]"
    try:
        lowered = build_op(op.name, statement, {g: ext[g] for g in names}, op.dtype,
                           kind="bmm" if batched else "gemm")
    except InputError as e:   # the GEMM's dims are products of the op's: say which
        how = ", ".join(f"{g} = {'*'.join(groups[g])}" for g in names)
        raise InputError(f"the GEMM form ({how}) is out of range: {e.msg}", place="dims") from None
    sizes = {t.name: t.element_bytes for t in op.tensors}
    lowered = replace(lowered, tensors=tuple(replace(t, element_bytes=sizes[t.name]) for t in lowered.tensors))
    record = GemmLowering(
        source_kind=form.layer_type,
        dims=tuple((g, tuple(groups[g])) for g in names),
        extents=tuple((g, ext[g]) for g in names),
        input_elements=op.tensor(a).size, lowered_input_elements=lowered.tensor(a).size,
        tensors=(a, w, o))
    return lowered, record


def run(ctx: Context) -> Context:
    """Replace ``ctx.op`` by its GEMM form, keeping the original in ``ctx.source_op``."""
    lowered, record = lower(ctx.op, ctx.mdc_form)
    return replace(ctx, op=lowered, source_op=ctx.source_op or ctx.op, mdc_form=classify(lowered),
                   lowered=record, stage=Stage.CONFORMING)

"""Pass ``conformance``: is the operator expressible in MDC, and as which layer type?

Reads:    ``ctx.op``.
Decides:  whether every subscript is a loop variable or a sliding window ``stride*p + dilation*r``
          of one output dim and one filter dim (DESIGN 1.2), and which MDC dim each loop dim
          plays (CONV, DSCONV or GEMM, possibly repeated over group/batch/head dims).
Leaves:   ``ctx.mdc_form``; or raises :class:`ConformanceError` naming the tensor and subscript.

The rules are small ``check_*`` functions run in order; each raises on the first offence.
"""
from __future__ import annotations

from dataclasses import replace

from compiler.context import Context, MdcForm, Stage
from compiler.errors import ConformanceError
from compiler.ir import Op


def _fail(op: Op, tensor: str, sub: object, why: str) -> ConformanceError:
    return ConformanceError(f"tensor {tensor}, index '{sub}': {why}", place="statement")


def check_operands(op: Op) -> None:
    """MDC layers multiply an input by a weight into an output: exactly two read tensors."""
    if len(op.reads) != 2:
        raise ConformanceError(f"MDC needs exactly two operands (input * weight), statement has "
                               f"{len(op.reads)}: {op.statement}", place="statement")


def check_assignment(op: Op) -> None:
    """A plain ``=`` cannot drop dims: every dim must index the output."""
    if not op.reduce and op.reduction_dims:
        raise ConformanceError(f"'=' with dims that do not index {op.output.name} "
                               f"({', '.join(op.reduction_dims)}); write '+=' for a reduction",
                               place="statement")


def check_repeated_dims(op: Op) -> None:
    """A dim may index only one axis of a tensor (``A[i,i]`` is a diagonal, not a tile)."""
    for t in op.tensors:
        seen: set[str] = set()
        for sub in t.index:
            for d in sub.dims:
                if d in seen:
                    raise _fail(op, t.name, sub, f"dim '{d}' indexes two axes of {t.name}")
            seen.update(sub.dims)


def check_subscripts(op: Op) -> None:
    """Each subscript is a dim, or a sliding window on the input; nothing else."""
    out_dims = set(op.output.dims)
    input_, weight = op.reads
    for t in op.tensors:
        for sub in t.index:
            if not sub.terms:
                raise _fail(op, t.name, sub, "a constant subscript indexes no loop")
            if sub.const:
                raise _fail(op, t.name, sub, "constant offsets are not expressible in MDC (pad the input instead)")
            if any(c < 0 for _, c in sub.terms):
                raise _fail(op, t.name, sub, "negative coefficients are not expressible in MDC")
            if len(sub.terms) > 2:
                raise _fail(op, t.name, sub, "more than two loop dims in one subscript")
            if len(sub.terms) == 1 and sub.terms[0][1] == 1:
                continue
            if t is not input_:
                raise _fail(op, t.name, sub, f"only the input ({input_.name}) may have a strided "
                                             "or sliding-window subscript")
            window = next((w for w in t.windows if t.index[w.axis] is sub), None)
            if window is None:
                if len(sub.terms) == 1:
                    raise _fail(op, t.name, sub, "a strided subscript must use an output dim")
                kinds = ["output" if d in out_dims else "reduction" for d in sub.dims]
                raise _fail(op, t.name, sub, f"a window needs one output dim and one filter dim, "
                                             f"got {' and '.join(kinds)} dims")
            if window.filter_dim is not None and window.filter_dim not in weight.dims:
                raise _fail(op, t.name, sub, f"filter dim '{window.filter_dim}' must index the weight "
                                             f"{weight.name}")


def check_dim_uses(op: Op) -> None:
    """Every dim is shared by two tensors (a dim of one tensor alone is a broadcast or a sum)."""
    for d in op.dim_names:
        users = [t.name for t in op.tensors if d in t.dims]
        if len(users) < 2:
            raise ConformanceError(f"dim '{d}' indexes only tensor {users[0]}: a "
                                   f"{'broadcast' if d in op.output.dims else 'one-sided sum'} "
                                   "is not expressible in MDC", place=f"dims.{d}")


CHECKS = (check_operands, check_assignment, check_repeated_dims, check_subscripts, check_dim_uses)


def classify(op: Op) -> MdcForm:
    """Assign MDC roles to the op's dims (after the checks have passed)."""
    out, (inp, wgt) = op.output, op.reads
    windows = sorted(inp.windows, key=lambda w: w.axis)
    win_out = [w.out_dim for w in windows]
    win_filter = {w.filter_dim for w in windows if w.filter_dim}
    sig = {d: (d in out.dims, d in inp.dims, d in wgt.dims) for d in op.dim_names}
    group = [d for d, s in sig.items() if s == (True, True, True)]
    plain_out = [d for d, s in sig.items() if s == (True, True, False) and d not in win_out]
    kdims = [d for d, s in sig.items() if s == (True, False, True)]
    cdims = [d for d, s in sig.items() if s == (False, True, True) and d not in win_filter]

    def one(role: str, dims: list[str]) -> list[tuple[str, str]]:
        if len(dims) > 1:
            raise ConformanceError(f"dims {', '.join(dims)} would all play MDC's {role}; MDC has one "
                                   f"{role} dim (fold them into one)", place="statement")
        return [(role, dims[0])] if dims else []

    conv_like = bool(windows) or len(plain_out) > 1
    if not conv_like:
        roles = one("M", plain_out) + one("N", kdims) + one("K", cdims)
        return MdcForm("GEMM", tuple(roles), tuple(group), inp.name, wgt.name, out.name)
    # Plain output dims beyond the windows become Y/X with R=S=1 (a 1x1 conv written without r, s),
    # taken innermost-first in the input's axis order; one more may be the batch N.
    by_axis = [d for sub in inp.index for d in sub.dims if d in plain_out]
    spatial = [(w.out_dim, w.filter_dim) for w in windows]
    while len(spatial) < 2 and by_axis:
        spatial.insert(len(windows), (by_axis.pop(), None))
    if len(spatial) > 2:
        raise ConformanceError(f"{len(spatial)} sliding-window axes; MDC has two (Y, X)", place="statement")
    roles = one("N", by_axis)
    for (o, f), (y, r) in zip(spatial, (("Y", "R"), ("X", "S"))):
        roles += [(y, o)] + ([(r, f)] if f else [])
    if group:
        if len(group) > 1:
            raise ConformanceError(f"dims {', '.join(group)} index all three tensors; MDC has one "
                                   "group/channel dim", place="statement")
        if kdims and cdims:
            # Grouped: one CONV per group.  MAESTRO's NGCONV indexes its output by C as well
            # (mdc-format 3.1), so its output buffers and traffic are not a grouped convolution's.
            return MdcForm("CONV", tuple(one("K", kdims) + one("C", cdims) + roles),
                           tuple(group), inp.name, wgt.name, out.name)
        if not kdims and not cdims:
            return MdcForm("DSCONV", tuple(one("C", group) + roles), (), inp.name, wgt.name, out.name)
        raise ConformanceError(f"dim '{group[0]}' indexes all tensors but the op has "
                               f"{'output' if kdims else 'input'} channels only; neither depthwise "
                               "nor grouped", place="statement")
    return MdcForm("CONV", tuple(one("K", kdims) + one("C", cdims) + roles), (), inp.name, wgt.name, out.name)


def run(ctx: Context) -> Context:
    """Run the checks, then classify."""
    for check in CHECKS:
        check(ctx.op)
    return replace(ctx, mdc_form=classify(ctx.op), stage=Stage.CONFORMING)

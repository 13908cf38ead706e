"""Pass ``conformance``: is the operator expressible in MDC, and as which layer type?

Reads:    ``ctx.op``.
Decides:  whether every subscript is a loop variable or a sliding window ``stride*p + dilation*r``
          of one output dim and one filter dim (DESIGN 1.2), and which MDC dim each loop dim
          plays (CONV, DSCONV or GEMM, possibly repeated over group/batch/head dims).
Leaves:   ``ctx.mdc_form`` (None when the op's only problems are ones the MDC backend's
          ``decompose`` pass rewrites: dilation, a scattered output, a third window axis); or
          raises one :class:`ConformanceError` naming every problem, each with tensor and subscript.

The rules are small ``check_*`` functions; each returns its :class:`Problem` list, so an op with
several problems hears of all of them at once.  This pass owns every expressibility rule.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from compiler.context import Context, MdcForm, Stage
from compiler.errors import ConformanceError
from compiler.ir import Op


@dataclass(frozen=True)
class Problem:
    """One reason the op has no single MDC layer.  ``decomposable``: the MDC backend's
    ``decompose`` pass rewrites it into MDC-expressible parts (MDC has no dilation, no scatter
    output and two window axes); the other problems have no MDC form at all."""

    message: str
    place: str = "statement"
    decomposable: bool = False
    kind: str = ""                  # of a decomposable problem: dilation, scatter or windows


def _fail(tensor: str, sub: object, why: str, kind: str = "") -> Problem:
    return Problem(f"tensor {tensor}, index '{sub}': {why}", decomposable=bool(kind), kind=kind)


def check_operands(op: Op) -> list[Problem]:
    """MDC layers multiply an input by a weight into an output: exactly two read tensors."""
    if len(op.reads) != 2:
        return [Problem(f"MDC needs exactly two operands (input * weight), statement has "
                        f"{len(op.reads)}: {op.statement}")]
    return []


def check_assignment(op: Op) -> list[Problem]:
    """A plain ``=`` cannot drop dims: every dim must index the output."""
    if not op.reduce and op.reduction_dims:
        return [Problem(f"'=' with dims that do not index {op.output.name} "
                        f"({', '.join(op.reduction_dims)}); write '+=' for a reduction")]
    return []


def check_repeated_dims(op: Op) -> list[Problem]:
    """A dim may index only one axis of a tensor (``A[i,i]`` is a diagonal, not a tile)."""
    out = []
    for t in op.tensors:
        seen: set[str] = set()
        for sub in t.index:
            out += [_fail(t.name, sub, f"dim '{d}' indexes two axes of {t.name}") for d in sub.dims if d in seen]
            seen.update(sub.dims)
    return out


def scatter_taps(op: Op, sub) -> tuple[str, ...] | None:
    """The filter dims of an output subscript ``stride*h + dilation*r`` (a transposed convolution
    scatters each input row to ``stride*h + dilation*r``): dims that index the weight but not the
    input, beside exactly one dim of the input; None when ``sub`` is not of that form."""
    if len(op.reads) != 2 or sub.const or any(c <= 0 for _, c in sub.terms):
        return None
    inp, wgt = op.reads
    base = [d for d in sub.dims if d in inp.dims]
    taps = tuple(d for d in sub.dims if d not in inp.dims)
    if len(base) != 1 or not all(d in wgt.dims for d in taps):
        return None
    return taps


def check_subscripts(op: Op) -> list[Problem]:
    """Each subscript is a dim, or a sliding window on the input (or a scatter window on the
    output, which the MDC backend splits into its taps); nothing else."""
    if len(op.reads) != 2:
        return []
    out_dims = set(op.output.dims)
    input_, weight = op.reads
    problems = []
    for t in op.tensors:
        for sub in t.index:
            if not sub.terms:
                problems.append(_fail(t.name, sub, "a constant subscript indexes no loop"))
            elif sub.const:
                problems.append(_fail(t.name, sub, "constant offsets are not expressible in MDC (pad the input instead)"))
            elif any(c < 0 for _, c in sub.terms):
                problems.append(_fail(t.name, sub, "negative coefficients are not expressible in MDC"))
            elif len(sub.terms) > 2:
                problems.append(_fail(t.name, sub, "more than two loop dims in one subscript"))
            elif len(sub.terms) == 1 and sub.terms[0][1] == 1:
                continue
            elif t is op.output and scatter_taps(op, sub) is not None:
                problems.append(_fail(t.name, sub, "a scattered output (transposed convolution) has no "
                                                   "MDC form; its taps are separate layers", "scatter"))
            elif t is not input_:
                problems.append(_fail(t.name, sub, f"only the input ({input_.name}) may have a strided "
                                                   "or sliding-window subscript"))
            else:
                problems += _window_problems(op, t, sub, out_dims, weight)
    return problems


def _window_problems(op: Op, t, sub, out_dims: set[str], weight) -> list[Problem]:
    window = next((w for w in t.windows if t.index[w.axis] is sub), None)
    if window is None:
        if len(sub.terms) == 1:
            return [_fail(t.name, sub, "a strided subscript must use an output dim")]
        kinds = ["output" if d in out_dims else "reduction" for d in sub.dims]
        return [_fail(t.name, sub, f"a window needs one output dim and one filter dim, "
                                   f"got {' and '.join(kinds)} dims")]
    if window.filter_dim is not None and window.filter_dim not in weight.dims:
        return [_fail(t.name, sub, f"filter dim '{window.filter_dim}' must index the weight {weight.name}")]
    if window.filter_dim is not None and window.dilation > 1 and op.extent(window.filter_dim) > 1:
        return [_fail(t.name, sub, f"dilation {window.dilation} has no MDC form (MDC has strides but no "
                                   "dilation); its phases are dilation-1 layers", "dilation")]
    return []


def check_windows(op: Op) -> list[Problem]:
    """MDC has two sliding-window axes (Y, X); more are split into layers of two."""
    if len(op.reads) == 2 and len(op.reads[0].windows) > 2:
        return [Problem(f"{len(op.reads[0].windows)} sliding-window axes; MDC has two (Y, X), so the "
                        "taps of the others are separate layers", decomposable=True, kind="windows")]
    return []


def check_dim_uses(op: Op) -> list[Problem]:
    """Every dim is shared by two tensors (a dim of one tensor alone is a broadcast or a sum)."""
    problems = []
    for d in op.dim_names:
        users = [t.name for t in op.tensors if d in t.dims]
        if len(users) < 2:
            problems.append(Problem(f"dim '{d}' indexes only tensor {users[0]}: a "
                                    f"{'broadcast' if d in op.output.dims else 'one-sided sum'} "
                                    "is not expressible in MDC", place=f"dims.{d}"))
    return problems


CHECKS = (check_operands, check_assignment, check_repeated_dims, check_subscripts, check_windows,
          check_dim_uses)


def problems(op: Op) -> list[Problem]:
    """Every problem of the op, from every check (not only the first)."""
    return [p for check in CHECKS for p in check(op)]


def conform(op: Op, decompose: bool = True) -> MdcForm | None:
    """The op's MDC form; None when its only problems are ones the MDC backend decomposes
    (``decompose``); otherwise raise one :class:`ConformanceError` naming every problem."""
    found = problems(op)
    hard = [p for p in found if not (decompose and p.decomposable)]
    if hard:
        raise ConformanceError("; ".join(p.message for p in hard), place=hard[0].place)
    return None if found else classify(op)


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
    if len(spatial) > 2:  # pragma: no cover - check_windows reports these first
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
    """Run every check, then classify.  Problems the MDC backend decomposes leave no form (the
    ``decompose`` pass writes the op as parts); on the GEMM backend dilation is no problem (its
    lowering gathers any window) and the other decomposable problems are errors."""
    gemm = (ctx.options.backend or ctx.target.backends[0]) == "gemm"
    op = ctx.op
    if gemm:
        found = [p for p in problems(op) if p.kind != "dilation"]
        if found:
            raise ConformanceError("; ".join(p.message for p in found), place=found[0].place)
        return replace(ctx, mdc_form=classify(op), stage=Stage.CONFORMING)
    return replace(ctx, mdc_form=conform(op), stage=Stage.CONFORMING)

"""Frontend: an operator file (YAML) -> the polyhedral :class:`~compiler.ir.Op`.

The statement is parsed with ``grammar/op.lark``; index expressions are folded into
:class:`AffineIndex` (a product of two loop variables is rejected here, with its position).  The
iteration domain and one access map per tensor are built as islpy objects, and the facts later
passes need (dims per tensor, sliding windows, tensor extents) are derived from them: extents are
the bounds of the image of the domain under each access map.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import islpy as isl
import lark

from .errors import InputError, MapcError
from .ir import AffineIndex, Dim, Op, Role, Tensor, Window
from .presets import PRESETS
from .outputs import check_name, file_stem
from .schema import DTYPE_BYTES, MAX_INT as MAX_EXTENT, op_schema, validate
from .yamlio import LocDict, check_keys, load_yaml_mapping, read_text

#: Largest MAC count (product of the extents): integers stay exact in float64 and leave int64
#: 2^10 of headroom for the cost models' products of counts (a 65536-cubed GEMM is 2^48).
MAX_MACS = 2 ** 53

OP_KEYS = tuple(op_schema().fields)


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    text = resources.files("grammar").joinpath("op.lark").read_text(encoding="utf-8")
    return lark.Lark(text, parser="lalr", propagate_positions=True)


def _fold(tree: lark.Tree | lark.Token, text: str) -> tuple[dict[str, int], int]:
    """Fold an index expression into ``({dim: coef}, const)`` or raise on a non-affine term.

    Iterative (an explicit stack), so a 5000-term sum folds like a short one."""
    done: dict[int, tuple[dict[str, int], int]] = {}
    stack: list[tuple[lark.Tree, bool]] = [(tree, False)]
    while stack:
        node, expanded = stack.pop()
        if isinstance(node, lark.Token):  # pragma: no cover - the grammar wraps tokens
            raise AssertionError(node)
        kind = node.data
        if kind == "var":
            done[id(node)] = {str(node.children[0]): 1}, 0
        elif kind == "const":
            done[id(node)] = {}, int(node.children[0])
        elif not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children)
        else:
            done[id(node)] = _combine(node, [done.pop(id(c)) for c in node.children], text)
    return done[id(tree)]


def _combine(node: lark.Tree, parts: list[tuple[dict[str, int], int]], text: str) -> tuple[dict[str, int], int]:
    """One step of :func:`_fold`: ``neg``, ``add``, ``sub`` or ``mul`` of folded children."""
    kind = node.data
    if kind == "neg":
        terms, const = parts[0]
        return {d: -c for d, c in terms.items()}, -const
    left, right = parts
    if kind in ("add", "sub"):
        sign = 1 if kind == "add" else -1
        terms = dict(left[0])
        for d, c in right[0].items():
            terms[d] = terms.get(d, 0) + sign * c
        return terms, left[1] + sign * right[1]
    if kind == "mul":
        if left[0] and right[0]:
            expr = text[node.meta.start_pos:node.meta.end_pos]
            raise InputError(f"non-affine index '{expr}': a product of loop variables",
                             place=f"statement column {node.meta.column}")
        scale, (terms, const) = (left[1], right) if not left[0] else (right[1], left)
        return {d: scale * c for d, c in terms.items()}, scale * const
    raise AssertionError(kind)  # pragma: no cover


@lru_cache(maxsize=256)
def parse_statement(text: str) -> tuple[tuple[str, tuple[AffineIndex, ...]], str, tuple[tuple[str, tuple[AffineIndex, ...]], ...]]:
    """Parse ``OUT[...] (+=|=) A[...] * B[...]`` into (written access, operator, read accesses),
    remembered (a model's layers share a few statements).

    Raises :class:`InputError` with the column of the problem."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        got = getattr(e, "token", None) or (text[e.pos_in_stream:e.pos_in_stream + 1] if e.pos_in_stream is not None else "")
        what = f"unexpected '{got}'" if str(got).strip() else "unexpected end of statement"
        raise InputError(f"syntax error in statement: {what}", place=f"statement column {e.column}") from None
    except lark.exceptions.LarkError as e:
        raise InputError(f"syntax error in statement: {e.__class__.__name__}") from None

    def access(node: lark.Tree) -> tuple[str, tuple[AffineIndex, ...]]:
        name, *subs = node.children
        idx = []
        for sub in subs:
            terms, const = _fold(sub, text)
            idx.append(AffineIndex(tuple((d, c) for d, c in terms.items() if c != 0), const))
        return str(name), tuple(idx)

    out_node, assign, product = tree.children
    return access(out_node), str(assign), tuple(access(n) for n in product.children)


def _expand_preset(data: LocDict, file: str) -> tuple[str, dict[str, int], str]:
    kind = data["kind"]    # a known kind, an integer per parameter: the schema checked both
    for clash in ("statement", "dims"):
        if clash in data:
            raise InputError(f"'{clash}' cannot be combined with 'kind' (a preset writes its own)",
                             file=file, place=data.place(clash))
    preset = PRESETS[kind]
    params = data.get("params") or LocDict()
    check_keys(params, preset.params, file, where="params.")
    values: dict[str, int] = {}
    for key, default in preset.params.items():
        if key in params:
            values[key] = params[key]
        elif isinstance(default, int):
            values[key] = default
        elif isinstance(default, str):
            values[key] = params[default] if default in params else None  # resolved below
        else:
            raise InputError(f"preset '{kind}' needs 'params.{key}'", file=file, place=data.place("params"))
    statement = preset.statement.format(stride=values.get("stride", 1), dilation=values.get("dilation", 1))
    dims = {d: values[p] for d, p in preset.dims.items()}
    return statement, dims, kind


def load_op(path: str | Path) -> Op:
    """Read and parse an operator file into an :class:`Op` (errors name file and place)."""
    file = str(path)
    data = load_yaml_mapping(read_text(Path(path), "operator"), file)
    op = op_from_mapping(data, file, default_name=file_stem(Path(path).stem))
    check_name(op.name, file, data.place("name"))  # it names the output files
    return op


def op_from_mapping(data: LocDict, file: str, default_name: str = "op") -> Op:
    """Build an :class:`Op` from an already-loaded op mapping (the keys of :data:`OP_KEYS`).

    ``file`` is only used to attribute errors; ``default_name`` is used when ``name`` is absent."""
    validate(data, op_schema(), file)
    name = data.get("name", default_name)
    if "kind" in data:
        statement, dims, kind = _expand_preset(data, file)
    else:
        check_keys(data, OP_KEYS, file, required=("statement", "dims"))
        statement, dims, kind = data["statement"], dict(data["dims"]), None
    dtype = data.get("dtype", "int8")
    tensor_dtypes = data.get("tensor_dtypes") or {}
    try:
        return build_op(name, statement, dims, dtype, tensor_dtypes, kind)
    except MapcError as e:
        raise e.with_file(file) from None


def build_op(name: str, statement: str, dims: dict[str, int], dtype: str = "int8",
             tensor_dtypes: dict[str, str] | None = None, kind: str | None = None) -> Op:
    """Build the IR from a statement and extents (used by files, presets and model import)."""
    (out_name, out_idx), assign, reads = parse_statement(statement)
    accesses = [(out_name, out_idx, Role.WRITE)] + [(n, i, Role.READ) for n, i in reads]
    names = [a[0] for a in accesses]
    for n in names:
        if names.count(n) > 1:
            raise InputError(f"tensor '{n}' appears twice in the statement", place="statement")
    order: list[str] = []
    for _, idx, _ in accesses:
        for sub in idx:
            order += [d for d in sub.dims if d not in order]
    for d in order:
        if d not in dims:
            raise InputError(f"index variable '{d}' has no extent in 'dims'", place="dims")
    for d, e in dims.items():
        if d not in order:
            raise InputError(f"dim '{d}' indexes no tensor of the statement", place=f"dims.{d}")
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise InputError(f"extent of '{d}' must be a positive integer, got {e!r}", place=f"dims.{d}")
        if e > MAX_EXTENT:
            raise InputError(f"extent of '{d}' is {e:,}; mapc supports extents up to {MAX_EXTENT:,} "
                             "(MAESTRO reads dimensions as 32-bit integers)", place=f"dims.{d}")
    macs = math.prod(dims[d] for d in order)
    if macs > MAX_MACS:
        raise InputError(f"the op has {macs:.3g} MACs; mapc supports up to 2^53 ({MAX_MACS:.3g}) "
                         "so that its cost models count exactly", place="dims")
    for tname, idx, _ in accesses:
        for a, sub in enumerate(idx):
            span = abs(sub.const) + sum(abs(c) * (dims[d] - 1) for d, c in sub.terms) + 1
            if span > MAX_EXTENT:
                raise InputError(f"tensor {tname} index {a} spans {span:,} elements; mapc supports "
                                 f"tensor extents up to {MAX_EXTENT:,}", place="statement")
    tensor_dtypes = tensor_dtypes or {}
    for t in tensor_dtypes:
        if t not in names:
            raise InputError(f"'tensor_dtypes' names unknown tensor '{t}'", place="tensor_dtypes")
        if tensor_dtypes[t] not in DTYPE_BYTES:
            raise InputError(f"unknown dtype '{tensor_dtypes[t]}' for tensor '{t}'", place="tensor_dtypes")

    space = ", ".join(order)
    bounds = " and ".join(f"0 <= {d} < {dims[d]}" for d in order)
    domain = isl.Set(f"{{ [{space}] : {bounds} }}")
    out_dims = {d for sub in out_idx for d in sub.dims}
    tensors = []
    for tname, idx, role in accesses:
        access = isl.Map(f"{{ [{space}] -> {tname}[{', '.join(_isl_expr(s) for s in idx)}] }}")
        image = domain.apply(access)
        extents = tuple(image.dim_max_val(a).to_python() - image.dim_min_val(a).to_python() + 1
                        for a in range(len(idx)))
        used = {d for sub in idx for d in sub.dims}
        tensors.append(Tensor(
            name=tname, role=role, index=idx,
            element_bytes=DTYPE_BYTES[tensor_dtypes.get(tname, dtype)], access=access,
            dims=tuple(d for d in order if d in used),
            windows=tuple(w for a, sub in enumerate(idx) if (w := _window(a, sub, out_dims))),
            extents=extents))
    return Op(name=name, dims=tuple(Dim(d, dims[d]) for d in order), tensors=tuple(tensors),
              reduce=(assign == "+="), domain=domain, dtype=dtype, kind=kind)


def resize(op: Op, dims: dict[str, int]) -> Op:
    """The same statement over other extents (e.g. one chiplet's part), element sizes kept."""
    new = build_op(op.name, op.statement, dims, op.dtype, kind=op.kind)
    sizes = {t.name: t.element_bytes for t in op.tensors}
    return replace(new, tensors=tuple(replace(t, element_bytes=sizes[t.name]) for t in new.tensors))


def _isl_expr(sub: AffineIndex) -> str:
    # ISL's own syntax: "2p - r + 1"; negative terms are written with "-", never "+ -".
    out = " ".join(f"{'-' if c < 0 else '+'} {abs(c)}{d}" for d, c in sub.terms)
    out += f" {'-' if sub.const < 0 else '+'} {abs(sub.const)}"
    return "0 " + out


def _window(axis: int, sub: AffineIndex, out_dims: set[str]) -> Window | None:
    """Recognise ``stride*out + dilation*filter`` (or a strided ``stride*out``) on one axis."""
    if sub.const or any(c <= 0 for _, c in sub.terms):
        return None
    if len(sub.terms) == 1:
        (d, c), = sub.terms
        return Window(axis, d, None, c, 1) if c > 1 and d in out_dims else None
    if len(sub.terms) == 2:
        outs = [(d, c) for d, c in sub.terms if d in out_dims]
        filts = [(d, c) for d, c in sub.terms if d not in out_dims]
        if len(outs) == 1 and len(filts) == 1:
            return Window(axis, outs[0][0], filts[0][0], outs[0][1], filts[0][1])
    return None

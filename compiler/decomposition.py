"""Rewriting an operator as a sum of MDC-expressible parts that accumulate into the same output.

A :class:`Part` is an op of its own (stride-1, dilation-1 windows, at most two window axes, a
gather output) over *views* of the original tensors, plus ``embed``: each original loop dim as an
expression of the part's dims.  The rewrites:

* :func:`phases` -- ``I[s*p + d*r]`` over the residues of ``p`` (mod ``L/s``) and ``r`` (mod
  ``L/d``), ``L = lcm(s, d)``: each part reads ``I[L*y + s*b + d*a]`` with the window ``p + r``;
* :func:`filter_split` -- consecutive tap groups of a filter axis, each reading the input shifted
  by the group's first tap;
* :func:`scatter_taps` -- a scattered output ``O[s*h + d*r]`` (transposed convolution), one part
  per tap, each writing ``O[s*h + d*r0]`` (exact: a phase with two or more taps would be a gather
  over padding, i.e. more MACs);
* :func:`axis_split` -- the taps of one of three window axes (Conv3d), the others stay windows;
* :func:`as_gemm` -- non-overlapping windows (kernel = stride, e.g. a patchify conv) as one GEMM.

:func:`assert_exact` proves with ISL that the parts' iteration domains map one-to-one onto the
original's and that their MAC counts add up to the original's.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import islpy as isl

from .frontend import build_op
from .ir import AffineIndex, Op, Tensor

Index = tuple[AffineIndex, ...]


@dataclass(frozen=True)
class Part:
    """One MDC-expressible part: ``op`` over views of the tensors of ``origin`` (the op as written).

    ``embed`` gives each original dim as an expression of the part's dims: an :class:`AffineIndex`,
    or ISL quasi-affine text (``floor(m/196) mod 14``) for a GEMM's flattened dims."""

    op: Op
    embed: tuple[tuple[str, AffineIndex | str], ...]
    origin: Op

    def original_index(self, tensor: Tensor) -> tuple[AffineIndex, ...] | None:
        """The subscripts of the original op's ``tensor`` in the part's dims (None when the
        embedding is quasi-affine, a GEMM's flattened dims)."""
        full = dict(self.embed)
        if not all(isinstance(e, AffineIndex) for e in full.values()):
            return None
        return tuple(_subst(i, full) for i in tensor.index)

    def views(self) -> dict[str, str]:
        """Per tensor, the original element the part's access reads or writes, in the part's dims."""
        if any(not isinstance(e, AffineIndex) for _, e in self.embed):
            flat = ", ".join(f"{d}={e}" for d, e in self.embed)
            return {t.name: f"{t} with {flat}" for t in self.origin.tensors}
        return {t.name: f"{t.name}[{','.join(str(i) for i in self.original_index(t))}]"
                for t in self.origin.tensors}

    def report(self) -> dict:
        """The part as ``report.json`` lists it."""
        return {"name": self.op.name, "statement": self.op.statement, "macs": self.op.macs,
                "dims": {d.name: d.extent for d in self.op.dims}, "original_elements": self.views()}


@dataclass(frozen=True)
class Plan:
    """One way to write the op: ``kind`` names the rewrite, ``parts`` run one after another."""

    kind: str
    parts: tuple[Part, ...]


def root(op: Op) -> Part:
    """The op itself as its only part (identity embedding)."""
    return Part(op, tuple((d, AffineIndex(((d, 1),))) for d in op.dim_names), op)


def _subst(ix: AffineIndex, sub: dict[str, AffineIndex]) -> AffineIndex:
    """``ix`` with each dim replaced by an affine expression (dims not in ``sub`` kept)."""
    coef: dict[str, int] = {}
    const = ix.const
    for d, c in ix.terms:
        e = sub.get(d, AffineIndex(((d, 1),)))
        const += c * e.const
        for d2, c2 in e.terms:
            coef[d2] = coef.get(d2, 0) + c * c2
    return AffineIndex(tuple((d, c) for d, c in coef.items() if c), const)


def _derive(parent: Part, index: dict[str, Index], dims: dict[str, int],
            sub: dict[str, AffineIndex]) -> Part:
    """A part of ``parent``: tensors re-indexed by ``index`` over extents ``dims``; ``sub`` gives
    parent dims in terms of the new part's dims (a parent dim not in it is the same dim)."""
    op = parent.op
    out, *reads = op.tensors

    def text(t) -> str:
        return f"{t.name}[{','.join(str(i) for i in index[t.name])}]"
    statement = f"{text(out)} {'+=' if op.reduce else '='} {' * '.join(text(t) for t in reads)}"
    new = build_op(op.name, statement, dims, op.dtype)
    sizes = {t.name: t.element_bytes for t in op.tensors}
    new = replace(new, tensors=tuple(replace(t, element_bytes=sizes[t.name]) for t in new.tensors))
    return Part(new, tuple((d, _subst(e, sub)) for d, e in parent.embed), parent.origin)


def _index_of(op: Op) -> dict[str, Index]:
    return {t.name: tuple(t.index) for t in op.tensors}


def _dims_of(op: Op) -> dict[str, int]:
    return {d.name: d.extent for d in op.dims}


def _const(v: int) -> AffineIndex:
    return AffineIndex((), v)


def _affine(d: str, scale: int, offset: int) -> AffineIndex:
    return AffineIndex(((d, scale),), offset)


def phase_windows(op: Op, dilated_only: bool = False):
    """Input windows with filter taps whose stride or dilation is above 1."""
    inp = op.reads[0]
    return [w for w in inp.windows if w.filter_dim and op.extent(w.filter_dim) > 1
            and (w.dilation > 1 or (w.stride > 1 and not dilated_only))]


def phases(part: Part, dilated_only: bool = False) -> list[Part]:
    """Split each strided/dilated window ``s*p + d*r`` over the residues of ``p`` and ``r``."""
    op = part.op
    inp = op.reads[0]
    choices = []
    for w in phase_windows(op, dilated_only):
        lcm = math.lcm(w.stride, w.dilation)
        mp, mr = lcm // w.stride, lcm // w.dilation
        P, R = op.extent(w.out_dim), op.extent(w.filter_dim)
        choices.append([(w, b, a, -(-(P - b) // mp), -(-(R - a) // mr), mp, mr)
                        for b in range(mp) for a in range(mr) if b < P and a < R])
    parts = []
    for combo in itertools.product(*choices):
        index, dims, sub = _index_of(op), _dims_of(op), {}
        new_in = list(index[inp.name])
        for w, b, a, P2, R2, mp, mr in combo:
            new_in[w.axis] = AffineIndex(((w.out_dim, 1), (w.filter_dim, 1)))
            dims[w.out_dim], dims[w.filter_dim] = P2, R2
            sub[w.out_dim], sub[w.filter_dim] = _affine(w.out_dim, mp, b), _affine(w.filter_dim, mr, a)
        index[inp.name] = tuple(new_in)
        parts.append(_derive(part, index, dims, sub))
    return parts


def filter_split(part: Part, groups: dict[str, int]) -> list[Part]:
    """Split filter dims (``groups``: filter dim -> taps per group) into consecutive tap groups;
    each part reads the input shifted by its group's first tap."""
    op = part.op
    ranges = [[(f, r0, min(g, op.extent(f) - r0)) for r0 in range(0, op.extent(f), g)]
              for f, g in groups.items()]
    parts = []
    for combo in itertools.product(*ranges):
        dims = _dims_of(op)
        sub = {}
        for f, r0, n in combo:
            dims[f] = n
            sub[f] = _affine(f, 1, r0)
        parts.append(_derive(part, _index_of(op), dims, sub))
    return parts


def blocks(part: Part, dim: str, size: int) -> list[Part]:
    """``dim`` in consecutive blocks of ``size`` (a dim every tensor it indexes has as a plain
    axis), so that later parts can keep one block's partial sums on chip."""
    op = part.op
    return [_derive(part, _index_of(op), {**_dims_of(op), dim: min(size, op.extent(dim) - b0)},
                    {dim: _affine(dim, 1, b0)}) for b0 in range(0, op.extent(dim), size)]


def _fix(part: Part, fixed: dict[str, int], index: dict[str, Index], dims: dict[str, int],
         sub: dict[str, AffineIndex]) -> Part:
    """A part with the dims in ``fixed`` held at a value: each axis they index alone is dropped."""
    for d, v in fixed.items():
        dims.pop(d)
        sub[d] = _const(v)
        for t, idx in index.items():
            index[t] = tuple(i for i in idx if i.dims != (d,))
            if any(d in i.dims for i in index[t]):  # pragma: no cover - callers fix plain axes only
                raise ValueError(f"dim {d} is not a plain axis of {t}")
    return _derive(part, index, dims, sub)


def scatter_taps(part: Part, taps: tuple[str, ...]) -> list[Part]:
    """One part per value of the output's scatter taps ``taps`` (a transposed convolution): the
    output axis ``s*h + d*r`` becomes ``h`` over the view ``O[s*h + d*r0]``."""
    op = part.op
    parts = []
    for values in itertools.product(*(range(op.extent(t)) for t in taps)):
        index, dims = _index_of(op), _dims_of(op)
        index[op.output.name] = tuple(
            AffineIndex(tuple((d, 1) for d, _ in i.terms if d not in taps)) for i in index[op.output.name])
        parts.append(_fix(part, dict(zip(taps, values)), index, dims, {}))
    return parts


def axis_split(part: Part, axis: int) -> list[Part]:
    """One part per tap of the input window on ``axis``: the axis reads ``p`` of the view
    ``I[s*p + d*t0]``; then every plain output dim but the innermost is held at each of its values
    (MDC has one batch dim beside the two windows)."""
    op = part.op
    inp = op.reads[0]
    w = next(w for w in inp.windows if w.axis == axis)
    parts = []
    for t0 in range(op.extent(w.filter_dim)):
        index, dims = _index_of(op), _dims_of(op)
        new_in = list(index[inp.name])
        new_in[axis] = AffineIndex(((w.out_dim, 1),))      # a view of every stride-th row
        index[inp.name] = tuple(new_in)
        parts.append(_fix(part, {w.filter_dim: t0}, index, dims, {}))
    out = []
    for p in parts:
        wins = {x.out_dim for x in p.op.reads[0].windows if x.filter_dim}
        wgt = p.op.reads[1]
        plain = [i.dims[0] for i in p.op.reads[0].index
                 if len(i.dims) == 1 and i.dims[0] in p.op.output.dims and i.dims[0] not in wins
                 and i.dims[0] not in wgt.dims]
        outer = plain[:-1]
        for values in itertools.product(*(range(p.op.extent(d)) for d in outer)):
            out.append(_fix(p, dict(zip(outer, values)), _index_of(p.op), _dims_of(p.op), {}) if outer else p)
    return out


def as_gemm(op: Op) -> Part | None:
    """Non-overlapping windows (every window's taps = its stride, dilation 1): one exact GEMM
    ``O[gm,gn] += I[gm,gk] * W[gk,gn]`` over flattened dims; None when the op is not of that form."""
    if len(op.reads) != 2:
        return None
    out, (inp, wgt) = op.output, op.reads
    wins = [w for w in inp.windows if w.filter_dim]
    if (not wins or any(w.dilation != 1 or op.extent(w.filter_dim) != w.stride for w in wins)
            or all(w.stride == 1 for w in wins)):      # 1x1 windows: a 1x1 conv, already one layer
        return None
    if any(len(i.terms) != 1 or i.terms[0][1] != 1 for t in (out, wgt) for i in t.index):
        return None
    groups = {"gm": [], "gn": [], "gk": []}
    for d in op.dim_names:
        key = {(True, True, False): "gm", (True, False, True): "gn", (False, True, True): "gk"}.get(
            (d in out.dims, d in inp.dims, d in wgt.dims))
        if key is None:
            return None
        groups[key].append(d)
    if not all(groups.values()):
        return None
    embed = []
    for g, dims in groups.items():
        inner = 1
        for d in reversed(dims):
            e = op.extent(d)
            expr = g if inner == 1 else f"floor({g}/{inner})"
            embed.append((d, expr if d == dims[0] else f"{expr} mod {e}"))
            inner *= e
    extents = {g: math.prod(op.extent(d) for d in dims) for g, dims in groups.items()}
    statement = f"{out.name}[gm,gn] += {inp.name}[gm,gk] * {wgt.name}[gk,gn]"
    new = build_op(op.name, statement, extents, op.dtype)
    sizes = {t.name: t.element_bytes for t in op.tensors}
    new = replace(new, tensors=tuple(replace(t, element_bytes=sizes[t.name]) for t in new.tensors))
    order = {d: i for i, d in enumerate(op.dim_names)}
    return Part(new, tuple(sorted(embed, key=lambda e: order[e[0]])), op)


def _isl(e: AffineIndex | str) -> str:
    if isinstance(e, str):
        return e
    return " + ".join([f"{c}*{d}" for d, c in e.terms] + [str(e.const)])


def coverage_map(part: Part) -> isl.Map:
    """The part's iteration domain mapped into the original's (ISL)."""
    dims = part.op.dim_names
    outs = [f"o_{d}" for d, _ in part.embed]
    cons = [f"o_{d} = {_isl(e)}" for d, e in part.embed]
    cons += [f"0 <= {d} < {part.op.extent(d)}" for d in dims]
    return isl.Map(f"{{ [{', '.join(dims)}] -> [{', '.join(outs)}] : {' and '.join(cons)} }}")


def assert_exact(op: Op, parts: tuple[Part, ...]) -> None:
    """Raise unless the parts cover every point of ``op``'s domain exactly once (each part's
    embedding one-to-one, images disjoint, their union the domain) and their MACs add up."""
    total = sum(p.op.macs for p in parts)
    if total != op.macs:
        raise AssertionError(f"parts of {op.name} hold {total:,} MACs, the op {op.macs:,}")
    box = " and ".join(f"0 <= o_{d.name} < {d.extent}" for d in op.dims)
    domain = isl.Set(f"{{ [{', '.join('o_' + d for d in op.dim_names)}] : {box} }}")
    union = None
    for p in parts:
        m = coverage_map(p)
        if not m.is_injective():
            raise AssertionError(f"part {p.op.name} maps two of its points to one point of {op.name}")
        image = m.range()
        if union is not None and not union.intersect(image).is_empty():
            raise AssertionError(f"part {p.op.name} repeats MACs of an earlier part")
        union = image if union is None else union.union(image)
    if not union.is_equal(domain):
        raise AssertionError(f"the parts of {op.name} do not cover its domain")

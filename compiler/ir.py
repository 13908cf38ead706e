"""The operator IR: loop dims, the iteration domain and one affine access relation per tensor.

An :class:`Op` is what the frontend leaves behind.  The islpy objects (domain, access maps) are
the ground truth; the per-tensor facts (which dims index it, sliding windows, extents) are
derived from them once, in :func:`compiler.frontend.build_op`, and stored so later passes do not
re-derive them.  Everything is frozen: passes build new objects with ``dataclasses.replace``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import islpy as isl


class Role(str, Enum):
    """How the statement uses a tensor."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Dim:
    """A loop dimension of the operator: ``0 <= name < extent``."""

    name: str
    extent: int


@dataclass(frozen=True)
class AffineIndex:
    """One tensor subscript ``sum(coef*dim) + const``, normalised: one term per dim, in order of
    first appearance, zero coefficients dropped."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @cached_property
    def dims(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.terms)

    def coef(self, dim: str) -> int:
        return dict(self.terms).get(dim, 0)

    def __str__(self) -> str:
        out = ""
        for d, c in self.terms:
            mag = "" if abs(c) == 1 else f"{abs(c)}*"
            sign = "-" if c < 0 else ("+" if out else "")
            out += f"{sign}{mag}{d}"
        if self.const or not out:
            out += f"{'-' if self.const < 0 else ('+' if out else '')}{abs(self.const)}"
        return out


@dataclass(frozen=True)
class Window:
    """A sliding-window subscript ``stride*out_dim + dilation*filter_dim`` on one tensor axis.

    ``filter_dim`` is None for a strided subscript with no filter loop (a strided 1x1 conv)."""

    axis: int
    out_dim: str
    filter_dim: str | None
    stride: int
    dilation: int

    def footprint(self, out_tile: int, filter_tile: int) -> int:
        """Input rows touched by ``out_tile`` outputs and ``filter_tile`` filter taps."""
        return (out_tile - 1) * self.stride + (filter_tile - 1) * self.dilation + 1


@dataclass(frozen=True)
class Tensor:
    """A tensor of the statement with its access relation and the facts derived from it."""

    name: str
    role: Role
    index: tuple[AffineIndex, ...]
    element_bytes: int
    access: isl.Map = field(compare=False, repr=False)
    dims: tuple[str, ...] = ()            # loop dims that index it, in loop order
    windows: tuple[Window, ...] = ()
    extents: tuple[int, ...] = ()         # per axis, from the image of the domain

    @property
    def size(self) -> int:
        """Elements in the tensor's bounding box (the padded input for windows)."""
        return math.prod(self.extents)

    def __str__(self) -> str:
        return f"{self.name}[{','.join(str(i) for i in self.index)}]"


def mapping_space_log10(extents: list[int]) -> float:
    """log10 of the full mapping space of a loop nest: a tile (at most the extent) and a loop order
    at each of three levels (DRAM, L2, L1), plus an ordered pair of spatial dims."""
    d = len(extents)
    return (3 * math.log10(math.prod(extents)) + 3 * math.log10(math.factorial(d))
            + math.log10(d * max(d - 1, 1)))


@dataclass(frozen=True)
class Op:
    """One operator: a perfectly nested loop over ``dims`` running ``statement``."""

    name: str
    dims: tuple[Dim, ...]
    tensors: tuple[Tensor, ...]          # the written tensor first, then reads in order
    reduce: bool                          # ``+=`` (True) or ``=``
    domain: isl.Set = field(compare=False, repr=False)
    dtype: str = "int8"
    kind: str | None = None               # the preset it came from, if any

    @property
    def statement(self) -> str:
        out, *reads = self.tensors
        return f"{out} {'+=' if self.reduce else '='} {' * '.join(str(t) for t in reads)}"

    @property
    def output(self) -> Tensor:
        return self.tensors[0]

    @property
    def reads(self) -> tuple[Tensor, ...]:
        return self.tensors[1:]

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def extent(self, dim: str) -> int:
        return next(d.extent for d in self.dims if d.name == dim)

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    @property
    def reduction_dims(self) -> tuple[str, ...]:
        return tuple(d for d in self.dim_names if d not in self.output.dims)

    @property
    def macs(self) -> int:
        return math.prod(d.extent for d in self.dims)

    def pretty(self) -> str:
        """The IR as text: statement, dims, ISL domain, access maps and derived facts."""
        lines = [f"op {self.name}" + (f"  (preset {self.kind})" if self.kind else ""),
                 f"  statement: {self.statement}",
                 "  dims:      " + ", ".join(f"{d.name}={d.extent}" for d in self.dims),
                 f"  reduction: {', '.join(self.reduction_dims) or '-'}",
                 f"  macs:      {self.macs:,}",
                 f"  domain:    {self.domain}"]
        for t in self.tensors:
            lines.append(f"  tensor {t.name} ({t.role.value}, {t.element_bytes} B/element)")
            lines.append(f"    access:  {t.access}")
            lines.append(f"    indexed by: {', '.join(t.dims)}")
            lines.append(f"    extents: {' x '.join(map(str, t.extents))} = {t.size:,} elements")
            for w in t.windows:
                filt = f" + {w.dilation}*{w.filter_dim}" if w.filter_dim else ""
                lines.append(f"    window axis {w.axis}: {w.stride}*{w.out_dim}{filt}"
                             f" (stride {w.stride}, dilation {w.dilation})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class MapLoop:
    """One loop of a mapping: walks the tile of ``dim`` that the enclosing loop of the same dim
    left (the whole extent for the first one) in steps of ``tile``, ``trips`` times, the last
    step clipped.  A ``spatial`` loop runs its trips side by side on the units of its level;
    ``axis`` says which axis of a 2-D spread it takes ("rows"/"cols"; "" otherwise)."""

    dim: str
    tile: int
    trips: int
    spatial: bool = False
    axis: str = ""

    def as_dict(self) -> dict:
        """JSON form (``axis`` only when set)."""
        out = {"dim": self.dim, "tile": self.tile, "trips": self.trips,
               "kind": "spatial" if self.spatial else "temporal"}
        if self.axis:
            out["axis"] = self.axis
        return out


@dataclass(frozen=True)
class MapLevel:
    """One level of the hardware hierarchy, outermost first: its ``loops`` (outermost first: the
    tuple is the loop order), the ``units`` its spatial loops spread over (1 if none) and the
    tensors it ``keeps``: those with a buffer at this level holding the tile its loops walk
    within (the tile the level above left; whole tensors at ``dram``).

    Level names: ``chiplets`` (spread over chiplets), ``dram`` (walks L2 tiles; each step is a
    DRAM -> L2 transfer), ``l2`` (walks array tiles inside an L2 tile), ``array`` or
    ``array<i>`` (spread over PEs or groups of PEs, cluster level i), ``pe`` (one PE's temporal
    loops over its L1 tile)."""

    name: str
    units: int
    loops: tuple[MapLoop, ...]
    keeps: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpMapping:
    """A mapping of an op, whatever the backend: the levels, outermost first.

    Every backend reads its decisions from here: the MDC emitter, the GEMM schedule writer and
    ``report.json``'s ``mapping`` key are lowerings of it.  A dim with no loop at a level keeps
    the tile of the level above; the tile after the last level is what one PE computes per step."""

    op: str
    extents: tuple[tuple[str, int], ...]
    levels: tuple[MapLevel, ...]

    def level(self, name: str) -> MapLevel | None:
        """The level called ``name``, if the mapping has it."""
        return next((lv for lv in self.levels if lv.name == name), None)

    def tiles_after(self, name: str) -> dict[str, int]:
        """The tile of every dim once the loops of level ``name`` (and those above) have run."""
        tile = dict(self.extents)
        for lv in self.levels:
            for lp in lv.loops:
                tile[lp.dim] = min(tile[lp.dim], lp.tile)
            if lv.name == name:
                return tile
        raise KeyError(name)

    def buffers(self) -> list[tuple[str, str, dict[str, int]]]:
        """(level, tensor, tile of every dim) of every buffer: what each level keeps."""
        tile, out = dict(self.extents), []
        for lv in self.levels:
            out += [(lv.name, t, dict(tile)) for t in lv.keeps]
            for lp in lv.loops:
                tile[lp.dim] = min(tile[lp.dim], lp.tile)
        return out

    def pretty(self) -> str:
        """The mapping as a loop nest: per level, its loops of more than one trip (and every
        spatial one) nested, the one-trip loops listed (they only fix the order)."""
        lines = [f"mapping {self.op}: " + ", ".join(f"{d}={e}" for d, e in self.extents)]
        depth = 1
        for lv in self.levels:
            once = [f"{lp.dim}={lp.tile}" for lp in lv.loops if lp.trips == 1 and not lp.spatial]
            lines.append(f"{'  ' * depth}// {lv.name}" + (f", {lv.units} units" if lv.units > 1 else "")
                         + (f"; keeps {', '.join(lv.keeps)}" if lv.keeps else "")
                         + (f"; one trip: {', '.join(once)}" if once else ""))
            for lp in lv.loops:
                if lp.trips == 1 and not lp.spatial:
                    continue
                kind = "parallel-for" if lp.spatial else "for"
                axis = f", {lp.axis}" if lp.axis else ""
                lines.append(f"{'  ' * depth}{kind} {lp.dim} step {lp.tile}:   # {lp.trips} trips{axis}")
                depth += 1
        return "\n".join(lines)

    def report(self) -> dict:
        """The ``mapping`` section of ``<op>.report.json``."""
        return {"mapping": {"levels": [{"name": lv.name, "units": lv.units, "keeps": list(lv.keeps),
                                        "loops": [lp.as_dict() for lp in lv.loops]}
                                       for lv in self.levels]}}


def build_mapping(op: str, extents: dict[str, int], levels: list[tuple]) -> OpMapping:
    """An :class:`OpMapping` from per level ``(name, units, [(dim, tile, spatial, axis), ...],
    keeps)`` (``keeps`` optional): each loop's trips follow from the tile its dim had before it
    (``ceil(before / tile)``)."""
    tile = dict(extents)
    out = []
    for name, units, loops, *keeps in levels:
        mapped = []
        for dim, step, spatial, axis in loops:
            mapped.append(MapLoop(dim, step, -(-tile[dim] // step), spatial, axis))
            tile[dim] = min(tile[dim], step)
        out.append(MapLevel(name, units, tuple(mapped), tuple(keeps[0]) if keeps else ()))
    return OpMapping(op, tuple(extents.items()), tuple(out))

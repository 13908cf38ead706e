"""MAESTRO MDC mapping files as data: the tree, its printer, and resolution to integers.

Sizes stay symbolic in the tree (:class:`Const`, :class:`Sz`) so that :func:`print_mdc` is
faithful; :func:`resolve_layer` turns them into integers for analysis.  Reading text is
:mod:`compiler.mdc.parser`; HW files are :mod:`compiler.mdc.hw`.

API::

    print_mdc(mdc) -> str
    resolve_layer(layer, constants={}) -> MdcLayer      # every size an int
    make_layer(name, type, dims, directives, stride=None) -> MdcLayer

A caller (e.g. the on-chip search) can build a layer directly::

    make_layer("conv", "CONV", {"K": 64, "C": 64, "R": 3, "S": 3, "Y": 58, "X": 58},
               [spatial(1, 1, "K"), temporal(64, 64, "C"), ..., cluster(16),
                spatial(1, 1, "C"), ...])

Errors are :class:`compiler.errors.MappingError` with the file and line.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence, Union

from compiler.errors import MappingError


#: Layer types MAESTRO builds a layer object for (TRCONV is analysed as CONV).
LAYER_TYPES = ("CONV", "DSCONV", "GEMM", "NGCONV", "TRCONV")
#: Types whose keyword parses but which create no layer (closing brace fails).
UNSUPPORTED_TYPES = ("FC", "POOL", "LSTM")



# --------------------------------------------------------------------------- tree


@dataclass(frozen=True)
class Const:
    """A named constant used as a size (``Constant KT 4;`` ... ``TemporalMap(KT,KT)``)."""

    name: str


@dataclass(frozen=True)
class Sz:
    """``Sz(D)``: the size of dimension D as declared in the same layer."""

    dim: str


SizeExpr = Union[int, Const, Sz]


@dataclass(frozen=True)
class Directive:
    """``TemporalMap``/``SpatialMap(size, offset) dim``; ``kind`` is "temporal" or "spatial"."""

    kind: str
    size: SizeExpr
    offset: SizeExpr
    dim: str
    line: int | None = field(default=None, compare=False)

    @property
    def is_spatial(self) -> bool:
        """True for a SpatialMap."""
        return self.kind == "spatial"


@dataclass(frozen=True)
class ClusterDirective:
    """``Cluster(size, P|L)``: closes one cluster level."""

    size: SizeExpr
    kind: str = "P"
    line: int | None = field(default=None, compare=False)


AnyDirective = Union[Directive, ClusterDirective]


@dataclass(frozen=True)
class MdcLayer:
    """One ``Layer``: type, stride entries, dimensions in declaration order, dataflow.

    ``directives`` is ``None`` when the layer has no Dataflow block (MAESTRO then
    copies the previous one and crashes; the checker reports it).
    ``sections`` records the order of the layer's blocks as written.
    """

    name: str
    type: str
    dims: tuple[tuple[str, SizeExpr], ...]
    directives: tuple[AnyDirective, ...] | None
    stride: tuple[tuple[str, int], ...] = ()
    line: int | None = field(default=None, compare=False)
    sections: tuple[str, ...] = field(default=(), compare=False)

    def dim_map(self) -> dict[str, int]:
        """Dimension sizes as MAESTRO's analysis sees them (first declaration wins)."""
        out: dict[str, int] = {}
        for name, size in self.dims:
            if isinstance(size, int):
                out.setdefault(name, size)
        return out

    def stride_map(self) -> dict[str, int]:
        """Stride per dimension (last entry wins, as in MAESTRO's map)."""
        return dict(self.stride)


@dataclass(frozen=True)
class MdcFile:
    """A parsed mapping file: constants (in order), the network name and its layers."""

    constants: tuple[tuple[str, int], ...]
    network: str | None
    layers: tuple[MdcLayer, ...]
    file: str | None = field(default=None, compare=False)
    #: (line, text) of numbers written with a '-' that MAESTRO silently drops.
    negatives: tuple[tuple[int, str], ...] = field(default=(), compare=False)

    def constant_map(self) -> dict[str, int]:
        """Constant name -> value (the last definition wins)."""
        return dict(self.constants)


# --------------------------------------------------------------------- builders


def temporal(size: SizeExpr, offset: SizeExpr, dim: str) -> Directive:
    """Build ``TemporalMap(size, offset) dim``."""
    return Directive("temporal", size, offset, dim)


def spatial(size: SizeExpr, offset: SizeExpr, dim: str) -> Directive:
    """Build ``SpatialMap(size, offset) dim``."""
    return Directive("spatial", size, offset, dim)


def cluster(size: SizeExpr, kind: str = "P") -> ClusterDirective:
    """Build ``Cluster(size, kind)``."""
    return ClusterDirective(size, kind)


def make_layer(name: str, type: str, dims: Mapping[str, int] | Sequence[tuple[str, int]],
               directives: Sequence[AnyDirective],
               stride: Mapping[str, int] | None = None) -> MdcLayer:
    """Build an :class:`MdcLayer` programmatically.

    :arg dims: dimension sizes, in the order to print them.
    :arg directives: directives and clusters, outermost first.
    :arg stride: e.g. ``{"X": 2, "Y": 2}``; omitted means no Stride block.
    """
    items = tuple(dims.items()) if isinstance(dims, Mapping) else tuple(dims)
    st = tuple(stride.items()) if stride else ()
    return MdcLayer(name, type, items, tuple(directives), st)


# ------------------------------------------------------------------------ resolve


def resolve_size(size: SizeExpr, layer: MdcLayer, constants: Mapping[str, int]) -> int:
    """An integer value for ``size``: constants looked up, ``Sz(D)`` = last declaration of D."""
    if isinstance(size, int):
        return size
    if isinstance(size, Const):
        if size.name not in constants:
            raise MappingError(f"undefined constant {size.name!r}", None, None)
        return constants[size.name]
    values = [s for n, s in layer.dims if n == size.dim]
    if not values:
        raise MappingError(f"Sz({size.dim}): dimension not declared in layer {layer.name!r}")
    return resolve_size(values[-1], layer, constants)


def resolve_layer(layer: MdcLayer, constants: Mapping[str, int] | None = None) -> MdcLayer:
    """Return ``layer`` with every size an int (dims, maps, clusters)."""
    consts = dict(constants or {})
    dims = tuple((n, resolve_size(s, layer, consts)) for n, s in layer.dims)
    if layer.directives is None:
        return replace(layer, dims=dims)
    out: list[AnyDirective] = []
    for d in layer.directives:
        if isinstance(d, ClusterDirective):
            out.append(replace(d, size=resolve_size(d.size, layer, consts)))
        else:
            out.append(replace(d, size=resolve_size(d.size, layer, consts),
                               offset=resolve_size(d.offset, layer, consts)))
    return replace(layer, dims=dims, directives=tuple(out))


# -------------------------------------------------------------------------- print


def format_size(size: SizeExpr) -> str:
    """Text of a size expression."""
    if isinstance(size, int):
        return str(size)
    if isinstance(size, Const):
        return size.name
    return f"Sz({size.dim})"


def format_directive(d: AnyDirective) -> str:
    """One directive as MDC text, e.g. ``TemporalMap(Sz(R),1) Y;``."""
    if isinstance(d, ClusterDirective):
        return f"Cluster({format_size(d.size)}, {d.kind});"
    head = "SpatialMap" if d.is_spatial else "TemporalMap"
    return f"{head}({format_size(d.size)},{format_size(d.offset)}) {d.dim};"


def print_layer(layer: MdcLayer, indent: str = "  ") -> str:
    """One ``Layer`` block."""
    i2, i3 = indent * 2, indent * 3
    lines = [f"{indent}Layer {layer.name} {{", f"{i2}Type: {layer.type}"]
    if layer.stride:
        lines.append(f"{i2}Stride {{ " + ", ".join(f"{d}: {v}" for d, v in layer.stride) + " }")
    lines.append(f"{i2}Dimensions {{ "
                 + ", ".join(f"{d}: {format_size(s)}" for d, s in layer.dims) + " }")
    if layer.directives is not None:
        lines.append(f"{i2}Dataflow {{")
        lines += [i3 + format_directive(d) for d in layer.directives]
        lines.append(f"{i2}}}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def print_mdc(mdc: MdcFile) -> str:
    """The whole file as MDC text that MAESTRO reads back to the same meaning."""
    out = [f"Constant {n} {v};" for n, v in mdc.constants]
    out.append(f"Network {mdc.network or 'net'} {{")
    out += [print_layer(layer) for layer in mdc.layers]
    out.append("}")
    return "\n".join(out) + "\n"

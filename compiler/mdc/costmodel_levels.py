"""Cluster levels of MDC mappings, as MAESTRO builds them before costing: many candidates at once.

This is MAESTRO's level construction (mdc-format.md §3.3-3.5), reproduced so that
the cost model sees the same directives MAESTRO analyses:

* split the dataflow at each ``Cluster``; level 0 gets ``num_pes // prod(clusters)``
  units, the level after ``Cluster(n)`` gets ``n`` units;
* per level: the ``Y'``/``X'`` rewrite (size + R - 1 with the R directive of the
  same level), inherited directives from the level above (pushed to the front),
  ``TemporalMap(extent, extent)`` for unmapped input/weight dims (appended, in
  sorted order), the stride rewrite of Y/X directives;
* per level, the extents (``min(map size above, extent above)``), the number of
  sub-clusters active at the spatial edge, and the per-dimension tile sizes used by
  the reuse analysis (mapped / unique / edge variants).

All candidates share one *template*: layer type, dims, stride and the sequence of
directive kinds and dimensions (with the Cluster positions).  Their sizes, offsets
and cluster sizes are numpy arrays of shape ``(N,)``; one mapping is a batch of one.
Every structural decision MAESTRO makes (inherited and filled-in directives, the
Y'/X' rewrite) depends only on the template, so it is taken once; value-dependent
ones (the stride rewrite, extents, tile sizes, edge sub-clusters) are array
expressions.  :func:`layer_levels` gives one mapping's levels as plain integers
(for the MAC-coverage walk and the checker).

A ``Y'``/``X'`` directive needs an ``R``/``S`` directive at the same level, also when
``Y``/``X`` is mapped there too: MAESTRO then reads an uninitialised window size
(garbage results, no error), so the analysis refuses the mapping (checker rule S5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from compiler.errors import MappingError
from compiler.mdc.syntax import ClusterDirective, MdcLayer, resolve_layer

CONV_TYPES = ("CONV", "DSCONV", "NGCONV")
#: (reference dim, sliding dim) pairs of the sliding-window layers.
OVERLAP = {"X": "S", "Y": "R"}



@dataclass(frozen=True)
class Tensor:
    """A tensor: name (input/filter/output), whether it is read (input class), coupled dims."""

    name: str
    is_input: bool
    dims: tuple[str, ...]


def layer_tensors(ltype: str, declared: set[str]) -> tuple[Tensor, ...]:
    """Input, filter and output tensors with their coupled dims (MAESTRO's table)."""
    batch = "N" in declared and ltype in CONV_TYPES
    n = ("N",) if batch else ()
    if ltype == "DSCONV":
        i, w, o = n + ("C", "Y", "X"), ("C", "R", "S"), n + ("C", "Y", "X")
    elif ltype == "NGCONV":
        i, w, o = n + ("G", "C", "Y", "X"), ("G", "K", "C", "R", "S"), n + ("G", "K", "C", "Y", "X")
    elif ltype == "GEMM":
        i, w, o = ("M", "K"), ("K", "N"), ("M", "N")
    else:
        i, w, o = n + ("C", "Y", "X"), ("K", "C", "R", "S"), n + ("K", "Y", "X")
    return (Tensor("input", True, i), Tensor("filter", True, w), Tensor("output", False, o))


def _full_dims(layer: MdcLayer, ltype: str) -> tuple[dict[str, int], dict[str, int]]:
    """Full extents and outer strides, with the derived Y'/X' (or Y/X) entries."""
    strides = layer.stride_map()
    dims: dict[str, int] = {}
    st: dict[str, int] = {}
    for name, size in layer.dims:
        if name not in dims:  # MAESTRO's std::map insert keeps the first value
            dims[name] = int(size)
            st[name] = strides.get(name, 1)
    if ltype not in CONV_TYPES:
        return dims, st
    names = [n for n, _ in layer.dims]
    for a, b in (("Y", "Y'"), ("X", "X'")):
        if a in names and b in names:
            raise MappingError("Both input- and output-centric dimension definition is used "
                               f"({a} and {b} declared)")
    last = {n: int(s) for n, s in layer.dims}
    lst = {n: strides.get(n, 1) for n in names}
    for inp, out, slide in (("X", "X'", "S"), ("Y", "Y'", "R")):
        if slide not in last and (inp in last or out in last):
            raise MappingError(f"Dimension {slide} not found")
        if inp in last and out not in dims:
            dims[out] = last[inp] - last[slide] + 1
            st[out] = lst[inp]
        elif out in last and inp not in dims:
            dims[inp] = last[out] + last[slide] - 1
            # MAESTRO takes this stride from the other axis's primed dim (a swap in its code).
            st[inp] = lst.get("Y'" if inp == "X" else "X'", 1)
    return dims, st


def layer_setup(layer: MdcLayer):
    """What every analysis of a layer starts from: (type, is a conv, full dims, strides, tensors,
    input-side dims); TRCONV reads as CONV, and a dim a tensor needs must be declared."""
    ltype = "CONV" if layer.type == "TRCONV" else layer.type
    full, strides = _full_dims(layer, ltype)
    tensors = layer_tensors(ltype, set(full))
    input_vars = sorted({v for t in tensors if t.is_input for v in t.dims})
    for v in input_vars:
        if v not in full:
            raise MappingError(f"Dimension {v} not found (a {layer.type} layer needs it)")
    return ltype, ltype in CONV_TYPES, full, strides, tensors, input_vars


def vdiv(a, b):
    """C integer division on arrays (truncates toward zero)."""
    q = np.abs(a) // np.abs(b)
    return np.where((a >= 0) == (b >= 0), q, -q)


@dataclass(frozen=True)
class MappingTemplate:
    """The shared structure: the layer (dims, stride, type) and ``items`` = (kind, dim),
    kind "T" (TemporalMap), "S" (SpatialMap) or "C" (Cluster, dim "")."""

    layer: MdcLayer
    items: tuple[tuple[str, str], ...]


def template_from_layer(layer: MdcLayer, constants: Mapping[str, int] | None = None):
    """Split a layer into its template and one row of sizes/offsets/clusters (a batch of one)."""
    lay = resolve_layer(layer, constants)
    items, sizes, offs, cl = [], [], [], []
    for d in lay.directives or ():
        if isinstance(d, ClusterDirective):
            items.append(("C", ""))
            cl.append(d.size)
        else:
            items.append(("S" if d.is_spatial else "T", d.dim))
            sizes.append(d.size)
            offs.append(d.offset)
    return (MappingTemplate(lay, tuple(items)), np.array([sizes], np.int64),
            np.array([offs], np.int64), np.array([cl], np.int64).reshape(1, len(cl)))


@dataclass
class VDir:
    """One directive slot: static kind and dim, per-candidate size and offset arrays."""

    spatial: bool
    var: str
    size: np.ndarray
    ofs: np.ndarray


@dataclass
class VLevel:
    """One cluster level over all candidates (arrays over candidates)."""

    units: np.ndarray
    slots: list[VDir]
    dims: dict[str, np.ndarray]
    edge_units: np.ndarray
    mapped: dict[str, np.ndarray] = field(default_factory=dict)
    unique: dict[str, np.ndarray] = field(default_factory=dict)
    medge: dict[str, np.ndarray] = field(default_factory=dict)
    uedge: dict[str, np.ndarray] = field(default_factory=dict)
    _tiles: dict = field(default_factory=dict)
    sizes: np.ndarray | None = None     # (slots, N): every slot's size (the slots' arrays are its rows)
    ofs: np.ndarray | None = None       # (slots, N): every slot's offset

    def __post_init__(self):
        if self.sizes is None:
            self.sizes = np.stack([d.size for d in self.slots])
            self.ofs = np.stack([d.ofs for d in self.slots])
        self.spatial = np.array([d.spatial for d in self.slots])[:, None]   # (slots, 1)
        # Shared constants of the right shape; the analysis never writes into an array in place.
        self.one = np.ones_like(self.units)
        self.zero = np.zeros_like(self.units)
        self.false = np.zeros_like(self.units, bool)

    def tiles(self, var: str) -> tuple[np.ndarray, ...]:
        """(mapped, unique, mapped at the edge, unique at the edge, unique or 1 where it is 0) of
        ``var``, 0 where the level has no entry (MAESTRO's ``map[]`` default)."""
        got = self._tiles.get(var)
        if got is None:
            four = tuple(m.get(var, self.zero) for m in (self.mapped, self.unique, self.medge,
                                                         self.uedge))
            got = self._tiles[var] = four + (np.where(four[1] != 0, four[1], 1),)
        return got


def _edge_units(d: VDir, units, extent):
    m, o = d.size, d.ofs
    full = o * (units - 1) + m
    steady = vdiv(vdiv(extent - m, o) + 1, units) - 1
    rem = extent - (steady + 1) * o * units
    big = np.where(rem < m, 1, vdiv(rem - m, o) + 1)
    ec = vdiv(extent - m, o) + 1
    mid = np.where(o * (ec - 1) + m < extent, ec + 1, ec)
    out = np.where(extent > full, big, np.where(extent > m, mid, 1))
    return np.where(extent <= m, 1, out)


def _tile_sizes(lv: VLevel, conv: bool) -> None:
    m, o, spatial = lv.sizes, lv.ofs, lv.spatial    # (slots, N), all slots at once
    e = np.stack([lv.dims[d.var] for d in lv.slots])
    steady = np.maximum(vdiv(e - m, o), 0)
    has_edge = (steady * o + m < e) | (m > e)
    u = np.minimum(m, o)
    unique = np.where(spatial | (e > m), u, 0)
    edge = e - (steady + 1) * o
    edge = np.where(edge < 0, e, edge)
    medge = np.where(has_edge, edge, m)
    uedge = np.maximum(o - (m - edge), 0)
    for j, d in enumerate(lv.slots):        # (a dim's last slot is its entry)
        lv.mapped[d.var], lv.unique[d.var], lv.medge[d.var], lv.uedge[d.var] = m[j], unique[j], medge[j], uedge[j]
    if conv:
        zero = lv.zero
        for d in lv.slots:
            if d.var in OVERLAP:
                out, slide = d.var + "'", OVERLAP[d.var]
                lv.mapped[out] = lv.mapped[d.var] - lv.mapped.get(slide, zero) + 1
                lv.unique[out] = np.minimum(d.ofs, d.size)
                lv.medge[out] = lv.medge[d.var] - lv.medge.get(slide, zero) + 1
                lv.uedge[out] = np.minimum(d.ofs, lv.medge[out])


def build_levels(layer: MdcLayer, items: tuple[tuple[str, str], ...], sizes: np.ndarray,
                 offsets: np.ndarray, clusters: np.ndarray, num_pes: int):
    """Levels for all candidates; returns (levels, tensors, full dims, conv, valid mask)."""
    ltype, conv, full, strides, tensors, input_vars = layer_setup(layer)
    n = sizes.shape[0]
    segments: list[list[VDir]] = [[]]
    j = 0
    for kind, dim in items:
        if kind == "C":
            segments.append([])
        else:
            segments[-1].append(VDir(kind == "S", dim, sizes[:, j].astype(np.int64),
                                     offsets[:, j].astype(np.int64)))
            j += 1
    clusters = clusters.astype(np.int64).reshape(n, -1)
    prod = np.prod(clusters, axis=1) if clusters.shape[1] else np.ones(n, np.int64)
    valid = (prod <= num_pes) & (clusters >= 1).all(axis=1)
    units = [np.maximum(num_pes // prod, 1)] + [clusters[:, i] for i in range(clusters.shape[1])]
    levels: list[VLevel] = []
    cur = {k: np.full(n, v, np.int64) for k, v in full.items()}
    cur_st = dict(strides)
    prev: list[VDir] | None = None
    for li, (seg, u) in enumerate(zip(segments, units)):
        slots = [VDir(d.spatial, d.var, d.size, d.ofs) for d in seg]
        present = {d.var: d for d in slots}  # last slot per var
        for inp, prime, slide in (("X", "X'", "S"), ("Y", "Y'", "R")):
            if inp not in present and prime in present:
                if slide not in present:
                    raise MappingError(f"{prime} is mapped at cluster level {li} without an "
                                       f"explicit {slide} directive at the same level")
                k = next(i for i, d in enumerate(slots) if d.var == prime)
                slots[k] = VDir(slots[k].spatial, inp,
                                present[prime].size + present[slide].size - 1, slots[k].ofs)
        for k, d in enumerate(slots):
            if d.var in ("X'", "Y'"):
                slide = "S" if d.var == "X'" else "R"
                sl = next((x.size for x in slots if x.var == slide), None)
                if sl is None:  # Y and Y' both mapped: MAESTRO reads an uninitialised window
                    raise MappingError(f"{d.var} is mapped at cluster level {li} without an "
                                       f"explicit {slide} directive at the same level")
                slots[k] = VDir(d.spatial, d.var[0], d.size + sl - 1, d.ofs)
        if prev is not None:
            for p in prev:
                if not any(d.var == p.var for d in slots):
                    slots.insert(0, VDir(False, p.var, p.size, p.ofs))
        for v in input_vars:
            if not any(d.var == v for d in slots) and v in cur:
                slots.append(VDir(False, v, cur[v], cur[v]))
        for d in list(slots):
            if d.var not in cur:
                raise MappingError(f"Dimension {d.var} not found" +
                                   (" (DSCONV has no K below the first Cluster)"
                                    if d.var == "K" and ltype == "DSCONV" else ""))
            stv = cur_st.get(d.var, 1)
            if conv and d.var in OVERLAP and stv != 1:
                r = full[OVERLAP[d.var]]
                k = next(i for i, x in enumerate(slots) if x.var == d.var)
                t = slots[k]
                out = vdiv(t.size + stv - r, stv)
                ofs = out * stv if (li == 0 or r >= stv) else out * r
                ok = t.size >= r
                slots[k] = VDir(t.spatial, t.var,
                                np.where(ok, out * min(stv, r) + max(r - stv, 0), t.size),
                                np.where(ok, ofs, t.ofs))
        sp = [d for d in slots if d.spatial]
        if not sp:
            raise MappingError(f"No spatial map in cluster level {li}")
        if len(sp) > 2:
            raise MappingError(f"Found too many spatial maps within cluster level {li}")
        lv = VLevel(u, slots, cur, _edge_units(sp[0], u, cur[sp[0].var]))
        _tile_sizes(lv, conv)
        levels.append(lv)
        cur = {v: np.minimum(next(x for x in slots if x.var == v).size, cur[v]) for v in input_vars}
        cur_st = {v: cur_st.get(v, 1) for v in input_vars}
        prev = slots
    return levels, tensors, full, conv, valid


@dataclass(frozen=True)
class Dir:
    """One directive of one mapping after MAESTRO's rewrites: ``spatial``, size, offset, dim."""

    spatial: bool
    size: int
    ofs: int
    var: str


@dataclass(frozen=True)
class LayerLevels:
    """One mapping's cluster levels as integers: whether it is a convolution, the full
    extents (with the derived Y'/X'), and per level its units and rewritten dataflow."""

    conv: bool
    full_dims: dict[str, int]
    units: tuple[int, ...]
    levels: tuple[tuple[Dir, ...], ...]


def layer_levels(layer: MdcLayer, num_pes: int, constants: Mapping[str, int] | None = None
                 ) -> LayerLevels:
    """:func:`build_levels` for one mapping (raises MappingError where MAESTRO fails,
    including a cluster product above ``num_pes``)."""
    if layer.directives is None:
        raise MappingError(f"layer {layer.name!r} has no Dataflow (MAESTRO crashes)")
    t, sizes, offsets, clusters = template_from_layer(layer, constants)
    levels, _, full, conv, valid = build_levels(t.layer, t.items, sizes, offsets, clusters,
                                                num_pes)
    if not valid[0]:
        raise MappingError(f"product of cluster sizes {int(np.prod(clusters))} exceeds num_pes "
                           f"{num_pes} (MAESTRO crashes with SIGFPE)")
    return LayerLevels(conv, dict(full), tuple(int(lv.units[0]) for lv in levels),
                       tuple(tuple(Dir(d.spatial, int(d.size[0]), int(d.ofs[0]), d.var)
                                   for d in lv.slots) for lv in levels))

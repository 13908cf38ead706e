"""Vectorised cluster-level construction: :mod:`compiler.costmodel_levels` over candidates.

All candidates share one *template*: layer type, dims, stride and the sequence of
directive kinds and dimensions (with the Cluster positions).  Their sizes, offsets
and cluster sizes are numpy arrays of shape ``(N,)``.  Every structural decision
MAESTRO makes (inherited and filled-in directives, the Y'/X' rewrite) depends only
on the template, so it is taken once; value-dependent ones (the stride rewrite,
extents, tile sizes, edge sub-clusters) are array expressions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.costmodel_levels import OVERLAP, layer_setup
from compiler.errors import MappingError
from compiler.mdc import MdcLayer


def vdiv(a, b):
    """C integer division on arrays (truncates toward zero)."""
    q = np.abs(a) // np.abs(b)
    return np.where((a >= 0) == (b >= 0), q, -q)


@dataclass
class VDir:
    """One directive slot: static kind and dim, per-candidate size and offset arrays."""

    spatial: bool
    var: str
    size: np.ndarray
    ofs: np.ndarray


@dataclass
class VLevel:
    """One cluster level over all candidates (see :class:`costmodel_levels.LevelSpec`)."""

    units: np.ndarray
    slots: list[VDir]
    dims: dict[str, np.ndarray]
    edge_units: np.ndarray
    mapped: dict[str, np.ndarray] = field(default_factory=dict)
    unique: dict[str, np.ndarray] = field(default_factory=dict)
    medge: dict[str, np.ndarray] = field(default_factory=dict)
    uedge: dict[str, np.ndarray] = field(default_factory=dict)


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
    for d in lv.slots:
        m, o, e = d.size, d.ofs, lv.dims[d.var]
        steady = np.maximum(vdiv(e - m, o), 0)
        has_edge = (steady * o + m < e) | (m > e)
        lv.mapped[d.var] = m
        u = np.minimum(m, o)
        lv.unique[d.var] = u if d.spatial else np.where(e <= m, 0, u)
        edge = e - (steady + 1) * o
        edge = np.where(edge < 0, e, edge)
        lv.medge[d.var] = np.where(has_edge, edge, m)
        lv.uedge[d.var] = np.maximum(o - (m - edge), 0)
    if conv:
        zero = np.zeros_like(lv.units)
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
    valid = prod <= num_pes
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
                sl = next((x.size for x in slots if x.var == ("S" if d.var == "X'" else "R")), None)
                if sl is None:
                    raise MappingError(f"{d.var} at cluster level {li} needs an R/S directive")
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
                raise MappingError(f"Dimension {d.var} not found")
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

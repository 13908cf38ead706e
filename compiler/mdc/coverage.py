"""Exact MAC coverage of an MDC mapping, by walking its tiles level by level.

Independent of MAESTRO's counting formulas: the directives of every level (after
MAESTRO's own rewrites, :func:`compiler.mdc.costmodel_levels.layer_levels`) cut each tile handed
down from the level above into sub-tiles, ``[lo + k*ofs, lo + k*ofs + size)``
clipped to the tile, until a sub-tile reaches its end.  Temporal maps of one level
form a loop nest (a product); the SpatialMaps of one level share the PE index, so
their tile lists are *zipped* (this is why ``SpatialMap Y; SpatialMap R`` in the rs
dataflow visits the diagonal (y, r) pairs, and why ``SpatialMap K; SpatialMap C``
loses MACs).

A leaf tile computes the MAC points it holds completely: for sliding windows the
outputs ``y'`` with ``[y'*stride + r_lo, y'*stride + r_hi)`` inside its Y range, for
each r of its R range.  Dimensions that never share a zipped level are independent,
so the walk runs per group of coupled dimensions and multiplies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np

from compiler.mdc.costmodel_levels import OVERLAP, layer_levels
from compiler.mdc.coverage_count import disjoint, tile_counts
from compiler.errors import MappingError
from compiler.mdc.syntax import MdcLayer, resolve_layer


@dataclass(frozen=True)
class Coverage:
    """Result of the walk: MACs visited (with repeats), points missed, points repeated."""

    visited: int
    points: int
    missing: int
    repeated: int

    @property
    def exact(self) -> bool:
        """Every MAC point visited exactly once."""
        return self.missing == 0 and self.repeated == 0


def _tiles(lo: int, hi: int, size: int, ofs: int) -> list[tuple[int, int]]:
    out = []
    start = lo
    while True:
        end = min(start + size, hi)
        out.append((start, end))
        if start + size >= hi or start + ofs >= hi:
            break
        start += ofs
    return out


def _groups(spec, dims: list[str]) -> list[list[str]]:
    parent = {d: d for d in dims}

    def find(d):
        while parent[d] != d:
            d = parent[d]
        return d

    def union(a, b):
        if a in parent and b in parent:
            parent[find(a)] = find(b)

    if spec.conv:
        for ref, slide in OVERLAP.items():
            union(ref, slide)
    for lvl in spec.levels:
        sp = [d.var for d in lvl if d.spatial]
        for a in sp[1:]:
            union(sp[0], a)
    groups: dict[str, list[str]] = {}
    for d in dims:
        groups.setdefault(find(d), []).append(d)
    return list(groups.values())


WALK_LIMIT = 10 ** 6        # tiles the exact walk may visit (about 10 s of Python)
POINT_LIMIT = 2 * 10 ** 7   # MAC points of one group it may count in memory (int64 each)


class CoverageTooLarge(MappingError):
    """The tiles may overlap, so only the walk decides coverage, and it is too large to run."""


def _counted(spec, group: list[str], full: dict, stride: dict, declared: set,
             out_extent: dict) -> tuple[int, int, int] | None:
    """(visited, points, covered) of ``group`` in closed form when its leaf tiles are disjoint
    (:mod:`compiler.mdc.coverage_count`), else None after checking the walk is affordable."""
    levels = [[(d.spatial, d.size, d.ofs, d.var) for d in lvl if d.var in group]
              for lvl in spec.levels]
    refs = [d for d in group if spec.conv and d in OVERLAP]
    shape = [out_extent[d] if d in refs else full[d] for d in group]
    points = math.prod(shape)
    if all(d in declared for d in refs):
        windows = {d: (stride.get(d, 1), full[OVERLAP[d]]) for d in refs}
        if disjoint(levels, group, full, windows):
            counts = tile_counts(levels, group, full, windows)
            if counts is not None:
                return counts[1], points, counts[1]
    counts = tile_counts(levels, group, full, {})
    if (counts is not None and counts[0] > WALK_LIMIT) or points > POINT_LIMIT:
        tiles = f"{counts[0]:,} tiles" if counts is not None else "its tiles"
        raise CoverageTooLarge(f"MAC coverage of dims {', '.join(group)} needs a walk over {tiles} "
                               f"and {points:,} MAC points (limits {WALK_LIMIT:,} and {POINT_LIMIT:,}): "
                               "overlapping tiles this large are not checked")
    return None


def coverage(layer: MdcLayer, num_pes: int, constants=None, closed_form: bool = True) -> Coverage:
    """Walk the tiles of ``layer`` on ``num_pes`` PEs and count the MAC points visited (groups
    whose tiles cannot overlap are counted by shape instead, unless ``closed_form`` is False)."""
    layer = resolve_layer(layer, constants)
    spec = layer_levels(layer, num_pes)
    full = spec.full_dims
    stride = layer.stride_map()
    declared = {n for n, _ in layer.dims}
    tile_dims = sorted({d.var for lvl in spec.levels for d in lvl})
    out_extent = {}
    for ref, slide in OVERLAP.items():
        if spec.conv and ref in full:
            st = stride.get(ref, 1) if ref in declared else 1
            out_extent[ref] = (full[ref] - full[slide]) // st + 1 if ref in declared \
                else full[ref + "'"]
    visited = points = covered = 1
    for group in _groups(spec, tile_dims):
        counted = _counted(spec, group, full, stride, declared, out_extent) if closed_form else None
        if counted is not None:
            visited, points, covered = (a * b for a, b in zip((visited, points, covered), counted))
            continue
        boxes = [{d: (0, full[d]) for d in group}]
        for lvl in spec.levels:
            new = []
            temporal = [d for d in lvl if d.var in group and not d.spatial]
            spatial = [d for d in lvl if d.var in group and d.spatial]
            for box in boxes:
                choices = []
                cur = dict(box)
                for d in temporal:
                    choices.append([(d.var, t) for t in _tiles(*cur[d.var], d.size, d.ofs)])
                if spatial:
                    lists = [_tiles(*cur[d.var], d.size, d.ofs) for d in spatial]
                    choices.append([tuple((d.var, t) for d, t in zip(spatial, ts))
                                    for ts in zip(*lists)])
                for combo in product(*choices):
                    nb = dict(box)
                    for item in combo:
                        for var, t in (item if isinstance(item[0], tuple) else (item,)):
                            lo, hi = nb[var]
                            nb[var] = (max(lo, t[0]), min(hi, t[1]))
                    new.append(nb)
            boxes = new
        axes = [d for d in group]
        shape = [out_extent[d] if (spec.conv and d in OVERLAP) else full[d] for d in axes]
        counts = np.zeros(shape, dtype=np.int64)
        for box in boxes:
            idx = []
            for d in axes:
                lo, hi = box[d]
                if spec.conv and d in OVERLAP:
                    r_lo, r_hi = box.get(OVERLAP[d], (0, full[OVERLAP[d]]))
                    st = stride.get(d, 1) if d in declared else 1
                    y0 = max(0, -(-(lo - r_lo) // st))
                    y1 = (hi - r_hi) // st + 1
                    idx.append(slice(y0, max(y0, min(y1, out_extent[d]))))
                else:
                    idx.append(slice(lo, max(lo, hi)))
            counts[tuple(idx)] += 1
        visited *= int(counts.sum())
        points *= counts.size
        covered *= int((counts > 0).sum())
    return Coverage(visited, points, points - covered, visited - covered)

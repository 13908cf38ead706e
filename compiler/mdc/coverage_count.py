"""MAC coverage counted by tile *shape*, so its cost does not grow with the extents.

:func:`compiler.mdc.coverage.coverage` walks every tile; a GEMM with M = 10^7 has millions.
But the walk below a tile depends only on the tile's length (and, for a sliding window's reference
dim, on its start modulo the stride), and the tiles of one directive come in few shapes: full
tiles, whose starts repeat modulo the stride with a short period, and one clipped last tile.
:func:`tile_counts` therefore counts leaf tiles and the MACs they visit class by class, with
integer arithmetic only.

That count is the exact coverage when no two leaf tiles share a MAC point, which
:func:`disjoint` decides from the directives: every plain dim's tiles abut or leave gaps
(offset >= size), a window's filter dim is never cut (one tile of the whole filter), and the output
positions of neighbouring window tiles do not overlap (size - filter < offset); children lie inside
their parent, so disjoint siblings make disjoint leaves.  Then visited = covered, nothing repeats,
and missed = points - visited.  Otherwise the caller walks, when the walk is small enough.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Mapping, Sequence

from compiler.mdc.costmodel_levels import OVERLAP

Box = tuple[tuple[int, int], ...]     # per group dim: (start modulo its stride, length)


def _tile_classes(rho: int, length: int, size: int, ofs: int, st: int) -> tuple[int, list[tuple[tuple[int, int], int]]]:
    """How many tiles the walk cuts from a box of ``length`` starting at residue ``rho`` (mod
    ``st``), and [((residue, length), index)] of the last one (the only one that may be clipped);
    tile ``i`` starts ``i*ofs`` after the box, and a tile stops the list once it reaches the end."""
    n = 1 + max(0, min(-(-(length - size) // ofs), -(-(length - ofs) // ofs)))
    last = ((rho + (n - 1) * ofs) % st, max(0, min(size, length - (n - 1) * ofs)))
    return n, [(last, n - 1)]


def _zip_classes(dims: Sequence[tuple[int, int, int, int, int]]) -> list[tuple[Box, int]]:
    """Zip the tile lists of ``dims`` = [(rho, length, size, ofs, stride)] (SpatialMaps of one
    level share the PE index; one dim is a plain loop): [(child box, how many)]."""
    info = [_tile_classes(rho, length, size, ofs, st) for rho, length, size, ofs, st in dims]
    m = min(n for n, _ in info)
    special = {i: None for (_, specials) in info for _, i in specials if i < m}

    def child(i: int, edge: bool) -> Box:
        out = []
        for (rho, _, size, ofs, st), (n, specials) in zip(dims, info):
            out.append(specials[0][0] if edge and i == n - 1 else ((rho + i * ofs) % st, size))
        return tuple(out)

    counts: dict[Box, int] = {}
    for i in special:
        counts[child(i, True)] = counts.get(child(i, True), 0) + 1
    # The other tiles are full; their starts repeat modulo the strides with this period.
    period = math.lcm(*(st // math.gcd(ofs, st) for _, _, _, ofs, st in dims))
    for j in range(min(period, m)):
        hits = (m - 1 - j) // period + 1 - sum(1 for i in special if i % period == j)
        if hits:
            counts[child(j, False)] = counts.get(child(j, False), 0) + hits
    return list(counts.items())


def tile_counts(levels: Sequence[Sequence[tuple[bool, int, int, str]]], group: Sequence[str],
                full: Mapping[str, int], windows: Mapping[str, tuple[int, int]]) -> tuple[int, int] | None:
    """(leaf tiles, MACs they visit with repeats) of one group of coupled dims, or None when a
    level names a dim twice (the walk intersects those; no shape class describes it).

    ``levels``: per level the directives ``(spatial, size, ofs, var)`` of this group's dims;
    ``windows``: reference dim -> (stride, filter extent) for sliding windows whose filter is never
    cut (a leaf covers the outputs ``y`` with ``[y*stride, y*stride + filter)`` inside it)."""
    strides = [windows[d][0] if d in windows else 1 for d in group]
    pos = {d: i for i, d in enumerate(group)}
    for lvl in levels:
        names = [v for _, _, _, v in lvl]
        if len(set(names)) != len(names) or any(o < 1 or s < 1 for _, s, o, _ in lvl):
            return None

    def leaf(box: Box) -> int:
        total = 1
        for d, (rho, length) in zip(group, box):
            if d in windows:
                st, filt = windows[d]
                total *= max(0, (rho + length - filt) // st - (rho > 0) + 1)
            else:
                total *= length
        return total

    @lru_cache(maxsize=None)
    def walk(li: int, box: Box) -> tuple[int, int]:
        if li == len(levels):
            return 1, leaf(box)
        lists = []
        spatial = []
        for sp, size, ofs, var in levels[li]:
            i = pos[var]
            item = (box[i][0], box[i][1], size, ofs, strides[i])
            if sp:
                spatial.append((i, item))
            else:
                lists.append(([i], _zip_classes([item])))
        if spatial:
            lists.append(([i for i, _ in spatial], _zip_classes([it for _, it in spatial])))
        leaves = visited = 0
        combos: list[tuple[list, int]] = [(list(box), 1)]
        for idx, classes in lists:
            nxt = []
            for cur, count in combos:
                for cls, k in classes:
                    new = list(cur)
                    for i, c in zip(idx, cls):
                        new[i] = c
                    nxt.append((new, count * k))
            combos = nxt
        for cur, count in combos:
            lv, vis = walk(li + 1, tuple(cur))
            leaves += count * lv
            visited += count * vis
        return leaves, visited

    try:
        return walk(0, tuple((0, full[d]) for d in group))
    finally:
        walk.cache_clear()


def disjoint(levels: Sequence[Sequence[tuple[bool, int, int, str]]], group: Sequence[str],
             full: Mapping[str, int], windows: Mapping[str, tuple[int, int]]) -> bool:
    """True when no two leaf tiles of the group can share a MAC point (see the module doc)."""
    filters = {OVERLAP[d] for d in windows}
    for lvl in levels:
        for _, size, ofs, var in lvl:
            if var in filters:
                if size < full[var]:
                    return False
            elif var in windows:
                if size - windows[var][1] >= ofs:
                    return False
            elif ofs < size:
                return False
    return True

"""The on-chip mapping subspace: which dims go across the PE array, per-unit spatial tiles, the
per-PE (L1) tile and the innermost loop order, for one fixed off-chip (L2) tiling.

Candidates are generated in two layers so that pruning reasons can be stated and counted:

1. **array structures** (:func:`spatial_structures`): one dim across all PEs, or two or three
   dims across nested clusters whose sizes multiply to the PE count (so no PE is silently idle).  Dims a target
   may not spread (NVDLA-like: only K and C) and dims whose L2 tile is 1 are excluded.  Each
   structure has an exact spatial utilisation (``tile / (folds * units * per-unit tile)`` per
   level); structures far below the best are pruned (*utilisation*).
2. **per-PE tiles and orders** (:func:`inner_choices`): per non-spatial dim a tile from
   ``{1, 2, 4, ..., chunk}``; tilings whose double-buffered L1 footprint exceeds L1 are pruned
   (*capacity*); a handful of loop orders (stationarity patterns) per tiling, those that differ
   only in where single-step loops sit counted once (:func:`stepping`).
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .lowering import MdcView, OnchipChoice, SpatialLevel


MAX_LEVELS = 3     # spatial cluster levels: rows x cols, or three dims on a flexible array
DEEP_BELOW = 0.95  # ... the third one is tried only when two reach less spatial utilisation


@dataclass(frozen=True)
class Structure:
    """An array structure: the spatial levels (dim, units, per-unit tile) and its utilisation."""

    levels: tuple[SpatialLevel, ...]
    utilization: float
    merged: bool = False        # the first level shares level 0 (see compiler.mdc.lowering.layer_slots)


@lru_cache(maxsize=256)
def divisors(n: int) -> list[int]:
    """Divisors of ``n``, ascending, from its prime factorisation (a 10^8-PE array is instant)."""
    out, p, rest = [1], 2, n
    while p * p <= rest:
        k = 0
        while rest % p == 0:
            rest //= p
            k += 1
        out = [d * p ** i for d in out for i in range(k + 1)]
        p += 1 if p == 2 else 2
    if rest > 1:
        out = [d * m for d in out for m in (1, rest)]
    return sorted(out)


def level_utilization(extent: int, units: int, tile: int) -> float:
    """Busy fraction of ``units`` covering ``extent`` in per-unit ``tile``s over ceil-many folds."""
    folds = math.ceil(extent / (units * tile))
    return extent / (folds * units * tile)


def spreadable_dims(view: MdcView, allowed_roles: tuple[str, ...] | None) -> list[str]:
    """The op dims that may go across PEs: not filter taps, not a depthwise layer's K (MAESTRO's
    DSCONV rule), and only the target's roles when it restricts them."""
    def spreadable(d: str) -> bool:
        role = view.mdc_dim(d)
        if role in ("R", "S") or (view.form.layer_type == "DSCONV" and role == "K"):
            return False
        if allowed_roles is None:
            return True
        # Roles are CONV's; on a GEMM, N (output columns) plays K and K (reduction) plays C.
        conv_role = {"N": "K", "K": "C", "M": "Y"}.get(role, role) if view.form.layer_type == "GEMM" else role
        return conv_role in allowed_roles
    return [d for d in view.dims if spreadable(d)]


def spatial_structures(view: MdcView, l2_tile: dict[str, int], num_pes: int,
                       allowed_roles: tuple[str, ...] | None, overlap: bool = False) -> list[Structure]:
    """Every spread of the PE array over the L2 tile with 1 to ``MAX_LEVELS`` cluster levels, one
    dim per level, cluster sizes multiplying to the PE count (deterministic order); the deepest
    level count only when the shallower ones leave more than 5 % of the PEs idle.  With
    ``overlap``, every level count, and the outer level may fold too (tile 1), so that its steps
    overlap the next one's NoC fill with compute."""
    allowed = spreadable_dims(view, allowed_roles)
    # A dim of tile 1 fills one unit; it is spread only when no other may be (a one-MAC op).
    dims = [d for d in allowed if l2_tile[d] > 1] or allowed[:1]
    if "Y" not in view.strided_windows():
        return [Structure(levels, u) for levels, u in _spreads(dims, l2_tile, num_pes, MAX_LEVELS, overlap)]
    # Strided rows: one output row per level-0 unit, the L2 tile of rows is the unit count (one
    # unit, so a loop, on a target that may not spread rows); the other dims share what is left.
    a = view.form.op_dim("Y")
    n1 = l2_tile[a]
    if a not in allowed and n1 > 1:
        return []
    head = SpatialLevel(a, n1, 1)
    return [Structure((head,) + levels, u, merged=True)
            for levels, u in _spreads([d for d in dims if d != a], l2_tile, num_pes // n1, MAX_LEVELS - 1, overlap)]


def top_spreads(view: MdcView, l2_tile: dict[str, int], num_pes: int,
                allowed_roles: tuple[str, ...] | None, folds: int = 4, keep_above: float = 0.0
                ) -> list[Structure]:
    """Structures whose outermost spread dim sits on the top level itself (``merged``): ``n``
    top units, each a cluster of ``num_pes // n`` PEs (the rest idle when that does not divide),
    walking the op's whole extent of the dim in tiles as large as one to ``folds`` top-level
    steps (or the L2 tile) allow; the clusters below spread the other dims as
    :func:`spatial_structures` does.  Fewer, larger top-level steps amortise each NoC fill over
    more compute; the cost model (L2 capacity, exact MACs, S8) decides whether that pays.
    Strided rows keep one row per unit, on every unit count that covers the rows in one step or
    divides them (MAESTRO counts those exactly), not only the off-chip pass's.  Structures of
    two or more levels below ``keep_above`` spatial utilisation are left out (never built)."""
    dims = [d for d in spreadable_dims(view, allowed_roles) if l2_tile[d] > 1]
    tops = sorted(n for n in {num_pes // c for c in range(2, num_pes // 2 + 1)} if num_pes // (num_pes // n) == n)
    out: list[Structure] = []
    if "Y" in view.strided_windows():
        a = view.form.op_dim("Y")
        e = view.op.extent(a)
        if a not in dims:
            return out
        for n in (n for n in tops if n != l2_tile[a] and (n >= e or e % n == 0) and n < 2 * e):
            u0 = level_utilization(e, n, 1) * n * (num_pes // n) / num_pes
            out += [Structure((SpatialLevel(a, n, 1),) + levels, u0 * u, merged=True)
                    for levels, u in _spreads([x for x in dims if x != a], l2_tile, num_pes // n, MAX_LEVELS - 1,
                                              at_least=_below(keep_above, u0))
                    if u0 * u >= keep_above]
        return out
    for d in dims:
        e = view.op.extent(d)
        # one level: the dim straight across every PE, the top level's tiles are the PEs' own
        # (every trip count's tile up to ``folds`` steps: tiles larger than the even share leave
        # PEs idle but may take fewer, fuller steps)
        out += [Structure((SpatialLevel(d, num_pes, t),), level_utilization(e, num_pes, t), merged=True)
                for t in trip_tiles(e) if -(-e // (num_pes * t)) <= folds]
        for n in (n for n in tops if n <= e):   # (a top unit count MAESTRO forms from a cluster size)
            cluster = num_pes // n
            idle = n * cluster / num_pes
            heads = [(t, level_utilization(e, n, t) * idle)
                     for t in sorted({-(-e // (n * f)) for f in range(1, folds + 1)} | {-(-l2_tile[d] // n)})]
            heads = [(t, u0) for t, u0 in heads if u0 >= keep_above]
            if not heads:
                continue
            below = _spreads([x for x in dims if x != d], l2_tile, cluster, MAX_LEVELS - 1,
                             at_least=_below(keep_above, max(u0 for _, u0 in heads)))
            for t, u0 in heads:
                head = SpatialLevel(d, n, t)
                out += [Structure((head,) + levels, u0 * u, merged=True) for levels, u in below
                        if u0 * u >= keep_above]
    return out


def _below(keep_above: float, u0: float) -> float:
    """The utilisation below a top level of utilisation ``u0`` that can still reach
    ``keep_above`` (a hair lower, so that rounding never drops one the product would keep)."""
    return keep_above / u0 * (1 - 1e-9)


def finest(structures: list[Structure], count: int) -> list[Structure]:
    """The ``count`` top-level spreads with the most top units (at equal spatial utilisation):
    MAESTRO pays a sub-cluster's first NoC fill on every top-level step, unoverlapped, and the
    smaller the clusters below the top, the smaller that fill.  One of each top dim first: the
    best cluster shape differs by dim (a reduction over 128 top units may not count its MACs
    exactly, an output dim there does)."""
    def rank(s: Structure) -> tuple:
        return -s.utilization, -s.levels[0].units, len(s.levels), s.levels
    by_dim: dict[str, list[tuple[int, Structure]]] = {}
    for i, s in enumerate(structures):
        by_dim.setdefault(s.levels[0].dim, []).append((i, s))
    # (the n-th best of its dim, rank, first seen) for the best ``count`` of each dim
    best = [(nth, rank(s), i, s) for group in by_dim.values()
            for nth, (i, s) in enumerate(heapq.nsmallest(count, group, key=lambda b: rank(b[1])))]
    return [s for *_, s in sorted(best, key=lambda b: b[:3])[:count]]


def _spreads(dims: list[str], l2_tile: dict[str, int], units: int, max_depth: int, overlap: bool = False,
             at_least: float = 0.0):
    """(levels, utilisation) for every spread of ``units`` over 1 to ``max_depth`` of ``dims``
    whose utilisation is ``at_least`` or more; with ``overlap``, every depth and the outer level
    folded too."""
    out: list[tuple[tuple[SpatialLevel, ...], float]] = []
    best = 0.0
    for depth in range(1, max_depth + 1):
        if depth == max_depth > 1 and best >= DEEP_BELOW and not overlap:
            break  # the deepest level only pays when the others leave PEs idle
        for spread in itertools.permutations(dims, depth):
            for split in unit_splits(units, depth):
                # outer levels take their share in one fold; the innermost may also fold (tile 1)
                tiles = [math.ceil(l2_tile[d] / n) for d, n in zip(spread, split)]
                for t0 in sorted({tiles[0], 1}) if overlap and depth > 1 else (tiles[0],):
                    for tl in sorted({tiles[-1], 1}):
                        tt = [t0] + tiles[1:-1] + [tl] if depth > 1 else [tl]
                        u = math.prod(level_utilization(l2_tile[d], n, t) for d, n, t in zip(spread, split, tt))
                        best = max(best, u)
                        if u >= at_least:
                            out.append((tuple(SpatialLevel(d, n, t) for d, n, t in zip(spread, split, tt)), u))
    return out


def outer_steps(structure: Structure, l2_tile: dict[str, int]) -> int:
    """Folds of the outermost spatial level over its L2 tile."""
    top = structure.levels[0]
    return math.ceil(l2_tile[top.dim] / (top.units * top.tile))


def unit_splits(num_pes: int, depth: int) -> list[tuple[int, ...]]:
    """Ordered factorisations of ``num_pes`` into ``depth`` cluster sizes, each above 1."""
    if depth == 1:
        return [(num_pes,)]
    return [(n,) + rest for n in divisors(num_pes)[1:-1] for rest in unit_splits(num_pes // n, depth - 1)]


def _tile_options(chunk: int) -> list[int]:
    opts = {1, chunk}
    t = 2
    while t < chunk:
        opts.add(t)
        t *= 2
    return sorted(opts)


def l1_footprint(view: MdcView, tile: dict[str, int]) -> int:
    """Double-buffered per-PE footprint (elements) of all tensors for a per-PE tile, as MAESTRO
    counts it: the output's sliding-window axes take the input-side size ``(t-1)*stride + R``
    (dims a layer does not hold, the repeats, count 1)."""
    tile = {d: tile.get(d, 1) for d in view.op.dim_names}
    by_out = {w.out_dim: w for w in view.windows.values()}
    total = 0
    for t in view.op.tensors:
        size = 1
        for sub in t.index:
            w = next((by_out[d] for d in sub.dims if d in by_out), None)
            if w is not None:
                size *= w.footprint(tile[w.out_dim], tile[w.filter_dim] if w.filter_dim else 1)
            else:
                size *= math.prod(tile[d] for d in sub.dims)
        total += size
    return 2 * total


def inner_orders(view: MdcView, spatial_dim: str) -> list[tuple[str, ...]]:
    """Loop orders for the innermost level: output-, weight- and input-stationary patterns."""
    op = view.op
    out_dims, (inp, wgt) = set(op.output.dims), op.reads
    dims = [d for d in view.dims if d != spatial_dim]
    keys = (
        lambda d: (d in out_dims, d),                      # reduction outermost: outputs stay
        lambda d: (d not in out_dims, d),                  # reduction innermost
        lambda d: (d in wgt.dims, d),                      # weights stationary (their dims outer)
        lambda d: (d not in wgt.dims, d),
        lambda d: (d in inp.dims, d),                      # inputs stationary
    )
    seen: list[tuple[str, ...]] = []
    for key in keys:
        # stable: keep the op's dim order inside each group so results are reproducible
        order = tuple(sorted(dims, key=lambda d, k=key: (k(d)[0], dims.index(d))))
        if order not in seen:
            seen.append(order)
    return seen


def level_chunks(l2_tile: dict[str, int], levels: tuple[SpatialLevel, ...]) -> dict[str, int]:
    """What one PE's loops cover per dim below ``levels``: the L2 tile, or a spread dim's per-unit
    tile."""
    chunk = dict(l2_tile)
    for lvl in levels:
        chunk[lvl.dim] = lvl.tile
    return chunk


def _fitting_tiles(view: MdcView, chunk: dict[str, int], inner: str, l1_elements: int,
                   options) -> tuple[list[dict[str, int]], int]:
    """(per-PE tiles that fit L1, tilings tried): each dim but the filter taps and the innermost
    spread dim (whole chunks) takes a value from ``options(chunk)``; in ``itertools.product``
    order, the footprints of all tilings computed at once."""
    free = [d for d in view.dims if d != inner and view.mdc_dim(d) not in ("R", "S")]
    fixed = {d: chunk[d] for d in view.dims if d not in free}
    grid = [g.ravel() for g in np.meshgrid(*(np.asarray(options(chunk[d]), np.int64) for d in free),
                                           indexing="ij")]
    tried = grid[0].size if free else 1
    fits = np.flatnonzero(np.asarray(l1_footprint(view, {**fixed, **dict(zip(free, grid))})) <= l1_elements)
    cols = [g[fits].tolist() for g in grid]
    return [{**fixed, **dict(zip(free, values))} for values in zip(*cols)] if free else \
        ([dict(fixed)] if fits.size else []), tried


def inner_choices(view: MdcView, l2_tile: dict[str, int], structure: Structure, l1_elements: int,
                  max_orders: int = 5) -> tuple[list[OnchipChoice], int]:
    """Per-PE tiles x orders for one structure; returns (choices that fit L1, tilings tried)."""
    inner = structure.levels[-1].dim
    if structure.merged and len(structure.levels) == 1:
        # one level: the PEs hold the top level's tiles, in its order (nothing below to choose)
        tile = level_chunks(l2_tile, structure.levels)
        return [OnchipChoice(structure.levels, tuple((d, tile[d]) for d in view.dims),
                             inner_orders(view, inner)[0], True)], 1
    chunk = level_chunks(l2_tile, structure.levels)
    fits, tried = _fitting_tiles(view, chunk, inner, l1_elements, _tile_options)
    orders = inner_orders(view, inner)[:max_orders]
    choices = []
    distinct: dict[tuple[str, ...], list[tuple[str, ...]]] = {}    # stepping dims -> orders kept
    for t in fits:
        # Orders that differ only in where single-step loops sit are one candidate (the model
        # gives them the same numbers): the first of each is kept, as a tie would pick it.
        steps = stepping(view.dims, t, chunk)
        kept = distinct.get(steps)
        if kept is None:
            kept, seen = distinct.setdefault(steps, []), set()
            for order in orders:
                if (key := stepping(order, t, chunk)) not in seen:
                    seen.add(key)
                    kept.append(order)
        tile = tuple((d, t[d]) for d in view.dims)
        choices += [OnchipChoice(structure.levels, tile, order, structure.merged) for order in kept]
    return choices, tried


def stepping(order: tuple[str, ...], tile: dict[str, int], chunk: dict[str, int]) -> tuple[str, ...]:
    """The loops of ``order`` that take more than one step (per-PE tile below the chunk): only
    their relative order changes what MAESTRO counts; a single-step loop can sit anywhere."""
    return tuple(d for d in order if tile[d] < chunk[d])


def whole_space(view: MdcView, l2_tile: dict[str, int], num_pes: int, allowed_roles: tuple[str, ...] | None,
                l1_elements: int) -> list[OnchipChoice]:
    """Every on-chip choice for one L2 tiling of a layer without strided rows, for brute force
    on small ops: 1 to ``MAX_LEVELS`` spread dims in every order x every split of the PEs into
    cluster sizes above 1 x every per-unit tile up to the even share, x every per-PE tile that
    fits L1 x every order of the innermost loops that take more than one step (the others go
    outermost: where a single-step loop sits changes nothing)."""
    if "Y" in view.strided_windows():
        raise ValueError("whole_space: strided rows are fixed one per level-0 unit; not enumerated")
    spread = [d for d in spreadable_dims(view, allowed_roles) if l2_tile[d] > 1]
    out: list[OnchipChoice] = []
    for depth in range(1, MAX_LEVELS + 1):
        for dims in itertools.permutations(spread, depth):
            for units in unit_splits(num_pes, depth):
                per_unit = [range(1, math.ceil(l2_tile[d] / n) + 1) for d, n in zip(dims, units)]
                for tiles in itertools.product(*per_unit):
                    levels = tuple(SpatialLevel(d, n, t) for d, n, t in zip(dims, units, tiles))
                    chunk, inner = level_chunks(l2_tile, levels), levels[-1].dim
                    moving = [d for d in view.dims if d != inner and view.mdc_dim(d) not in ("R", "S")
                              and chunk[d] > 1]
                    still = tuple(d for d in view.dims if d != inner and d not in moving)
                    fits, _ = _fitting_tiles(view, chunk, inner, l1_elements, lambda c: range(1, c + 1))
                    out += [OnchipChoice(levels, tuple((d, t[d]) for d in view.dims), still + p)
                            for t in fits for p in itertools.permutations(moving)]
    return out


def trip_tiles(chunk: int) -> list[int]:
    """The smallest tile of every trip count over ``chunk`` (larger tiles of the same count only
    use more buffer), ascending.  O(sqrt(chunk)): beyond ``n = isqrt(chunk) + 1`` trips the tiles
    are small, and a small tile ``v`` is some ``ceil(chunk / n)`` exactly when ``n = ceil(chunk / v)``
    gives it back (extents run to 2^31, so the tiles are never walked one by one)."""
    k = math.isqrt(chunk) + 1
    big = {-(-chunk // n) for n in range(1, min(k, chunk) + 1)}
    small = {v for v in range(1, -(-chunk // (k + 1)) + 1) if -(-chunk // -(-chunk // v)) == v}
    return sorted(big | small)


EVERY_TILE_BELOW = 64   # chunks up to this size try every tile in refinement


def step_tiles(chunk: int) -> list[int]:
    """Tile values refinement tries over ``chunk``: every one for a small chunk (MAESTRO's edge
    step can make a larger tile of the same trip count faster, e.g. 15 of 16), else
    :func:`trip_tiles`."""
    return list(range(1, chunk + 1)) if chunk <= EVERY_TILE_BELOW else trip_tiles(chunk)


def neighbours(view: MdcView, l2_tile: dict[str, int], choice: OnchipChoice, l1_elements: int,
               idle: bool = False) -> list[OnchipChoice]:
    """Choices one step from ``choice``: one per-PE tile changed to any :func:`step_tiles` value,
    the per-unit tile of one level changed likewise (or, with ``idle``, to fewer busy units; tiles
    below clamped), or two neighbouring loops of those that take more than one step swapped
    (repeated rounds reach any order; each order is its own MDC template, scored in a call of its
    own, and trying every permutation or every pair at once changed no mapping of the quality
    suite on edge or cloud).  Only those that fit L1 are returned."""
    if choice.merged and len(choice.spatial) == 1:
        return []           # one level: nothing below the top level to change
    l1 = dict(choice.l1_tile)
    moves: list[tuple[tuple[SpatialLevel, ...], dict[str, int], tuple[str, ...]]] = []

    def add(levels, tile: dict[str, int], order) -> None:
        c = level_chunks(l2_tile, levels)
        tile = {d: min(t, c[d]) for d, t in tile.items()}
        tile[levels[-1].dim] = c[levels[-1].dim]
        moves.append((levels, tile, order))

    chunk = level_chunks(l2_tile, choice.spatial)
    inner = choice.spatial[-1].dim
    for d in view.dims:
        if d == inner or view.mdc_dim(d) in ("R", "S"):
            continue
        for v in step_tiles(chunk[d]):
            if v != l1[d]:
                add(choice.spatial, {**l1, d: v}, choice.inner_order)
    for i, lvl in enumerate(choice.spatial):
        if choice.merged and i == 0:
            continue  # strided rows: one per unit, fixed by the off-chip tile
        above = level_chunks(l2_tile, choice.spatial[:i])[lvl.dim]
        # Smaller tiles fold the level; with ``idle``, larger ones leave units idle, which is how
        # a mapping gets within a bandwidth that every busy unit would exceed.
        for v in sorted(set(step_tiles(-(-above // lvl.units))) | set(trip_tiles(above) if idle else ())):
            if v != lvl.tile:
                levels = choice.spatial[:i] + (SpatialLevel(lvl.dim, lvl.units, v),) + choice.spatial[i + 1:]
                add(levels, l1, choice.inner_order)
    steps = list(stepping(choice.inner_order, l1, chunk))
    single = [d for d in choice.inner_order if d not in steps]
    for i in range(len(steps) - 1):
        perm = list(steps)
        perm[i], perm[i + 1] = perm[i + 1], perm[i]
        order = tuple(single + perm)
        if order != choice.inner_order:
            add(choice.spatial, l1, order)
    if not moves:
        return []
    # (the footprints of all moves at once)
    fits = l1_footprint(view, {d: np.array([t[d] for _, t, _ in moves]) for d in l1}) <= l1_elements
    return [OnchipChoice(levels, tuple((d, tile[d]) for d in view.dims), order, choice.merged)
            for (levels, tile, order), ok in zip(moves, fits) if ok]

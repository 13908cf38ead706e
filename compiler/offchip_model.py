"""The distinct-block (DB) DRAM traffic model of the off-chip subspace, and its exact search.

Model (per chiplet, one L2; see ``docs/offchip.md`` for the chiplet part):

* Every loop dim ``d`` of extent ``E`` gets an L2 tile ``t``; the DRAM-level loop over ``d`` runs
  ``N = ceil(E/t)`` times and its last tile is the remainder (imperfect tiles are allowed).
* A tensor axis is ``stride*o + dilation*f`` (a plain dim is stride 1 with no filter dim), so the
  tile of that axis spans ``(t_o-1)*stride + (t_f-1)*dilation + 1`` elements
  (:meth:`compiler.ir.Window.footprint`; a DMA moves this box, gaps of a strided window included).
* A tensor's tile is (re)loaded once per iteration of the loops outside of and including the
  innermost loop that indexes it; loops inside that loop keep it in L2.  A loop of one trip is no
  loop.  Summing the true (edge) footprints over the tile grid, a plain axis contributes its
  extent ``E``; a window axis ``N_f*s*(E_o-N_o) + N_o*dil*(E_f-N_f) + N_o*N_f``.
* The output is read back and written again on every visit after the first: ``2V-1`` transfers of
  each tile for ``V`` visits (``V`` = the trips of reduction loops outside its innermost loop).
* Capacity: ``2 * sum(footprint_bytes) <= L2 bytes`` (double buffering).

Why the search is exact (the dominance used to shrink it, stated once here):

1. Tiles.  For fixed trip counts ``N`` the traffic does not depend on the tiles at all (the sums
   above depend on ``N`` and ``E`` only), while every footprint grows with its tile.  So the
   *smallest* tile with a given trip count, ``ceil(E/N)``, is as good as any other and the
   candidate tiles of a dim are ``{ceil(E/n) : n = 1..E}`` (about ``2*sqrt(E)`` values).
2. Orders.  Traffic depends on an order only through, per tensor, the set of dims inside its
   innermost indexing loop.  :func:`order_classes` enumerates the distinct tuples of those sets by
   growing the order from the innermost loop until every tensor is indexed; a handful of classes
   stand for all ``D!`` orders.  (A class whose prefix holds a one-trip dim over-estimates its
   traffic, never under-estimates it, and the true value is another class's, so the minimum is
   unchanged.)
3. One free dim.  Traffic never falls when the trip count of a plain dim grows (nor of a window's
   output dim with stride 1, nor of its filter dim with dilation 1), and capacity only improves.
   For such a dim ``phi`` only the smallest feasible trip count needs to be tried for each choice
   of the other dims; it is solved in closed form (capacity is affine in ``t_phi``).

What is left is evaluated with numpy, all points at once, in int64 (checked against overflow).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .ir import Op, Role, Window

INT64_SAFE = 2 ** 62


@dataclass(frozen=True)
class TensorModel:
    """One tensor as the traffic model sees it: its axes as windows, its element size and role."""

    name: str
    write: bool
    element_bytes: int
    axes: tuple[Window, ...]      # a plain dim d is Window(axis, d, None, 1, 1)

    @property
    def dims(self) -> frozenset[str]:
        return frozenset(d for w in self.axes for d in (w.out_dim, w.filter_dim) if d)


@dataclass(frozen=True)
class TrafficModel:
    """The op as the DB model sees it: dims in op order and the tensors (output first)."""

    dims: tuple[str, ...]
    tensors: tuple[TensorModel, ...]

    @property
    def output(self) -> TensorModel:
        return next(t for t in self.tensors if t.write)


def model_of(op: Op) -> TrafficModel:
    """The DB model of a (conforming) op: each subscript a plain dim or a sliding window."""
    tensors = []
    for t in op.tensors:
        by_axis = {w.axis: w for w in t.windows}
        axes = []
        for a, sub in enumerate(t.index):
            if a in by_axis:
                axes.append(by_axis[a])
            elif len(sub.terms) == 1 and sub.terms[0][1] == 1 and not sub.const:
                axes.append(Window(a, sub.terms[0][0], None, 1, 1))
            else:  # pragma: no cover - conformance rejects these before this pass
                raise ValueError(f"subscript '{sub}' of {t.name} is neither a dim nor a window")
        tensors.append(TensorModel(t.name, t.role is Role.WRITE, t.element_bytes, tuple(axes)))
    return TrafficModel(op.dim_names, tuple(tensors))


def trips(extent, tile):
    """DRAM-level trip count ``ceil(extent/tile)`` (scalars or numpy arrays)."""
    return -(-extent // tile)


def candidate_tiles(extent: int) -> np.ndarray:
    """The smallest tile of every achievable trip count, ascending (dominance 1 above)."""
    # ceil(E/n) for n <= k covers every tile above ceil(E/k); below it, each achievable tile t is
    # ceil(E/ceil(E/t)) (the fewest trips giving at most t), so O(sqrt E) values, never E of them.
    k = math.isqrt(extent) + 1
    few = trips(extent, np.arange(1, k + 1, dtype=np.int64))
    small = np.arange(1, int(trips(extent, k)) + 1, dtype=np.int64)
    return np.unique(np.concatenate([few, trips(extent, trips(extent, small))]))


def axis_tile_sum(w: Window, e: Mapping[str, int], n: Mapping):
    """Sum of the axis's tile footprints over the tile grid (edge tiles exact); works on arrays."""
    e_f, n_f = (e[w.filter_dim], n[w.filter_dim]) if w.filter_dim else (1, 1)
    e_o, n_o = e[w.out_dim], n[w.out_dim]
    return n_f * w.stride * (e_o - n_o) + n_o * w.dilation * (e_f - n_f) + n_o * n_f


def axis_footprint(w: Window, t: Mapping):
    """Elements of one full tile along the axis."""
    return w.footprint(t[w.out_dim], t[w.filter_dim] if w.filter_dim else 1)


def footprint(tensor: TensorModel, tiles: Mapping):
    """Elements of one full L2 tile of ``tensor`` (the box its DMA moves)."""
    return math.prod(axis_footprint(w, tiles) for w in tensor.axes)


def distinct_elements(tensor: TensorModel, extents: Mapping[str, int]) -> int:
    """Elements the op touches in ``tensor``: the compulsory traffic (a lower bound on any tiling,
    since each tile's box holds the elements that tile touches)."""
    return math.prod(window_span_distinct(w.stride, w.dilation, extents[w.out_dim],
                                          extents[w.filter_dim] if w.filter_dim else 1)
                     for w in tensor.axes)


def window_span_distinct(stride: int, dilation: int, e_out: int, e_filter: int) -> int:
    """Distinct values of ``stride*o + dilation*f`` over ``o < e_out, f < e_filter``, in closed form.

    With ``g = gcd(stride, dilation)``, ``s = stride/g`` and ``d = dilation/g`` coprime, two pairs
    give the same value exactly when they differ by a multiple of ``(d, -s)``; the pairs of one value
    form a chain, and counting each chain by its last pair (``f < s`` or ``o >= e_out - d``) gives
    ``e_out*e_filter - max(0, e_filter - s) * max(0, e_out - d)``."""
    g = math.gcd(stride, dilation)
    s, d = stride // g, dilation // g
    return e_out * e_filter - max(0, e_filter - s) * max(0, e_out - d)


@dataclass(frozen=True)
class Split:
    """A chiplet partition: dims cut into equal parts (factors divide extents)."""

    factors: tuple[tuple[str, int], ...] = ()

    def groups(self, tensor: TensorModel) -> int:
        """Chiplet groups holding distinct parts of ``tensor`` (the rest share them)."""
        return math.prod(f for d, f in self.factors if d in tensor.dims)

    def chiplets(self) -> int:
        return math.prod(f for _, f in self.factors)

    def part_extents(self, extents: Mapping[str, int]) -> dict[str, int]:
        cut = dict(self.factors)
        return {d: e // cut.get(d, 1) for d, e in extents.items()}


def dram_traffic(model: TrafficModel, extents: Mapping[str, int], tiles: Mapping[str, int],
                 order: Sequence[str], split: Split = Split()) -> tuple[dict[str, int], int]:
    """The DB model for one point, plainly: (DRAM elements per tensor, inter-chiplet elements).

    ``extents`` are the op's; with a split each chiplet runs ``tiles``/``order`` on its part,
    shared parts are read once and broadcast, and partial sums of a reduction split across
    chiplets travel over the links ``(R-1)`` times per output write."""
    part = split.part_extents(extents)
    n = {d: trips(part[d], min(tiles[d], part[d])) for d in model.dims}
    live = [d for d in order if n[d] > 1]
    traffic, link = {}, 0
    for t in model.tensors:
        inner = max((i for i, d in enumerate(live) if d in t.dims), default=-1)
        visits = math.prod(n[d] for d in live[:inner + 1] if d not in t.dims)
        per_visit = math.prod(axis_tile_sum(w, part, n) for w in t.axes)
        traffic[t.name] = split.groups(t) * per_visit * (2 * visits - 1 if t.write else visits)
        if t.write:
            link = (split.chiplets() // split.groups(t) - 1) * split.groups(t) * per_visit * visits
    return traffic, link


def order_classes(model: TrafficModel, dims: Sequence[str]) -> list[tuple[tuple[str, ...], tuple[frozenset, ...]]]:
    """Distinct order classes over ``dims``: (innermost-first prefix, per-tensor set of dims that
    multiply its reloads).  Depth-first in ``dims`` order, so the first prefix of a class is
    deterministic."""
    uses = [t.dims for t in model.tensors]
    found: dict[tuple[frozenset, ...], tuple[str, ...]] = {}
    seen: set = set()

    def walk(prefix: tuple[str, ...], free: tuple[frozenset, ...], hit: tuple[bool, ...]) -> None:
        state = (frozenset(prefix), free, hit)
        if state in seen:
            return
        seen.add(state)
        if all(hit) or len(prefix) == len(dims):
            found.setdefault(free, prefix)
            return
        for d in dims:
            if d in prefix:
                continue
            walk(prefix + (d,),
                 tuple(f if h or d in u else f | {d} for f, h, u in zip(free, hit, uses)),
                 tuple(h or d in u for h, u in zip(hit, uses)))

    walk((), tuple(frozenset() for _ in uses), tuple(False for _ in uses))
    out = []
    for free, prefix in found.items():
        mult = tuple(frozenset(d for d in dims if d not in u and d not in f) for u, f in zip(uses, free))
        out.append((prefix, mult))
    return out


def monotone_dims(model: TrafficModel) -> list[str]:
    """Dims whose trip count never lowers traffic when it grows (dominance 3)."""
    return [d for d in model.dims
            if all(not (w.out_dim == d and w.stride > 1) and not (w.filter_dim == d and w.dilation > 1)
                   for t in model.tensors for w in t.axes)]


@dataclass(frozen=True)
class Best:
    """The best point of one search, with the key that ranks it (smaller is better)."""

    key: tuple
    tiles: dict[str, int]
    prefix: tuple[str, ...]
    evaluated: int
    exhaustive: bool = True       # False: the grid was thinned or the deadline cut the classes


@dataclass(frozen=True)
class StepModel:
    """A backend's view of one DRAM-level step, for choosing among near-optimal tilings.

    A simulator that refetches the whole L2 tile every step (MAESTRO does) runs a step in about
    ``max(tile MACs / macs_per_cycle, (input+weight footprint) / dram_bw, output footprint /
    dram_bw, (input+weight footprint) / noc_bw)`` cycles.  Among tilings whose objective is at most
    ``limit`` the one with the fewest estimated cycles wins (then the objective, then the usual
    ties).  With ``spread_dims`` (a target that may spread only those), at most the product of
    their tiles compute at once."""

    macs_per_cycle: int
    dram_bw: float
    noc_bw: float
    limit: int
    spread_dims: tuple[str, ...] = ()

    def cycles(self, model: TrafficModel, t: Mapping, iters) -> np.ndarray:
        macs = math.prod((t[d] for d in model.dims), start=np.ones_like(iters))
        reads = sum((footprint(tm, t) for tm in model.tensors if not tm.write), start=0 * iters)
        writes = sum((footprint(tm, t) for tm in model.tensors if tm.write), start=0 * iters)
        rate = self.macs_per_cycle
        if self.spread_dims:
            rate = np.minimum(rate, math.prod((t[d] for d in self.spread_dims), start=np.ones_like(iters)))
        step = np.maximum.reduce([macs / rate, reads / self.dram_bw,
                                  writes / self.dram_bw, reads / self.noc_bw])
        return iters * step


def search(model: TrafficModel, extents: Mapping[str, int], capacity_bytes: int, split: Split,
           link_weight: tuple[int, int], tie_dims: Sequence[str], *,
           caps: Mapping[str, Sequence[int]] | None = None, step: StepModel | None = None,
           deadline: float | None = None) -> Best | None:
    """Minimise ``den*DRAM_bytes + num*link_bytes`` (``link_weight = (num, den)``) over tiles and
    order classes for one chiplet split; None if nothing fits.  Ties: fewer DRAM iterations, then
    larger tiles of ``tie_dims`` in that order, then the earlier class.

    ``caps`` restricts the tiles of some dims to given values (what a backend can express); with
    ``step`` the key becomes (estimated cycles, objective, ...) among points within ``step.limit``
    (the key's first entry is then the estimate, its second the objective).

    Above :data:`GRID_LIMIT` tile vectors the candidates are thinned (:func:`thin`) and past
    ``deadline`` (a ``time.perf_counter()`` value) no further order class is ranked once one has
    been; either way the result is marked not exhaustive."""
    part = split.part_extents(extents)
    dims = list(model.dims)
    cand = {d: candidate_tiles(part[d]) for d in dims}
    for d, allowed in (caps or {}).items():
        # A backend's values are taken as they are (not only the smallest tile per trip count:
        # the backend may need, say, a unit count); traffic depends on trips, footprints on tiles.
        # A value above the extent is one trip (a unit count covering the dim in one step).
        above = [v for v in allowed if v >= part[d]]
        fit = sorted({v for v in allowed if v <= part[d]} | ({min(above)} if above else set()))
        cand[d] = np.array(fit, dtype=np.int64)
    mono = [d for d in monotone_dims(model) if cand[d].size > 1]
    free = max(mono, key=lambda d: (cand[d].size, -dims.index(d)), default=None)
    others = [d for d in dims if d != free]
    exhaustive = thin(cand, others)
    grid = np.meshgrid(*[cand[d] for d in others], indexing="ij") if others else []
    t = {d: g.ravel() for d, g in zip(others, grid)}
    size = t[others[0]].size if others else 1
    half = capacity_bytes // 2
    if free is None:
        used = sum(tm.element_bytes * footprint(tm, t) for tm in model.tensors)
        keep = np.broadcast_to(used <= half, (size,))
    else:  # capacity is affine in the free tile: A + B*t_free <= L2/2
        a = np.zeros(size, dtype=np.int64)
        b = np.zeros(size, dtype=np.int64)
        for tm in model.tensors:
            rest = np.full(size, tm.element_bytes, dtype=np.int64)
            lin = None
            for w in tm.axes:
                if free in (w.out_dim, w.filter_dim):
                    lin = w
                else:
                    rest = rest * axis_footprint(w, t)
            if lin is None:
                a += rest
            else:
                slope = lin.stride if lin.out_dim == free else lin.dilation
                probe = dict(t, **{free: 1})
                a += rest * (axis_footprint(lin, probe) - slope)
                b += rest * slope
        t_max = (half - a) // b
        idx = np.searchsorted(cand[free], t_max, side="right") - 1
        keep = idx >= 0
        t[free] = cand[free][np.maximum(idx, 0)]
    if not keep.any():
        return None
    t = {d: np.asarray(t[d])[keep] if np.ndim(t[d]) else np.full(int(keep.sum()), t[d]) for d in dims}
    n = {d: trips(part[d], t[d]) for d in dims}
    num, den = link_weight
    weights, per_visit = [], []
    chips = split.chiplets()
    for tm in model.tensors:
        groups = split.groups(tm)
        weights.append(den * groups * tm.element_bytes)
        pv = np.ones_like(n[dims[0]])
        for w in tm.axes:
            pv = pv * axis_tile_sum(w, part, n)
        per_visit.append(pv)
    # Overflow guard: every term is at most weight * per_visit * 2 * prod(N) (+ the link term).
    bound = sum(wt * int(pv.max()) for wt, pv in zip(weights, per_visit)) * 2 * math.prod(part.values())
    bound *= 1 + num * chips
    if bound >= INT64_SAFE:  # pragma: no cover - far beyond DNN layer sizes
        per_visit = [pv.astype(object) for pv in per_visit]
    iters = math.prod(n[d] for d in dims) if dims else 1
    tie_cols = [-t[d] for d in reversed(tie_dims)]
    best: tuple | None = None
    classes = order_classes(model, [d for d in dims if part[d] > 1])
    for ci, (prefix, mult) in enumerate(classes):
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            exhaustive = False
            break
        obj = 0
        for tm, wt, pv, m in zip(model.tensors, weights, per_visit, mult):
            visits = math.prod((n[d] for d in m), start=np.ones_like(pv))
            obj = obj + wt * pv * (2 * visits - 1 if tm.write else visits)
            if tm.write and chips > split.groups(tm):
                obj = obj + num * (chips // split.groups(tm) - 1) * split.groups(tm) * tm.element_bytes * pv * visits
        obj = np.asarray(obj)
        if step is None:
            low = obj.min()
            tied = np.flatnonzero(obj == low)
            pick = tied[np.lexsort([c[tied] for c in tie_cols] + [iters[tied]])[0]] if tied.size > 1 else tied[0]
            key = (int(low), int(iters[pick]), tuple(int(c[pick]) for c in reversed(tie_cols)), ci)
        else:
            near = np.flatnonzero(obj <= step.limit)
            if near.size == 0:
                continue
            est = np.broadcast_to(step.cycles(model, t, iters), obj.shape)[near]
            pick = near[np.lexsort([c[near] for c in tie_cols] + [iters[near], obj[near], est])[0]]
            key = (float(est.min()), int(obj[pick]), int(iters[pick]),
                   tuple(int(c[pick]) for c in reversed(tie_cols)), ci)
        if best is None or key < best[0]:
            best = (key, {d: int(t[d][pick]) for d in dims}, prefix)
    if best is None:
        return None
    return Best(*best, evaluated=int(keep.sum()) * len(classes), exhaustive=exhaustive)


GRID_LIMIT = 2 ** 18   # tile vectors ranked at once (tens of MB of int64 columns); 65536^3 GEMMs fit


def thin(cand: dict[str, np.ndarray], dims: Sequence[str], limit: int = GRID_LIMIT) -> bool:
    """Keep at most ``limit`` tile vectors over ``dims`` (True if nothing had to go).

    The dims with the most candidates lose values first; what stays of a dim is spread evenly
    over the logarithm of its trip count and keeps the one-trip and the one-element tile.  Only
    extents far beyond DNN layers (about 10^6 per dim) get here, so optimality is given up only
    there and then reported (FEASIBLE)."""
    sizes = {d: int(cand[d].size) for d in dims}
    if math.prod(sizes.values()) <= limit:
        return True
    keep = dict(sizes)
    while math.prod(keep.values()) > limit:
        d = max(keep, key=lambda x: (keep[x], -list(dims).index(x)))
        keep[d] = max(2, keep[d] // 2)
    for d in dims:
        if keep[d] < sizes[d]:
            c = cand[d]   # ascending, c[0] = 1, c[-1] = the extent
            want = np.geomspace(1, c[-1], keep[d])
            cand[d] = c[np.unique(np.minimum(np.searchsorted(c, want), c.size - 1))]
    return False


def order_from(model: TrafficModel, tiles: Mapping[str, int], extents: Mapping[str, int],
               prefix: Sequence[str]) -> tuple[str, ...]:
    """A concrete DRAM loop order (outermost first) of a class: one-trip dims first (they are no
    loops), then the dims the class leaves free in op order, then the prefix, innermost last."""
    live = {d for d in model.dims if trips(extents[d], tiles[d]) > 1}
    head = [d for d in model.dims if d not in live]
    inner = [d for d in reversed(prefix) if d in live]
    return tuple(head + [d for d in model.dims if d in live and d not in inner] + inner)


def splits(model: TrafficModel, extents: Mapping[str, int], chiplets: int) -> list[Split]:
    """Chiplet partitions over 1-2 dims with factors dividing the extents, using as many chiplets
    as any such partition can (idle chiplets are never chosen to save traffic)."""
    if chiplets <= 1:
        return [Split()]
    out = []
    for k in (1, 2):
        for ds in itertools.combinations(model.dims, k):
            for fs in itertools.product(range(2, chiplets + 1), repeat=k):
                if math.prod(fs) <= chiplets and all(extents[d] % f == 0 for d, f in zip(ds, fs)):
                    out.append(Split(tuple(zip(ds, fs))))
    if not out:
        return [Split()]
    most = max(s.chiplets() for s in out)
    return [s for s in out if s.chiplets() == most]

"""The cases of one cluster level and their per-PE volumes, all cases and candidates at once.

Per cluster level, every directive has up to three iteration states (Init, Steady,
Edge); a *case* picks one per directive and occurs ``prod(state counts)`` times
(mdc-format.md §5).  The cases analysed are the product of the states any candidate
has (a case absent for a candidate has occurrence 0).  Every quantity here is an array over
the (case, candidate) pairs that occur, all cases of all candidates at once: what a case
fixes (the state of each directive, its innermost changing directive) is taken per pair,
and where MAESTRO branches on it per case, every branch is computed and selected per pair.

The volumes are MAESTRO's per-PE tiles: the ingress of input and filter (only the new
elements along the innermost changing directive), the egress of the output, the partial
sums, each spread over the units of the level (the edge sub-clusters apart), and the tile
extents of the level below.  Used by :mod:`compiler.mdc.costmodel_cases`.
"""
from __future__ import annotations

import numpy as np

from compiler.mdc.costmodel_levels import OVERLAP, VLevel, vdiv

INIT, STEADY, EDGE = 0, 1, 2


class States:
    """Iteration states of every slot of a level for extents ``dims`` (arrays over N), all slots
    at once: ``occ`` (slots, 3, N) occurrences per state, ``unrolled`` and ``init_edge`` (slots, N),
    ``ee`` (slots, 3, N) whether a state's spatial step has an edge sub-cluster, ``union`` per slot
    the states some candidate has."""

    def __init__(self, lv: VLevel, dims: dict):
        u = lv.units
        m, o, spatial = lv.sizes, lv.ofs, lv.spatial
        e = np.stack([dims[d.var] for d in lv.slots])
        steps = vdiv(e - m, o)
        # temporal slots
        t_steady = np.where((m < e) & (steps > 0), steps, 0)
        t_edge = ~(e < m) & (steps * o + m < e)
        # spatial slots: the units cover ``cov`` per step
        cov = m + o * (u - 1)
        nst = vdiv(steps + 1, u) - 1
        has_edge = ~(e <= cov) & ((nst + 1) * o * u + cov > e) & (nst * o * u + cov != e)
        rem = e - (nst + 1) * o * u
        active = np.where(rem < m, 1, vdiv(rem - m, o) + 1)
        reach = np.where(spatial, cov, m)
        self.unrolled, self.init_edge = e <= reach, e < reach
        self.occ = np.zeros((len(lv.slots), 3) + u.shape, np.int64)
        self.occ[:, INIT] = 1
        self.occ[:, STEADY] = np.where(spatial, np.where((cov < e) & (nst > 0), nst, 0), t_steady)
        self.occ[:, EDGE] = np.where(spatial, ~self.init_edge & has_edge, t_edge)
        self.ee = np.zeros(self.occ.shape, bool)
        self.ee[:, INIT] = spatial & self.init_edge
        self.ee[:, EDGE] = spatial & ((active - 1) * o + m < rem)
        present = self.occ.any(2).tolist()
        self.union = [[p for p in (INIT, STEADY, EDGE) if p == INIT or has[p]] for has in present]


class LevelAt:
    """What the per-PE volumes read of a level (units, edge sub-clusters, tile sizes) at the
    candidates ``cand``; a dim's tiles are picked when first read."""

    def __init__(self, lv: VLevel, cand: np.ndarray):
        self.slots = lv.slots
        self.units, self.edge_units = lv.units[cand], lv.edge_units[cand]
        self.one = np.ones_like(self.units)
        self.false = np.zeros_like(self.units, bool)
        self._lv, self._cand, self._tiles = lv, cand, {}

    def tiles(self, var: str) -> tuple[np.ndarray, ...]:
        """:meth:`VLevel.tiles` at the candidates."""
        got = self._tiles.get(var)
        if got is None:
            got = self._tiles[var] = tuple(a[self._cand] for a in self._lv.tiles(var))
        return got


class Cases:
    """The cases of a level (``rows``: a state per slot, one row per case) at the (case,
    candidate) pairs ``case``, ``cand``: their per-pair states and flags, and the level there."""

    def __init__(self, lv: VLevel, S: States, rows: np.ndarray, case: np.ndarray,
                 cand: np.ndarray):
        self.lv = LevelAt(lv, cand)
        eff = {d.var: j for j, d in enumerate(lv.slots)}   # a dim's state: its last slot's
        var, last = list(eff), np.array(list(eff.values()))
        pos = rows[case][:, last].T                          # (dims, pairs)
        at = cand[None, :]
        edge = np.where(pos == INIT, S.init_edge[last][:, cand], pos == EDGE)
        ee = S.ee[last[:, None], pos, at]
        unrolled = (pos == INIT) & S.unrolled[last][:, cand]
        self.pos, self.edge, self.ee, self.unrolled = ({v: a[k] for k, v in enumerate(var)}
                                                       for a in (pos, edge, ee, unrolled))
        self.states = {v: set(rows[:, j].tolist()) for v, j in eff.items()}
        # per case, the innermost slot whose dim is not at Init (-1: none)
        moving = rows[:, [eff[d.var] for d in lv.slots]] != INIT
        changing = np.where(moving.any(1), len(lv.slots) - 1 - moving[:, ::-1].argmax(1), -1)
        self.cidx = changing[case]
        self.all_init = self.cidx == -1
        self.slot = {d.var: d for d in reversed(lv.slots)}   # the first slot of each dim
        self._in_state: dict = {}
        self._temporal: dict = {}

    def temporal(self, key: tuple, compute):
        """``compute()``, once per ``key``: the per-PE volumes ask for the factors of the
        temporal slots, which are the same for every PE of the level, once per PE variant."""
        got = self._temporal.get(key)
        if got is None:
            got = self._temporal[key] = compute()
        return got

    def select(self, var: str, init, steady, edge):
        """Per pair, ``init``, ``steady`` or ``edge`` by the state of ``var`` (only the states
        some case has are looked at)."""
        out = None
        for state, value in ((EDGE, edge), (STEADY, steady), (INIT, init)):
            if state in self.states[var]:
                if out is None:
                    out = value
                    continue
                mask = self._in_state.get((var, state))
                if mask is None:
                    mask = self._in_state[(var, state)] = self.pos[var] == state
                out = np.where(mask, value, out)
        return out


def _pe_mapped(c: Cases, dims, first: bool, ee):
    lv = c.lv
    ret = c.temporal(("mapped", dims), lambda: _mapped_temporal(c, dims))
    for d in lv.slots:
        if d.var not in dims or not d.spatial:
            continue
        mp, _, me, _, _ = lv.tiles(d.var)
        one = (lv.edge_units == 1) & (first | ee)
        f = np.where(one, me, np.where(lv.edge_units > 1, np.where(ee, me, mp), 1))
        ret = ret * np.where(c.edge[d.var], f, mp)
    return ret


def _mapped_temporal(c: Cases, dims):
    """The temporal slots' factors of :func:`_pe_mapped` (the same for every PE)."""
    lv = c.lv
    ret = lv.one
    for d in lv.slots:
        if d.var in dims and not d.spatial:
            mp, _, me, _, _ = lv.tiles(d.var)
            ret = ret * np.where(c.edge[d.var], me, mp)
    return ret


def pe_ingress(c: Cases, dims, first: bool, ee):
    """Elements of a tensor over ``dims`` one PE receives per case (the first PE or another,
    ``ee``: the edge variant of the tile); all-Init: the whole mapped tile."""
    lv = c.lv
    inited, ret, changing = c.temporal(("ingress", dims), lambda: _ingress_temporal(c, dims))
    for i, d in enumerate(lv.slots):
        if d.var not in dims or not d.spatial:
            continue
        mp, un, me, ue, un1 = lv.tiles(d.var)
        whole, new = np.where(ee, me, mp), np.where(ee, ue, un)
        init = whole if first else np.where(i <= c.cidx, whole, new)
        later = whole if first else np.where((c.cidx == i) & ~inited, new, whole)
        ret = ret * c.select(d.var, init, later, later)
    return np.where(c.all_init, _pe_mapped(c, dims, first, ee), np.where(changing, ret, 0))


def _ingress_temporal(c: Cases, dims) -> tuple:
    """What :func:`pe_ingress` takes from the level whichever PE it asks for: per pair, whether
    a dim of ``dims`` restarted from Init (its whole tile is new), the temporal slots' factors,
    and whether a slot over ``dims`` changes."""
    lv = c.lv
    inited = lv.false   # a dim inside the changing one restarts from Init: its whole tile is new
    for i, d in enumerate(lv.slots):
        if d.var in dims:
            inited = inited | ((i > c.cidx) & (c.pos[d.var] == INIT) & ~c.unrolled[d.var])
    ret, changing = lv.one, False
    for i, d in enumerate(lv.slots):
        if d.var not in dims:
            continue
        is_chg = c.cidx == i
        changing = changing | is_chg
        if not d.spatial:
            mp, un, me, _, _ = lv.tiles(d.var)
            later = np.where(is_chg & ~inited, np.maximum(un, 1), mp)
            ret = ret * c.select(d.var, np.where(c.edge[d.var], me, mp), later, later)
    return inited, ret, changing


def pe_egress(c: Cases, dims, psum: bool, first: bool = True, ee=False, reuse_at_edge=True):
    """Elements of a tensor over ``dims`` one PE sends per case; ``psum``: the partial sums it
    computes (the tile of every other dim too)."""
    lv = c.lv
    ec = lv.edge_units
    ret = c.temporal(("egress", dims, psum), lambda: _egress_temporal(c, dims, psum))
    if psum:
        for d in lv.slots:
            if d.var in dims or not d.spatial:
                continue
            e = c.edge[d.var]
            mp, un, me, ue, un1 = lv.tiles(d.var)
            rest = mp if first else un1
            ret = ret * c.select(d.var, np.where(e & ee, me, rest), rest,
                                 np.where((ec == 1) & (first | ee), me,
                                          np.where(ec > 1, np.where(ee, ue, rest), 1)))
    for dim in dims:
        d = c.slot[dim]
        if not d.spatial:
            continue
        e = c.edge[dim]
        mp, un, me, ue, un1 = lv.tiles(dim + "'" if dim in OVERLAP else dim)
        rest = mp if first else un1
        inner = np.where(ec == 1, me, ue if reuse_at_edge else me)
        ret = ret * c.select(dim, np.where(e & ee, inner, rest), rest,
                             np.where((ec == 1) & (first | ee), lv.tiles(dim)[2],
                                      np.where(ec > 1, np.where(ee, ue, rest), 1)))
    return ret


def _egress_temporal(c: Cases, dims, psum: bool):
    """The temporal slots' factors of :func:`pe_egress` (the same for every PE)."""
    lv = c.lv
    ret = lv.one
    if psum:
        for d in lv.slots:
            if d.var not in dims and not d.spatial:
                mp, _, me, _, _ = lv.tiles(d.var)
                ret = ret * np.where(c.edge[d.var], me, mp)
    for dim in dims:
        if not c.slot[dim].spatial:
            mp, _, me, _, _ = lv.tiles(dim + "'" if dim in OVERLAP else dim)
            ret = ret * c.select(dim, np.where(c.edge[dim], me, mp), mp, me)
    return ret


def _sp_info(c: Cases, dims, all_spatial=False):
    lv = c.lv
    mapped, edge, sp = False, lv.false, None
    for dim in dims:
        d = c.slot[dim]
        if d.spatial:
            mapped, sp = True, dim
            edge = edge | c.edge[dim]
    if all_spatial:
        for d in lv.slots:
            if d.spatial:
                mapped, sp = True, d.var
                edge = edge | c.edge[d.var]
    return mapped, edge, sp


def spread(c: Cases, fn, dims):
    """A per-PE volume ``fn(first, ee)`` summed over the units of the level: the full units,
    and at the spatial edge the edge sub-clusters' own tiles."""
    mapped, edge, sp = _sp_info(c, dims)
    if not mapped:
        return fn(True, False)
    lv = c.lv
    some = np.count_nonzero(edge)
    other = fn(False, False)        # any PE but the first, off the edge
    plain = None if some and some == edge.size else fn(True, False) + (lv.units - 1) * other
    if not some:        # no case of a candidate at the spatial edge
        return plain
    ec = lv.edge_units
    ee = c.ee[sp]
    n_ee = ee.astype(np.int64)
    n_full = np.maximum(ec - n_ee - 1, 0)
    at_edge = fn(True, (ec == 1) & ee) + np.where(ec > 1, n_full * other + n_ee * fn(False, True), 0)
    return at_edge if plain is None else np.where(edge, at_edge, plain)


def psum_map(c: Cases, dims, flat):
    """The partial sums of the output over ``dims`` all units compute per case; ``flat`` is
    :func:`pe_egress` of the first PE without the edge variant."""
    mapped, edge, sp = _sp_info(c, dims, all_spatial=True)
    lv = c.lv
    plain = lv.units * flat
    if not mapped or not edge.any():
        return plain
    ec = lv.edge_units
    ee = c.ee[sp]
    n_ee = ee.astype(np.int64)
    at_edge = pe_egress(c, dims, True, True, (ec == 1) & ee) + np.where(
        ec > 1, np.maximum(ec - n_ee - 1, 0) * flat
        + n_ee * pe_egress(c, dims, True, False, True, False), 0)
    return np.where(edge, at_edge, plain)


def critical_psums(c: Cases, dims, flat):
    """The partial sums of the busiest PE per case (``flat`` as in :func:`psum_map`)."""
    mapped, edge, sp = _sp_info(c, dims)
    if not mapped or not edge.any():
        return flat
    ee = (c.lv.edge_units == 1) & c.ee[sp]
    return np.where(edge, pe_egress(c, dims, True, True, ee), flat)


def sub_extents(lv: VLevel, S: States, ee: bool) -> dict:
    """The extents the level below works on: per dim, the slot whose state decides it and its
    values (over N) in each state (Init, Steady, Edge); ``ee``: the edge sub-cluster's."""
    ec1 = (lv.edge_units == 1) | ee
    last = {d.var: j for j, d in enumerate(lv.slots)}   # a dim's state: its last slot's
    out: dict = {}
    for d in lv.slots:
        if d.var in out:
            continue
        j = last[d.var]
        init_edge, mp, me = S.init_edge[j], lv.mapped[d.var], lv.medge[d.var]
        if not d.spatial:
            per_state = (np.where(init_edge, me, mp), mp, me)
        else:
            per_state = (np.where(init_edge & ec1, me, mp), mp, np.where(ec1, me, mp))
        out[d.var] = (j, per_state)
    return out


def sub_dims(ext: dict, conv: bool) -> dict:
    """Extents ``ext`` of the level below (dim -> array) with the output-side Y'/X' of a
    convolution, all at least 1."""
    out = dict(ext)
    if conv:
        for v in ext:
            if v in OVERLAP and v + "'" not in out:
                out[v + "'"] = out[v] - out[OVERLAP[v]] + 1
    return {k: np.maximum(v, 1) for k, v in out.items()}

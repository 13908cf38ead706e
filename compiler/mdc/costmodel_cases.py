"""MAESTRO's case analysis of one cluster level, over many candidates at once.

Per cluster level, every directive has up to three iteration states (Init, Steady,
Edge); a *case* picks one per directive and occurs ``prod(state counts)`` times
(mdc-format.md §5).  The cases analysed are the product of the states any candidate
has (a case absent for a candidate has occurrence 0), and every per-case quantity is
a numpy expression over candidates:

* ingress traffic of input and filter (only the new elements along the innermost
  changing directive; multicast counted once), egress traffic of the output, MACs;
* compute delay: innermost level, partial sums per PE divided by the MACs a PE does
  per cycle; upper levels, the worst runtime of the sub-cluster tiles, analysed once
  per distinct set of tile extents;
* step delay with double buffering, NoC delay ``hops + ceil(x/bw) - 1``, the
  top-level off-chip term; buffer requirements from the first case; access counts.

MAESTRO's quirks are kept on purpose so that the numbers match (L1 writes of
input/filter equal their L2 reads; the off-chip requirement halved per case; the
odd case enumeration order, :func:`case_order`).  See docs/fidelity.md.
Used by :func:`compiler.mdc.costmodel.evaluate_batch`.
"""
from __future__ import annotations

from itertools import product

import numpy as np

from compiler.mdc.costmodel_levels import OVERLAP, VLevel, vdiv
from compiler.mdc.hw import HwConfig

INIT, STEADY, EDGE = 0, 1, 2


def case_order(counts: list[int]) -> list[tuple[int, ...]]:
    """State index per directive for every case, in MAESTRO's enumeration order.

    MAESTRO advances a directive's counter *after* cases whose id is a multiple of
    its change frequency, so the order is not plain mixed-radix; case 0 is all-Init.
    """
    total = 1
    for c in counts:
        total *= c
    freq = []
    acc = 1
    for c in reversed(counts):
        freq.append(acc)
        acc *= c
    freq.reverse()
    ctr = [0] * len(counts)
    out = []
    for cid in range(total):
        out.append(tuple(ctr))
        for i, c in enumerate(counts):
            if cid % freq[i] == 0:
                ctr[i] = 0 if ctr[i] + 1 == c else ctr[i] + 1
    return out


class _States:
    """Iteration states of every slot of a level for extents ``dims`` (arrays over N)."""

    def __init__(self, lv: VLevel, dims: dict):
        self.occ, self.unrolled, self.init_edge, self.ee, self.union = [], [], [], [], []
        u = lv.units
        for d in lv.slots:
            m, o, e = d.size, d.ofs, dims[d.var]
            occ = np.zeros((3,) + m.shape, np.int64)
            ee = np.zeros((3,) + m.shape, bool)
            if not d.spatial:
                unrolled, init_edge = e <= m, e < m
                nst = vdiv(e - m, o)
                occ[STEADY] = np.where((m < e) & (nst > 0), nst, 0)
                occ[EDGE] = (~(e < m) & (nst * o + m < e))
            else:
                cov = m + o * (u - 1)
                unrolled, init_edge = e <= cov, e < cov
                ee[INIT] = init_edge
                nst = vdiv(vdiv(e - m, o) + 1, u) - 1
                has_edge = ~(e <= cov) & ((nst + 1) * o * u + cov > e) & (nst * o * u + cov != e)
                occ[STEADY] = np.where((cov < e) & (nst > 0), nst, 0)
                rem = e - (nst + 1) * o * u
                active = np.where(rem < m, 1, vdiv(rem - m, o) + 1)
                ee[EDGE] = (active - 1) * o + m < rem
                occ[EDGE] = ~init_edge & has_edge
            occ[INIT] = 1
            self.occ.append(occ)
            self.unrolled.append(unrolled)
            self.init_edge.append(init_edge)
            self.ee.append(ee)
            self.union.append([p for p in (INIT, STEADY, EDGE) if p == INIT or occ[p].any()])
        self.memo: dict = {}     # per-PE volumes, shared by the cases that agree on what they read


class _Case:
    """One combination of slot positions (static) with per-candidate flags."""

    def __init__(self, lv: VLevel, S: _States, pos: tuple[int, ...]):
        self.lv = lv
        eff = {d.var: j for j, d in enumerate(lv.slots)}
        self.eff = eff
        self.pos = {v: pos[j] for v, j in eff.items()}
        self.edge, self.ee, self.unrolled = {}, {}, {}
        false = lv.false
        for v, j in eff.items():
            p = pos[j]
            self.edge[v] = S.init_edge[j] if p == INIT else (lv.true if p == EDGE else false)
            self.ee[v] = S.ee[j][p]
            self.unrolled[v] = S.unrolled[j] if p == INIT else false
        occ = lv.one
        for j, p in enumerate(pos):
            occ = occ * S.occ[j][p]
        self.occ = occ
        self.cidx = max((j for j, d in enumerate(lv.slots) if self.pos[d.var] != INIT), default=-1)
        self.all_init = all(p == INIT for p in self.pos.values())
        self.memo = S.memo
        self.slot = {d.var: d for d in reversed(lv.slots)}   # the first slot of each dim


def _reads_dims(c: _Case, dims, *args) -> tuple:
    """What :func:`_pe_ingress` reads of a case: the innermost changing slot, ``dims``' positions."""
    return (c.cidx,) + tuple(c.pos.get(v) for v in dims)


def _reads_egress(c: _Case, dims, psum: bool, *args) -> tuple:
    """What :func:`_pe_egress` reads of a case: the positions of ``dims`` (all with ``psum``)."""
    return tuple(c.pos.values()) if psum else tuple(c.pos.get(v) for v in dims)


def _memo(reads):
    """Cache a per-PE volume across the cases of one level that agree on what it ``reads`` (the
    spreads of a case, cases differing in other slots). A flag array that is the same for every
    candidate becomes a plain bool first (always so for a batch of one); a volume selected by a
    flag that differs between candidates is not cached."""
    def wrap(fn):
        def cached(c, dims, *args):
            flags, plain = [], True
            for a in args:
                if type(a) is np.ndarray:
                    k = np.count_nonzero(a)
                    if k == 0 or k == a.size:
                        a = k != 0
                    else:
                        plain = False
                flags.append(a)
            if not plain:
                return fn(c, dims, *flags)
            key = (fn, dims, *flags, reads(c, dims, *flags))
            got = c.memo.get(key)
            if got is None:
                got = c.memo[key] = fn(c, dims, *flags)
            return got
        cached.__doc__ = fn.__doc__
        return cached
    return wrap


def _pe_mapped(c: _Case, dims, first: bool, ee):
    lv = c.lv
    ret = lv.one
    for d in lv.slots:
        if d.var not in dims:
            continue
        mp, _, me, _, _ = lv.tiles(d.var)
        e = c.edge[d.var]
        if not d.spatial:
            ret = ret * np.where(e, me, mp)
        else:
            one = (lv.edge_units == 1) & (first | ee)
            f = np.where(one, me, np.where(lv.edge_units > 1, np.where(ee, me, mp), 1))
            ret = ret * np.where(e, f, mp)
    return ret


@_memo(_reads_dims)
def _pe_ingress(c: _Case, dims, first: bool, ee):
    if c.cidx == -1:
        return _pe_mapped(c, dims, first, ee)
    lv = c.lv
    inited = lv.false
    for i, d in enumerate(lv.slots):
        if i > c.cidx and d.var in dims and c.pos[d.var] == INIT:
            inited = inited | ~c.unrolled[d.var]
    ret = lv.one
    changing = False
    for i, d in enumerate(lv.slots):
        if d.var not in dims:
            continue
        is_chg = i == c.cidx
        changing |= is_chg
        p = c.pos[d.var]
        mp, un, me, ue, un1 = lv.tiles(d.var)
        if not d.spatial:
            if p == INIT:
                ret = ret * np.where(c.edge[d.var], me, mp)
            elif is_chg:
                ret = ret * np.where(inited, mp, np.maximum(un, 1))
            else:
                ret = ret * mp
        elif p == INIT:
            ret = ret * (np.where(ee, me, mp) if (first or i <= c.cidx) else np.where(ee, ue, un))
        elif not first and is_chg:
            ret = ret * np.where(inited, np.where(ee, me, mp), np.where(ee, ue, un))
        else:
            ret = ret * np.where(ee, me, mp)
    return ret if changing else lv.zero


@_memo(_reads_egress)
def _pe_egress(c: _Case, dims, psum: bool, first: bool = True, ee=False, reuse_at_edge=True):
    lv = c.lv
    ec = lv.edge_units
    ret = lv.one
    if psum:
        for d in lv.slots:
            if d.var in dims:
                continue
            p, e = c.pos[d.var], c.edge[d.var]
            mp, un, me, ue, un1 = lv.tiles(d.var)
            rest = mp if first else un1
            if not d.spatial:
                ret = ret * np.where(e, me, mp)
            elif p == INIT:
                ret = ret * np.where(e & ee, me, rest)
            elif p == STEADY:
                ret = ret * rest
            else:
                ret = ret * np.where((ec == 1) & (first | ee), me,
                                     np.where(ec > 1, np.where(ee, ue, rest), 1))
    for dim in dims:
        d = c.slot[dim]
        p, e = c.pos[dim], c.edge[dim]
        act = dim + "'" if dim in OVERLAP else dim
        mp, un, me, ue, un1 = lv.tiles(act)
        rest = mp if first else un1
        if not d.spatial:
            ret = ret * (np.where(e, me, mp) if p == INIT else (mp if p == STEADY else me))
        elif p == INIT:
            inner = np.where(ec == 1, me, ue if reuse_at_edge else me)
            ret = ret * np.where(e & ee, inner, rest)
        elif p == STEADY:
            ret = ret * rest
        else:
            ret = ret * np.where((ec == 1) & (first | ee), lv.tiles(dim)[2],
                                 np.where(ec > 1, np.where(ee, ue, rest), 1))
    return ret


def _sp_info(c: _Case, dims, all_spatial=False):
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


def _spread(c: _Case, fn, dims):
    mapped, edge, sp = _sp_info(c, dims)
    if not mapped:
        return fn(True, False)
    lv = c.lv
    some = np.count_nonzero(edge)
    plain = None if some and some == edge.size else fn(True, False) + (lv.units - 1) * fn(False, False)
    if not some:        # no candidate at the spatial edge (always so for a batch of one)
        return plain
    ec = lv.edge_units
    ee = c.ee[sp]
    n_ee = ee.astype(np.int64)
    n_full = np.maximum(ec - n_ee - 1, 0)
    at_edge = fn(True, (ec == 1) & ee) + np.where(ec > 1, n_full * fn(False, False)
                                                   + n_ee * fn(False, True), 0)
    return at_edge if plain is None else np.where(edge, at_edge, plain)


def _psum_map(c: _Case, dims):
    mapped, edge, sp = _sp_info(c, dims, all_spatial=True)
    lv = c.lv
    plain = lv.units * _pe_egress(c, dims, True, True, False)
    if not mapped or not edge.any():
        return plain
    ec = lv.edge_units
    ee = c.ee[sp]
    n_ee = ee.astype(np.int64)
    at_edge = _pe_egress(c, dims, True, True, (ec == 1) & ee) + np.where(
        ec > 1, np.maximum(ec - n_ee - 1, 0) * _pe_egress(c, dims, True, True, False)
        + n_ee * _pe_egress(c, dims, True, False, True, False), 0)
    return np.where(edge, at_edge, plain)


def _critical_psums(c: _Case, dims):
    mapped, edge, sp = _sp_info(c, dims)
    if not mapped or not edge.any():
        return _pe_egress(c, dims, True, True, False)
    ee = (c.lv.edge_units == 1) & c.ee[sp]
    return np.where(edge, _pe_egress(c, dims, True, True, ee), _pe_egress(c, dims, True, True, False))


def _sub_dims(c: _Case, ee: bool, conv: bool) -> dict:
    lv = c.lv
    ec1 = (lv.edge_units == 1) | ee
    out: dict = {}
    for d in lv.slots:
        if d.var in out:
            continue
        p, e = c.pos[d.var], c.edge[d.var]
        mp, me = lv.mapped[d.var], lv.medge[d.var]
        if not d.spatial:
            v = np.where(e, me, mp)
        elif p == INIT:
            v = np.where(e & ec1, me, mp)
        elif p == STEADY:
            v = mp
        else:
            v = np.where(ec1, me, mp)
        out[d.var] = v
    if conv:
        for d in lv.slots:
            if d.var in OVERLAP and d.var + "'" not in out:
                out[d.var + "'"] = out[d.var] - out[OVERLAP[d.var]] + 1
    return {k: np.maximum(v, 1) for k, v in out.items()}


class _Ctx:
    """What every level's analysis of one batch shares, and the memo of sub-level results."""

    def __init__(self, levels, tensors, conv, hw: HwConfig):
        self.levels, self.tensors, self.conv, self.hw = levels, tensors, conv, hw
        self.memo: dict = {}


def analyze(levels: list[VLevel], tensors, conv: bool, hw: HwConfig, full: dict) -> dict:
    """The top level's totals (arrays over candidates) for full extents ``full``."""
    n = levels[0].units.shape[0]
    return _analyze(_Ctx(levels, tensors, conv, hw), 0, {k: np.full(n, v, np.int64)
                                                         for k, v in full.items()})


def _key(li: int, dims: dict):
    return (li,) + tuple((k, v.tobytes()) for k, v in sorted(dims.items()))


def _sub(ctx: _Ctx, li: int, dims: dict):
    key = _key(li, dims)
    if key not in ctx.memo:
        ctx.memo[key] = _analyze(ctx, li, dims)
    return ctx.memo[key]


def _order_positions(S: _States, grid: list[tuple[int, ...]]) -> np.ndarray:
    """MAESTRO's case id of every grid case for every candidate (-1: absent)."""
    counts = np.stack([1 + (o[STEADY] > 0) + (o[EDGE] > 0) for o in S.occ])  # (slots, N)
    code = np.zeros(counts.shape[1], np.int64)
    for o in S.occ:  # which states exist, not just how many
        code = code * 4 + (o[STEADY] > 0) + 2 * (o[EDGE] > 0)
    out = np.full((len(grid), counts.shape[1]), -1, np.int64)
    for u in np.unique(code):
        cols = np.nonzero(code == u)[0]
        cnt = [int(x) for x in counts[:, cols[0]]]
        has = [[(o[STEADY] > 0)[cols[0]], (o[EDGE] > 0)[cols[0]]] for o in S.occ]
        pos_of = {combo: i for i, combo in enumerate(case_order(cnt))}
        for g, pos in enumerate(grid):
            idx = []
            for j, p in enumerate(pos):
                if p == INIT:
                    idx.append(0)
                elif p == STEADY and has[j][0]:
                    idx.append(1)
                elif p == EDGE and has[j][1]:
                    idx.append(1 + int(has[j][0]))
                else:
                    break
            else:
                out[g, cols] = pos_of[tuple(idx)]
    return out


def _analyze(ctx: _Ctx, li: int, dims: dict) -> dict:
    lv = ctx.levels[li]
    hw = ctx.hw
    n = lv.units.shape[0]
    S = _States(lv, dims)
    grid = list(product(*S.union))
    ins = [t for t in ctx.tensors if t.is_input]
    out_t = [t for t in ctx.tensors if not t.is_input][0]
    z = lambda: np.zeros(n, np.int64)  # noqa: E731
    runtime, macs, total, peak, busy = z(), z(), z(), z(), z()
    active_acc, avg_acc = np.zeros(n), np.zeros(n)
    l2_rd, l2_wr, l1_rd, l1_wr, l2_req = ([z(), z(), z()] for _ in range(5))
    top = li == 0
    offv, offpos = [], []
    valid = np.ones(n, bool)
    recursed = np.zeros(n, bool)
    for g, pos in enumerate(grid):
        c = _Case(lv, S, pos)
        occ = c.occ
        if g == 0:
            for ti, t in enumerate(ctx.tensors):
                if t.is_input:
                    l2_req[ti] = 2 * _spread(c, lambda f, e: _pe_ingress(c, t.dims, f, e), t.dims)
                    size = np.ones(n, np.int64)
                    for v in t.dims:
                        size = size * dims[v]
                    l2_wr[ti] = size
                else:
                    l2_req[ti] = 2 * _spread(c, lambda f, e: _pe_egress(c, t.dims, False, f, e),
                                             t.dims)
                    size = np.ones(n, np.int64)
                    for v in t.dims:
                        size = size * ((dims[v] - dims[OVERLAP[v]] + 1)
                                       if ctx.conv and v in OVERLAP else dims[v])
                    l2_rd[ti] = size
        if not occ.any():
            continue
        eg = _spread(c, lambda f, e: _pe_egress(c, out_t.dims, False, f, e), out_t.dims)
        pm = _psum_map(c, out_t.dims)
        l2_wr[2] = l2_wr[2] + occ * eg
        l1_wr[2] = l1_wr[2] + occ * pm
        l1_rd[2] = l1_rd[2] + occ * pm
        run = (_critical_psums(c, out_t.dims) > 0) & (occ > 0)
        if not run.any():
            continue
        occ = np.where(run, occ, 0)
        recursed |= run
        ing = z()
        for ti, t in enumerate(ins):
            ig = _spread(c, lambda f, e: _pe_ingress(c, t.dims, f, e), t.dims)
            ing = ing + ig
            l2_rd[ti] = l2_rd[ti] + occ * ig
            l1_wr[ti] = l2_rd[ti]
            l1_rd[ti] = l1_rd[ti] + occ * pm
        sp = lv.slots[next(j for j, d in enumerate(lv.slots) if d.spatial)].var
        edge, hee, ec = c.edge[sp], c.ee[sp], lv.edge_units
        active = np.where(edge, ec, lv.units).astype(float)
        if li < len(ctx.levels) - 1:
            rf = _sub(ctx, li + 1, _sub_dims(c, False, ctx.conv))
            both = edge & hee
            units = rf["active"] * np.where(edge, ec, lv.units)
            if both.any():  # the edge sub-cluster's own tiles: analysed only when some candidate has one
                rt = _sub(ctx, li + 1, _sub_dims(c, True, ctx.conv))
                compute = np.where(both, np.maximum(rt["runtime"], np.where(ec > 1, rf["runtime"], 0)),
                                   rf["runtime"])
                busy_step = np.where(both, np.maximum(rt["busy"], np.where(ec > 1, rf["busy"], 0)),
                                     rf["busy"])
                units = np.where(both, rt["active"] + np.where(ec > 1, rf["active"] * (ec - 1), 0), units)
            else:
                compute, busy_step = rf["runtime"], rf["busy"]
            active = np.where(units != 0, units, active)
        else:
            compute = busy_step = -(-_critical_psums(c, out_t.dims) // hw.macs_per_pe)
        noc_in = hw.noc_hops + (-(-ing // hw.noc_bw)) - 1
        noc_eg = hw.noc_hops + (-(-eg // hw.noc_bw)) - 1
        step = compute + noc_in if c.all_init else np.maximum(np.maximum(noc_eg, compute), noc_in)
        if top:
            inb = (l2_req[0] + l2_req[1]) // hw.offchip_bw
            step = np.maximum(np.maximum(inb // 2, step), (l2_req[2] // hw.offchip_bw) // 2)
            valid &= ~(run & (compute == 0))
            safe = np.maximum(compute, 1)
            offv.append(np.where(run, np.maximum(l2_req[2] // safe, (l2_req[0] + l2_req[1]) // safe), 0))
            offpos.append((g, run))
        runtime = runtime + occ * step
        busy = busy + occ * busy_step
        macs = macs + occ * pm
        active_acc = active_acc + active * occ
        cd = np.maximum(compute, 1)
        mx = np.maximum(ing, eg)
        peak = np.where(run, np.maximum(peak, mx // cd), peak)
        avg_acc = avg_acc + (occ * mx) // cd
        total = total + occ
    res = {"runtime": runtime, "busy": busy, "active": np.where(total > 0, active_acc / np.maximum(total, 1),
                                                  active_acc)}
    if top:
        res.update(macs=macs, peak=peak, avg=np.where(total > 0, avg_acc / np.maximum(total, 1), 0.0),
                   l2_req=l2_req, l2_rd=l2_rd, l2_wr=l2_wr, l1_rd=l1_rd, l1_wr=l1_wr, valid=valid,
                   recursed=recursed,
                   offchip=_offchip(S, grid, offv, offpos, n),
                   offchip_step=(np.stack(offv).max(0) // 2) if offv else np.zeros(n, np.int64))
    return res


def _offchip(S, grid, offv, offpos, n):
    """MAESTRO halves its running maximum after every top-level case: max_k v_k >> (K - rank_k)."""
    if not offv:
        return np.zeros(n, np.int64)
    order = _order_positions(S, grid)
    big = np.iinfo(np.int64).max
    pos = np.stack([np.where(run, order[g], big) for g, run in offpos])
    vals = np.stack(offv)
    ranks = pos.argsort(0).argsort(0)
    k = (pos != big).sum(0)
    shift = np.clip(k[None, :] - ranks, 0, 62)
    return np.where(pos != big, vals >> shift, 0).max(0)



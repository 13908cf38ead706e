"""MAESTRO's case analysis of one cluster level, over many candidates at once.

All cases of a level are analysed at once: the per-PE volumes at the (case, candidate)
pairs that occur (:mod:`compiler.mdc.costmodel_volumes`), the rest as ``(G cases, N
candidates)`` arrays, whose totals are sums, maxima or any over the cases (a case absent for
a candidate, or in which it computes nothing, adds nothing):

* ingress traffic of input and filter, egress traffic of the output, MACs;
* compute delay: innermost level, partial sums per PE divided by the MACs a PE does
  per cycle; upper levels, the worst runtime of the sub-cluster tiles, analysed in one
  call for all cases and candidates, once per distinct (candidate, tile extents);
* step delay with double buffering, NoC delay ``hops + ceil(x/bw) - 1``, the
  top-level off-chip term; buffer requirements from the first (all-Init) case; access counts.

MAESTRO's quirks are kept on purpose so that the numbers match (L1 writes of
input/filter equal their L2 reads; the off-chip requirement halved per case; the
odd case enumeration order, :func:`case_order`).  See docs/fidelity.md.
Used by :func:`compiler.mdc.costmodel.evaluate_batch`.
"""
from __future__ import annotations

from dataclasses import fields, replace
from functools import lru_cache
from itertools import product

import numpy as np

from compiler.mdc.costmodel_levels import OVERLAP, VDir, VLevel
from compiler.mdc.costmodel_volumes import (EDGE, INIT, STEADY, Cases, States, critical_psums,
                                            pe_egress, pe_ingress, psum_map, spread, sub_dims,
                                            sub_extents)
from compiler.mdc.hw import HwConfig


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


@lru_cache(maxsize=1024)
def _case_ids(counts: tuple[int, ...]) -> np.ndarray:
    """MAESTRO's case id of each state combination (:func:`case_order`), at the combination's
    mixed-radix number over ``counts``; remembered per state count."""
    order = np.array(case_order(list(counts)), np.int64).reshape(-1, len(counts))
    ids = np.empty(len(order), np.int64)
    ids[np.ravel_multi_index(tuple(order.T), counts)] = np.arange(len(order))
    return ids


class _Ctx:
    """What every level's analysis of one batch shares (the input tensors and the output)."""

    def __init__(self, levels, tensors, conv, hw: HwConfig):
        self.levels, self.tensors, self.conv, self.hw = levels, tensors, conv, hw
        self.ins = [t for t in tensors if t.is_input]
        self.out_t = next(t for t in tensors if not t.is_input)
        self._alike: dict[int, np.ndarray] = {}

    def alike(self, li: int) -> np.ndarray:
        """Per candidate, a number shared by exactly the candidates whose levels ``li`` and below
        (and per-candidate hardware) are equal: they analyse alike at equal extents."""
        got = self._alike.get(li)
        if got is None:
            cols = list(_hw_arrays(self.hw).values())
            for lv in self.levels[li:]:
                cols += [lv.units, lv.edge_units, *lv.sizes, *lv.ofs]
                cols += [m[k] for m in (lv.dims, lv.mapped, lv.unique, lv.medge, lv.uedge) for k in sorted(m)]
            got = self._alike[li] = np.unique(np.stack(cols, 1), axis=0, return_inverse=True)[1].reshape(-1)
        return got


def analyze(levels: list[VLevel], tensors, conv: bool, hw: HwConfig, full: dict) -> dict:
    """The top level's totals (arrays over candidates) for full extents ``full``."""
    n = levels[0].units.shape[0]
    return _analyze(_Ctx(levels, tensors, conv, hw), 0, np.arange(n),
                    {k: np.full(n, v, np.int64) for k, v in full.items()})


def _take(lv: VLevel, idx: np.ndarray) -> VLevel:
    """Level ``lv`` of the candidates ``idx`` (repeated as often as they occur)."""
    at = lambda m: {k: v[idx] for k, v in m.items()}  # noqa: E731
    sizes, ofs = lv.sizes[:, idx], lv.ofs[:, idx]
    return VLevel(lv.units[idx], [VDir(d.spatial, d.var, sizes[j], ofs[j]) for j, d in enumerate(lv.slots)],
                  at(lv.dims), lv.edge_units[idx], at(lv.mapped), at(lv.unique), at(lv.medge), at(lv.uedge),
                  sizes=sizes, ofs=ofs)


def _hw_arrays(hw: HwConfig) -> dict[str, np.ndarray]:
    """``hw``'s per-candidate numbers (arrays over the batch), if any."""
    return {f.name: a for f in fields(hw) if isinstance(a := getattr(hw, f.name), np.ndarray)}


def _hw_take(hw: HwConfig, idx: np.ndarray) -> HwConfig:
    """``hw`` for the candidates ``idx``: its per-candidate numbers (if any) picked likewise."""
    picked = {name: a[idx] for name, a in _hw_arrays(hw).items()}
    return replace(hw, **picked) if picked else hw


def _sub(ctx: _Ctx, li: int, idx: np.ndarray, rows: np.ndarray,
         parts: list[tuple[dict, np.ndarray]]) -> list[dict]:
    """Runtime, busy and active of level ``li`` below the cases ``rows`` of the level above, for
    each (extents, mask) of ``parts``: the :func:`sub_extents` of the sub-clusters, needed where
    the (G, N) ``mask`` holds (elsewhere 0, or the values of a candidate that does not run the
    case).  All parts go in one analysis, each distinct set of extents (most cases share
    theirs) once for all candidates."""
    states = rows.tolist()
    vectors: dict = {}       # the bytes of a dim's extents over the candidates -> (number, them)
    distinct: dict = {}      # a case's extents, as vector numbers per dim -> its row number
    picks = []               # per part: its cases that some candidate needs, and their row numbers
    for ext, mask in parts:
        num = {v: [vectors.setdefault(a.tobytes(), (len(vectors), a))[0] for a in t]
               for v, (_, t) in ext.items()}
        cases = np.nonzero(mask.any(1))[0]
        picks.append((cases, [distinct.setdefault(tuple(num[v][states[g][j]]
                                                        for v, (j, _) in ext.items()),
                                                  len(distinct)) for g in cases]))
    n = len(idx)
    res: dict = {}
    if distinct:
        by_num = [a for _, a in vectors.values()]
        keys = list(parts[0][0])
        dims = sub_dims({v: np.concatenate([by_num[row[k]] for row in distinct])
                         for k, v in enumerate(keys)}, ctx.conv)
        res = _analyze_distinct(ctx, li, np.tile(idx, len(distinct)), dims)
    out = []
    for (_, mask), (cases, nums) in zip(parts, picks):
        got = {}
        for name, dtype in (("runtime", np.int64), ("busy", np.int64), ("active", float)):
            a = np.zeros(mask.shape, dtype)
            if len(cases):
                a[cases] = res[name].reshape(len(distinct), n)[nums]
            got[name] = a
        out.append(got)
    return out


# Sub-level rows from which finding the distinct ones pays (it costs a sort of the rows).
DISTINCT_FROM = 512


def _analyze_distinct(ctx: _Ctx, li: int, idx: np.ndarray, dims: dict) -> dict:
    """:func:`_analyze` of a sub-level, each distinct (candidate's levels from ``li`` down, extents)
    once: candidates that differ only above ``li`` share their sub-cluster tiles (on a ResNet-50
    layer with four levels, 21,112 rows of the lowest level hold 2,341 distinct ones)."""
    if len(idx) < DISTINCT_FROM:
        return _analyze(ctx, li, idx, dims)
    key = np.stack([ctx.alike(li)[idx]] + [dims[k] for k in sorted(dims)], 1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(idx):
        return _analyze(ctx, li, idx, dims)
    res = _analyze(ctx, li, idx[first], {k: v[first] for k, v in dims.items()})
    inverse = inverse.reshape(-1)
    return {k: v[inverse] for k, v in res.items()}


def _order_positions(S: States, rows: np.ndarray) -> np.ndarray:
    """MAESTRO's case id of every case (``rows``: a state per slot) for every candidate (-1:
    absent)."""
    has = S.occ[:, 1:] > 0                                    # (slots, Steady/Edge, N)
    code = np.zeros(has.shape[2], np.int64)
    for h in has:  # which states exist, not just how many
        code = code * 4 + h[0] + 2 * h[1]
    out = np.full((len(rows), has.shape[2]), -1, np.int64)
    for u in np.unique(code):
        cols = np.nonzero(code == u)[0]
        steady, edge = has[:, 0, cols[0]], has[:, 1, cols[0]]
        # a state's index among those the slot has (-1: the slot has no such state)
        idx = np.where(rows == INIT, 0, np.where(rows == STEADY, np.where(steady, 1, -1),
                                                 np.where(edge, 1 + steady, -1)))
        ok = np.nonzero((idx >= 0).all(1))[0]
        counts = tuple(int(c) for c in 1 + steady + edge)
        ids = _case_ids(counts)[np.ravel_multi_index(tuple(idx[ok].T), counts)]
        out[ok[:, None], cols] = ids[:, None]
    return out


def _analyze(ctx: _Ctx, li: int, idx: np.ndarray, dims: dict) -> dict:
    """Level ``li``'s totals for the candidates ``idx`` (indices into the batch) at extents
    ``dims``: runtime, busy, active; the top level also its traffic and buffer counts."""
    top = li == 0
    lv = ctx.levels[li] if top else _take(ctx.levels[li], idx)
    hw = ctx.hw if top else _hw_take(ctx.hw, idx)
    S = States(lv, dims)
    grid = list(product(*S.union))      # the cases: a state per slot
    rows = np.array(grid, np.int64).reshape(len(grid), len(lv.slots))
    occ = lv.one
    for j in range(len(lv.slots)):
        occ = occ * S.occ[j][rows[:, j]]
    # The volumes are computed where a case occurs (all candidates in the all-Init case 0) and
    # are 0 elsewhere: every total below weighs them by the occurrence.
    case, cand = np.nonzero(occ)
    c = Cases(lv, S, rows, case, cand)

    def dense(v):
        out = np.zeros(occ.shape, np.asarray(v).dtype)
        out[case, cand] = v
        return out

    ins, out_t = ctx.ins, ctx.out_t
    eg = dense(spread(c, lambda f, e: pe_egress(c, out_t.dims, False, f, e), out_t.dims))
    flat = pe_egress(c, out_t.dims, True)
    crit = dense(critical_psums(c, out_t.dims, flat))
    run = (crit > 0) & (occ > 0)
    occ_run = np.where(run, occ, 0)      # the cases in which a candidate computes
    igs = [dense(spread(c, lambda f, e, t=t: pe_ingress(c, t.dims, f, e), t.dims)) for t in ins]
    ing = sum(igs)
    sp = lv.slots[next(j for j, d in enumerate(lv.slots) if d.spatial)].var
    edge, hee, ec = dense(c.edge[sp]), dense(c.ee[sp]), lv.edge_units
    active = np.where(edge, ec, lv.units).astype(float)
    if li < len(ctx.levels) - 1:
        # the edge sub-cluster's own tiles: analysed only where a candidate has one
        both = edge & hee
        rf, rt = _sub(ctx, li + 1, idx, rows, [(sub_extents(lv, S, False), run),
                                               (sub_extents(lv, S, True), run & both)])
        compute = np.where(both, np.maximum(rt["runtime"], np.where(ec > 1, rf["runtime"], 0)),
                           rf["runtime"])
        busy_step = np.where(both, np.maximum(rt["busy"], np.where(ec > 1, rf["busy"], 0)),
                             rf["busy"])
        units = np.where(both, rt["active"] + np.where(ec > 1, rf["active"] * (ec - 1), 0),
                         rf["active"] * np.where(edge, ec, lv.units))
        active = np.where(units != 0, units, active)
    else:
        compute = busy_step = -(-crit // hw.macs_per_pe)
    noc_in = hw.noc_hops + (-(-ing // hw.noc_bw)) - 1
    noc_eg = hw.noc_hops + (-(-eg // hw.noc_bw)) - 1
    step = np.where(dense(c.all_init), compute + noc_in,
                    np.maximum(np.maximum(noc_eg, compute), noc_in))
    if top:
        l2_req = [2 * ig[0] for ig in igs] + [2 * eg[0]]   # from the first, all-Init case
        inb = (l2_req[0] + l2_req[1]) // hw.offchip_bw
        step = np.maximum(np.maximum(inb // 2, step), (l2_req[2] // hw.offchip_bw) // 2)
    total = occ_run.sum(0)
    # a float sum in case order, as MAESTRO adds (cumsum never regroups the terms)
    active_acc = np.cumsum(active * occ_run, 0)[-1]
    res = {"runtime": (occ_run * step).sum(0), "busy": (occ_run * busy_step).sum(0),
           "active": np.where(total > 0, active_acc / np.maximum(total, 1), active_acc)}
    if top:
        pm = dense(psum_map(c, out_t.dims, flat))
        res.update(_top_totals(ctx, S, rows, dims, occ, occ_run, run, eg, igs, pm, compute, l2_req,
                               total))
    return res


def _top_totals(ctx: _Ctx, S: States, rows, dims, occ, occ_run, run, eg, igs, pm, compute,
                l2_req, total) -> dict:
    """The top level's traffic, access counts, NoC and off-chip bandwidth over its cases."""
    ins, out_t = ctx.ins, ctx.out_t
    l2_rd = [(occ_run * ig).sum(0) for ig in igs]
    l2_wr = []
    for t in ins:
        size = 1
        for v in t.dims:
            size = size * dims[v]
        l2_wr.append(size)
    size = 1
    for v in out_t.dims:
        size = size * ((dims[v] - dims[OVERLAP[v]] + 1) if ctx.conv and v in OVERLAP else dims[v])
    l2_rd.append(size)
    l2_wr.append((occ * eg).sum(0))
    psums, computed = (occ * pm).sum(0), (occ_run * pm).sum(0)
    l1_rd = [computed, computed, psums]
    l1_wr = l2_rd[:2] + [psums]      # MAESTRO: L1 writes of input and filter are their L2 reads
    cd = np.maximum(compute, 1)
    mx = np.maximum(sum(igs), eg)
    offv = np.where(run, np.maximum(l2_req[2] // cd, (l2_req[0] + l2_req[1]) // cd), 0)
    ran = run.any(1)   # MAESTRO's off-chip terms come from the cases some candidate runs
    return dict(macs=computed, peak=np.where(run, mx // cd, 0).max(0, initial=0),
                avg=np.where(total > 0, ((occ_run * mx) // cd).sum(0) / np.maximum(total, 1), 0.0),
                l2_req=l2_req, l2_rd=l2_rd, l2_wr=l2_wr, l1_rd=l1_rd, l1_wr=l1_wr,
                valid=~(run & (compute == 0)).any(0), recursed=run.any(0),
                offchip=_offchip(S, rows, offv[ran], run[ran], np.nonzero(ran)[0]),
                offchip_step=offv[ran].max(0) // 2 if ran.any() else np.zeros(len(total), np.int64))


def _offchip(S: States, rows: np.ndarray, vals: np.ndarray, runs: np.ndarray, cases: np.ndarray):
    """MAESTRO halves its running maximum after every top-level case: max_k v_k >> (K - rank_k)."""
    n = runs.shape[1]
    if not len(cases):
        return np.zeros(n, np.int64)
    order = _order_positions(S, rows)
    big = np.iinfo(np.int64).max
    pos = np.where(runs, order[cases], big)
    ranks = pos.argsort(0).argsort(0)
    k = (pos != big).sum(0)
    shift = np.clip(k[None, :] - ranks, 0, 62)
    return np.where(pos != big, vals >> shift, 0).max(0)

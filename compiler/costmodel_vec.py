"""Vectorised MAESTRO cost model: many candidate mappings of one layer at once.

Candidates share a *template* (layer, directive kinds/dims and Cluster positions);
sizes, offsets and cluster sizes are arrays.  The analysis is the same as the
scalar :mod:`compiler.costmodel` (tests check they agree): iteration states are
computed per candidate, the cases are the product of the states any candidate
has (a case absent for a candidate has occurrence 0), and every per-case
quantity is a numpy expression over candidates.  Sub-cluster levels are analysed
once per distinct set of tile extents.

API::

    template, sizes, offsets, clusters = template_from_layer(layer, constants=None)
    evaluate_batch(template, sizes, offsets, clusters, hw, *, simd_lanes=1) -> BatchMetrics

``sizes``/``offsets`` have shape ``(N, n_maps)`` (one column per Temporal/SpatialMap
of the template, in order), ``clusters`` ``(N, n_clusters)``.  Candidates that
MAESTRO would reject for value reasons (cluster product > num_pes, a top-level step
with no compute) come back with ``valid == False``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Mapping

import numpy as np

from compiler.costmodel import EDGE, INIT, L1_ENERGY, L2_ENERGY, STEADY, TENSORS, case_order
from compiler.costmodel_levels import OVERLAP
from compiler.costmodel_vec_levels import VLevel, build_levels, vdiv
from compiler.mdc import ClusterDirective, HwConfig, MdcLayer, resolve_layer


@dataclass(frozen=True)
class MappingTemplate:
    """The shared structure: the layer (dims, stride, type) and ``items`` = (kind, dim),
    kind "T" (TemporalMap), "S" (SpatialMap) or "C" (Cluster, dim "")."""

    layer: MdcLayer
    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BatchMetrics:
    """Per-candidate arrays of the :class:`compiler.costmodel.Metrics` fields."""

    valid: np.ndarray
    macs: np.ndarray
    runtime_cycles: np.ndarray
    energy_mac_units: np.ndarray
    l1_elements: np.ndarray
    l2_elements: np.ndarray
    noc_bw_required: np.ndarray
    noc_bw_avg: np.ndarray
    offchip_bw_required: np.ndarray
    offchip_bw_step: np.ndarray
    compute_delay_cycles: np.ndarray
    avg_util_pes: np.ndarray
    utilization: np.ndarray
    l2_reads: dict
    l2_writes: dict
    l1_reads: dict
    l1_writes: dict


def template_from_layer(layer: MdcLayer, constants: Mapping[str, int] | None = None):
    """Split a layer into its template and one row of sizes/offsets/clusters."""
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


class _Case:
    """One combination of slot positions (static) with per-candidate flags."""

    def __init__(self, lv: VLevel, S: _States, pos: tuple[int, ...]):
        self.lv = lv
        eff = {d.var: j for j, d in enumerate(lv.slots)}
        self.eff = eff
        self.pos = {v: pos[j] for v, j in eff.items()}
        self.edge, self.ee, self.unrolled = {}, {}, {}
        false = np.zeros_like(lv.units, bool)
        for v, j in eff.items():
            p = pos[j]
            self.edge[v] = S.init_edge[j] if p == INIT else (~false if p == EDGE else false)
            self.ee[v] = S.ee[j][p]
            self.unrolled[v] = S.unrolled[j] if p == INIT else false
        occ = np.ones_like(lv.units)
        for j, p in enumerate(pos):
            occ = occ * S.occ[j][p]
        self.occ = occ
        self.cidx = max((j for j, d in enumerate(lv.slots) if self.pos[d.var] != INIT), default=-1)
        self.all_init = all(p == INIT for p in self.pos.values())


def _g(m: dict, k: str, like):
    v = m.get(k)
    return v if v is not None else np.zeros_like(like)  # MAESTRO's map[] default


def _pe_mapped(c: _Case, dims, first: bool, ee):
    lv = c.lv
    ret = np.ones_like(lv.units)
    for d in lv.slots:
        if d.var not in dims:
            continue
        mp, me = _g(lv.mapped, d.var, ret), _g(lv.medge, d.var, ret)
        e = c.edge[d.var]
        if not d.spatial:
            ret = ret * np.where(e, me, mp)
        else:
            one = (lv.edge_units == 1) & (first | ee)
            f = np.where(one, me, np.where(lv.edge_units > 1, np.where(ee, me, mp), 1))
            ret = ret * np.where(e, f, mp)
    return ret


def _pe_ingress(c: _Case, dims, first: bool, ee):
    if c.cidx == -1:
        return _pe_mapped(c, dims, first, ee)
    lv = c.lv
    inited = np.zeros_like(lv.units, bool)
    for i, d in enumerate(lv.slots):
        if i > c.cidx and d.var in dims and c.pos[d.var] == INIT:
            inited = inited | ~c.unrolled[d.var]
    ret = np.ones_like(lv.units)
    changing = False
    for i, d in enumerate(lv.slots):
        if d.var not in dims:
            continue
        is_chg = i == c.cidx
        changing |= is_chg
        p = c.pos[d.var]
        mp, un = _g(lv.mapped, d.var, ret), _g(lv.unique, d.var, ret)
        me, ue = _g(lv.medge, d.var, ret), _g(lv.uedge, d.var, ret)
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
    return ret if changing else np.zeros_like(ret)


def _nz(x):
    return np.where(x != 0, x, 1)


def _pe_egress(c: _Case, dims, psum: bool, first: bool = True, ee=False, reuse_at_edge=True):
    lv = c.lv
    ec = lv.edge_units
    ret = np.ones_like(lv.units)
    if psum:
        for d in lv.slots:
            if d.var in dims:
                continue
            p, e = c.pos[d.var], c.edge[d.var]
            mp, un = _g(lv.mapped, d.var, ret), _g(lv.unique, d.var, ret)
            me, ue = _g(lv.medge, d.var, ret), _g(lv.uedge, d.var, ret)
            rest = mp if first else _nz(un)
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
        j = next(i for i, d in enumerate(lv.slots) if d.var == dim)
        d = lv.slots[j]
        p, e = c.pos[dim], c.edge[dim]
        act = dim + "'" if dim in OVERLAP else dim
        mp, un = _g(lv.mapped, act, ret), _g(lv.unique, act, ret)
        me, ue = _g(lv.medge, act, ret), _g(lv.uedge, act, ret)
        rest = mp if first else _nz(un)
        if not d.spatial:
            ret = ret * (np.where(e, me, mp) if p == INIT else (mp if p == STEADY else me))
        elif p == INIT:
            inner = np.where(ec == 1, me, ue if reuse_at_edge else me)
            ret = ret * np.where(e & ee, inner, rest)
        elif p == STEADY:
            ret = ret * rest
        else:
            ret = ret * np.where((ec == 1) & (first | ee), _g(lv.medge, dim, ret),
                                 np.where(ec > 1, np.where(ee, ue, rest), 1))
    return ret


def _sp_info(c: _Case, dims, all_spatial=False):
    lv = c.lv
    mapped, edge, sp = False, np.zeros_like(lv.units, bool), None
    seen = [d.var for d in lv.slots]
    for dim in dims:
        d = lv.slots[seen.index(dim)]
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
    ec = lv.edge_units
    plain = fn(True, False) + (lv.units - 1) * fn(False, False)
    ee = c.ee[sp]
    n_ee = ee.astype(np.int64)
    n_full = np.maximum(ec - n_ee - 1, 0)
    at_edge = fn(True, (ec == 1) & ee) + np.where(ec > 1, n_full * fn(False, False)
                                                   + n_ee * fn(False, True), 0)
    return np.where(edge, at_edge, plain)


def _psum_map(c: _Case, dims):
    mapped, edge, sp = _sp_info(c, dims, all_spatial=True)
    lv = c.lv
    plain = lv.units * _pe_egress(c, dims, True, True, False)
    if not mapped:
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
    if not mapped:
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
    def __init__(self, levels, tensors, conv, hw, lanes):
        self.levels, self.tensors, self.conv, self.hw, self.lanes = levels, tensors, conv, hw, lanes
        self.memo: dict = {}


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
            rt = _sub(ctx, li + 1, _sub_dims(c, True, ctx.conv))
            both = edge & hee
            compute = np.where(both, np.maximum(rt["runtime"], np.where(ec > 1, rf["runtime"], 0)),
                               rf["runtime"])
            busy_step = np.where(both, np.maximum(rt["busy"], np.where(ec > 1, rf["busy"], 0)), rf["busy"])
            units = np.where(both, rt["active"] + np.where(ec > 1, rf["active"] * (ec - 1), 0),
                             rf["active"] * np.where(edge, ec, lv.units))
            active = np.where(units != 0, units, active)
        else:
            compute = busy_step = -(-_critical_psums(c, out_t.dims) // ctx.lanes)
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


def _l1_req(lv: VLevel, tensors, n: int) -> np.ndarray:
    l1 = np.zeros(n, np.int64)
    for t in tensors:
        vol = np.ones(n, np.int64)
        for v in t.dims:
            if v in lv.mapped:
                vol = vol * lv.mapped[v]
        l1 = l1 + 2 * vol
    return l1


def evaluate_batch(template: MappingTemplate, sizes, offsets, clusters, hw: HwConfig, *,
                   simd_lanes: int = 1) -> BatchMetrics:
    """Score N candidates of one template; every field of the result is an (N,) array."""
    sizes = np.asarray(sizes, np.int64)
    offsets = np.asarray(offsets, np.int64)
    n = sizes.shape[0]
    clusters = np.asarray(clusters, np.int64).reshape(n, -1)
    levels, tensors, full, conv, valid = build_levels(template.layer, template.items, sizes,
                                                      offsets, clusters, hw.num_pes)
    ctx = _Ctx(levels, tensors, conv, hw, simd_lanes)
    full_arr = {k: np.full(n, v, np.int64) for k, v in full.items()}
    top = _analyze(ctx, 0, full_arr)
    l1 = _l1_req(levels[-1], tensors, n)
    if len(levels) > 1:  # MAESTRO reports the top level's L1 when no case reached the PEs
        l1 = np.where(top["recursed"], l1, _l1_req(levels[0], tensors, n))
    l2acc = sum(top["l2_rd"]) + sum(top["l2_wr"])
    l1acc = sum(top["l1_rd"]) + sum(top["l1_wr"])
    per = lambda v: dict(zip(TENSORS, v))  # noqa: E731
    return BatchMetrics(
        valid=valid & top["valid"], macs=top["macs"], runtime_cycles=top["runtime"],
        energy_mac_units=L2_ENERGY * l2acc + L1_ENERGY * l1acc + top["macs"], l1_elements=l1,
        l2_elements=sum(top["l2_req"]), noc_bw_required=top["peak"], noc_bw_avg=top["avg"],
        offchip_bw_required=top["offchip"],
        offchip_bw_step=top["offchip_step"], compute_delay_cycles=top["busy"], avg_util_pes=top["active"],
        utilization=top["active"] / hw.num_pes, l2_reads=per(top["l2_rd"]),
        l2_writes=per(top["l2_wr"]), l1_reads=per(top["l1_rd"]), l1_writes=per(top["l1_wr"]))

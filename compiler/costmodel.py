"""MAESTRO's analytical cost model for one MDC layer (scalar reference path).

Reproduces MAESTRO (HEAD 4eb08d1) case by case, see mdc-format.md §5:

* per cluster level, every directive has up to three iteration states (Init,
  Steady, Edge); a *case* picks one per directive and occurs
  ``prod(state counts)`` times;
* per case: ingress traffic of input and filter (only the new elements along
  the innermost changing directive; multicast counted once), egress traffic of
  the output, MACs, compute delay (innermost level: MACs per PE; upper levels:
  the worst runtime of the sub-cluster tiles, analysed recursively);
* step delay with double buffering, NoC delay ``hops + ceil(x/bw) - 1``, the
  top-level off-chip term; buffer requirements from the first case; access
  counts; energy ``18.61*L2 + 1.68*L1 + MACs``.

MAESTRO's quirks are kept on purpose so that the numbers match (L1 writes of
input/filter equal their L2 reads; the off-chip requirement halved per case; the
odd case enumeration order).  See docs/fidelity.md.

API::

    evaluate_layer(layer, hw, *, constants=None, simd_lanes=1) -> Metrics
    evaluate_file(mdc, hw, *, simd_lanes=1) -> list[Metrics]
    analytical_macs(layer, constants=None) -> int

``layer`` is an :class:`compiler.mdc.MdcLayer` (parsed, or built with
:func:`compiler.mdc.make_layer`).  Invalid inputs raise
:class:`compiler.errors.MappingError`.  For many candidates of one layer use
:func:`compiler.costmodel_vec.evaluate_batch`.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Mapping

from compiler.costmodel_levels import (OVERLAP, SLIDING, LayerSpec, LevelSpec, Tensor,
                                       build_layer_spec, tdiv)
from compiler.errors import MappingError
from compiler.mdc import HwConfig, MdcFile, MdcLayer, resolve_layer

L2_ENERGY = 18.61
L1_ENERGY = 1.68
INIT, STEADY, EDGE = 0, 1, 2
TENSORS = ("input", "filter", "output")


@dataclass(frozen=True)
class Metrics:
    """What MAESTRO reports for one layer (element counts, cycles, MAC-energy units).

    Per-tensor counts are dicts keyed by "input", "filter", "output".
    ``offchip_bw_required`` is MAESTRO's value, which halves its running maximum after
    every top-level case; ``offchip_bw_step`` is mapc's: the largest L2 tile refill
    (half the double-buffered requirement) per top-level compute step.
    """

    layer: str
    macs: int
    runtime_cycles: int
    energy_mac_units: float
    l1_elements: int
    l2_elements: int
    noc_bw_required: int
    noc_bw_avg: float
    offchip_bw_required: int
    offchip_bw_step: int
    avg_util_pes: float
    utilization: float
    num_pes: int
    l1_req: dict
    l2_req: dict
    l2_reads: dict
    l2_writes: dict
    l1_reads: dict
    l1_writes: dict

    def as_dict(self) -> dict:
        """JSON-ready dict of all fields."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class State:
    """One iteration state of one directive."""

    pos: int
    occ: int
    unrolled: bool
    init_edge: bool = False
    sp_edge_edge: bool = False

    @property
    def edge(self) -> bool:
        """MAESTRO's IsEdge: the Edge state, or an Init that overruns the extent."""
        return self.pos == EDGE or self.init_edge


def directive_states(spatial: bool, m: int, o: int, e: int, units: int) -> list[State]:
    """The iteration states of one directive over extent ``e`` (MAESTRO's IterationAnalysis)."""
    if not spatial:
        states = [State(INIT, 1, e <= m, e < m)]
        steady = tdiv(e - m, o)
        if m < e and steady > 0:
            states.append(State(STEADY, steady, False))
        if not e < m and steady * o + m < e:
            states.append(State(EDGE, 1, False))
        return states
    cov = m + o * (units - 1)
    init_edge = e < cov
    states = [State(INIT, 1, e <= cov, init_edge, init_edge)]
    steady = tdiv(tdiv(e - m, o) + 1, units) - 1
    has_edge = (not e <= cov) and ((steady + 1) * o * units + cov > e) \
        and (steady * o * units + cov != e)
    if cov < e and steady > 0:
        states.append(State(STEADY, steady, False))
    rem = e - (steady + 1) * o * units
    active = 1 if rem < m else tdiv(rem - m, o) + 1
    ee = (active - 1) * o + m < rem
    if not init_edge and has_edge:
        states.append(State(EDGE, 1, False, False, ee))
    return states


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


@dataclass(frozen=True)
class LevelResult:
    """Totals of one (recursive) level analysis."""

    runtime: int
    macs: int
    avg_active: float
    peak_bw: int
    avg_bw: float
    offchip: int
    offchip_step: int
    l2_req: tuple[int, int, int]
    l1_req: tuple[int, int, int]
    l2_rd: tuple[int, int, int]
    l2_wr: tuple[int, int, int]
    l1_rd: tuple[int, int, int]
    l1_wr: tuple[int, int, int]


class _Level:
    """Per-level lookups shared by all cases (read-only after construction)."""

    def __init__(self, spec: LevelSpec, tensors: tuple[Tensor, ...]):
        self.spec = spec
        self.df = spec.dataflow
        self.U = spec.units
        self.EC = spec.edge_units
        self.mapped = dict(spec.mapped)
        self.unique = dict(spec.unique)
        self.medge = dict(spec.mapped_edge)
        self.uedge = dict(spec.unique_edge)
        self.dims = dict(spec.dims)
        self.first = {}
        for i, d in enumerate(self.df):
            self.first.setdefault(d.var, i)
        self.tensors = tensors
        self.sp_idx = next(i for i, d in enumerate(self.df) if d.spatial)


def _pe_mapped(L: _Level, t: Tensor, st: dict, first: bool, ee: bool) -> int:
    ret = 1
    for d in L.df:
        if d.var not in t.dims:
            continue
        s = st[d.var]
        if not d.spatial:
            ret *= L.medge.get(d.var, 0) if s.edge else L.mapped.get(d.var, 0)
        elif s.edge:
            if L.EC == 1 and (first or ee):
                ret *= L.medge.get(d.var, 0)
            elif L.EC > 1:
                ret *= L.medge.get(d.var, 0) if ee else L.mapped.get(d.var, 0)
        else:
            ret *= L.mapped.get(d.var, 0)
    return ret


def _pe_ingress(L: _Level, t: Tensor, st: dict, first: bool, ee: bool, cidx: int) -> int:
    if cidx == -1:
        return _pe_mapped(L, t, st, first, ee)
    inited = any(i > cidx and d.var in t.dims and st[d.var].pos == INIT and not st[d.var].unrolled
                 for i, d in enumerate(L.df))
    ret = 1
    changing = False
    for i, d in enumerate(L.df):
        if d.var not in t.dims:
            continue
        s = st[d.var]
        is_chg = i == cidx
        changing |= is_chg
        mp, un = L.mapped.get(d.var, 0), L.unique.get(d.var, 0)
        me, ue = L.medge.get(d.var, 0), L.uedge.get(d.var, 0)
        if not d.spatial:
            if s.pos == INIT:
                ret *= me if s.edge else mp
            elif is_chg and not inited:
                ret *= max(un, 1)
            else:
                ret *= mp
        elif s.pos == INIT:
            if first or i <= cidx:
                ret *= me if ee else mp
            else:
                ret *= ue if ee else un
        else:
            if not first and not inited and is_chg:
                ret *= ue if ee else un
            else:
                ret *= me if ee else mp
    return ret if changing else 0


def _pe_egress(L: _Level, t: Tensor, st: dict, psum: bool, first: bool = True, ee: bool = False,
               reuse_at_edge: bool = True) -> int:
    ret = 1
    if psum:
        for d in L.df:
            if d.var in t.dims:
                continue
            s = st[d.var]
            mp, un = L.mapped.get(d.var, 0), L.unique.get(d.var, 0)
            me, ue = L.medge.get(d.var, 0), L.uedge.get(d.var, 0)
            if not d.spatial:
                ret *= me if s.edge else mp
            elif s.pos == INIT:
                if s.edge and ee:
                    if L.EC == 1:
                        ret *= me
                    elif L.EC > 1:
                        ret *= me
                else:
                    ret *= mp if first else (un if un else 1)
            elif s.pos == STEADY:
                ret *= mp if first else (un if un else 1)
            else:
                if L.EC == 1 and (first or ee):
                    ret *= me
                elif L.EC > 1:
                    ret *= ue if ee else (mp if first else (un if un else 1))
    for dim in t.dims:
        d = L.df[L.first[dim]]
        s = st[dim]
        act = dim + "'" if dim in OVERLAP else dim
        mp, un = L.mapped.get(act, 0), L.unique.get(act, 0)
        me, ue = L.medge.get(act, 0), L.uedge.get(act, 0)
        if not d.spatial:
            ret *= (me if s.edge else mp) if s.pos == INIT else (mp if s.pos == STEADY else me)
        elif s.pos == INIT:
            if s.edge and ee:
                if L.EC == 1:
                    ret *= me
                elif L.EC > 1:
                    ret *= ue if reuse_at_edge else me
            else:
                ret *= mp if first else (un if un else 1)
        elif s.pos == STEADY:
            ret *= mp if first else (un if un else 1)
        else:
            if L.EC == 1 and (first or ee):
                ret *= L.medge.get(dim, 0)  # MAESTRO uses the input-side name here
            elif L.EC > 1:
                ret *= ue if ee else (mp if first else (un if un else 1))
    return ret


def _sp_info(L: _Level, dims, st: dict, all_spatial: bool = False):
    mapped, edge, sp_state = False, False, None
    for dim in dims:
        d = L.df[L.first[dim]]
        if d.spatial:
            mapped, sp_state = True, st[dim]
            edge |= st[dim].edge
    if all_spatial:
        for d in L.df:
            if d.spatial:
                mapped, sp_state = True, st[d.var]
                edge |= st[d.var].edge
    return mapped, edge, sp_state


def _spread(L: _Level, fn, mapped: bool, edge: bool, sp_state, first_scaled: bool,
            last_args: tuple) -> int:
    """Sum a per-PE volume over the sub-clusters of the case (MAESTRO's spatial cases)."""
    if not mapped:
        return (L.U if first_scaled else 1) * fn(True, False)
    if not edge:
        return L.U * fn(True, False) if first_scaled else fn(True, False) + (L.U - 1) * fn(False, False)
    ee = sp_state.sp_edge_edge
    ret = fn(True, L.EC == 1 and ee)
    if L.EC > 1:
        n_ee = 1 if ee else 0
        n_full = max(L.EC - n_ee - 1, 0)
        ret += n_full * fn(*last_args[0]) + n_ee * fn(*last_args[1])
    return ret


def _ingress(L, t, st, cidx):
    m, e, s = _sp_info(L, t.dims, st)
    fn = lambda first, ee: _pe_ingress(L, t, st, first, ee, cidx)  # noqa: E731
    return _spread(L, fn, m, e, s, False, ((False, False), (False, True)))


def _egress(L, t, st):
    m, e, s = _sp_info(L, t.dims, st)
    fn = lambda first, ee: _pe_egress(L, t, st, False, first, ee)  # noqa: E731
    return _spread(L, fn, m, e, s, False, ((False, False), (False, True)))


def _psum_map(L, t, st):
    m, e, s = _sp_info(L, t.dims, st, all_spatial=True)
    if m and e:
        ee = s.sp_edge_edge
        ret = _pe_egress(L, t, st, True, True, L.EC == 1 and ee)
        if L.EC > 1:
            n_ee = 1 if ee else 0
            ret += max(L.EC - n_ee - 1, 0) * _pe_egress(L, t, st, True, True, False)
            ret += n_ee * _pe_egress(L, t, st, True, False, True, False)
        return ret
    return L.U * _pe_egress(L, t, st, True, True, False)


def _critical_psums(L, t, st):
    m, e, s = _sp_info(L, t.dims, st)
    if m and e:
        return _pe_egress(L, t, st, True, True, L.EC == 1 and s.sp_edge_edge)
    return _pe_egress(L, t, st, True, True, False)


def _sub_dims(L: _Level, st: dict, ee: bool, conv: bool) -> tuple:
    out: dict[str, int] = {}
    for d in L.df:
        s = st[d.var]
        if not d.spatial:
            v = L.medge.get(d.var, 0) if s.edge else L.mapped.get(d.var, 0)
        elif s.pos == INIT:
            v = L.medge.get(d.var, 0) if s.edge and (L.EC == 1 or ee) else L.mapped.get(d.var, 0)
        elif s.pos == STEADY:
            v = L.mapped.get(d.var, 0)
        else:
            v = L.medge.get(d.var, 0) if (L.EC == 1 or ee) else L.mapped.get(d.var, 0)
        out.setdefault(d.var, v)
    if conv:
        for d in L.df:
            if d.var in OVERLAP and d.var + "'" not in out:
                out[d.var + "'"] = out[d.var] - out[OVERLAP[d.var]] + 1
    return tuple(sorted(out.items()))


def _tensor_size(t: Tensor, dims: dict, conv: bool) -> int:
    size = 1
    for v in t.dims:
        if v not in dims:
            raise MappingError(f"Dimension {v} not found")
        if conv and not t.is_input and v in OVERLAP:
            size *= dims[v] - dims[OVERLAP[v]] + 1
        else:
            size *= dims[v]
    return size


def _noc(x: int, hw: HwConfig) -> int:
    return hw.noc_hops + (-(-x // hw.noc_bw)) - 1


def analyze(spec: LayerSpec, hw: HwConfig, simd_lanes: int = 1) -> list[LevelResult]:
    """Analyse all levels; returns ``[top, innermost-first-result]``."""
    levels = [_Level(s, spec.tensors) for s in spec.levels]
    memo: dict = {}
    firsts: list[LevelResult] = []

    def run(li: int, dims_key: tuple) -> LevelResult:
        key = (li, dims_key)
        if key in memo:
            return memo[key]
        L = levels[li]
        dims = dict(dims_key)
        per_dir = []
        for d in L.df:
            if d.var not in dims:
                raise MappingError(f"Dimension {d.var} not found")
            per_dir.append(directive_states(d.spatial, d.size, d.ofs, dims[d.var], L.U))
        order = case_order([len(p) for p in per_dir])
        ins = [t for t in spec.tensors if t.is_input]
        outs = [t for t in spec.tensors if not t.is_input]
        l2_rd = [0, 0, 0]
        l2_wr = [0, 0, 0]
        l1_rd = [0, 0, 0]
        l1_wr = [0, 0, 0]
        l2_req = [0, 0, 0]
        l1_req = [0, 0, 0]
        runtime = macs = 0
        active_acc = 0.0
        peak = 0
        avg_acc = 0.0
        offchip = offchip_step = 0
        total_occ = 0
        for cid, combo in enumerate(order):
            st: dict = {}
            occ = 1
            for d, states, k in zip(L.df, per_dir, combo):
                st[d.var] = states[k]
                occ *= states[k].occ
            cidx = -1
            for i, d in enumerate(L.df):
                if st[d.var].pos != INIT:
                    cidx = i
            if cid == 0:
                for ti, t in enumerate(spec.tensors):
                    if t.is_input:
                        l2_req[ti] = 2 * _ingress(L, t, st, cidx)
                        l2_wr[ti] = _tensor_size(t, dims, spec.conv)
                    else:
                        l2_req[ti] = 2 * _egress(L, t, st)
                        l2_rd[ti] = _tensor_size(t, dims, spec.conv)
                    vol = 1
                    for v in t.dims:
                        if v in L.mapped:
                            vol *= L.mapped[v]
                    l1_req[ti] = 2 * vol
            egress = 0
            pmap = 0
            psums = 0
            for t in outs:
                ti = spec.tensors.index(t)
                eg = _egress(L, t, st)
                egress += eg
                pm = _psum_map(L, t, st)
                pmap += pm
                l2_wr[ti] += occ * eg
                l1_wr[ti] += occ * pmap
                l1_rd[ti] += occ * pmap
                psums += _critical_psums(L, t, st)
            if psums <= 0:
                continue
            ingress = 0
            for t in ins:
                ti = spec.tensors.index(t)
                ig = _ingress(L, t, st, cidx)
                ingress += ig
                l2_rd[ti] += occ * ig
                l1_wr[ti] = l2_rd[ti]  # MAESTRO's counter bug, kept for fidelity
                l1_rd[ti] += occ * pmap
            sp_state = st[L.df[L.sp_idx].var]
            active = L.EC if sp_state.edge else L.U
            active_units = 0.0
            if li < len(levels) - 1:
                subs = []
                if sp_state.edge:
                    if sp_state.sp_edge_edge:
                        subs.append((run(li + 1, _sub_dims(L, st, True, spec.conv)), 1))
                        if L.EC - 1 > 0:
                            subs.append((run(li + 1, _sub_dims(L, st, False, spec.conv)), L.EC - 1))
                    else:
                        subs.append((run(li + 1, _sub_dims(L, st, False, spec.conv)), L.EC))
                else:
                    subs.append((run(li + 1, _sub_dims(L, st, False, spec.conv)), L.U))
                compute = max(r.runtime for r, _ in subs)
                active_units = sum(r.avg_active * n for r, n in subs)
            else:
                compute = ceil(psums / simd_lanes)
            d_in, d_eg = _noc(ingress, hw), _noc(egress, hw)
            if all(s.pos == INIT for s in st.values()):
                step = compute + d_in
            else:
                step = max(d_eg, compute, d_in)
            if li == 0:
                outb = l2_req[2] // hw.offchip_bw
                inb = (l2_req[0] + l2_req[1]) // hw.offchip_bw
                step = max(inb // 2, step, outb // 2)
                if compute == 0:
                    raise MappingError("a top-level step computes nothing (MAESTRO divides by zero)")
                need = max(l2_req[2] // compute, (l2_req[0] + l2_req[1]) // compute)
                offchip = max(offchip, need) // 2  # MAESTRO halves again on every case
                offchip_step = max(offchip_step, need // 2)
            runtime += occ * step
            macs += occ * pmap
            active_acc += (active_units if active_units != 0 else active) * occ
            compute = compute or 1
            peak = max(peak, max(ingress, egress) // compute)
            avg_acc += (occ * max(ingress, egress)) // compute
            total_occ += occ
        res = LevelResult(runtime, macs, active_acc / total_occ if total_occ else active_acc, peak,
                          avg_acc / total_occ if total_occ else 0.0, offchip, offchip_step, tuple(l2_req),
                          tuple(l1_req), tuple(l2_rd), tuple(l2_wr), tuple(l1_rd), tuple(l1_wr))
        if not firsts:
            firsts.append(res)
        memo[key] = res
        return res

    top = run(0, spec.full_dims)
    return [top, firsts[0]]


def _metrics(name: str, top: LevelResult, inner: LevelResult, hw: HwConfig) -> Metrics:
    l2 = sum(top.l2_rd) + sum(top.l2_wr)
    l1 = sum(top.l1_rd) + sum(top.l1_wr)
    energy = L2_ENERGY * l2 + L1_ENERGY * l1 + top.macs
    per = lambda v: dict(zip(TENSORS, v))  # noqa: E731
    return Metrics(
        layer=name, macs=top.macs, runtime_cycles=top.runtime, energy_mac_units=energy,
        l1_elements=sum(inner.l1_req), l2_elements=sum(top.l2_req),
        noc_bw_required=top.peak_bw, noc_bw_avg=top.avg_bw, offchip_bw_required=top.offchip,
        offchip_bw_step=top.offchip_step,
        avg_util_pes=top.avg_active, utilization=top.avg_active / hw.num_pes, num_pes=hw.num_pes,
        l1_req=per(inner.l1_req), l2_req=per(top.l2_req), l2_reads=per(top.l2_rd),
        l2_writes=per(top.l2_wr), l1_reads=per(top.l1_rd), l1_writes=per(top.l1_wr))


def evaluate_layer(layer: MdcLayer, hw: HwConfig, *, constants: Mapping[str, int] | None = None,
                   simd_lanes: int = 1) -> Metrics:
    """MAESTRO's metrics for one layer on ``hw`` (raises MappingError where MAESTRO fails)."""
    spec = build_layer_spec(resolve_layer(layer, constants), hw.num_pes)
    top, inner = analyze(spec, hw, simd_lanes)
    return _metrics(layer.name, top, inner, hw)


def evaluate_file(mdc: MdcFile, hw: HwConfig, *, simd_lanes: int = 1) -> list[Metrics]:
    """Metrics of every layer of a parsed file."""
    return [evaluate_layer(l, hw, constants=mdc.constant_map(), simd_lanes=simd_lanes)
            for l in mdc.layers]


def analytical_macs(layer: MdcLayer, constants: Mapping[str, int] | None = None) -> int:
    """The true MAC count of the layer (what a correct mapping must visit)."""
    lay = resolve_layer(layer, constants)
    dims = lay.dim_map()
    st = lay.stride_map()
    t = "CONV" if lay.type == "TRCONV" else lay.type
    if t == "GEMM":
        return dims["M"] * dims["N"] * dims["K"]
    out = 1
    for ax, prime, slide in (("Y", "Y'", "R"), ("X", "X'", "S")):
        if prime in dims:
            out *= dims[prime]
        else:
            out *= (dims[ax] - dims[slide]) // st.get(ax, 1) + 1
    red = dims["R"] * dims["S"] * dims.get("N", 1)
    if t == "DSCONV":
        return dims["C"] * red * out
    if t == "NGCONV":
        return dims["G"] * dims["K"] * dims["C"] * red * out
    return dims["K"] * dims["C"] * red * out

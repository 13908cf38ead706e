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
    runtime_counts_every_mac(compute_delay_cycles, macs, num_pes, simd_lanes=1) -> bool
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

from compiler.costmodel_levels import (LayerSpec,
                                       build_layer_spec, tdiv)
from compiler.costmodel_reuse import (EDGE, INIT, STEADY, Level, critical_psums, egress, ingress,
                                      noc, psum_map, sub_dims, tensor_size)
from compiler.errors import MappingError
from compiler.mdc import HwConfig, MdcFile, MdcLayer, resolve_layer

L2_ENERGY = 18.61
L1_ENERGY = 1.68
TENSORS = ("input", "filter", "output")


@dataclass(frozen=True)
class Metrics:
    """What MAESTRO reports for one layer (element counts, cycles, MAC-energy units).

    Per-tensor counts are dicts keyed by "input", "filter", "output".
    ``offchip_bw_required`` is MAESTRO's value, which halves its running maximum after
    every top-level case; ``offchip_bw_step`` is mapc's: the largest L2 tile refill
    (half the double-buffered requirement) per top-level compute step.
    ``compute_delay_cycles`` is the compute part of the runtime (every step's compute delay, down to
    the PEs' MACs, without NoC delays): at least ``macs / num_pes`` when MAESTRO's runtime counts
    every MAC, and less when its case analysis skips iterations of a sub-cluster (see
    :func:`runtime_counts_every_mac`).
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
    compute_delay_cycles: int
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
    compute: int        # the compute part of ``runtime``: steps' compute delays, no NoC delays
    l2_req: tuple[int, int, int]
    l1_req: tuple[int, int, int]
    l2_rd: tuple[int, int, int]
    l2_wr: tuple[int, int, int]
    l1_rd: tuple[int, int, int]
    l1_wr: tuple[int, int, int]


def analyze(spec: LayerSpec, hw: HwConfig, simd_lanes: int = 1) -> list[LevelResult]:
    """Analyse all levels; returns ``[top, innermost-first-result]``."""
    levels = [Level(s, spec.tensors) for s in spec.levels]
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
        runtime = macs = busy = 0
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
                        l2_req[ti] = 2 * ingress(L, t, st, cidx)
                        l2_wr[ti] = tensor_size(t, dims, spec.conv)
                    else:
                        l2_req[ti] = 2 * egress(L, t, st)
                        l2_rd[ti] = tensor_size(t, dims, spec.conv)
                    vol = 1
                    for v in t.dims:
                        if v in L.mapped:
                            vol *= L.mapped[v]
                    l1_req[ti] = 2 * vol
            eg_sum = 0
            pmap = 0
            psums = 0
            for t in outs:
                ti = spec.tensors.index(t)
                eg = egress(L, t, st)
                eg_sum += eg
                pm = psum_map(L, t, st)
                pmap += pm
                l2_wr[ti] += occ * eg
                l1_wr[ti] += occ * pmap
                l1_rd[ti] += occ * pmap
                psums += critical_psums(L, t, st)
            if psums <= 0:
                continue
            ing_sum = 0
            for t in ins:
                ti = spec.tensors.index(t)
                ig = ingress(L, t, st, cidx)
                ing_sum += ig
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
                        subs.append((run(li + 1, sub_dims(L, st, True, spec.conv)), 1))
                        if L.EC - 1 > 0:
                            subs.append((run(li + 1, sub_dims(L, st, False, spec.conv)), L.EC - 1))
                    else:
                        subs.append((run(li + 1, sub_dims(L, st, False, spec.conv)), L.EC))
                else:
                    subs.append((run(li + 1, sub_dims(L, st, False, spec.conv)), L.U))
                compute = max(r.runtime for r, _ in subs)
                busy_step = max(r.compute for r, _ in subs)
                active_units = sum(r.avg_active * n for r, n in subs)
            else:
                compute = busy_step = ceil(psums / simd_lanes)
            d_in, d_eg = noc(ing_sum, hw), noc(eg_sum, hw)
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
            busy += occ * busy_step
            macs += occ * pmap
            active_acc += (active_units if active_units != 0 else active) * occ
            compute = compute or 1
            peak = max(peak, max(ing_sum, eg_sum) // compute)
            avg_acc += (occ * max(ing_sum, eg_sum)) // compute
            total_occ += occ
        res = LevelResult(runtime, macs, active_acc / total_occ if total_occ else active_acc, peak,
                          avg_acc / total_occ if total_occ else 0.0, offchip, offchip_step, busy, tuple(l2_req),
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
        offchip_bw_step=top.offchip_step, compute_delay_cycles=top.compute,
        avg_util_pes=top.avg_active, utilization=top.avg_active / hw.num_pes, num_pes=hw.num_pes,
        l1_req=per(inner.l1_req), l2_req=per(top.l2_req), l2_reads=per(top.l2_rd),
        l2_writes=per(top.l2_wr), l1_reads=per(top.l1_rd), l1_writes=per(top.l1_wr))


def evaluate_layer(layer: MdcLayer, hw: HwConfig, *, constants: Mapping[str, int] | None = None,
                   simd_lanes: int = 1) -> Metrics:
    """MAESTRO's metrics for one layer on ``hw`` (raises MappingError where MAESTRO fails)."""
    spec = build_layer_spec(resolve_layer(layer, constants), hw.num_pes)
    top, inner = analyze(spec, hw, simd_lanes)
    return _metrics(layer.name, top, inner, hw)


def runtime_counts_every_mac(compute_delay_cycles, macs, num_pes: int, simd_lanes: int = 1):
    """Whether MAESTRO's runtime is physically possible: its compute part gives every MAC a
    PE-cycle, ``compute_delay_cycles * num_pes * simd_lanes >= macs`` (scalars or numpy arrays).

    With a folded tile on an upper cluster level, MAESTRO can count fewer compute steps for the
    edge sub-clusters than they take, and so report exact MACs with a compute time below
    ``macs / num_pes``: a runtime no hardware reaches (measured: ResNet-50 res4b 1x1a on the edge
    target at 0.76x its compute bound)."""
    return compute_delay_cycles * num_pes * simd_lanes >= macs


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

"""MAESTRO's analytical cost model for MDC mappings: many candidates of one layer at once.

This is mapc's one implementation of MAESTRO's analysis (HEAD 4eb08d1, mdc-format.md §5):
:mod:`compiler.mdc.costmodel_levels` builds the cluster levels,
:mod:`compiler.mdc.costmodel_cases` runs the case analysis (its per-PE volumes in
:mod:`compiler.mdc.costmodel_volumes`), and this module turns its totals into MAESTRO's
metrics.  Candidates share a *template* (layer, directive kinds/dims and Cluster positions);
sizes, offsets and cluster sizes are arrays.  One mapping is a batch of one
(:func:`evaluate_layer`).

API::

    template, sizes, offsets, clusters = template_from_layer(layer, constants=None)
    evaluate_batch(template, sizes, offsets, clusters, hw) -> BatchMetrics
    evaluate_layer(layer, hw, *, constants=None) -> Metrics
    evaluate_file(mdc, hw) -> list[Metrics]
    runtime_counts_every_mac(compute_delay_cycles, macs, num_pes, macs_per_pe=1) -> bool
    analytical_macs(layer, constants=None) -> int

``sizes``/``offsets`` have shape ``(N, n_maps)`` (one column per Temporal/SpatialMap
of the template, in order), ``clusters`` ``(N, n_clusters)``.  Candidates that
MAESTRO would reject for value reasons (cluster product > num_pes, a top-level step
with no compute) come back with ``valid == False``; :func:`evaluate_layer` raises
:class:`compiler.errors.MappingError` for them and wherever MAESTRO fails.

``hw`` is a :class:`compiler.mdc.hw.HwConfig`: besides MAESTRO's six keys, its ``macs_per_pe``
divides the PEs' compute delay and its ``energy`` weighs the access counts
(``l2_access * L2 + l1_access * L1 + mac * MACs``; MAESTRO's 18.61, 1.68, 1 by default).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping

import numpy as np

from compiler.mdc.costmodel_cases import analyze
from compiler.mdc.costmodel_levels import (MappingTemplate, VLevel, build_levels,  # noqa: F401
                                           template_from_layer)
from compiler.errors import MappingError
from compiler.mdc.hw import HwConfig
from compiler.mdc.syntax import MdcFile, MdcLayer, resolve_layer

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
class BatchMetrics:
    """Per-candidate arrays of the :class:`Metrics` fields."""

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
    l1_req: dict
    l2_req: dict


def _l1_req(lv: VLevel, tensors, n: int) -> list[np.ndarray]:
    """Per tensor, the double-buffered tile one unit of level ``lv`` holds."""
    out = []
    for t in tensors:
        vol = np.ones(n, np.int64)
        for v in t.dims:
            if v in lv.mapped:
                vol = vol * lv.mapped[v]
        out.append(2 * vol)
    return out


def evaluate_batch(template: MappingTemplate, sizes, offsets, clusters, hw: HwConfig
                   ) -> BatchMetrics:
    """Score N candidates of one template; every field of the result is an (N,) array."""
    sizes = np.asarray(sizes, np.int64)
    offsets = np.asarray(offsets, np.int64)
    n = sizes.shape[0]
    clusters = np.asarray(clusters, np.int64).reshape(n, -1)
    levels, tensors, full, conv, valid = build_levels(template.layer, template.items, sizes,
                                                      offsets, clusters, hw.num_pes)
    top = analyze(levels, tensors, conv, hw, full)
    l1 = _l1_req(levels[-1], tensors, n)
    if len(levels) > 1:  # MAESTRO reports the top level's L1 when no case reached the PEs
        l1 = [np.where(top["recursed"], a, b) for a, b in zip(l1, _l1_req(levels[0], tensors, n))]
    l2acc = sum(top["l2_rd"]) + sum(top["l2_wr"])
    l1acc = sum(top["l1_rd"]) + sum(top["l1_wr"])
    en = hw.energy
    per = lambda v: dict(zip(TENSORS, v))  # noqa: E731
    return BatchMetrics(
        valid=valid & top["valid"], macs=top["macs"], runtime_cycles=top["runtime"],
        energy_mac_units=en.l2_access * l2acc + en.l1_access * l1acc + en.mac * top["macs"],
        l1_elements=sum(l1), l2_elements=sum(top["l2_req"]), noc_bw_required=top["peak"],
        noc_bw_avg=top["avg"], offchip_bw_required=top["offchip"],
        offchip_bw_step=top["offchip_step"], compute_delay_cycles=top["busy"],
        avg_util_pes=top["active"], utilization=top["active"] / hw.num_pes,
        l1_req=per(l1), l2_req=per(top["l2_req"]), l2_reads=per(top["l2_rd"]),
        l2_writes=per(top["l2_wr"]), l1_reads=per(top["l1_rd"]), l1_writes=per(top["l1_wr"]))


def evaluate_layer(layer: MdcLayer, hw: HwConfig, *, constants: Mapping[str, int] | None = None
                   ) -> Metrics:
    """MAESTRO's metrics for one layer on ``hw``: a batch of one (raises MappingError where
    MAESTRO fails)."""
    if layer.directives is None:
        raise MappingError(f"layer {layer.name!r} has no Dataflow (MAESTRO crashes)")
    m = _evaluate_resolved(replace(resolve_layer(layer, constants), name=""), hw)
    return replace(m, layer=layer.name)


@lru_cache(maxsize=256)
def _evaluate_resolved(layer: MdcLayer, hw: HwConfig) -> Metrics:
    """:func:`evaluate_layer` of a resolved, unnamed layer, remembered: the checker's rules, the
    emit pass and the search's report ask for the same mapping's metrics several times, and a
    file repeats one layer per head or batch."""
    template, sizes, offsets, clusters = template_from_layer(layer)
    b = evaluate_batch(template, sizes, offsets, clusters, hw)
    if not b.valid[0]:
        prod = int(np.prod(clusters))
        if prod > hw.num_pes:
            raise MappingError(f"product of cluster sizes {prod} exceeds num_pes {hw.num_pes} "
                               f"(MAESTRO crashes with SIGFPE)")
        if (clusters < 1).any():
            raise MappingError("a Cluster size is below 1 (MAESTRO crashes)")
        raise MappingError("a top-level step computes nothing (MAESTRO divides by zero)")
    one = lambda v: int(v[0])  # noqa: E731
    per = lambda d: {k: one(v) for k, v in d.items()}  # noqa: E731
    return Metrics(
        layer=layer.name, macs=one(b.macs), runtime_cycles=one(b.runtime_cycles),
        energy_mac_units=float(b.energy_mac_units[0]), l1_elements=one(b.l1_elements),
        l2_elements=one(b.l2_elements), noc_bw_required=one(b.noc_bw_required),
        noc_bw_avg=float(b.noc_bw_avg[0]), offchip_bw_required=one(b.offchip_bw_required),
        offchip_bw_step=one(b.offchip_bw_step), compute_delay_cycles=one(b.compute_delay_cycles),
        avg_util_pes=float(b.avg_util_pes[0]), utilization=float(b.utilization[0]),
        num_pes=hw.num_pes, l1_req=per(b.l1_req), l2_req=per(b.l2_req),
        l2_reads=per(b.l2_reads), l2_writes=per(b.l2_writes), l1_reads=per(b.l1_reads),
        l1_writes=per(b.l1_writes))


def evaluate_file(mdc: MdcFile, hw: HwConfig) -> list[Metrics]:
    """Metrics of every layer of a parsed file."""
    return [evaluate_layer(l, hw, constants=mdc.constant_map()) for l in mdc.layers]


def runtime_counts_every_mac(compute_delay_cycles, macs, num_pes: int, macs_per_pe: int = 1):
    """Whether MAESTRO's runtime is physically possible: its compute part gives every MAC a
    PE-cycle, ``compute_delay_cycles * num_pes * macs_per_pe >= macs`` (scalars or numpy arrays).

    With a folded tile on an upper cluster level, MAESTRO can count fewer compute steps for the
    edge sub-clusters than they take, and so report exact MACs with a compute time below
    ``macs / num_pes``: a runtime no hardware reaches (measured: ResNet-50 res4b 1x1a on the edge
    target at 0.76x its compute bound)."""
    return compute_delay_cycles * num_pes * macs_per_pe >= macs


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

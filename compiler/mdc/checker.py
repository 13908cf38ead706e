"""Validity checks for MDC layers: MAESTRO's hard and soft rules, MAC coverage, capacity.

Each ``check_*(layer, hw) -> list[Violation]`` looks at one rule of mdc-format.md §6
(``H*`` hard: MAESTRO exits or crashes; ``S*`` soft: MAESTRO runs and reports wrong
numbers) or at capacity (``C*``: L1/L2 requirement over the HW size; ``W*``: bandwidth
warnings, informational).  ``layer`` must be resolved (see
:func:`compiler.mdc.syntax.resolve_layer`); :func:`check_layer` does that and runs them all.

API::

    check_layer(layer, hw=None, *, constants=None) -> list[Violation]
    check_file(mdc, hw=None) -> list[Violation]
    check_hw(hw) -> list[Violation]
    coverage(layer, num_pes) -> Coverage      # exact MAC coverage by walking the tiles
    is_clean(violations) -> bool              # no H*, S* or C* violation

A :class:`Violation` prints as one line: ``layer: directive: [rule] text``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from compiler.mdc.costmodel import analytical_macs, evaluate_layer, runtime_counts_every_mac
from compiler.mdc.coverage import Coverage, CoverageTooLarge, coverage
from compiler.mdc.costmodel_levels import CONV_TYPES, OVERLAP, layer_levels, layer_tensors
from compiler.errors import MapcError
from compiler.mdc.hw import HwConfig
from compiler.mdc.syntax import (LAYER_TYPES, ClusterDirective, Directive, MdcFile, MdcLayer, format_directive, resolve_layer)

__all__ = ["Violation", "check_layer", "check_file", "check_hw", "coverage", "Coverage",
           "is_clean", "CHECKS"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (layer, directive text), which rule, and what is wrong."""

    layer: str
    directive: str
    rule: str
    text: str
    line: int | None = field(default=None, compare=False)   # in the MDC file, when known

    @property
    def severity(self) -> str:
        """"hard", "soft", "capacity" or "warning", from the rule id.  S7 (idle PEs) is a warning:
        leaving PEs idle is a mapping choice MAESTRO's runtime prices exactly, not a miscount."""
        if self.rule == "S7":
            return "warning"
        return {"H": "hard", "S": "soft", "C": "capacity", "W": "warning"}[self.rule[0]]

    def __str__(self) -> str:
        where = [f"layer {self.layer}" if self.layer else "", self.directive.rstrip(";")]
        return "".join(f"{w}: " for w in where if w) + f"[{self.rule}] {self.text}"


def is_clean(violations: list[Violation]) -> bool:
    """True when nothing but bandwidth warnings was found."""
    return all(v.severity == "warning" for v in violations)


def _levels(layer: MdcLayer) -> list[list[Directive]]:
    out: list[list[Directive]] = [[]]
    for d in layer.directives or ():
        if isinstance(d, ClusterDirective):
            out.append([])
        else:
            out[-1].append(d)
    return out


def _clusters(layer: MdcLayer) -> list[ClusterDirective]:
    return [d for d in layer.directives or () if isinstance(d, ClusterDirective)]


def _v(layer: MdcLayer, d, rule: str, text: str) -> Violation:
    return Violation(layer.name, format_directive(d) if d is not None else "", rule, text,
                     line=getattr(d, "line", None) or layer.line)


# ------------------------------------------------------------------ hard rules


def check_type(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H1: the layer type is one MAESTRO analyses."""
    if layer.type in LAYER_TYPES:
        return []
    return [_v(layer, None, "H1", f"layer type {layer.type!r} is not one of {', '.join(LAYER_TYPES)}")]


def check_section_order(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H2: Stride before Dimensions before Dataflow."""
    s = list(layer.sections)
    if "Dataflow" in s and "Dimensions" in s and s.index("Dataflow") < s.index("Dimensions"):
        return [_v(layer, None, "H2", "Dataflow comes before Dimensions (Sz() and the R/S rule "
                                      "then fail)")]
    return []


def check_has_dataflow(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H3: every layer has its own Dataflow."""
    if layer.directives:
        return []
    return [_v(layer, None, "H3", "layer has no Dataflow (MAESTRO copies the previous one and "
                                  "crashes)")]


def check_declared_dims(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H4: tensor dims declared, directives on declared dims, sizes/offsets >= 1, no Y and Y'."""
    out = []
    names = [n for n, _ in layer.dims]
    ltype = "CONV" if layer.type == "TRCONV" else layer.type
    if ltype not in LAYER_TYPES:
        return out
    for n, size in layer.dims:
        if int(size) < 1:
            out.append(_v(layer, None, "H4", f"dimension {n} has size {size}"))
    known = set(names)
    if ltype in CONV_TYPES:
        for a, b in (("Y", "Y'"), ("X", "X'")):
            if a in known and b in known:
                out.append(_v(layer, None, "H4", f"both {a} and {b} are declared"))
            if a in known or b in known:
                known |= {a, b}
    for t in layer_tensors(ltype, known):
        for v in t.dims:
            if v not in known:
                out.append(_v(layer, None, "H4", f"dimension {v} of the {t.name} tensor is not "
                                                 f"declared (a {layer.type} layer needs it)"))
    seen = set()
    for d in layer.directives or ():
        if isinstance(d, Directive):
            if d.dim not in known and d.dim not in seen:
                seen.add(d.dim)
                out.append(_v(layer, d, "H4", f"dimension {d.dim} is not declared"))
            if int(d.size) < 1 or int(d.offset) < 1:
                out.append(_v(layer, d, "H4", "map size and offset must be >= 1"))
        elif int(d.size) < 1:
            out.append(_v(layer, d, "H4", "cluster size must be >= 1"))
    return out


def check_spatial_count(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H5: each cluster level has one or two SpatialMaps."""
    out = []
    levels = _levels(layer)
    clusters = _clusters(layer)
    for i, lvl in enumerate(levels):
        sp = [d for d in lvl if d.is_spatial]
        anchor = clusters[i] if i < len(clusters) else (lvl[-1] if lvl else None)
        if not sp:
            out.append(_v(layer, anchor, "H5", f"cluster level {i} has no SpatialMap"))
        elif len(sp) > 2:
            out.append(_v(layer, sp[2], "H5", f"cluster level {i} has {len(sp)} SpatialMaps "
                                              f"(at most two)"))
    return out


def check_rs_temporal(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H6: TemporalMap on R/S has size = offset = the full R/S."""
    out = []
    dims = layer.dim_map()
    for d in layer.directives or ():
        if isinstance(d, Directive) and not d.is_spatial and d.dim in ("R", "S") and d.dim in dims:
            if not (d.size == d.offset == dims[d.dim]):
                out.append(_v(layer, d, "H6", f"TemporalMap on {d.dim} must be "
                                              f"({dims[d.dim]},{dims[d.dim]})"))
    return out


def check_fanout(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H7 / S7: cluster product <= num_pes (else MAESTRO crashes) and divides it."""
    if hw is None:
        return []
    out = []
    prod = 1
    for c in _clusters(layer):
        prod *= int(c.size)
        if c.kind not in ("P", "L"):
            out.append(_v(layer, c, "H7", f"cluster type {c.kind!r} is not P or L"))
    if prod > hw.num_pes:
        out.append(_v(layer, _clusters(layer)[-1], "H7", f"product of cluster sizes {prod} exceeds "
                                                          f"num_pes {hw.num_pes}"))
    elif hw.num_pes % prod:
        idle = hw.num_pes - (hw.num_pes // prod) * prod
        out.append(_v(layer, _clusters(layer)[-1], "S7", f"product of cluster sizes {prod} does not "
                                                          f"divide num_pes {hw.num_pes}: {idle} "
                                                          f"PEs stay idle"))
    return out


def check_dsconv_k(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H8: a DSCONV has no K below the first Cluster."""
    if layer.type != "DSCONV":
        return []
    levels = _levels(layer)
    out = [_v(layer, d, "H8", "DSCONV has no K below the first Cluster (Dimension K not found)")
           for lvl in levels[1:] for d in lvl if d.dim == "K"]
    if len(levels) > 1 and not out:
        # A K map at the top is inherited by the next level, which has no K either.
        out = [_v(layer, d, "H8", "K mapped above a Cluster is inherited below it, where DSCONV "
                                  "has no K (Dimension K not found); drop the K directive")
               for d in levels[0] if d.dim == "K"]
    return out


def check_levels(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """H4: MAESTRO's level construction succeeds (every mapped dim exists at its level)."""
    try:
        layer_levels(layer, hw.num_pes if hw else 1 << 30)
    except MapcError as exc:
        if "without an explicit" in exc.msg:
            return []  # reported by check_primed_window (S5): MAESTRO runs, with garbage
        return [_v(layer, None, "H4", exc.msg)]
    return []


# ------------------------------------------------------------------ soft rules


def _has_spatial(lvl: list[Directive], dim: str) -> bool:
    return any(d.is_spatial and d.dim == dim for d in lvl)


def check_offsets(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S1: offset <= size, and for Y/X offset <= size - R + 1 (else indices are skipped)."""
    out = []
    dims = layer.dim_map()
    stride = layer.stride_map()
    for lvl in _levels(layer):
        for d in lvl:
            if d.offset > d.size:
                out.append(_v(layer, d, "S1", f"offset {d.offset} > size {d.size}: indices of "
                                              f"{d.dim} are skipped"))
            elif (layer.type in CONV_TYPES + ("TRCONV",) and d.dim in OVERLAP
                  and stride.get(d.dim, 1) == 1 and OVERLAP[d.dim] in dims
                  and not _has_spatial(lvl, OVERLAP[d.dim]) and d.size < dims.get(d.dim, 0)):
                win = dims[OVERLAP[d.dim]]
                if d.size >= win and d.offset > d.size - win + 1:
                    out.append(_v(layer, d, "S1", f"offset {d.offset} > size - {OVERLAP[d.dim]} + 1 "
                                                  f"= {d.size - win + 1}: output rows are skipped"))
    return out


def check_window_size(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S2: a Y/X map is at least R/S wide, unless R/S is spatially mapped at that level."""
    if layer.type not in CONV_TYPES + ("TRCONV",):
        return []
    out = []
    dims = layer.dim_map()
    for lvl in _levels(layer):
        for d in lvl:
            if d.dim in OVERLAP and OVERLAP[d.dim] in dims and not _has_spatial(lvl, OVERLAP[d.dim]):
                win = dims[OVERLAP[d.dim]]
                if d.size < win:
                    out.append(_v(layer, d, "S2", f"{d.dim} tile {d.size} < {OVERLAP[d.dim]} = {win}:"
                                                  f" no complete window (MAESTRO reports 0 MACs)"))
    return out


def check_spatial_pairs(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S3: one SpatialMap per level, except the pairs Y+R and X+S."""
    out = []
    for i, lvl in enumerate(_levels(layer)):
        sp = [d for d in lvl if d.is_spatial]
        if len(sp) == 2 and {sp[0].dim, sp[1].dim} not in ({"Y", "R"}, {"X", "S"}):
            out.append(_v(layer, sp[1], "S3", f"two SpatialMaps ({sp[0].dim}, {sp[1].dim}) in "
                                              f"cluster level {i}: MAESTRO pairs them and "
                                              f"miscounts MACs"))
    return out


def check_duplicates(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S4: no dimension mapped twice in one level."""
    out = []
    for i, lvl in enumerate(_levels(layer)):
        seen = set()
        for d in lvl:
            if d.dim in seen:
                out.append(_v(layer, d, "S4", f"{d.dim} is mapped twice in cluster level {i}"))
            seen.add(d.dim)
    return out


def check_primed_window(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S5: a Y'/X' directive needs an explicit R/S directive at the same level."""
    out = []
    for i, lvl in enumerate(_levels(layer)):
        for d in lvl:
            if d.dim in ("Y'", "X'"):
                slide = OVERLAP[d.dim[0]]
                if not any(x.dim == slide for x in lvl):
                    out.append(_v(layer, d, "S5", f"{d.dim} without a {slide} directive in cluster "
                                                  f"level {i}: MAESTRO computes garbage"))
    return out


def check_mac_coverage(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """S6: the tiles visit every MAC exactly once, and MAESTRO counts them correctly; S8: its
    runtime gives every MAC a PE-cycle (see :func:`compiler.mdc.costmodel.runtime_counts_every_mac`)."""
    try:
        want = analytical_macs(layer)
    except (KeyError, ZeroDivisionError, MapcError):
        return []
    out = []
    num_pes = hw.num_pes if hw else 1 << 20
    try:
        cov = coverage(layer, num_pes)
    except CoverageTooLarge as e:
        return [_v(layer, None, "S6", e.msg)]
    except MapcError:
        return []
    if not cov.exact:
        out.append(_v(layer, None, "S6", f"the tiles visit {cov.visited} MACs "
                                         f"({cov.missing} MAC points missed, {cov.repeated} "
                                         f"visited more than once); the layer has {want}"))
    if hw is not None:
        try:
            m = evaluate_layer(layer, hw)
        except MapcError:
            return out
        got = m.macs
        if got == want and not runtime_counts_every_mac(m.compute_delay_cycles, got, hw.num_pes,
                                                         hw.macs_per_pe):
            out.append(_v(layer, None, "S8", f"MAESTRO's runtime computes for {m.compute_delay_cycles} cycles, "
                                             f"less than {want} MACs need on {hw.num_pes} PEs "
                                             f"({-(-want // hw.num_pes)}): it leaves out steps of an "
                                             "edge sub-cluster, so its runtime is optimistic"))
        if got != want:
            out.append(_v(layer, None, "S6", f"MAESTRO will report {got} MACs instead of {want} "
                                             f"({got / want:.3g}x)" if want else
                                             f"MAESTRO will report {got} MACs"))
    return out


# ---------------------------------------------------------------- capacity


def check_capacity(layer: MdcLayer, hw: HwConfig | None) -> list[Violation]:
    """C1/C2: L1 and L2 requirements fit; W1/W2: NoC and off-chip bandwidth (warnings)."""
    if hw is None:
        return []
    try:
        m = evaluate_layer(layer, hw)
    except MapcError:
        return []
    out = []
    if m.l1_elements > hw.l1_size:
        out.append(_v(layer, None, "C1", f"L1 requirement {m.l1_elements} > L1 size {hw.l1_size} "
                                         f"(per PE, double-buffered)"))
    if m.l2_elements > hw.l2_size:
        out.append(_v(layer, None, "C2", f"L2 requirement {m.l2_elements} > L2 size {hw.l2_size}"))
    if m.noc_bw_required > hw.noc_bw:
        out.append(_v(layer, None, "W1", f"NoC BW requirement {m.noc_bw_required} > "
                                         f"{hw.noc_bw} (runtime includes the stall)"))
    if m.offchip_bw_required > hw.offchip_bw:
        out.append(_v(layer, None, "W2", f"off-chip BW requirement {m.offchip_bw_required} > "
                                         f"{hw.offchip_bw}"))
    return out


#: The per-layer checks, in report order.
CHECKS: tuple[Callable[[MdcLayer, HwConfig | None], list[Violation]], ...] = (
    check_type, check_section_order, check_has_dataflow, check_declared_dims, check_spatial_count,
    check_rs_temporal, check_fanout, check_dsconv_k, check_levels, check_offsets, check_window_size,
    check_spatial_pairs, check_duplicates, check_primed_window, check_mac_coverage, check_capacity,
)
_NEEDS_VALID = {check_levels, check_mac_coverage, check_capacity}
#: Rules that run only with a HW config (PE count, MAESTRO's own MAC count, capacities, bandwidths).
NEEDS_HW = ("H7", "H9", "S6 (MAESTRO's MAC count)", "S7", "S8", "C1", "C2", "W1", "W2")


def check_hw(hw: HwConfig) -> list[Violation]:
    """H9: num_pes, noc_bw_cstr and offchip_bw_cstr >= 1."""
    return [Violation("", "", "H9", f"HW {k} must be >= 1 (MAESTRO crashes)")
            for k in ("num_pes", "noc_bw", "offchip_bw") if getattr(hw, k) < 1]


def check_layer(layer: MdcLayer, hw: HwConfig | None = None, *,
                constants: Mapping[str, int] | None = None) -> list[Violation]:
    """Run every check on one layer; model-based checks run only if no hard rule fails."""
    layer = resolve_layer(layer, constants)
    out: list[Violation] = []
    for check in CHECKS:
        if check in _NEEDS_VALID and any(v.severity == "hard" for v in out):
            continue
        if check is not check_has_dataflow and check is not check_type and not layer.directives:
            if check not in (check_declared_dims, check_section_order):
                continue
        out += check(layer, hw)
    return out


def check_file(mdc: MdcFile, hw: HwConfig | None = None) -> list[Violation]:
    """Check every layer of a file (H10: at least one layer) and the HW config."""
    out = check_hw(hw) if hw is not None else []
    if not mdc.layers:
        out.append(Violation("", "", "H10", "the network has no layer"))
    for line, text in mdc.negatives:
        out.append(Violation("", "", "S9", f"'-{text}' is read as {text}: '-' is a separator in MDC",
                             line=line))
    for layer in mdc.layers:
        out += check_layer(layer, hw, constants=mdc.constant_map())
    return out

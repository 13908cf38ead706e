"""From mapc's decisions to MDC: the one place that writes an op's mapping as MDC directives.

The encoding (checked against MAESTRO by hand, see docs/maestro-check.md):

* **level 0** has one unit (the cluster sizes multiply to the PE count) and walks the L2 tiles in
  DRAM loop order: ``TemporalMap(T,T)`` per dim, one of them a ``SpatialMap`` because MDC needs one
  per level (with one unit it folds into time steps, so it behaves as a temporal loop);
* **level 1** (and **level 2** on a 2-D array) puts one dim across the units of that level,
  ``SpatialMap(t,t) D``, and holds the rest of the L2 tile (level 1) or the per-PE L1 tile
  (innermost level) with ``TemporalMap``s in the chosen order;
* ``R``/``S`` are always ``TemporalMap(Sz(R),Sz(R))`` (MAESTRO's R/S rule), and a sliding-window
  output tile ``t`` is written input-centrically as ``TemporalMap((t-1)*stride + R, ...) Y`` with
  ``Stride { Y: stride }`` declared, which MAESTRO turns back into ``t`` outputs per step.

On a multi-chiplet target the layer is one chiplet's part of the op (the off-chip pass's
``part_extents``); chiplets run the same mapping in lockstep and share the DRAM interface, so the
HW file gives each chiplet ``1/chiplets`` of the off-chip bandwidth.

Op dims that one MDC layer cannot hold (``MdcForm.repeat_dims``: GEMM batches, attention heads)
make the file a Network of identical layers, one per repeat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from targets import Target

from ..context import MdcForm
from ..frontend import resize
from .commands import hw_from_target
from .costmodel_levels import MappingTemplate
from ..errors import ConformanceError
from ..ir import Op, OpMapping, Window, build_mapping
from .hw import HwConfig
from .syntax import AnyDirective, MdcFile, MdcLayer, Sz, cluster, make_layer, spatial, temporal

# Declared MDC dims per layer type, in MAESTRO's usual order.
LAYER_DIMS = {
    "CONV": ("N", "K", "C", "R", "S", "Y", "X"),
    "DSCONV": ("N", "C", "R", "S", "Y", "X"),
    "NGCONV": ("N", "G", "K", "C", "R", "S", "Y", "X"),
    "GEMM": ("M", "N", "K"),
}
WINDOW_FILTER = {"Y": "R", "X": "S"}


@dataclass(frozen=True, order=True)
class SpatialLevel:
    """One cluster level of the PE array: ``dim`` spread over ``units``, ``tile`` per unit
    (ordered by how it reads, the last tie-break of every ranking of structures, so that the
    output is reproducible)."""

    dim: str
    units: int
    tile: int


@dataclass(frozen=True)
class OnchipChoice:
    """A point of the on-chip subspace.

    ``spatial`` lists the array levels outermost first (1 for a 1-D spread, 2 for rows x cols);
    ``l1_tile`` is the per-PE tile of every op dim (output-centric for windows);
    ``inner_order`` the innermost level's temporal loop order, outermost first."""

    spatial: tuple[SpatialLevel, ...]
    l1_tile: tuple[tuple[str, int], ...]
    inner_order: tuple[str, ...]
    merged: bool = False              # the first spatial level shares level 0 (strided layers)

    def __hash__(self) -> int:
        # Choices key the search's dicts (scores, memo, bounds) and are hashed many times each;
        # the generated hash would rehash every level and tile each time.
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.spatial, self.l1_tile, self.inner_order, self.merged))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        # (a string's hash differs between processes: never carry one over)
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def describe(self) -> str:
        spread = " x ".join(f"{s.dim}:{s.units}x{s.tile}" for s in self.spatial)
        tile = ", ".join(f"{d}={t}" for d, t in self.l1_tile)
        return f"spatial {spread}; L1 tile {tile}; inner order {' > '.join(self.inner_order)}"


def chiplet_op(op: Op, offchip) -> Op:
    """The part of ``op`` one chiplet computes (``op`` itself on a single-chiplet target)."""
    if not offchip.chiplet_split:
        return op
    return resize(op, {d: offchip.part_extents[d] for d in op.dim_names})


def chiplet_hw(target: Target, element_bytes: int) -> HwConfig:
    """MAESTRO's view of one chiplet: its PEs and buffers, and its share of the DRAM bandwidth."""
    hw = hw_from_target(target, element_bytes)
    return replace(hw, offchip_bw=max(1, int(target.offchip_bw) // target.num_chiplets))


class MdcView:
    """How one op reads in MDC: declared dims with sizes, stride, and per-dim directive sizes."""

    def __init__(self, op: Op, form: MdcForm):
        if form.layer_type not in LAYER_DIMS:
            raise ConformanceError(f"no MDC lowering for layer type {form.layer_type}")
        self.op, self.form = op, form
        inp = op.tensor(form.input)
        self.windows: dict[str, Window] = {}
        for mdc_dim in ("Y", "X"):
            out_dim = form.op_dim(mdc_dim)
            if out_dim is None:
                continue
            w = next((w for w in inp.windows if w.out_dim == out_dim), None)
            taps = op.extent(w.filter_dim) if w is not None and w.filter_dim else 1
            if w is not None and w.dilation != 1 and taps > 1:  # pragma: no cover - conformance's rule
                raise RuntimeError(f"dilation {w.dilation} on {out_dim} reached the MDC lowering")
            if w is not None and taps > 1:
                self.windows[mdc_dim] = w
            # A one-tap strided window reads every stride-th row: in MDC that is a plain dim over
            # the rows it reads (exact MACs; the DMA gathers them).
        self.dims = tuple(d for d in op.dim_names if d not in form.repeat_dims)
        self.repeats = math.prod(op.extent(d) for d in form.repeat_dims)
        self.layer_macs = op.macs // self.repeats

    def strided_windows(self) -> tuple[str, ...]:
        """MDC dims (``Y``, ``X``) of sliding windows with a stride above 1."""
        return tuple(m for m, w in self.windows.items() if w.stride > 1)

    def mdc_dim(self, op_dim: str) -> str:
        return self.form.mdc_dim(op_dim)

    def stride(self, mdc_dim: str) -> int:
        w = self.windows.get(mdc_dim)
        return w.stride if w else 1

    def filter_extent(self, mdc_dim: str) -> int:
        filt = self.form.op_dim(WINDOW_FILTER[mdc_dim])
        return self.op.extent(filt) if filt else 1

    def declared(self) -> list[tuple[str, int]]:
        """``Dimensions { ... }``: every dim the layer type needs (absent ones have size 1)."""
        out = []
        for m in LAYER_DIMS[self.form.layer_type]:
            d = self.form.op_dim(m)
            size = self.op.extent(d) if d else 1
            if m in WINDOW_FILTER:  # input-centric: the input rows the outputs need
                size = self._window_size(m, size)
            if m == "N" and self.form.layer_type != "GEMM" and d is None:
                continue  # MAESTRO honours N only when declared; leave it out when it is 1
            out.append((m, size))
        return out

    def _window_size(self, m: str, out_tile: int) -> int:
        return (out_tile - 1) * self.stride(m) + self.filter_extent(m)

    def size_offset(self, op_dim: str, tile):
        """MDC ``(size, offset)`` of a map of ``tile`` elements of ``op_dim`` (output-centric for
        windows); ``tile`` may be an int or a numpy array of candidates."""
        m = self.mdc_dim(op_dim)
        if m in ("R", "S"):  # MAESTRO's R/S rule: always the whole filter
            e = self.op.extent(op_dim)
            return e + 0 * tile, e + 0 * tile
        if m in WINDOW_FILTER:
            # Input rows with stride-1 offsets, as MAESTRO expects; it rewrites both when strided.
            size = self._window_size(m, tile)
            return size, size - self.filter_extent(m) + 1
        return tile, tile

    def directive(self, op_dim: str, tile: int, is_spatial: bool) -> AnyDirective:
        """The map of ``tile`` elements of ``op_dim``."""
        m = self.mdc_dim(op_dim)
        make = spatial if is_spatial else temporal
        if m in ("R", "S"):
            return make(Sz(m), Sz(m), m)
        return make(*self.size_offset(op_dim, tile), m)

    def stride_block(self) -> dict[str, int] | None:
        strides = {m: self.stride(m) for m in ("X", "Y") if m in self.windows}
        return strides if any(s != 1 for s in strides.values()) else None


@dataclass(frozen=True)
class Slot:
    """One directive position of the emitted dataflow: a map (``T``/``S``) of an op dim, or a
    ``C``luster; ``level`` is the cluster level it belongs to and ``spatial`` the index of the
    :class:`SpatialLevel` whose tile (``S``) or unit count (``C``) it holds."""

    kind: str
    dim: str
    level: int
    spatial: int = -1


def layer_slots(view: MdcView, dram_order: tuple[str, ...], spatial_dims: tuple[str, ...],
                inner_order: tuple[str, ...], merged: bool = False) -> tuple[Slot, ...]:
    """The directive sequence shared by every candidate with these spatial dims and inner order.

    Normally level 0 is one unit walking the L2 tiles and each spatial dim gets a level of its
    own.  ``merged`` (strided layers) puts the first spatial dim on level 0 itself, one output row
    per unit, which is the only Y tile MAESTRO counts right under a stride."""
    dims = [d for d in dram_order if d in view.dims]
    if merged:
        out = [Slot("T", d, 0) for d in dims if d != spatial_dims[0]] + [Slot("S", spatial_dims[0], 0, 0)]
        levels = [(i, i, d) for i, d in enumerate(spatial_dims) if i > 0]
    else:
        # Level 0: one unit walking L2 tiles; its SpatialMap goes on the innermost non-filter dim.
        anchor = next(d for d in reversed(dims) if view.mdc_dim(d) not in ("R", "S"))
        out = [Slot("S" if d == anchor else "T", d, 0) for d in dims]
        levels = [(i + 1, i, d) for i, d in enumerate(spatial_dims)]
    for level, sp, sdim in levels:
        order = inner_order if level == levels[-1][0] else dims
        out += [Slot("C", "", level, sp), Slot("S", sdim, level, sp)]
        out += [Slot("T", d, level) for d in order if d != sdim]
    return tuple(out)


def slot_tiles(slots: tuple[Slot, ...], l2_tile: dict[str, int], choice: OnchipChoice) -> list[int]:
    """The tile (or, for a Cluster, the unit count) each slot holds for one choice."""
    innermost = slots[-1].level
    chunk = [dict(l2_tile)]
    for level in choice.spatial[:innermost - 1]:
        chunk.append({**chunk[-1], level.dim: level.tile})
    chunk.append(dict(choice.l1_tile))
    out = []
    for s in slots:
        if s.kind == "C":
            out.append(choice.spatial[s.spatial].units)
        elif s.spatial >= 0:
            out.append(choice.spatial[s.spatial].tile)
        else:
            out.append(chunk[innermost if s.level == innermost else s.level][s.dim])
    return out


def slot_batch(view: MdcView, slots: tuple[Slot, ...], tiles: np.ndarray):
    """The cost model's batch for the directive sequence ``slots``: its template and, per row of
    ``tiles`` (the tile or unit count of each slot, one row per candidate), the sizes and offsets
    of its maps and its cluster sizes."""
    header = make_layer("t", view.form.layer_type, view.declared(), (), view.stride_block())
    template = MappingTemplate(header, tuple(("C", "") if s.kind == "C" else (s.kind, view.mdc_dim(s.dim))
                                             for s in slots))
    pairs = [view.size_offset(s.dim, tiles[:, j]) for j, s in enumerate(slots) if s.kind != "C"]
    sizes, offsets = (np.stack([p[k] for p in pairs], axis=1) for k in (0, 1))
    return template, sizes, offsets, tiles[:, [j for j, s in enumerate(slots) if s.kind == "C"]]


def build_layer(view: MdcView, l2_tile: dict[str, int], dram_order: tuple[str, ...], choice: OnchipChoice,
                name: str) -> MdcLayer:
    """One MDC layer for the off-chip tiles ``l2_tile`` in ``dram_order`` and an on-chip choice."""
    slots = layer_slots(view, dram_order, tuple(s.dim for s in choice.spatial), choice.inner_order,
                        choice.merged)
    out: list[AnyDirective] = [cluster(t) if s.kind == "C" else view.directive(s.dim, t, s.kind == "S")
                               for s, t in zip(slots, slot_tiles(slots, l2_tile, choice))]
    return make_layer(name, view.form.layer_type, view.declared(), out, view.stride_block())


def mdc_mapping(view: MdcView, offchip: OpMapping, choice: OnchipChoice) -> OpMapping:
    """The typed mapping an MDC file encodes: ``offchip``'s levels (the dims one layer cannot
    hold step one at a time: one layer per repeat), then one ``array`` level per spatial level
    (a temporal fold when its units cannot take the tile at once, then the spread) and the
    ``pe`` level's loops over the L1 tile in the inner order.  A ``merged`` first spatial level
    spreads over level 0's units, inside the ``dram`` level.  Every tensor is kept whole in DRAM,
    as an L2 tile by the level after ``dram`` and as an L1 tile by ``pe`` (MAESTRO buffers all
    three at both; in a merged level 0 the spread over its units walks the L2 tile too)."""
    cur = dict(offchip.extents)
    levels: list[tuple] = []
    tensors = offchip.level("dram").keeps

    def loops_of(items):
        for dim, tile, _, _ in items:
            cur[dim] = min(cur[dim], tile)
        return items

    def spread_over(s: SpatialLevel):
        fold = [(s.dim, s.units * s.tile, False, "")] if cur[s.dim] > s.units * s.tile else []
        return loops_of(fold + [(s.dim, s.tile, True, "")])

    spread = list(choice.spatial)
    first = spread.pop(0) if choice.merged else None
    for lv in offchip.levels:
        items = [(lp.dim, 1 if lp.dim in view.form.repeat_dims else lp.tile, lp.spatial, lp.axis)
                 for lp in lv.loops if first is None or lv.name != "dram" or lp.dim != first.dim]
        loops = loops_of(items)
        keeps = lv.keeps
        if first is not None and lv.name == "dram":
            levels.append(("dram", first.units, loops + spread_over(first), keeps))
        else:
            levels.append((lv.name, lv.units, loops, keeps))
    for i, s in enumerate(spread):
        levels.append(("array", s.units, spread_over(s), tensors if i == 0 else ()))
    if spread:
        l1 = dict(choice.l1_tile)
        levels.append(("pe", 1, loops_of([(d, l1[d], False, "") for d in choice.inner_order
                                          if d != spread[-1].dim]), tensors))
    return build_mapping(offchip.op, dict(offchip.extents), levels)


def mdc_decisions(view: MdcView, mapping: OpMapping) -> tuple[dict[str, int], tuple[str, ...], OnchipChoice]:
    """What :func:`mdc_mapping` recorded, as the MDC writer takes it: L2 tile per dim, DRAM loop
    order and the on-chip choice (the inverse of :func:`mdc_mapping` for everything MDC writes)."""
    dram = mapping.level("dram")
    temporal = [lp for lp in dram.loops if not lp.spatial]
    l2_tile: dict[str, int] = {}
    for lp in temporal:
        l2_tile.setdefault(lp.dim, lp.tile)
    order = tuple(dict.fromkeys(lp.dim for lp in temporal))
    spatial = [SpatialLevel(lp.dim, dram.units, lp.tile) for lp in dram.loops if lp.spatial]
    merged = bool(spatial)
    spatial += [SpatialLevel(lp.dim, lv.units, lp.tile) for lv in mapping.levels if lv.name == "array"
                for lp in lv.loops if lp.spatial]
    pe = mapping.level("pe")
    inner = tuple(lp.dim for lp in pe.loops) if pe else ()
    l1 = {lp.dim: lp.tile for lp in pe.loops} if pe else {}
    if pe:
        l1[spatial[-1].dim] = spatial[-1].tile
    return l2_tile, order, OnchipChoice(tuple(spatial), tuple(l1.items()), inner, merged)


def build_file(view: MdcView, mapping: OpMapping) -> MdcFile:
    """The whole ``.m`` file for a typed mapping: one layer, or one per repeat of the op's
    repeat dims."""
    op = view.op
    layer = build_layer(view, *mdc_decisions(view, mapping), op.name)
    layers = (layer,) if view.repeats == 1 else tuple(
        MdcLayer(f"{op.name}_{i}", layer.type, layer.dims, layer.directives, layer.stride)
        for i in range(view.repeats))
    return MdcFile(constants=(), network=op.name, layers=layers)

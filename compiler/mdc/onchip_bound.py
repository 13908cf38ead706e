"""A lower bound on the cost model's runtime for an on-chip choice, for bound-and-prune search.

For one off-chip plan (L2 tile, DRAM order) and one :class:`compiler.mdc.lowering.OnchipChoice`,
:func:`runtime_bound` is at most the runtime :func:`compiler.mdc.costmodel.evaluate_batch`
reports, for every choice the on-chip search may keep (:func:`compiler.mdc.scoring.score_choices`'s
``fits``).  It is the sum of two parts the model adds and never overlaps:

* **compute**: ``ceil(MACs / (busy PEs x macs_per_pe))``.  The model's runtime sums, per case of
  every level, ``occurrences x step`` with ``step >= compute``, and a level's compute is the
  runtime of the level below (down to the PEs' partial sums over ``macs_per_pe``); its reported
  compute delay (``compute_delay_cycles``) sums the same steps' compute parts only, so
  ``runtime >= compute_delay``.  MAESTRO can under-count that compute delay for folded upper-level
  tiles (checker rule S8), so it is not implied by the model; the search keeps only choices whose
  compute delay gives every MAC a cycle of a PE the mapping *uses*
  (``compute_delay x busy PEs x macs_per_pe >= MACs``, a physical fact: no other PE holds
  any of its work), which makes the compute part a bound of every kept choice.
  ``busy PEs`` is the product over spatial levels of ``min(units, ceil(extent above / tile))``
  (level 0's units are what MAESTRO forms, ``PEs // product of cluster sizes``).
* **first fill**: the top level's first case (every directive in its initial position) takes
  ``compute + NoC ingress delay``, not their maximum (mdc-format.md §5), so its ingress
  ``noc_hops - 1 + ceil(elements / noc_bw)`` is paid on top of all compute.  Its elements are, per
  input tensor (input and filter), the product over the tensor's dims of the first level-0 tile
  ``min(size, extent)`` (after MAESTRO's stride rewrite), times the level-0 unit count when the
  tensor is indexed by level 0's spatial dim and the units all start inside the extent.

Both parts depend only on the choice's spatial levels (the compute part) and level 0 (the fill),
so the bound of a whole array structure is the bound of any of its choices: a structure whose
bound cannot beat the best runtime found so far need not be scored (``passes.onchip.search``).
tests/test_onchip_search.py checks ``bound <= runtime`` on every kept choice of whole spaces of
small ops and on the candidates of quality-suite layers.
"""
from __future__ import annotations

import math

import numpy as np

from .costmodel_levels import build_levels
from .hw import HwConfig
from .lowering import MdcView, OnchipChoice, layer_slots, slot_batch
from .onchip_space import level_chunks


def busy_pes(view: MdcView, l2_tile: dict[str, int], choice: OnchipChoice, num_pes: int) -> int:
    """An upper bound on the PEs the choice ever keeps busy: per spatial level, the units that get
    a tile of the extent above at all (see the module docstring)."""
    below = [lvl.units for lvl in (choice.spatial[1:] if choice.merged else choice.spatial)]
    units0 = num_pes // math.prod(below)
    busy = 1 if choice.merged else units0   # (level 0 of a plain choice: one unit walking L2 tiles)
    for i, lvl in enumerate(choice.spatial):
        if choice.merged and i == 0:
            busy *= min(units0, -(-view.op.extent(lvl.dim) // lvl.tile))
        else:
            busy *= min(lvl.units, -(-level_chunks(l2_tile, choice.spatial[:i])[lvl.dim] // lvl.tile))
    return max(1, min(num_pes, busy))


def compute_bound(view: MdcView, l2_tile: dict[str, int], choice: OnchipChoice, hw: HwConfig) -> int:
    """``ceil(MACs / (busy PEs x macs_per_pe))`` (the compute part of :func:`runtime_bound`)."""
    return -(-view.layer_macs // (busy_pes(view, l2_tile, choice, hw.num_pes) * hw.macs_per_pe))


class RuntimeBound:
    """:func:`runtime_bound` for the choices of one off-chip plan.  The first fill depends on the
    L2 tile, the DRAM order and, merged, the first spatial level's dim and tile (level 0's
    directives), and on level 0's unit count; :meth:`many` builds level 0 of all the first levels
    it meets at once (one batched :func:`build_levels` per dim), the fill once per unit count."""

    def __init__(self, view: MdcView, l2_tile: dict[str, int], dram_order: tuple[str, ...], hw: HwConfig):
        self.view, self.l2_tile, self.dram_order, self.hw = view, l2_tile, dram_order, hw
        self._fills: dict[tuple, int] = {}
        self._level0: dict[tuple | None, tuple] = {}   # (dim, tile) or None -> what _fill reads
        self._computes: dict[tuple, int] = {}

    def __call__(self, choice: OnchipChoice) -> int:
        return self.many([choice])[0]

    def many(self, choices: list[OnchipChoice]) -> list[int]:
        """The bound of every choice."""
        heads = {_head(c) for c in choices} - set(self._level0)
        for dim in sorted({h[0] for h in heads if h is not None}):
            self._build([h for h in heads if h is not None and h[0] == dim])
        if None in heads:
            self._build([None])
        return [self._compute(c) + self._first_fill(c) for c in choices]

    def _compute(self, choice: OnchipChoice) -> int:
        """:func:`compute_bound`, once per spatial structure (all it depends on besides the plan)."""
        key = (choice.spatial, choice.merged)
        if key not in self._computes:
            self._computes[key] = compute_bound(self.view, self.l2_tile, choice, self.hw)
        return self._computes[key]

    def _first_fill(self, choice: OnchipChoice) -> int:
        """The NoC delay of the top level's first case (the fill part of the bound); level 0 of
        the choice's first spatial level is built already (:meth:`many`)."""
        below = math.prod(lvl.units for lvl in (choice.spatial[1:] if choice.merged else choice.spatial))
        key = (_head(choice), below)
        if key not in self._fills:
            self._fills[key] = self._fill(*self._level0[key[0]], max(self.hw.num_pes // below, 1))
        return self._fills[key]

    def _build(self, heads: list[tuple | None]) -> None:
        """Level 0 (after MAESTRO's rewrites) of a layer with no cluster below it, for ``heads`` of
        one dim (merged: its tile spread over the top units) or the plain walk over L2 tiles."""
        view, dim = self.view, heads[0] and heads[0][0]
        slots = layer_slots(view, self.dram_order, (dim,) if dim else (), (), merged=dim is not None)
        rows = np.array([[h[1] if s.kind == "S" and dim else self.l2_tile[s.dim] for s in slots] for h in heads],
                        np.int64)
        template, sizes, offsets, clusters = slot_batch(view, slots, rows)
        levels, tensors, full, _, _ = build_levels(template.layer, template.items, sizes, offsets, clusters,
                                                   self.hw.num_pes)
        first: dict = {}
        for d in levels[0].slots:
            first.setdefault(d.var, d)
        sp = next(d for d in levels[0].slots if d.spatial)
        inputs = [t for t in tensors if t.is_input]
        for i, h in enumerate(heads):
            self._level0[h] = ({v: int(e) for v, e in full.items()}, {v: int(d.size[i]) for v, d in first.items()},
                               (sp.var, int(sp.size[i]), int(sp.ofs[i])), inputs)

    def _fill(self, full: dict, first: dict, sp: tuple, inputs, units: int) -> int:
        var, size, ofs = sp
        spans = full[var] >= size + ofs * (units - 1)
        elements = 0
        for t in inputs:
            vol = math.prod(min(first[v], full[v]) for v in t.dims if v in first)
            elements += vol * (units if var in t.dims and spans else 1)
        return self.hw.noc_hops - 1 + -(-elements // self.hw.noc_bw)


def _head(choice: OnchipChoice) -> tuple | None:
    """What level 0 holds of a choice besides the L2 tiles: a merged first level's dim and tile."""
    return (choice.spatial[0].dim, choice.spatial[0].tile) if choice.merged else None


def runtime_bound(view: MdcView, l2_tile: dict[str, int], dram_order: tuple[str, ...], choice: OnchipChoice,
                  hw: HwConfig) -> int:
    """The lower bound of the module docstring: compute part plus first fill."""
    return RuntimeBound(view, l2_tile, dram_order, hw)(choice)

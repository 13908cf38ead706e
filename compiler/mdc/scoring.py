"""Scoring many on-chip candidates of one op with the vectorised cost model.

Candidates that share spatial dims and inner loop order share one MDC *template* (the same
directive kinds and dims); their sizes, offsets and cluster sizes are computed as numpy columns
from the same slot layout :func:`compiler.mdc.lowering.build_layer` writes, and each template is
scored with one :func:`compiler.mdc.costmodel.evaluate_batch` call per batch.

With a lower bound per candidate (:mod:`compiler.mdc.onchip_bound`) and a ``cutoff`` (the runtime
nothing above which can be chosen, from what was scored so far), templates are scored in the order
of their best bound and candidates whose bound is above the cutoff are not scored at all
(*bound-and-prune*); a template none of whose candidates is left costs no cost-model call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .costmodel import evaluate_batch, runtime_counts_every_mac
from .hw import HwConfig
from .lowering import MdcView, OnchipChoice, layer_slots, slot_batch, slot_tiles
from .onchip_bound import busy_pes


@dataclass(frozen=True)
class Scores:
    """Per-candidate arrays in the order the candidates were given; ``scored`` counts how many
    were scored before the deadline and ``pruned`` how many were not because their bound was above
    the cutoff (unscored ones never fit)."""

    scored: int
    runtime: np.ndarray
    energy: np.ndarray
    fits: np.ndarray        # valid, exact MACs and a runtime that counts them all, within L1 and L2
    bw_over: np.ndarray     # the larger of NoC and off-chip bandwidth required / available
    pruned: int = 0

    @property
    def complete(self) -> bool:
        """Every candidate scored or proved unable to win."""
        return self.scored + self.pruned == len(self.fits)

    @property
    def bw_ok(self) -> np.ndarray:
        """Within NoC and off-chip bandwidth (MAESTRO only warns; its runtime has the stalls)."""
        return self.bw_over <= 1


def score_choices(view: MdcView, l2_tile: dict[str, int], dram_order: tuple[str, ...],
                  choices: list[OnchipChoice], hw: HwConfig, *, deadline: float | None = None,
                  batch: int = 8192, bounds: list[int] | None = None,
                  l2_tiles: list[dict[str, int]] | None = None,
                  cutoff: Callable[[Scores], float | None] | None = None,
                  memo: dict | None = None) -> Scores:
    """Score every choice (see :class:`Scores` for what ``fits`` and ``bw_over`` mean).

    ``fits`` asks, besides exact MACs and L1/L2, for a compute delay that gives every MAC a cycle
    of a PE the choice keeps busy (:func:`compiler.mdc.onchip_bound.busy_pes`; rule S8 asks it of
    all PEs), so that :mod:`compiler.mdc.onchip_bound`'s bound holds for every fitting choice.
    With ``bounds`` and ``cutoff`` (see the module docstring) candidates are pruned; ``cutoff`` is
    called with the scores so far before each template.  ``l2_tiles``: a top-level step (L2 tile)
    per choice instead of ``l2_tile`` for all (sizes of the same template, so they batch alike).
    ``memo`` (with one ``l2_tile`` for all): what earlier calls for the same plan (``l2_tile``,
    ``dram_order``, ``hw``) scored, by choice; choices found there are not scored again and those
    scored here are added (the model is deterministic: the same scores and pruning, less work)."""
    if memo is not None and l2_tiles is not None:
        raise ValueError("score_choices: a memo is by choice, for one L2 tile of all of them")
    per = l2_tiles if l2_tiles is not None else [l2_tile] * len(choices)
    n = len(choices)
    runtime = np.full(n, np.iinfo(np.int64).max, np.int64)
    energy = np.full(n, np.inf)
    fits = np.zeros(n, bool)
    bw_over = np.full(n, np.inf)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(choices):
        groups.setdefault((tuple(s.dim for s in c.spatial), c.inner_order, c.merged), []).append(i)
    plan = list(groups.values())
    known: dict[tuple, int] = {}

    def busy_of(i: int) -> int:     # (it depends on the spatial levels and the L2 tile only)
        c = choices[i]
        key = (c.spatial, c.merged) if l2_tiles is None else (c.spatial, c.merged, tuple(per[i].items()))
        if key not in known:
            known[key] = busy_pes(view, per[i], c, hw.num_pes)
        return known[key]
    if bounds is not None:
        plan.sort(key=lambda members: (min(bounds[i] for i in members), members[0]))
    scored = pruned = 0
    for members in plan:
        if bounds is not None and cutoff is not None:
            limit = cutoff(Scores(scored, runtime, energy, fits, bw_over, pruned))
            if limit is not None:
                kept = [i for i in members if bounds[i] <= limit]
                pruned += len(members) - len(kept)
                members = kept
                if not members:
                    continue
        if memo is not None:
            again = [i for i in members if choices[i] in memo]
            for i in again:
                runtime[i], energy[i], fits[i], bw_over[i] = memo[choices[i]]
            scored += len(again)
            members = [i for i in members if choices[i] not in memo]
            if not members:
                continue
        c0 = choices[members[0]]
        slots = layer_slots(view, dram_order, tuple(s.dim for s in c0.spatial), c0.inner_order, c0.merged)
        template, sizes, offsets, clusters = slot_batch(
            view, slots, np.array([slot_tiles(slots, per[i], choices[i]) for i in members], np.int64))
        busy = np.array([busy_of(i) for i in members], np.int64)
        for start in range(0, len(members), batch):
            if deadline is not None and time.perf_counter() > deadline:
                return Scores(scored, runtime, energy, fits, bw_over, pruned)
            part = slice(start, start + batch)
            idx = np.array(members[part])
            m = evaluate_batch(template, sizes[part], offsets[part], clusters[part], hw)
            runtime[idx] = m.runtime_cycles
            energy[idx] = m.energy_mac_units
            fits[idx] = (m.valid & (m.macs == view.layer_macs) & (m.l1_elements <= hw.l1_size)
                         & (m.l2_elements <= hw.l2_size)
                         & runtime_counts_every_mac(m.compute_delay_cycles, m.macs, busy[part], hw.macs_per_pe))
            bw_over[idx] = bandwidth_over(m.noc_bw_required, m.offchip_bw_required, hw)
            scored += len(idx)
            if memo is not None:
                memo.update((choices[i], (runtime[i], energy[i], fits[i], bw_over[i])) for i in idx)
    return Scores(scored, runtime, energy, fits, bw_over, pruned)


def bandwidth_over(noc_required, offchip_required, hw: HwConfig):
    """The larger of NoC and off-chip bandwidth required over available (> 1: over the limit)."""
    return np.maximum(noc_required / hw.noc_bw, offchip_required / hw.offchip_bw)


def best_within(scores: Scores, priced: bool = False) -> float | None:
    """The lowest runtime of a fitting candidate within the bandwidth (any, with ``priced``), or
    None: the latency objective's cutoff, since every candidate within the bandwidth ranks before
    those over it (a runtime above it can win only while nothing within was found)."""
    ok = scores.fits if priced else scores.fits & scores.bw_ok
    return float(scores.runtime[ok].min()) if ok.any() else None

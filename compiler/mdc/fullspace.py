"""Brute force over the whole MDC mapping space of a small layer, for measuring the on-chip search.

Unlike :func:`compiler.mdc.onchip_space.whole_space` (every point of mapc's own encoding for one L2
tiling), this enumerates MDC dataflows directly, whatever mapc would write:

* 1 to ``max_levels`` cluster levels; every level puts one spreadable dim (the target's rules,
  MAESTRO's DSCONV rule) across its units, the others in time;
* every cluster size from 2 up to what the PEs allow, whether or not it divides them (the top
  level then has ``PEs // product`` units and the rest idle);
* every tile value of every dim on every level, from 1 to the level above's (the layer's extent on
  top; filter taps are whole, MAESTRO's R/S rule);
* every order of the loops that take more than one step on a level, the spatial map among them
  (a loop of one step runs once wherever it sits; those go first, in the op's dim order).

Layers with a strided window are not enumerated (MAESTRO miscounts their larger tiles; mapc puts
their rows one per top-level unit).  Each candidate is scored with the vectorised cost model, a
template (directive kinds and order) at a time, for several HW configs at once (their numbers are
columns like the tile sizes: :func:`full_space_bests`), and ranked as the on-chip pass ranks: exact MACs,
a runtime that gives each of them a PE-cycle (S8), within L1 and L2 fit; within the NoC and
off-chip bandwidth before over; then the objective.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .costmodel import evaluate_batch, runtime_counts_every_mac
from .hw import HwConfig
from .syntax import MdcLayer, cluster, make_layer
from .lowering import MdcView, Slot, slot_batch
from .onchip_space import spreadable_dims
from .scoring import bandwidth_over


@dataclass(frozen=True)
class FullBest:
    """The best point of the whole space: its MDC dataflow (as the key the on-chip pass ranks
    by) and how many points were scored."""

    key: tuple                       # (bandwidth overrun >= 1, runtime, energy)
    layer: MdcLayer                  # the best dataflow as an MDC layer
    points: int                      # candidates scored
    fitting: int                     # of them within L1/L2 with exact MACs and S8


def _chains(extent: int, levels: int) -> list[tuple[int, ...]]:
    """Non-increasing tile sequences over ``levels`` levels, each at most ``extent``."""
    if levels == 0:
        return [()]
    return [(t,) + rest for t in range(1, extent + 1) for rest in _chains(t, levels - 1)]


def _cluster_sizes(pes: int, count: int) -> list[tuple[int, ...]]:
    """Cluster sizes (outermost first) of ``count`` levels below the top, each >= 2, whose product
    leaves the top level at least one unit."""
    if count == 0:
        return [()]
    return [(c,) + rest for c in range(2, pes + 1) for rest in _cluster_sizes(pes // c, count - 1)]


def _stacked(hws: list[HwConfig], who: np.ndarray) -> HwConfig:
    """One HW config whose numbers are per-candidate columns, candidate ``i`` on ``hws[who[i]]``
    (the cost model is elementwise in them, so several targets share one call per template)."""
    if len({h.energy for h in hws}) > 1:
        raise ValueError("full_space_bests: the HW configs must share their energy per access")
    col = lambda f: np.array([getattr(h, f) for h in hws], np.int64)[who]  # noqa: E731
    return HwConfig(num_pes=col("num_pes"), l1_size=col("l1_size"), l2_size=col("l2_size"),
                    noc_bw=col("noc_bw"), offchip_bw=col("offchip_bw"), noc_hops=col("noc_hops"),
                    macs_per_pe=col("macs_per_pe"), energy=hws[0].energy)


def full_space_bests(view: MdcView, hws: list[HwConfig], allowed_roles: tuple[str, ...] | None,
                     max_levels: int = 3, batch: int = 65536) -> list[FullBest]:
    """Score every point of the space described in the module docstring on each HW config (one
    cost-model call per template for all of them); return the best per config."""
    if view.strided_windows():
        raise ValueError("full_space_best: strided windows are not enumerated")
    dims = view.dims
    whole = {d: view.op.extent(d) for d in dims}
    taps = {d for d in dims if view.mdc_dim(d) in ("R", "S")}
    spread = [d for d in spreadable_dims(view, allowed_roles) if whole[d] > 1]
    best: list[tuple | None] = [None] * len(hws)
    points, fitting = [0] * len(hws), [0] * len(hws)
    for depth in range(1, max_levels + 1):
        sizes_cl = [_cluster_sizes(h.num_pes, depth - 1) for h in hws]
        per_dim = [[(whole[d],) * depth] if d in taps else _chains(whole[d], depth) for d in dims]
        groups: dict[tuple, list[tuple[int, ...]]] = {}
        for chain in itertools.product(*per_dim):
            tiles = [{d: chain[i][lv] for i, d in enumerate(dims)} for lv in range(depth)]
            above = [whole] + tiles[:-1]
            moving = [[d for d in dims if tiles[lv][d] < above[lv][d]] for lv in range(depth)]
            for sp in itertools.product(spread, repeat=depth):
                level_orders = []
                for lv in range(depth):
                    still = tuple(d for d in dims if d not in moving[lv] and d != sp[lv])
                    steps = [d for d in dims if d in moving[lv] or d == sp[lv]]
                    level_orders.append([still + p for p in itertools.permutations(steps)])
                flat = tuple(t for lvl in tiles for t in lvl.values())
                for orders in itertools.product(*level_orders):
                    groups.setdefault((sp, orders), []).append(flat)
        # every config's cluster sizes go in the same batch: they are columns, not template
        which = np.repeat(np.arange(len(hws)), [len(c) for c in sizes_cl])
        all_cl = np.array([c for cs in sizes_cl for c in cs], np.int64).reshape(len(which), depth - 1)
        for (sp, orders), rows in groups.items():
            tiles = np.repeat(np.array(rows, np.int64), len(which), axis=0)
            clusters = np.tile(all_cl, (len(rows), 1))
            owner = np.tile(which, len(rows))
            col = {(lv, d): lv * len(dims) + i for lv in range(depth) for i, d in enumerate(dims)}
            slots, columns = [], []
            for lv in range(depth):
                if lv:
                    slots.append(Slot("C", "", lv))
                    columns.append(clusters[:, lv - 1])
                for d in orders[lv]:
                    slots.append(Slot("S" if d == sp[lv] else "T", d, lv))
                    columns.append(tiles[:, col[lv, d]])
            template, sizes_a, offs_a, _ = slot_batch(view, tuple(slots), np.stack(columns, axis=1))
            for start in range(0, len(tiles), batch):
                part = slice(start, start + batch)
                who = owner[part]
                hw = _stacked(hws, who)
                m = evaluate_batch(template, sizes_a[part], offs_a[part], clusters[part], hw)
                ok = (m.valid & (m.macs == view.layer_macs) & (m.l1_elements <= hw.l1_size)
                      & (m.l2_elements <= hw.l2_size)
                      & runtime_counts_every_mac(m.compute_delay_cycles, m.macs, hw.num_pes, hw.macs_per_pe))
                over = np.maximum(1.0, bandwidth_over(m.noc_bw_required, m.offchip_bw_required, hw))
                for h in range(len(hws)):
                    mine = who == h
                    points[h] += int(mine.sum())
                    idx = np.flatnonzero(ok & mine)
                    fitting[h] += len(idx)
                    if not len(idx):
                        continue
                    j = idx[np.lexsort((m.energy_mac_units[idx], m.runtime_cycles[idx], over[idx]))[0]]
                    key = (float(over[j]), int(m.runtime_cycles[j]), float(m.energy_mac_units[j]))
                    if best[h] is None or key < best[h][0]:
                        row = start + j
                        best[h] = (key, _spell(view, sp, orders, tiles[row], col, clusters[row], depth))
    if any(b is None for b in best):
        raise ValueError("full_space_best: no point fits")
    return [FullBest(b[0], make_layer(view.op.name, view.form.layer_type, view.declared(), b[1],
                                      view.stride_block()), n, f)
            for b, n, f in zip(best, points, fitting)]


def full_space_best(view: MdcView, hw: HwConfig, allowed_roles: tuple[str, ...] | None,
                    max_levels: int = 3, batch: int = 65536) -> FullBest:
    """:func:`full_space_bests` on one HW config."""
    return full_space_bests(view, [hw], allowed_roles, max_levels, batch)[0]


def _spell(view: MdcView, sp, orders, row, col, cl, depth) -> tuple:
    """The dataflow of one candidate, for messages."""
    out = []
    for lv in range(depth):
        if lv:
            out.append(cluster(int(cl[lv - 1])))
        out += [view.directive(d, int(row[col[lv, d]]), d == sp[lv]) for d in orders[lv]]
    return tuple(out)


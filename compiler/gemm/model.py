"""Analytical runtime, traffic and energy of a tiled GEMM schedule on a systolic array.

The model (documented with worked numbers in ``docs/gemm-model.md``) follows the structure of a
tiled GEMM on a spatial accelerator: DRAM -> L2 tiles, L2 -> array tiles, and inside the array a
stationary operand held by the PEs while the third dim streams through.

* Chiplets with equal shares run in lockstep and share DRAM reads (one read, broadcast).
* Traffic at a buffer level uses distinct-block reuse: within one tile of the level above, a
  buffered operand is refetched once per iteration of the loops that do not index it and sit
  outside the innermost loop (with more than one trip) that does; an operand with no buffer at the
  level is moved on every iteration.  Partial sums are read back whenever a tile of C arrives with
  an earlier part of the reduction already done, and written on every departure.
* One array tile with ``r`` x ``c`` stationary values and a stream of ``t`` takes ``t + r + c - 2``
  cycles (stream, pipeline fill and drain) plus ``r`` cycles to swap the stationary tile, hidden
  behind the previous tile when the array double-buffers it.  An L2 tile takes the larger of that
  sum and its L2 <-> array traffic over the NoC bandwidth.
* L2 tiles overlap with the DRAM transfers of the next one under double buffering: the run is the
  first load, then the larger of compute and the remaining DRAM time, then the last write-back.

Edge tiles are exact: the sizes a dim's tiles take at each depth are kept as classes
(:class:`compiler.gemm.schedule.TileClasses`), so the numbers are exact sums, not averages.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from targets import Target

from .schedule import Axis, Level, Loop, Schedule, ScheduleError, TileClasses

BOUNDARIES = ("dram_to_l2", "l2_to_array")
COUNTS = ("A", "B", "C_read", "C_write")


@dataclass(frozen=True)
class ArrayForm:
    """What the array loops of a schedule say: the stationary dims and the streaming dim."""

    row_dim: str
    col_dim: str
    stream_dim: str
    stationary: str        # the operand role the PEs hold


@dataclass(frozen=True)
class GemmMetrics:
    """The model's numbers for one schedule."""

    runtime_cycles: int
    compute_cycles: int        # array busy time of the busiest chiplet (incl. NoC stalls)
    dram_cycles: int           # all DRAM traffic over the off-chip bandwidth
    prologue_cycles: int
    epilogue_cycles: int
    traffic: dict[str, dict[str, int]]
    macs: int
    pes: int
    bound_compute: int
    bound_dram: int
    energy: float
    l2_elements: int
    l1_elements: int

    @property
    def utilization(self) -> float:
        return self.macs / (self.runtime_cycles * self.pes) if self.runtime_cycles else 0.0

    @property
    def roofline(self) -> int:
        return max(self.bound_compute, self.bound_dram)

    def total(self, boundary: str) -> int:
        return sum(self.traffic[boundary].values())


def array_form(s: Schedule) -> ArrayForm:
    """Find the stationary (rows, cols) dims and the streaming dim; the model needs exactly one
    spatial loop per array axis, of step 1, and one PE loop of step 1."""
    rows = [lp for lp in s.loops if lp.level == Level.ARRAY and lp.axis == Axis.ROWS]
    cols = [lp for lp in s.loops if lp.level == Level.ARRAY and lp.axis == Axis.COLS]
    pe = [lp for lp in s.loops if lp.level == Level.PE]
    if len(rows) != 1 or len(cols) != 1 or len(pe) != 1 or any(lp.step != 1 for lp in rows + cols + pe):
        raise ScheduleError("the GEMM model needs one spatial loop of step 1 per array axis and one "
                            "pe loop of step 1")
    r, c, t = rows[0].dim, cols[0].dim, pe[0].dim
    held = [o.role for o in s.operands if r in o.dims and c in o.dims]
    if len({r, c, t}) != 3 or len(held) != 1:
        raise ScheduleError(f"array loops over {r}, {c} and {t} do not make a systolic dataflow")
    return ArrayForm(r, c, t, held[0])


def _range_loops(s: Schedule, levels: tuple[Level, ...]) -> list[Loop]:
    loops = [lp for lp in s.loops if lp.level in levels]
    seen: set[str] = set()
    for lp in loops:
        if lp.dim in seen:
            raise ScheduleError(f"the GEMM model allows one {lp.level.value} loop per dim; "
                                f"'{lp.dim}' has several")
        seen.add(lp.dim)
    return loops


def _combos(classes: dict[str, TileClasses]):
    """All combinations of per-dim tile sizes with how many tiles have them."""
    names = list(classes)
    for combo in itertools.product(*(classes[d].counts for d in names)):
        yield {d: size for d, (size, _) in zip(names, combo)}, math.prod(n for _, n in combo)


def block_traffic(parent: dict[str, int], loops: list[Loop], dims: tuple[str, ...], buffered: bool) -> int:
    """Elements of one operand moved into a level while ``loops`` walk one parent tile."""
    trips = [math.ceil(parent[lp.dim] / lp.step) for lp in loops]
    foot = math.prod(parent[d] for d in dims)
    if not buffered:
        return foot * math.prod(t for lp, t in zip(loops, trips) if lp.dim not in dims)
    inner = max((i for i, (lp, t) in enumerate(zip(loops, trips)) if lp.dim in dims and t > 1), default=0)
    return foot * math.prod(t for lp, t in zip(loops[:inner], trips[:inner]) if lp.dim not in dims)


def _level_traffic(s: Schedule, parent: dict[str, int], loops: list[Loop], level: Level) -> dict[str, int]:
    """A, B, C loads (C loads before subtracting first touches) into ``level`` for one parent tile."""
    held = s.buffered(level)
    return {o.role: block_traffic(parent, loops, o.dims, o.role in held) for o in s.operands}


def evaluate(s: Schedule, target: Target) -> GemmMetrics:
    """Run the model on a schedule for ``target``."""
    form = array_form(s)
    ext = s.extents
    chip_loops = [lp for lp in s.loops if lp.level == Level.CHIPLET]
    dram_loops = _range_loops(s, (Level.DRAM,))
    l2_loops = _range_loops(s, (Level.L2,))
    c_dims = s.operand("C").dims
    for lp in chip_loops:
        if lp.dim not in c_dims:
            raise ScheduleError(f"the GEMM model cannot split the reduction dim '{lp.dim}' across chiplets")
    if any(s.loops.index(lp) > i for i, lp in enumerate(chip_loops)):
        raise ScheduleError("chiplet loops must be the outermost loops")
    _range_loops(s, (Level.CHIPLET,))
    db_l2 = all(b.double_buffered for b in s.buffers if b.level == Level.L2)
    db_array = all(b.double_buffered for b in s.buffers if b.level == Level.ARRAY)

    shares = {d: TileClasses.whole(e) for d, e in ext.items()}
    for lp in chip_loops:
        shares[lp.dim] = shares[lp.dim].split(lp.step)

    dram = dict.fromkeys(("A", "B", "C"), 0)
    noc = dict.fromkeys(("A", "B", "C"), 0)
    busiest = 0
    # Equal shares run in lockstep: a tile that several chiplets need at the same step is read
    # once and broadcast, so an operand is read once per part of the split dims that index it.
    lockstep = all(ext[lp.dim] % lp.step == 0 for lp in chip_loops)
    readers = {o.role: (math.prod(ext[lp.dim] // lp.step for lp in chip_loops if lp.dim in o.dims)
                        if lockstep else None) for o in s.operands}
    for share, n_share in _combos(shares):
        for role, v in _level_traffic(s, share, dram_loops, Level.L2).items():
            dram[role] += (readers[role] if lockstep else n_share) * v
        steps = {lp.dim: lp.step for lp in dram_loops}
        share_cycles = 0
        # L2 tiles that start the reduction are split off: their partial sums are not read back
        for first in (True, False):
            l2_tiles = {}
            for d in ext:
                cl = TileClasses.whole(share[d]).split(steps.get(d, share[d]))
                if d not in c_dims:
                    head = min(steps.get(d, share[d]), share[d])
                    cl = (TileClasses.whole(head) if first else
                          TileClasses.whole(share[d] - head).split(steps.get(d, share[d])) if share[d] > head
                          else TileClasses())
                l2_tiles[d] = cl
            for tile, n_tile in _combos(l2_tiles):
                moved = _level_traffic(s, tile, l2_loops, Level.ARRAY)
                for role, v in moved.items():
                    noc[role] += n_share * n_tile * v
                c_read = moved["C"] - (math.prod(tile[d] for d in c_dims) if first else 0)
                busy = _l2_tile_cycles(tile, l2_loops, form, db_array)
                share_cycles += n_tile * max(busy, math.ceil((sum(moved.values()) + c_read) / target.noc_bw))
        busiest = max(busiest, share_cycles)

    c_size = math.prod(ext[d] for d in c_dims)
    traffic = {"dram_to_l2": {"A": dram["A"], "B": dram["B"], "C_read": dram["C"] - c_size, "C_write": dram["C"]},
               "l2_to_array": {"A": noc["A"], "B": noc["B"], "C_read": noc["C"] - c_size, "C_write": noc["C"]}}
    dram_total = sum(traffic["dram_to_l2"].values())
    dram_cycles = math.ceil(dram_total / target.offchip_bw)
    first = {d: ext[d] for d in ext}
    for lp in chip_loops + dram_loops:
        first[lp.dim] = min(first[lp.dim], lp.step)
    first_in = sum(math.prod(first[d] for d in s.operand(r).dims) for r in ("A", "B"))
    last_out = math.prod(first[d] for d in c_dims)
    if db_l2:
        prologue = math.ceil(first_in / target.offchip_bw)
        epilogue = math.ceil(last_out / target.offchip_bw)
        runtime = prologue + max(busiest, dram_cycles - prologue - epilogue) + epilogue
    else:
        prologue = epilogue = 0
        runtime = busiest + dram_cycles
    macs = math.prod(ext.values())
    pes = target.num_pes * target.macs_per_pe * s.chiplets
    compulsory = sum(math.prod(ext[d] for d in o.dims) for o in s.operands)
    noc_total = sum(traffic["l2_to_array"].values())
    en = target.energy
    energy = (macs * (en.mac + 3 * en.l1_access) + (noc_total + dram_total) * en.l2_access
              + dram_total * en.dram_access)
    l2_elems = sum(b.elements * (2 if b.double_buffered else 1) for b in s.buffers if b.level == Level.L2)
    return GemmMetrics(
        runtime_cycles=runtime, compute_cycles=busiest, dram_cycles=dram_cycles, prologue_cycles=prologue,
        epilogue_cycles=epilogue, traffic=traffic, macs=macs, pes=pes,
        bound_compute=math.ceil(macs / pes), bound_dram=math.ceil(compulsory / target.offchip_bw),
        energy=energy, l2_elements=l2_elems, l1_elements=2 if db_array else 1)


def _l2_tile_cycles(tile: dict[str, int], l2_loops: list[Loop], form: ArrayForm, db_array: bool) -> int:
    """Array cycles for one L2 tile: every array tile's stream + fill/drain, and stationary swaps."""
    arr = {d: TileClasses.whole(tile[d]) for d in tile}
    for lp in l2_loops:
        arr[lp.dim] = arr[lp.dim].split(lp.step)
    for d, cl in arr.items():
        if d not in (form.row_dim, form.col_dim, form.stream_dim) and any(size > 1 for size, _ in cl.counts):
            raise ScheduleError(f"dim '{d}' must be walked in steps of 1 above the array (the array "
                                "holds one GEMM of a batch at a time)")
    total, first_swap = 0, 0
    for a, n in _combos(arr):
        r, c, t = a[form.row_dim], a[form.col_dim], a[form.stream_dim]
        busy = t + r + c - 2
        total += n * (max(busy, r) if db_array else busy + r)
        first_swap = max(first_swap, r)
    return total + (first_swap if db_array else 0)


def metrics_report(m: GemmMetrics, target: Target) -> dict:
    """The report.json ``metrics`` and ``bounds`` entries."""
    dram = m.total("dram_to_l2")
    return {
        "metrics": {"runtime_cycles": m.runtime_cycles, "energy_mac_units": round(m.energy, 3),
                    "l1_elements": m.l1_elements, "l2_elements": m.l2_elements,
                    "dram_traffic_elements": dram,
                    "noc_bw_required": round(m.total("l2_to_array") / max(m.compute_cycles, 1), 4),
                    "offchip_bw_required": round(dram / max(m.compute_cycles, 1), 4),
                    "utilization": round(m.utilization, 6)},
        "bounds": {"compute_cycles": m.bound_compute, "dram_cycles": m.bound_dram,
                   "roofline_cycles": m.roofline},
    }

"""The systolic timing and traffic model against hand-worked numbers (compiler.gemm.model).

Every expected value below is worked out by hand in the comments from the rules in
docs/gemm-model.md: an array tile of r x c stationary values and a stream of t takes
t + r + c - 2 cycles plus an r-cycle swap of the stationary tile (hidden when double-buffered,
except the first one of each L2 tile); an L2 tile takes max(that, L2<->array elements / NoC BW);
the whole run is prologue + max(compute, DRAM cycles - prologue - epilogue) + epilogue.
"""
import pytest

from compiler.errors import MapcError
from compiler.gemm.model import evaluate
from compiler.gemm.schedule import Axis, Buffer, Kind, Level, Loop, Operand, Schedule, TileClasses
from targets import Target

DIMS = {"A": ("m", "k"), "B": ("k", "n"), "C": ("m", "n")}
ARRAY = {"weight_stationary": ("k", "n", "m", "B"), "output_stationary": ("m", "n", "k", "C"),
         "input_stationary": ("k", "m", "n", "A")}


def target(noc=256.0, offchip=16.0, rows=4, cols=4) -> Target:
    return Target(name="t", description="", backends=("gemm",), pe_rows=rows, pe_cols=cols, macs_per_pe=1,
                  l1_bytes=8, l2_bytes=1 << 20, noc_bw=noc, offchip_bw=offchip,
                  systolic_dataflow="weight_stationary")


def sched(ext, dram, l2=(), dataflow="weight_stationary", db_array=True, db_l2=True) -> Schedule:
    """dram: [(dim, step)] in order; l2: [(dim, step)] in order; array loops from the dataflow."""
    r, c, s, held = ARRAY[dataflow]
    loops = [Loop(d, st, Kind.TEMPORAL, Level.DRAM) for d, st in dram]
    loops += [Loop(d, st, Kind.TEMPORAL, Level.L2) for d, st in l2]
    loops += [Loop(r, 1, Kind.SPATIAL, Level.ARRAY, Axis.ROWS), Loop(c, 1, Kind.SPATIAL, Level.ARRAY, Axis.COLS),
              Loop(s, 1, Kind.TEMPORAL, Level.PE)]
    bufs = tuple(Buffer(Level.L2, role, 10**6, db_l2) for role in "ABC") + (Buffer(Level.ARRAY, held, 16, db_array),)
    return Schedule("g", "t", dataflow, (4, 4), 1, tuple(ext.items()),
                    tuple(Operand(x, x, DIMS[x]) for x in "ABC"), tuple(loops), bufs)


def test_single_tile_weight_stationary():
    # M=8, N=4, K=4 on 4x4, everything in one L2 tile and one array tile.
    # Array tile: r=4 (k), c=4 (n), stream t=8 (m): 8 + 4 + 4 - 2 = 14 cycles; the 4-cycle swap is
    # hidden (max(14, 4) = 14) but the first load is not: 14 + 4 = 18.  NoC: A 32 + B 16 + C 32 = 80
    # elements at 256/cycle -> 1 cycle, below 18.  DRAM: 80 elements at 16/cycle = 5 cycles;
    # prologue ceil((32 + 16) / 16) = 3, epilogue ceil(32 / 16) = 2: 3 + max(18, 5 - 3 - 2) + 2 = 23.
    m = evaluate(sched({"m": 8, "n": 4, "k": 4}, [("m", 8), ("n", 4), ("k", 4)]), target())
    assert m.compute_cycles == 18
    assert m.dram_cycles == 5
    assert m.runtime_cycles == 23
    assert m.traffic["dram_to_l2"] == {"A": 32, "B": 16, "C_read": 0, "C_write": 32}
    assert m.bound_compute == 8 * 4 * 4 // 16          # 128 MACs on 16 PEs
    assert m.bound_dram == 5                           # (32 + 16 + 32) / 16
    assert m.utilization == pytest.approx(128 / (23 * 16))


def test_edge_tiles_and_noc_limit():
    # M=5, N=3, K=10, L2 loop over k in steps of 4: array tiles with k = 4, 4, 2 rows.
    # Tiles: 5 + 4 + 3 - 2 = 10, again 10, and 5 + 2 + 3 - 2 = 8; swaps 4, 4, 2 are hidden;
    # first swap 4: 10 + 10 + 8 + 4 = 32 cycles.
    # L2 -> array: A streams (5 x 10 = 50, no n loop), B held (3 x 10 = 30, once), C streams:
    # written 15 x 3 k-steps = 45, read back 45 - 15 = 30.  Total 155.
    s = sched({"m": 5, "n": 3, "k": 10}, [("m", 5), ("n", 3), ("k", 10)], l2=[("k", 4)])
    m = evaluate(s, target(noc=8.0, offchip=10.0))
    assert m.traffic["l2_to_array"] == {"A": 50, "B": 30, "C_read": 30, "C_write": 45}
    assert m.compute_cycles == 32                      # NoC: ceil(155 / 8) = 20 < 32
    # DRAM: 50 + 30 + 15 = 95 at 10/cycle -> 10; prologue ceil(80 / 10) = 8, epilogue 2:
    # 8 + max(32, 0) + 2 = 42.
    assert m.runtime_cycles == 42
    # With a NoC of 4 elements/cycle the L2 tile is NoC-bound: ceil(155 / 4) = 39 cycles.
    assert evaluate(s, target(noc=4.0, offchip=10.0)).compute_cycles == 39


def test_no_double_buffering():
    # Same tiles, but the array cannot hide swaps: (10 + 4) + (10 + 4) + (8 + 2) = 38 cycles, no
    # separate first load.  Without L2 double buffering DRAM adds: 38 + ceil(95 / 10) = 48.
    s = sched({"m": 5, "n": 3, "k": 10}, [("m", 5), ("n", 3), ("k", 10)], l2=[("k", 4)],
              db_array=False, db_l2=False)
    m = evaluate(s, target(noc=256.0, offchip=10.0))
    assert m.compute_cycles == 38
    assert m.runtime_cycles == 48


def test_dram_bound_overlap():
    # M=8, N=4, K=4 in two L2 tiles of m=4, off-chip 1 element/cycle.
    # DRAM: A 32 (each half once), B 16 (stays in L2: no loop outside indexes it), C 32 -> 80 cycles.
    # Each L2 tile: 4 + 4 + 4 - 2 = 10, plus first swap 4 = 14; two tiles: 28 compute cycles.
    # Prologue: A tile 16 + B 16 = 32 cycles; epilogue: C tile 16.  32 + max(28, 80 - 48) + 16 = 80.
    m = evaluate(sched({"m": 8, "n": 4, "k": 4}, [("m", 4), ("n", 4), ("k", 4)]), target(offchip=1.0))
    assert m.traffic["dram_to_l2"] == {"A": 32, "B": 16, "C_read": 0, "C_write": 32}
    assert m.compute_cycles == 28
    assert m.runtime_cycles == 80


def test_partial_sums_leave_l2():
    # M=4, N=4, K=8 with the DRAM order k outside m: k in steps of 4 (2 trips), then m in steps of 2
    # (2 trips).  C[m,n] is indexed by m, which is innermost, and k sits outside it: every C tile
    # leaves L2 once per k step.  C written 16 x 2 = 32, read back 32 - 16 = 16.  B (k, n): the
    # innermost loop indexing it is k; nothing non-B outside -> 32 once.  A: 32 once.
    s = sched({"m": 4, "n": 4, "k": 8}, [("n", 4), ("k", 4), ("m", 2)])
    assert evaluate(s, target()).traffic["dram_to_l2"] == {"A": 32, "B": 32, "C_read": 16, "C_write": 32}


def test_other_dataflows():
    # Output-stationary, M=4, N=4, K=6: rows m=4, cols n=4, stream k=6: 6 + 4 + 4 - 2 = 12, plus
    # the first swap (draining/preloading 4 rows of outputs) 4 = 16.
    os_ = sched({"m": 4, "n": 4, "k": 6}, [("m", 4), ("n", 4), ("k", 6)], dataflow="output_stationary")
    assert evaluate(os_, target()).compute_cycles == 16
    # Input-stationary, M=3, N=5, K=4: rows k=4, cols m=3, stream n=5: 5 + 4 + 3 - 2 = 10, + 4 = 14.
    is_ = sched({"m": 3, "n": 5, "k": 4}, [("m", 3), ("n", 5), ("k", 4)], dataflow="input_stationary")
    assert evaluate(is_, target()).compute_cycles == 14


def test_output_stationary_keeps_outputs():
    # OS, M=4, N=4, K=6 with an L2 loop over k in steps of 3: C is held by the array, so it is
    # loaded once (16 written, 0 read back); A (4 x 6) and B (6 x 4) stream, 24 each.
    s = sched({"m": 4, "n": 4, "k": 6}, [("m", 4), ("n", 4), ("k", 6)], l2=[("k", 3)], dataflow="output_stationary")
    assert evaluate(s, target()).traffic["l2_to_array"] == {"A": 24, "B": 24, "C_read": 0, "C_write": 16}


def test_tile_classes_are_exact():
    assert TileClasses.whole(10).split(4).counts == ((4, 2), (2, 1))
    assert TileClasses.whole(10).split(4).split(3).counts == ((3, 2), (2, 1), (1, 2))


def test_model_refuses_reduction_across_chiplets():
    s = sched({"m": 4, "n": 4, "k": 8}, [("m", 4), ("n", 4), ("k", 4)])
    s = Schedule(s.op, s.target, s.dataflow, s.array, 2, s.dims, s.operands,
                 (Loop("k", 4, Kind.SPATIAL, Level.CHIPLET, Axis.COLS),) + s.loops, s.buffers)
    with pytest.raises(MapcError, match="reduction"):
        evaluate(s, target())

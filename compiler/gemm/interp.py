"""An independent interpreter for tiled GEMM schedules (``mapc verify``).

It walks a schedule's loops in order on random small-integer matrices, multiplying sub-blocks with
numpy at the bottom, and checks the result against ``A @ B``.  On the way it counts the elements
each buffer level receives, following the schedule's own declarations rather than the model's
formulas: at each arrival at a level, an operand with a buffer there is loaded only if its tile
differs from the one the buffer holds (buffers below L2 start empty in every new L2 tile); an
operand without a buffer is moved every time; a C tile is written back once per load and read
back when an earlier part of its reduction has already been done.  Chiplets whose chiplet loops
divide their dims evenly run in lockstep: a tile several of them read at the same step (the n-th
arrival at L2) is counted once, as it is broadcast.

``granularity="tile"`` stops at the array boundary and multiplies a whole array tile at once (fast
enough for full-size layers); ``"element"`` walks every loop down to the PEs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .schedule import Kind, Level, Schedule, ScheduleError, read_schedule

LEVEL_OF_BOUNDARY = {"dram_to_l2": Level.L2, "l2_to_array": Level.ARRAY}


@dataclass(frozen=True)
class VerifyResult:
    """What a run found: correctness, counted traffic, and where it differs from the claims."""

    correct: bool
    bodies: int
    counted: dict[str, dict[str, int]]
    claimed: dict[str, dict[str, int]]
    overflows: tuple[str, ...]

    @property
    def mismatches(self) -> list[str]:
        out = []
        for boundary, counts in self.claimed.items():
            for key, value in counts.items():
                got = self.counted.get(boundary, {}).get(key)
                if got != value:
                    out.append(f"{boundary}.{key}: claimed {value}, counted {got}")
        return out

    @property
    def ok(self) -> bool:
        return self.correct and not self.mismatches and not self.overflows


def random_operands(s: Schedule, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random integer A, B shaped by the schedule, each with a leading batch axis."""
    rng = np.random.default_rng(seed)
    ext = s.extents
    # float64 holds these products and their sums exactly (|sum| <= 16 * K << 2**53) and lets
    # numpy use BLAS, so full-size layers run in seconds.
    return tuple(rng.integers(-4, 5, size=tuple(ext[d] for d in s.operand(r).dims)).astype(np.float64)
                 for r in ("A", "B"))


def _spec(s: Schedule) -> str:
    """einsum subscripts ``A,B->C`` built from the operands' own dim orders."""
    letters = {d: chr(ord("a") + i) for i, d in enumerate(s.extents)}
    a, b, c = ("".join(letters[d] for d in s.operand(r).dims) for r in ("A", "B", "C"))
    return f"{a},{b}->{c}"


def run_schedule(s: Schedule, a: np.ndarray, b: np.ndarray, *, granularity: str = "tile"):
    """Execute ``s`` on ``a`` (A) and ``b`` (B); returns (C, counts per boundary, bodies, overflows)."""
    ext = s.extents
    ops = {o.role: o for o in s.operands}
    reduction = [d for d in ext if d not in ops["C"].dims]
    n_above_l2 = sum(1 for lp in s.loops if lp.level in (Level.CHIPLET, Level.DRAM))
    n_above_array = n_above_l2 + sum(1 for lp in s.loops if lp.level == Level.L2)
    cut = n_above_array if granularity == "tile" else len(s.loops)
    boundaries: dict[int, list[str]] = {}
    boundaries.setdefault(n_above_l2, []).append("dram_to_l2")
    boundaries.setdefault(n_above_array, []).append("l2_to_array")
    counts = {bd: dict.fromkeys(("A", "B", "C_read", "C_write"), 0) for bd in LEVEL_OF_BOUNDARY}
    last: dict[str, dict[tuple, dict[str, tuple]]] = {bd: {} for bd in LEVEL_OF_BOUNDARY}
    capacity = {(bf.level, bf.role): bf.elements for bf in s.buffers}
    overflows: set[str] = set()
    chiplet_loops = [lp for lp in s.loops if lp.level == Level.CHIPLET]
    lockstep = all(ext[lp.dim] % lp.step == 0 for lp in chiplet_loops)
    arrivals: dict[tuple, int] = {}
    broadcast: set[tuple] = set()
    c = np.zeros(tuple(ext[d] for d in ops["C"].dims), dtype=np.float64)
    spec = _spec(s)
    bodies = 0

    def arrive(boundary: str, tile: dict[str, tuple[int, int]], inst: tuple) -> None:
        level = LEVEL_OF_BOUNDARY[boundary]
        held = s.buffered(level)
        memory = last[boundary].setdefault(inst, {})
        if boundary == "dram_to_l2":
            last["l2_to_array"].pop(inst, None)      # a new L2 tile: array buffers start empty
        started = any(tile[d][0] > 0 for d in reduction)
        if boundary == "dram_to_l2":
            arrivals[inst] = arrivals.get(inst, -1) + 1
        for role, o in ops.items():
            coords = tuple(tile[d] for d in o.dims)
            foot = math.prod(size for _, size in coords)
            if role in held:
                if memory.get(role) == coords:
                    continue
                memory[role] = coords
                if foot > capacity[(level, role)]:
                    overflows.add(f"{level.value} buffer of {role}: tile of {foot} elements, "
                                  f"buffer of {capacity[(level, role)]}")
            if role == "C":
                counts[boundary]["C_write"] += foot
            if lockstep and boundary == "dram_to_l2":
                key = (arrivals[inst], role, coords)
                if key in broadcast:
                    continue          # another chiplet read this tile at the same step
                broadcast.add(key)
            if role != "C":
                counts[boundary][role] += foot
            elif started:
                counts[boundary]["C_read"] += foot

    def sl(role: str, tile) -> tuple[slice, ...]:
        return tuple(slice(tile[d][0], tile[d][0] + tile[d][1]) for d in ops[role].dims)

    def walk(i: int, tile: dict[str, tuple[int, int]], inst: tuple) -> None:
        nonlocal bodies
        for boundary in boundaries.get(i, ()):
            arrive(boundary, tile, inst)
        if i == cut:
            bodies += 1
            c[sl("C", tile)] += np.einsum(spec, a[sl("A", tile)], b[sl("B", tile)], optimize=True)
            return
        lp = s.loops[i]
        start, size = tile[lp.dim]
        for j, off in enumerate(range(start, start + size, lp.step)):
            inner = dict(tile)
            inner[lp.dim] = (off, min(lp.step, start + size - off))
            walk(i + 1, inner, inst + (j,) if lp.kind == Kind.SPATIAL and lp.level == Level.CHIPLET else inst)

    walk(0, {d: (0, e) for d, e in ext.items()}, ())
    return c, counts, bodies, tuple(sorted(overflows))


#: What one ``mapc verify`` may take: operand elements held as float64 (1 GiB) and loop bodies
#: executed (about a minute of Python at element granularity).
MAX_ELEMENTS = 2 ** 27
MAX_BODIES = 10 ** 6


def work(s: Schedule, granularity: str = "tile") -> tuple[int, int]:
    """(elements of A, B and C, bodies the walk executes) of a run, computed without running it:
    the loops on one dim cut its range independently of the others, and the pieces of a range
    depend only on its length."""
    ext = s.extents
    elements = sum(math.prod(ext[d] for d in s.operand(r).dims) for r in ("A", "B", "C"))
    n_above_array = sum(1 for lp in s.loops if lp.level in (Level.CHIPLET, Level.DRAM, Level.L2))
    loops = s.loops[:n_above_array] if granularity == "tile" else s.loops

    def pieces(steps: tuple[int, ...], length: int) -> int:
        if not steps:
            return 1
        full, rest = divmod(length, steps[0])
        return full * pieces(steps[1:], steps[0]) + (pieces(steps[1:], rest) if rest else 0)
    bodies = math.prod(pieces(tuple(lp.step for lp in loops if lp.dim == d), e) for d, e in ext.items())
    return elements, bodies


def verify(s: Schedule, *, seed: int = 0, granularity: str = "tile") -> VerifyResult:
    """Run ``s`` on random integer matrices and compare with the direct product and the claims.

    Refuses (:class:`ScheduleError`, with the sizes) a run above :data:`MAX_ELEMENTS` or
    :data:`MAX_BODIES` rather than exhausting memory or running for hours."""
    if granularity not in ("tile", "element"):
        raise ScheduleError(f"unknown granularity '{granularity}'")
    elements, bodies = work(s, granularity)
    if elements > MAX_ELEMENTS or bodies > MAX_BODIES:
        hint = "; without --element it walks array tiles only" if granularity == "element" else ""
        raise ScheduleError(f"too large to execute: {elements:,} matrix elements (limit {MAX_ELEMENTS:,}) "
                            f"and {bodies:,} {granularity} steps (limit {MAX_BODIES:,}){hint}")
    a, b = random_operands(s, seed)
    c, counts, bodies, overflows = run_schedule(s, a, b, granularity=granularity)
    expected = np.einsum(_spec(s), a, b, optimize=True)
    return VerifyResult(correct=bool(np.array_equal(c, expected)), bodies=bodies, counted=counts,
                        claimed=s.claimed(), overflows=overflows)


def verify_file(path, *, seed: int = 0, granularity: str = "tile") -> tuple[list[str], bool]:
    """``mapc verify``: read, run and report a schedule file as lines of text, and whether it passed."""
    s = read_schedule(path)
    start = time.perf_counter()
    res = verify(s, seed=seed, granularity=granularity)
    took = time.perf_counter() - start
    dims = " x ".join(f"{d}={e}" for d, e in s.dims)
    lines = [f"{path}: {s.op} on {s.target}, {dims}, {len(s.loops)} loops, {res.bodies:,} blocks "
             f"executed in {took:.2f} s ({granularity} granularity)",
             f"  product: {'equal to A @ B' if res.correct else 'DIFFERS from A @ B'}"]
    for boundary, counts in res.counted.items():
        claimed = res.claimed.get(boundary, {})
        cells = []
        for key, got in counts.items():
            want = claimed.get(key)
            mark = "" if want is None or want == got else f" (claimed {want:,})"
            cells.append(f"{key} {got:,}{mark}")
        lines.append(f"  {boundary}: " + ", ".join(cells))
    lines += [f"  overflow: {o}" for o in res.overflows]
    lines.append("  traffic: " + ("not checked: the schedule has no 'traffic:' claims" if not res.claimed else
                                  "matches the claims" if not res.mismatches else
                                  f"{len(res.mismatches)} MISMATCH(ES)"))
    lines.append("ok" if res.ok else "FAILED")
    return lines, res.ok

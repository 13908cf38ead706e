"""A discrete-event simulation of a package schedule over several periods (frames).

Independent of how the schedule was found and of the closed-form figures in
:mod:`compiler.package`: it only knows, per stage, which chiplets it holds, how long its compute
takes, how long streaming its output takes and which links that stream holds.  Jobs hold their
resources (chiplets, directed links) exclusively from start to end; a job starts as soon as its
predecessors have ended (the previous stage of the same frame: its compute and its stream) and
its resources are free; among ready jobs waiting for the same resource the earlier frame, then
the earlier stage, goes first.  Each stage's DRAM traffic of a frame is one more job, holding the
one DRAM interface for its busy time, free to run any time after the frame is admitted.  Lockstep is the same machinery: every stage holds all chiplets,
so the models take turns.

:func:`simulate` runs it twice: with every frame available at time 0 (saturated), the interval
between the last frames' completions is the steady-state interval; with frames admitted once per
that interval, the largest admission-to-completion time of the last frames is the latency.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from .package import Figures


@dataclass(frozen=True)
class Job:
    """One piece of work of one frame: a stage's compute or its output stream."""

    frame: int
    stage: int
    stream: bool
    duration: int
    resources: frozenset
    after: tuple[tuple[int, int, bool], ...]     # (frame, stage, stream) that must end first


@dataclass(frozen=True)
class SimResult:
    """Steady-state interval and latency measured over ``frames`` periods."""

    frames: int
    interval: int
    latency: int
    ends: tuple[int, ...]           # per frame: when its last stage ended (saturated run)


def jobs_of(figures: Figures, frames: int) -> list[Job]:
    """The jobs of ``frames`` periods of a schedule's stages."""
    out = []
    n = len(figures.stages)
    for f in range(frames):
        prev: dict[int, int] = {}
        # a frame enters the package only when the DRAM traffic of the frame before it is done
        # (the interface works at most one frame ahead of the compute: prefetch, write-back)
        held = tuple((f - 1, n + i, False) for i, st in enumerate(figures.stages) if st.dram_cycles and f >= 1)
        for i, st in enumerate(figures.stages):
            p = st.placement
            after = held if p.chain not in prev or figures.kind == "lockstep" else ()
            if p.chain in prev and figures.kind != "lockstep":
                j = prev[p.chain]
                after = ((f, j, False),) + (((f, j, True),) if figures.stages[j].transfer_cycles else ())
            out.append(Job(f, i, False, st.compute_cycles, frozenset(("chiplet", c) for c in p.chiplets), after))
            if st.transfer_cycles:
                out.append(Job(f, i, True, st.transfer_cycles, frozenset(("link", l) for l in st.links), after))
            if st.dram_cycles:  # the stage's traffic through the one interface, any time in the period
                out.append(Job(f, n + i, False, st.dram_cycles, frozenset({("dram",)}), ()))
            prev[p.chain] = i
    return out


def run(jobs: list[Job], admit: list[int]) -> dict[tuple[int, int, bool], tuple[int, int]]:
    """Event loop: (start, end) of every job; frame ``f`` may start at ``admit[f]``."""
    pending = sorted(jobs, key=lambda j: (j.frame, j.stage, j.stream))
    ended: dict[tuple[int, int, bool], int] = {}
    times: dict[tuple[int, int, bool], tuple[int, int]] = {}
    busy: set = set()
    running: list[tuple[int, tuple[int, int, bool], frozenset]] = []
    now = 0
    while pending or running:
        started = True
        while started:
            started = False
            for job in pending:
                ready = now >= admit[job.frame] and all(a in ended and ended[a] <= now for a in job.after)
                if ready and not job.resources & busy:
                    key = (job.frame, job.stage, job.stream)
                    busy |= job.resources
                    times[key] = (now, now + job.duration)
                    heapq.heappush(running, (now + job.duration, key, job.resources))
                    pending.remove(job)
                    started = True
                    break
        if not pending and not running:
            break
        candidates = ([running[0][0]] if running else []) + [admit[j.frame] for j in pending if admit[j.frame] > now]
        if not candidates:
            raise RuntimeError("simulation deadlock: a job can never start")
        now = min(candidates)
        while running and running[0][0] <= now:
            end, key, res = heapq.heappop(running)
            ended[key] = end
            busy -= res
    return times


def simulate(figures: Figures, frames: int = 8) -> SimResult:
    """Measure a schedule's steady-state interval and latency over ``frames`` periods."""
    jobs = jobs_of(figures, frames)
    saturated = run(jobs, [0] * frames)
    ends = tuple(max(end for (f, _, _), (_, end) in saturated.items() if f == frame) for frame in range(frames))
    interval = ends[-1] - ends[-2]
    paced = run(jobs, [f * interval for f in range(frames)])
    latency = max(max(end for (f, _, _), (_, end) in paced.items() if f == frame) - frame * interval
                  for frame in range(frames // 2, frames))
    return SimResult(frames, interval, latency, ends)

"""The on-chip search's bound-and-prune and its CP-SAT alternative.

* :mod:`compiler.mdc.onchip_bound`'s bound is at most the cost model's runtime on every choice the
  search may keep: every fitting point of the whole on-chip space of small ops, and the candidates
  of a strided layer's top-level spreads (merged levels, idle PEs) on the edge target;
* pruning with it picks exactly the mapping that scoring every candidate picks, with fewer
  cost-model calls;
* the CP-SAT model (:mod:`compiler.mdc.onchip_cpsat`) proves its surrogate optimum on a small op,
  keeps to L1 and the PE count, and the search run with it gives a real mapping near the
  enumerated one.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

import compiler.mdc.scoring as scoring
import passes.onchip as onchip
from compiler.context import Options
from compiler.mdc.lowering import MdcView, chiplet_hw, chiplet_op
from compiler.mdc.onchip_bound import RuntimeBound, busy_pes
from compiler.mdc.onchip_cpsat import cpsat_choices
from compiler.mdc.onchip_space import (inner_choices, inner_orders, l1_footprint, level_chunks, spatial_structures,
                                       stepping, top_spreads, whole_space)
from compiler.mdc.scoring import score_choices
from compiler.pipeline import run_pipeline
from conftest import EXAMPLES, SMALL_TARGET
from targets import load_target, parse_target

OPS = {
    "gemm": ("O[m,n] += I[m,k] * W[k,n]", "{m: 4, n: 4, k: 6}"),
    "dwconv": ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", "{n: 1, c: 8, p: 4, q: 4, r: 3, s: 3}"),
}


def _plan(write, name):
    statement, dims = OPS[name]
    path = write(f"{name}.yaml", f"name: {name}\nstatement: {statement}\ndims: {dims}\n")
    target = parse_target(SMALL_TARGET, "small.yaml")
    ctx = run_pipeline(path, target, Options())
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    return path, target, ctx, view, chiplet_hw(target, ctx.op.output.element_bytes)


@pytest.mark.parametrize("name", sorted(OPS))
def test_bound_below_every_fitting_runtime_of_the_whole_space(name, write):
    _, target, ctx, view, hw = _plan(write, name)
    l2_tile, order = dict(ctx.offchip.l2_tile), tuple(ctx.offchip.order)
    space = whole_space(view, l2_tile, target.num_pes, target.spatial_roles, hw.l1_size)
    scores = score_choices(view, l2_tile, order, space, hw)
    bound = RuntimeBound(view, l2_tile, order, hw)
    fitting = [i for i in range(len(space)) if scores.fits[i]]
    assert len(fitting) > 50
    assert all(bound(space[i]) <= scores.runtime[i] for i in fitting)
    # and it is tight somewhere: within 5 % of the runtime on some point of the space
    assert min(scores.runtime[i] / bound(space[i]) for i in fitting) < 1.05


@pytest.mark.parametrize("example", ["conv3x3", "dwconv"])
def test_orders_that_move_only_single_step_loops_score_alike(example):
    """The search keeps one of the stationarity orders that differ only in where single-step
    loops sit: every order of every kept tiling scores exactly like the one kept for it."""
    target = load_target("edge")
    ctx = run_pipeline(EXAMPLES / f"{example}.yaml", target, Options(), stop_after="offchip")
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    l2_tile, order = dict(ctx.offchip.l2_tile), tuple(ctx.offchip.order)
    hw = chiplet_hw(target, ctx.op.output.element_bytes)
    kept, every = [], []
    for structure in spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles)[:3]:
        choices = inner_choices(view, l2_tile, structure, hw.l1_size)[0]
        kept += choices
        every += list(dict.fromkeys(replace(c, inner_order=o) for c in choices
                                    for o in inner_orders(view, structure.levels[-1].dim)))
    assert len(every) > len(kept) > 50
    scores = score_choices(view, l2_tile, order, every, hw)
    first: dict = {}
    for i, c in enumerate(every):
        tile, chunk = dict(c.l1_tile), level_chunks(l2_tile, c.spatial)
        first.setdefault((c.spatial, c.l1_tile, stepping(c.inner_order, tile, chunk)), i)
    at = {c: i for i, c in enumerate(every)}
    for i, c in enumerate(every):
        j = first[(c.spatial, c.l1_tile, stepping(c.inner_order, dict(c.l1_tile), level_chunks(l2_tile, c.spatial)))]
        assert (scores.runtime[i], scores.energy[i], scores.fits[i], scores.bw_over[i]) == \
            (scores.runtime[j], scores.energy[j], scores.fits[j], scores.bw_over[j]), (c, every[j])
    assert sorted(at[c] for c in kept) == sorted(first.values())   # one kept per class, the first


def test_bound_on_the_top_spreads_of_a_strided_layer():
    """Merged levels, idle PEs, non-divisor tiles: a real layer's top spreads on edge."""
    ctx = run_pipeline(EXAMPLES / "conv_strided.yaml", load_target("edge"), Options())
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    hw = chiplet_hw(ctx.target, ctx.op.output.element_bytes)
    l2_tile, order = dict(ctx.offchip.l2_tile), tuple(ctx.offchip.order)
    tops = top_spreads(view, l2_tile, hw.num_pes, ctx.target.spatial_roles)
    candidates = [c for s in tops[:: max(1, len(tops) // 6)] for c in inner_choices(view, l2_tile, s, hw.l1_size)[0]]
    scores = score_choices(view, l2_tile, order, candidates, hw)
    bound = RuntimeBound(view, l2_tile, order, hw)
    fitting = [i for i in range(len(candidates)) if scores.fits[i]]
    assert fitting and any(busy_pes(view, l2_tile, candidates[i], hw.num_pes) < hw.num_pes for i in fitting)
    assert all(bound(candidates[i]) <= scores.runtime[i] for i in fitting)


def _counting(monkeypatch):
    calls = [0]
    real = scoring.evaluate_batch

    def counted(*args, **kw):
        calls[0] += 1
        return real(*args, **kw)
    monkeypatch.setattr(scoring, "evaluate_batch", counted)
    return calls


def test_pruning_keeps_the_enumerated_choice_with_fewer_calls(monkeypatch):
    calls = _counting(monkeypatch)
    target = load_target("edge")
    got = {}
    for solver in ("enumerate", "prune"):
        monkeypatch.setattr(onchip, "OPTIONS", replace(onchip.OPTIONS, solver=solver))
        calls[0] = 0
        ctx = run_pipeline(EXAMPLES / "conv1x1.yaml", target, Options())
        got[solver] = (ctx.onchip.choice, ctx.onchip.metrics.runtime_cycles, ctx.onchip.status, calls[0])
    assert got["prune"][:3] == got["enumerate"][:3]
    assert got["prune"][2] == "OPTIMAL-IN-SPACE"
    assert got["prune"][3] < got["enumerate"][3]


def test_cpsat_proves_its_surrogate_and_keeps_to_l1(write, monkeypatch):
    path, target, ctx, view, hw = _plan(write, "dwconv")
    l2_tile = dict(ctx.offchip.l2_tile)
    structure = next(s for s in onchip.spatial_structures(view, l2_tile, target.num_pes, None) if len(s.levels) == 2)
    choices, status = cpsat_choices(view, l2_tile, structure, hw.num_pes, hw.l1_size, hw.noc_hops, time_limit_s=5)
    assert status == "OPTIMAL" and choices
    for c in choices:
        assert l1_footprint(view, dict(c.l1_tile)) <= hw.l1_size
        assert c.spatial[0].units * c.spatial[1].units == hw.num_pes
        assert [s.dim for s in c.spatial] == [s.dim for s in structure.levels]
    # the whole search with CP-SAT's points: a fitting mapping within 10 % of the enumerated one
    monkeypatch.setattr(onchip, "OPTIONS", replace(onchip.OPTIONS, solver="cpsat"))
    mine = run_pipeline(path, target, Options())
    assert mine.onchip.status == "FEASIBLE (CP-SAT surrogate OPTIMAL)"
    assert mine.onchip.metrics.macs == view.layer_macs
    assert mine.onchip.metrics.runtime_cycles <= 1.10 * ctx.onchip.metrics.runtime_cycles


def test_a_choice_keeps_its_hash_but_never_pickles_it():
    """Choices key the search's dicts, so each keeps its hash; a string's hash differs between
    processes, so a pickled choice (a worker's result) leaves it behind and hashes afresh."""
    import pickle
    import subprocess
    import sys

    from compiler.mdc.lowering import OnchipChoice, SpatialLevel
    make = lambda: OnchipChoice((SpatialLevel("k", 16, 2), SpatialLevel("c", 8, 1)),  # noqa: E731
                                (("k", 2), ("c", 1), ("p", 7)), ("c", "p"), False)
    a, b = make(), make()
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert "_hash" in a.__dict__ and "_hash" not in pickle.loads(pickle.dumps(a)).__dict__
    # in a process with another string-hash seed, the unpickled choice finds its twin there
    code = ("import pickle, sys; from compiler.mdc.lowering import OnchipChoice, SpatialLevel; "
            "c = pickle.loads(sys.stdin.buffer.read()); "
            "twin = OnchipChoice((SpatialLevel('k', 16, 2), SpatialLevel('c', 8, 1)), "
            "(('k', 2), ('c', 1), ('p', 7)), ('c', 'p'), False); print({twin: 'found'}.get(c))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(a), capture_output=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert out.stdout.decode().strip() == "found"

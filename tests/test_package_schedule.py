"""The package schedule's CP-SAT model against brute force over every placement on small instances."""
from __future__ import annotations

import itertools
import random

import pytest

from compiler.package import Chain, ChainLayer, LayerCost, Package, Placement, Problem, evaluate, lockstep
from compiler.package_schedule import pipeline_problem, solve, solve_kind


def synthetic(seed: int, lengths: tuple[int, ...], kinds=("a", "a", "b", "b")) -> Problem:
    """Chains of layers with random costs per (kind, chiplet count); some activations fit in one
    chiplet's L2, some only in two, some in none, so cuts go over links or through DRAM."""
    rng = random.Random(seed)
    chains, costs = [], {}
    for ci, n in enumerate(lengths):
        layers = []
        for i in range(n):
            key = f"c{ci}l{i}"
            out = rng.choice((300, 900, 5000))
            layers.append(ChainLayer(f"{key}", key, out, out, mult=rng.choice((1, 1, 2))))
            base = rng.randint(2000, 20000)
            for kind in set(kinds):
                speed = rng.uniform(0.5, 2.0)
                for k in range(1, 5):
                    eff = rng.uniform(0.55, 1.0) if k > 1 else 1.0
                    costs[key, kind, k] = LayerCost(int(base * speed / (k * eff)) + rng.randint(0, 300),
                                                    rng.randint(100, 3000) + 200 * k, rng.uniform(1e3, 1e4))
        chains.append(Chain(f"m{ci}", tuple(layers)))
    pkg = Package("p", (2, 2), kinds, (1024, 1024, 4096, 4096), 8.0, dram_bw=0.25)  # DRAM binds at times
    return Problem(pkg, tuple(chains), costs)


def chain_placements(problem: Problem, ci: int):
    """Every way to cut chain ``ci`` into contiguous stages: lists of (first, last)."""
    n = len(problem.chains[ci].layers)
    for cuts in itertools.chain.from_iterable(itertools.combinations(range(1, n), k) for k in range(0, 4)):
        bounds = (0,) + cuts + (n,)
        yield [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)]


def brute_force(problem: Problem, objective: str):
    """The best feasible placement by enumerating cuts and disjoint chiplet sets of every stage."""
    sets = problem.package.sets()
    best = None
    per_chain = [list(chain_placements(problem, ci)) for ci in range(len(problem.chains))]
    for ranges in itertools.product(*per_chain):
        stages = [(ci, f, l) for ci, rs in enumerate(ranges) for f, l in rs]
        if len(stages) > problem.package.count:
            continue
        for chosen in itertools.product(sets, repeat=len(stages)):
            flat = [p for s in chosen for p in s]
            if len(flat) != len(set(flat)):
                continue
            fig = evaluate(problem, "x", tuple(Placement(ci, f, l, s) for (ci, f, l), s in zip(stages, chosen)))
            if fig.feasible and (best is None or fig.key(objective) < best.key(objective)):
                best = fig
    return best


@pytest.mark.parametrize("seed,lengths,objective", [
    (1, (6,), "throughput"), (2, (5,), "latency"), (3, (6,), "energy"), (4, (4,), "edp"),
    (5, (3, 3), "throughput"), (6, (2, 3), "latency"), (7, (2, 2), "edp")])
def test_cp_sat_equals_brute_force(seed, lengths, objective):
    problem = synthetic(seed, lengths)
    kind = "pipeline" if len(lengths) == 1 else "concurrent"
    got = solve_kind(problem, kind, objective, time_limit=60.0)
    want = brute_force(pipeline_problem(problem) if kind == "pipeline" else problem, objective)
    assert got.status == "OPTIMAL"
    assert got.figures.feasible
    # EDP has no tie-break in the model: only the product is compared
    n = 1 if objective == "edp" else 2
    assert got.figures.key(objective)[:n] == want.key(objective)[:n]


def test_auto_never_worse_than_lockstep_and_beats_it_somewhere():
    better = 0
    for seed in range(6):
        problem = synthetic(seed, (3, 3))
        chosen, tried = solve(problem, "auto", "throughput", time_limit=30.0)
        base = lockstep(problem)
        assert chosen.figures.key("throughput") <= base.key("throughput")
        assert tried["lockstep"].figures == base
        better += chosen.figures.cycles_per_frame < base.cycles_per_frame
    assert better > 0


def test_lockstep_is_the_sum_of_all_layers_on_every_chiplet():
    problem = synthetic(0, (2, 3))
    fig = lockstep(problem)
    every = problem.package.everything
    total = sum(problem.cost(l, every)[0] for c in problem.chains for l in c.layers)
    dram = sum(problem.package.dram_cycles(sum(problem.cost(l, every)[1] for l in c.layers)) for c in problem.chains)
    assert dram > total                       # the synthetic package's DRAM is slow
    assert fig.cycles_per_frame == fig.latency_cycles == max(total, dram)


def test_cut_over_links_follows_xy_routes_and_l2():
    problem = synthetic(0, (2,))
    pkg = problem.package
    assert pkg.route(0, 3) == [(0, 1), (1, 3)]           # row first, then column
    load, hops = pkg.flow((0, 1), (3,))
    assert hops == 3 and load == {(0, 1): 1, (1, 3): 2}
    layer = ChainLayer("x", "c0l0", 1000, 1000)
    cut = problem.cut(layer, (0, 1), (3,))                # 2 x 1000 B fits the 4096 B L2 of chiplet 3
    assert cut.links and cut.cycles == 1000 * 2 // (2 * 8) and cut.dram_saved == 2000
    assert not problem.cut(ChainLayer("y", "c0l0", 3000, 3000), (2,), (0,)).links  # 6000 B > 1024 B


@pytest.mark.parametrize("seed,lengths,kind", [
    (1, (6,), "pipeline"), (3, (6,), "pipeline"), (5, (3, 3), "concurrent"), (6, (2, 3), "concurrent"),
    (7, (3, 2), "lockstep"), (8, (4,), "lockstep")])
def test_event_simulation_reproduces_interval_and_latency(seed, lengths, kind):
    from compiler.package_sim import simulate

    problem = synthetic(seed, lengths)
    for objective in ("throughput", "latency", "energy"):
        fig = solve_kind(problem, kind, objective, time_limit=30.0).figures
        sim = simulate(fig, frames=8)
        assert (sim.interval, sim.latency) == (fig.cycles_per_frame, fig.latency_cycles)


def test_event_simulation_sees_a_shared_link():
    """On a 1x4 row, streams 0->2 and 1->3 both cross link 1->2: the placement breaks the
    one-stream-per-link rule, and the simulation shows why it exists (the streams queue)."""
    from dataclasses import replace as dc_replace

    from compiler.package_sim import simulate

    base = synthetic(0, (2, 2))
    row = Package("row", (1, 4), ("a",) * 4, (4096,) * 4, 0.01)     # slow links: streams dominate
    chains = tuple(Chain(c.name, tuple(dc_replace(l, out_elements=1000, out_bytes=1000, mult=1) for l in c.layers))
                   for c in base.chains)
    problem = Problem(row, chains, base.costs)
    places = (Placement(0, 0, 0, (0,)), Placement(0, 1, 1, (2,)), Placement(1, 0, 0, (1,)), Placement(1, 1, 1, (3,)))
    fig = evaluate(problem, "concurrent", places)
    assert (1, 2) in set(fig.stages[0].links) & set(fig.stages[2].links) and not fig.feasible
    assert all(s.transfer_cycles == 100_000 for s in (fig.stages[0], fig.stages[2]))
    assert fig.cycles_per_frame == 100_000           # what the closed form would claim
    sim = simulate(dc_replace(fig, feasible=True), frames=8)
    assert sim.interval == 200_000                   # both streams need link 1->2 every period


@pytest.mark.parametrize("objective", ["throughput", "latency", "energy", "edp"])
def test_every_variable_is_hinted_with_the_one_stage_placement(cp_sat_parameters, objective):
    """With every variable fixed to its hint the model is still solved: the hint is complete and
    feasible, and its placement is lockstep's (one chain) or each model on its own half."""
    solves = cp_sat_parameters(fix_variables_to_their_hinted_value=True)
    problem = synthetic(5, (3, 3))
    pipe = solve_kind(problem, "pipeline", objective, time_limit=30.0)
    conc = solve_kind(problem, "concurrent", objective, time_limit=30.0)
    assert solves and all(s == ("OPTIMAL", True) for s in solves)
    base = lockstep(problem)
    assert [st.placement for st in pipe.figures.stages] == [Placement(0, 0, 5, (0, 1, 2, 3))]
    assert pipe.figures.key("throughput") == base.key("throughput") and pipe.figures.energy == base.energy
    assert [st.placement for st in conc.figures.stages] == [Placement(0, 0, 2, (0, 1)), Placement(1, 0, 2, (2, 3))]


@pytest.mark.parametrize("objective", ["throughput", "edp"])
def test_no_solution_in_time_keeps_lockstep_and_says_unknown(cp_sat_parameters, objective):
    solves = cp_sat_parameters(stop_after_presolve=True)
    problem = synthetic(1, (6,))
    got = solve_kind(problem, "pipeline", objective, time_limit=30.0)
    assert solves == [("UNKNOWN", True)]
    base = lockstep(problem)
    assert got.status == "UNKNOWN" and got.solver == "CP-SAT" and got.figures.feasible
    assert [st.placement for st in got.figures.stages] == [Placement(0, 0, 5, (0, 1, 2, 3))]
    assert (got.figures.cycles_per_frame, got.figures.latency_cycles, got.figures.dram_elements,
            got.figures.energy) == (base.cycles_per_frame, base.latency_cycles, base.dram_elements, base.energy)
    two = synthetic(6, (2, 3))
    chosen, tried = solve(two, "auto", objective, time_limit=30.0)
    assert {k: s.status for k, s in tried.items()} == {"lockstep": "FIXED", "pipeline": "UNKNOWN",
                                                       "concurrent": "UNKNOWN"}
    assert chosen.figures.key(objective) == min(s.figures.key(objective) for s in tried.values())
    assert all(s.figures.feasible for s in tried.values())


def test_concurrent_needs_a_chiplet_per_model():
    from compiler.errors import MapcError

    problem = synthetic(0, (1, 1, 1, 1, 1))
    _, tried = solve(problem, "auto", "throughput", time_limit=30.0)
    assert set(tried) == {"lockstep", "pipeline"}
    with pytest.raises(MapcError, match="at most 4 models"):
        solve_kind(problem, "concurrent", "throughput", time_limit=30.0)

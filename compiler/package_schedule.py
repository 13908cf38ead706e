"""The package schedule as one CP-SAT model: stage cuts, chiplet sets and the shared resources.

Per chain (a model, or all models run one after another) and stage slot ``j`` the model has:

* ``a[l][j]``: layer ``l`` is in stage ``j`` or later (monotone in ``l`` and ``j``, so stages are
  contiguous layer ranges and used stages come first);
* ``x[j][S]``: stage ``j`` runs on chiplet set ``S`` (at most one set; a used stage has one);
* the stage's compute, DRAM traffic and energy are the sums over its layers on the set it runs on
  (linear constraints enforced by ``x[j][S]``);
* ``w[j][A,B]``: the cut after stage ``j`` goes from set ``A`` to set ``B``; the layer where the
  chain is cut and the pair price the transfer, the DRAM traffic it saves and its links.

Shared resources are constraints: every chiplet in at most one stage of all chains; the one DRAM
interface busy at most one interval per period with every stage's traffic; every directed mesh
link carries at most one cut's stream; an activation goes over the links only when it fits twice
in the receiving set's L2 (else through DRAM, which the per-layer costs already price).  The objective is the interval, the latency,
the energy or their product (EDP) per period, ties broken by the interval or latency.  The
figures reported come from :func:`compiler.package.evaluate` on the decoded placement; when the
solver proves optimality they equal the model's objective (the brute-force test checks this).

The search starts from a complete hint: every variable set to its value in the one-stage placement
(each chain on its own share of the chiplets; for one chain, every layer on all chiplets, which is
lockstep).  When CP-SAT ends with no solution of its own (UNKNOWN: the time limit ran out, e.g.
on a loaded machine), that placement is the schedule and the status stays UNKNOWN.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import MapcError
from .package import Chain, Figures, Placement, Problem, evaluate, lockstep

KINDS = ("lockstep", "pipeline", "concurrent", "auto")
# what an UNKNOWN status means in the report
KEPT_NOTE = ("CP-SAT found no solution within the time limit; the one-stage placement it started from is kept "
             "(lockstep; for concurrent, each model on its own share of the chiplets)")


@dataclass(frozen=True)
class Solved:
    """A schedule kind's best placement: its figures and how the solver got there."""

    figures: Figures
    solver: str            # "CP-SAT", or "none" for lockstep (nothing to decide)
    status: str            # OPTIMAL / FEASIBLE / UNKNOWN (CP-SAT; UNKNOWN keeps the one-stage hint), FIXED (lockstep)
    seconds: float
    chains: tuple[str, ...]


def pipeline_problem(problem: Problem) -> Problem:
    """All chains joined into one (models one after another), for the ``pipeline`` kind."""
    if len(problem.chains) == 1:
        return problem
    joined = Chain("+".join(c.name for c in problem.chains),
                   tuple(l for c in problem.chains for l in c.layers))
    return Problem(problem.package, (joined,), problem.costs)


def solve_kind(problem: Problem, kind: str, objective: str, time_limit: float) -> Solved:
    """The best placement of one schedule kind (``lockstep``, ``pipeline`` or ``concurrent``)."""
    if kind == "lockstep":
        return Solved(lockstep(problem), "none", "FIXED", 0.0, tuple(c.name for c in problem.chains))
    if kind == "concurrent" and len(problem.chains) < 2:
        raise MapcError("--schedule concurrent needs a workload of at least two models", place="--schedule")
    if kind == "concurrent" and len(problem.chains) > problem.package.count:
        raise MapcError(f"--schedule concurrent gives each model its own chiplets: at most {problem.package.count} "
                        f"models on {problem.package.name}", place="--schedule")
    if kind == "pipeline":
        problem = pipeline_problem(problem)
    start = time.perf_counter()
    figures, status = _cp_sat(problem, objective, time_limit, kind)
    return Solved(figures, "CP-SAT", status, time.perf_counter() - start, tuple(c.name for c in problem.chains))


def solve(problem: Problem, kind: str, objective: str, time_limit: float) -> tuple[Solved, dict[str, Solved]]:
    """The chosen schedule and every kind tried (``auto``: the best for ``objective``, lockstep
    unless another kind is strictly better; the order lockstep, pipeline, concurrent breaks ties)."""
    kinds = [kind] if kind != "auto" else \
        ["pipeline"] + (["concurrent"] if 1 < len(problem.chains) <= problem.package.count else [])
    tried = {"lockstep": solve_kind(problem, "lockstep", objective, time_limit)}
    for k in kinds:
        if k != "lockstep":
            tried[k] = solve_kind(problem, k, objective, time_limit)
    if kind != "auto":
        return tried[kind], tried
    best = min(tried.values(), key=lambda s: s.figures.key(objective))  # dict order breaks ties
    return best, tried


def _cp_sat(problem: Problem, objective: str, time_limit: float, kind: str) -> tuple[Figures, str]:
    from ortools.sat.python import cp_model  # imported here: it costs ~0.4 s

    pkg = problem.package
    sets = pkg.sets()
    m = cp_model.CpModel()
    chiplet_use: dict[int, list] = {p: [] for p in pkg.everything}
    link_use: dict[tuple[int, int], list] = {}
    stage_vars = []                      # per chain: (a, x, J)
    durations, latencies, energy_terms, occupancy = [], [], [], []
    hint: dict[int, int] = {}            # variable index -> its value in the one-stage placement (others 0)
    num, den = pkg.dram_ratio()
    horizon = sum(max(problem.cost(l, s)[0] for s in sets) for c in problem.chains for l in c.layers)
    horizon += sum(max(problem.cut(l, a, b).cycles for a in sets for b in sets if not set(a) & set(b))
                   for c in problem.chains for l in c.layers)
    horizon += sum(pkg.dram_cycles(max(problem.cost(l, s)[1] for s in sets)) for c in problem.chains for l in c.layers)
    slots = max(1, pkg.count - len(problem.chains) + 1)
    dram_max = sum(max(problem.cost(l, s)[1] for s in sets) for c in problem.chains for l in c.layers) + 1
    e_max = sum(max(abs(problem.cost(l, s)[2]) for s in sets) for c in problem.chains for l in c.layers) + 1
    e_max += sum(max(abs(problem.cut(l, a, b).saving) for a in sets for b in sets if not set(a) & set(b))
                 for c in problem.chains for l in c.layers)
    # energies in units that keep every sum and the EDP product small (unit 1 on small instances;
    # CP-SAT reports a model with 1e9-sized energy coefficients infeasible)
    unit = max(1, e_max // 10 ** 7)
    e_max = e_max // unit + 1
    shares = _shares(problem)
    for ci, chain in enumerate(problem.chains):
        L, J = len(chain.layers), min(slots, len(chain.layers))
        one = m.NewConstant(1)
        a = [[one] + [m.NewBoolVar(f"a{ci}_{l}_{j}") for j in range(1, J)] for l in range(L)]
        for l in range(L):
            for j in range(1, J):
                if l == 0:
                    m.Add(a[l][j] == 0)
                else:
                    m.Add(a[l][j] >= a[l - 1][j])
                if j > 1:
                    m.Add(a[l][j] <= a[l][j - 1])

        def y(l, j):
            return a[l][j] - (a[l][j + 1] if j + 1 < J else 0)
        x = [{s: m.NewBoolVar(f"x{ci}_{j}_{s}") for s in sets} for j in range(J)]
        lat_terms = []
        for j in range(J):
            used = a[L - 1][j]
            m.Add(sum(x[j].values()) == used)
            m.Add(sum(y(l, j) for l in range(L)) >= used)
            for s, var in x[j].items():
                for p in s:
                    chiplet_use[p].append(var)
            # the stage's compute, DRAM traffic and energy on whichever set it runs on
            dur = m.NewIntVar(0, horizon, f"d{ci}_{j}")
            dram = m.NewIntVar(0, dram_max, f"m{ci}_{j}")
            en = m.NewIntVar(-e_max, e_max, f"e{ci}_{j}")
            m.Add(dram == 0).OnlyEnforceIf(used.Not())
            m.Add(en == 0).OnlyEnforceIf(used.Not())
            for s in sets:
                costs = [problem.cost(layer, s) for layer in chain.layers]
                m.Add(dur >= sum(c[0] * y(l, j) for l, c in enumerate(costs))).OnlyEnforceIf(x[j][s])
                m.Add(dram == sum(c[1] * y(l, j) for l, c in enumerate(costs))).OnlyEnforceIf(x[j][s])
                m.Add(en == sum(c[2] // unit * y(l, j) for l, c in enumerate(costs))).OnlyEnforceIf(x[j][s])
            energy_terms.append(en)
            occ = m.NewIntVar(0, horizon, f"o{ci}_{j}")      # the DRAM interface's busy cycles
            occupancy.append(occ)
            if j == 0:
                costs = [problem.cost(layer, shares[ci]) for layer in chain.layers]
                hint |= {x[0][shares[ci]].Index(): 1, dur.Index(): sum(c[0] for c in costs),
                         dram.Index(): sum(c[1] for c in costs), en.Index(): sum(c[2] // unit for c in costs),
                         occ.Index(): pkg.dram_cycles(sum(c[1] for c in costs))}
            if j + 1 < J:
                tr = m.NewIntVar(0, horizon, f"t{ci}_{j}")
                saving = m.NewIntVar(-e_max, e_max, f"s{ci}_{j}")
                saved = m.NewIntVar(0, 10 ** 15, f"v{ci}_{j}")
                nxt = a[L - 1][j + 1]
                m.Add(tr == 0).OnlyEnforceIf(nxt.Not())
                m.Add(saving == 0).OnlyEnforceIf(nxt.Not())
                m.Add(saved == 0).OnlyEnforceIf(nxt.Not())
                # e(l): the chain is cut right after layer l (the first layer of stage j+1 is l+1)
                cut_at = [a[l + 1][j + 1] - a[l][j + 1] for l in range(L - 1)]
                pair_vars = []
                for s in sets:
                    for t in sets:
                        if set(s) & set(t):
                            continue
                        w = m.NewBoolVar(f"w{ci}_{j}_{s}_{t}")
                        m.AddBoolOr([x[j][s].Not(), x[j + 1][t].Not(), w])
                        m.AddImplication(w, x[j][s])
                        m.AddImplication(w, x[j + 1][t])
                        pair_vars.append(w)
                        cuts = [problem.cut(layer, s, t) for layer in chain.layers[:-1]]
                        m.Add(tr == sum(c.cycles * e for c, e in zip(cuts, cut_at))).OnlyEnforceIf(w)
                        m.Add(saving == sum(c.saving // unit * e for c, e in zip(cuts, cut_at))).OnlyEnforceIf(w)
                        m.Add(saved == sum(c.dram_saved * e for c, e in zip(cuts, cut_at))).OnlyEnforceIf(w)
                        for link in cuts[0].reserved if cuts else ():
                            link_use.setdefault(link, []).append(w)
                m.Add(sum(pair_vars) == nxt)
                m.Add(dur >= tr)
                energy_terms.append(-saving)
                m.Add(occ * num >= (dram - saved) * den)
            else:
                m.Add(occ * num >= dram * den)
            durations.append(dur)
            lat_terms.append(dur)
        lat = m.NewIntVar(0, horizon, f"lat{ci}")
        m.Add(lat == sum(lat_terms))
        latencies.append(lat)
        hint[lat.Index()] = hint[durations[-J].Index()]
        stage_vars.append((a, x, J))
    for p, vs in chiplet_use.items():
        m.AddAtMostOne(vs)
    for link, vs in link_use.items():
        m.AddAtMostOne(vs)
    period = m.NewIntVar(0, horizon, "period")
    # the one DRAM interface carries every stage's traffic once per period
    m.AddMaxEquality(period, durations + [sum(occupancy)])
    latency = m.NewIntVar(0, horizon, "latency")
    m.AddMaxEquality(latency, latencies + [sum(occupancy)])
    energy = m.NewIntVar(0 if objective == "edp" else -e_max, e_max, "energy")
    m.Add(energy == sum(energy_terms))
    if objective == "edp":
        edp = m.NewIntVar(0, e_max * horizon, "edp")
        m.AddMultiplicationEquality(edp, [energy, period])
    primary, secondary = {"throughput": (period, latency), "latency": (latency, period),
                          "energy": (energy, period)}.get(objective, (edp if objective == "edp" else None, period))
    dram_busy = sum(hint.get(o.Index(), 0) for o in occupancy)
    hint[period.Index()] = max([hint.get(d.Index(), 0) for d in durations] + [dram_busy])
    hint[latency.Index()] = max([hint[v.Index()] for v in latencies] + [dram_busy])
    # the negated cut savings in energy_terms are 0 in the one-stage placement
    hint[energy.Index()] = sum(hint.get(e.Index(), 0) for e in energy_terms if isinstance(e, cp_model.IntVar))
    if objective == "edp":
        hint[edp.Index()] = hint[energy.Index()] * hint[period.Index()]
    _hint_all(m, lambda i, low: hint.get(i, max(low, 0)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 1       # deterministic: same input, same schedule
    # lexicographic: the objective first, then the tie-break with the objective held at its best
    m.Minimize(primary)
    code = solver.Solve(m)
    if code == cp_model.UNKNOWN:        # no solution in time: keep the hinted placement
        one_stage = tuple(Placement(ci, 0, len(c.layers) - 1, shares[ci]) for ci, c in enumerate(problem.chains))
        return evaluate(problem, kind, one_stage), "UNKNOWN"
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):   # the hint is a solution: a model bug
        raise RuntimeError(f"package schedule model is {solver.StatusName(code)}")
    placements = _decode(solver, problem, stage_vars)
    if code == cp_model.OPTIMAL:
        best = solver.Value(primary)
        _hint_all(m, lambda i, low: solver.Value(m.GetIntVarFromProtoIndex(i)))
        m.Add(primary <= best)
        m.Minimize(secondary)
        code2 = solver.Solve(m)
        if code2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            code, placements = code2, _decode(solver, problem, stage_vars)
    return evaluate(problem, kind, tuple(placements)), solver.StatusName(code)


def _decode(solver, problem: Problem, stage_vars) -> list[Placement]:
    """The placement in the solver's last solution."""
    placements = []
    for ci, (a, x, J) in enumerate(stage_vars):
        L = len(problem.chains[ci].layers)
        firsts = [0] + [next(l for l in range(L) if solver.Value(a[l][j])) for j in range(1, J)
                        if solver.Value(a[L - 1][j])]
        for j, first in enumerate(firsts):
            last = firsts[j + 1] - 1 if j + 1 < len(firsts) else L - 1
            s = next(s for s, var in x[j].items() if solver.Value(var))
            placements.append(Placement(ci, first, last, s))
    return placements


def _shares(problem: Problem) -> list[tuple[int, ...]]:
    """Each chain's share of the chiplets in the one-stage placement (the last takes the rest),
    a placement every instance has."""
    n, chains = problem.package.count, len(problem.chains)
    return [tuple(range(ci * (n // chains), n if ci == chains - 1 else (ci + 1) * (n // chains)))
            for ci in range(chains)]


def _hint_all(m, value) -> None:
    """Hint every variable of ``m`` (``value(index, domain lower bound)``): a complete hint is a
    solution CP-SAT can start from, or keep, without search."""
    m.ClearHints()
    for i, proto in enumerate(m.Proto().variables):
        m.AddHint(m.GetIntVarFromProtoIndex(i), value(i, proto.domain[0]))

"""The on-chip choice of one array structure as an integer program, solved with OR-Tools CP-SAT.

Per structure (its spread dims, outermost first) the variables are

* the cluster size ``u_i`` of every spatial level (their product is the PE count; each above 1
  on a multi-level spread), or, for a structure whose outer spread sits on the top level itself
  (``merged``), the structure's own units and tiles, fixed;
* the per-unit tile ``t_i`` and the folds ``f_i = ceil(L2 tile / (u_i t_i))`` of every level;
* the per-PE tile ``l_d`` and the steps ``n_d = ceil(chunk_d / l_d)`` of every other dim but the
  filter taps (whole, MAESTRO's R/S rule), where ``chunk_d`` is the L2 tile or, for a dim spread
  on an upper level, that level's ``t_i``;

``ceil`` written exactly as ``n x l >= chunk`` and ``(n - 1) x l <= chunk - 1``.  Constraints:
the double-buffered L1 footprint as :func:`compiler.mdc.onchip_space.l1_footprint` counts it
(a window's input rows are linear in its output tile) within L1, the PE count.  Rule S8 and
exact MACs are the cost model's to check: every solution is re-scored exactly
(:func:`compiler.mdc.scoring.score_choices`), so they stay hard filters there.

The objective is a surrogate, since MAESTRO's case analysis is not an integer program:
``W + hops x S``, the work one PE does with the padding of every fold and step
(``prod_i f_i t_i x prod_d n_d l_d x taps``) plus the NoC's per-step latency over the
innermost steps ``S = prod_i f_i x prod_d n_d``.  :func:`cpsat_choices` returns the best
``solutions`` points (each solve forbids the assignments found before) times the loop orders of
:func:`compiler.mdc.onchip_space.inner_orders`, and whether the first solve proved its surrogate
optimum (``OPTIMAL``) or stopped at the time limit (``FEASIBLE``).  OR-Tools is imported here
only, so a compile that does not use this solver does not pay its import.
"""
from __future__ import annotations

from .hw import HwConfig
from .lowering import MdcView, OnchipChoice, SpatialLevel
from .onchip_space import Structure, inner_orders, l1_footprint


def cpsat_choices(view: MdcView, l2_tile: dict[str, int], structure: Structure, num_pes: int,
                  l1_elements: int, noc_hops: int, *, time_limit_s: float, solutions: int = 4,
                  max_orders: int = 5) -> tuple[list[OnchipChoice], str]:
    """(choices, status) for one structure, as the module docstring describes; status is
    ``OPTIMAL``, ``FEASIBLE`` or ``INFEASIBLE`` (nothing fits L1)."""
    from ortools.sat.python import cp_model     # ~0.4 s per process: only when this solver runs

    m = cp_model.CpModel()
    levels = structure.levels
    fixed = structure.merged
    big = max(num_pes, max(l2_tile.values()), 2)
    units, tiles, folds = [], [], []
    for i, lvl in enumerate(levels):
        chunk = view.op.extent(lvl.dim) if fixed and i == 0 else l2_tile[lvl.dim]
        if fixed:
            u, t = m.new_constant(lvl.units), m.new_constant(lvl.tile)
        else:
            u = m.new_int_var(2 if len(levels) > 1 else num_pes, num_pes, f"u{i}")
            t = m.new_int_var(1, chunk, f"t{i}")
        f = m.new_int_var(1, chunk, f"f{i}")
        _ceil(m, f, _mul(m, [u, t], big * big, f"ut{i}"), chunk, big * big)
        units.append(u)
        tiles.append(t)
        folds.append(f)
    if not fixed:
        m.add_multiplication_equality(num_pes, units)
    spread = {lvl.dim: tiles[i] for i, lvl in enumerate(levels)}
    inner = levels[-1].dim
    l1, steps = {}, {}
    for d in view.dims:
        if view.mdc_dim(d) in ("R", "S"):
            l1[d] = m.new_constant(view.op.extent(d))
        elif d == inner:
            l1[d] = spread[d]
        else:
            chunk = l2_tile[d] if d not in spread else None
            hi = l2_tile[d]
            l1[d] = m.new_int_var(1, hi, f"l_{d}")
            steps[d] = m.new_int_var(1, hi, f"n_{d}")
            if chunk is None:
                m.add(l1[d] <= spread[d])
                _ceil(m, steps[d], l1[d], spread[d], hi)
            else:
                _ceil(m, steps[d], l1[d], chunk, hi)
    m.add(2 * sum(_tensor_volume(m, view, t, l1) for t in view.op.tensors) <= l1_elements)
    limit = max(view.layer_macs * 64, 1 << 20)
    work = _mul(m, folds + tiles + [steps[d] for d in steps] + [l1[d] for d in steps]
                + [m.new_constant(view.op.extent(d)) for d in view.dims if view.mdc_dim(d) in ("R", "S")],
                limit, "work")
    total_steps = _mul(m, folds + list(steps.values()), limit, "steps")
    m.minimize(work + noc_hops * total_steps)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1            # one worker: the same input gives the same answer
    solver.parameters.random_seed = 0
    watched = units + tiles + [l1[d] for d in steps]
    out: list[OnchipChoice] = []
    status = None
    for _ in range(solutions):
        got = solver.solve(m)
        if status is None:
            status = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE"}.get(got, "INFEASIBLE")
        if got not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        values = [solver.value(v) for v in watched]
        spatial = tuple(SpatialLevel(lvl.dim, solver.value(units[i]), solver.value(tiles[i]))
                        for i, lvl in enumerate(levels))
        tile = tuple((d, solver.value(l1[d])) for d in view.dims)
        assert l1_footprint(view, dict(tile)) <= l1_elements, "the L1 constraint is l1_footprint's"
        out += [OnchipChoice(spatial, tile, order, structure.merged)
                for order in inner_orders(view, inner)[:max_orders]]
        # the next solve must differ in some cluster size or tile
        differs = []
        for v, x in zip(watched, values):
            b = m.new_bool_var("")
            m.add(v != x).only_enforce_if(b)
            differs.append(b)
        m.add_bool_or(differs)
    return out, status


def structure_choices(view: MdcView, l2_tile: dict[str, int], structures: list[Structure], hw: HwConfig,
                      time_limit_s: float) -> tuple[list[tuple[list[OnchipChoice], int]], str]:
    """:func:`cpsat_choices` for every structure, as ``(choices, solutions)`` per structure (a
    choice another structure already gave is left out) and ``OPTIMAL`` when every solve proved
    its surrogate optimum, else ``FEASIBLE``."""
    seen: set[OnchipChoice] = set()
    out, proved = [], True
    for s in structures:
        choices, status = cpsat_choices(view, l2_tile, s, hw.num_pes, hw.l1_size, hw.noc_hops,
                                        time_limit_s=time_limit_s)
        proved &= status in ("OPTIMAL", "INFEASIBLE")
        fresh = [c for c in choices if c not in seen]
        seen.update(fresh)
        out.append((fresh, len(choices)))
    return out, "OPTIMAL" if proved else "FEASIBLE"


def _mul(m, factors, hi: int, name: str):
    """A variable equal to the product of ``factors`` (CP-SAT multiplies two at a time)."""
    if len(factors) == 1:
        return factors[0]
    acc = factors[0]
    for k, f in enumerate(factors[1:]):
        nxt = m.new_int_var(0, hi, f"{name}{k}")
        m.add_multiplication_equality(nxt, [acc, f])
        acc = nxt
    return acc


def _ceil(m, n, per, total, hi: int) -> None:
    """``n = ceil(total / per)`` for positive ``per``: ``n per >= total > (n - 1) per``."""
    covered = _mul(m, [n, per], hi * hi, "cov")
    m.add(covered >= total)
    m.add(covered - per <= total - 1)


def _tensor_volume(m, view: MdcView, tensor, l1: dict):
    """The per-PE tile volume of one tensor (a window's rows: ``(t - 1) stride + taps``)."""
    by_out = {w.out_dim: w for w in view.windows.values()}
    sizes = []
    for sub in tensor.index:
        w = next((by_out[d] for d in sub.dims if d in by_out), None)
        if w is not None:
            taps = view.op.extent(w.filter_dim) if w.filter_dim else 1
            size = m.new_int_var(1, w.footprint(view.op.extent(w.out_dim), taps), "")
            m.add(size == (l1[w.out_dim] - 1) * w.stride + (taps - 1) * w.dilation + 1)
            sizes.append(size)
        else:
            sizes += [l1[d] if d in l1 else m.new_constant(1) for d in sub.dims]   # (a repeat: one)
    return _mul(m, sizes or [m.new_constant(1)], 1 << 40, "vol")

"""Pass ``replan``: solve the off-chip subspace again when its plan holds the on-chip mapping back.

Reads:    ``ctx.offchip`` (the off-chip pass's plan), ``ctx.onchip`` (the on-chip search's result for
          it, or :class:`passes.onchip.NothingFits`), ``ctx.offchip_hints``, ``ctx.op``,
          ``ctx.mdc_form``, the target and ``ctx.options.objective``.
Decides:  which off-chip plan the MDC file is written for.  The off-chip pass's plan is kept when
          its best on-chip mapping is within the NoC and off-chip bandwidth and no more than
          ``replan_above`` times slower than the fastest candidate over it.  Otherwise the
          off-chip subspace is solved again and the on-chip subspace searched
          (:func:`passes.onchip.best_for`) for each new plan:
          * when nothing fits L1/L2 as MAESTRO counts them (its L2 accounting can exceed the
            off-chip model's: it counts each unit's window halo separately on strided layers),
            for ever smaller L2 budgets (``l2_budgets``, fractions of L2) until one fits;
          * when the bandwidth holds the fastest mapping back, on a layer with strided rows, for
            every other allowed number of rows per L2 tile too (those rows are level 0's units:
            fewer ask less of the NoC at once, more share the weights of one L2 tile), each at
            the largest budget MAESTRO's L2 accounting accepts, then the best of them and the
            off-chip pass's own kind at smaller budgets until two in a row do not improve it;
            if no plan is within the bandwidth, the budgets keep shrinking for every plan until
            one is (smaller L2 tiles mean fewer busy units per step).
          The best plan within the bandwidth (by ``--objective``) is kept, else the first that fits.
Leaves:   ``ctx.replan`` (a :class:`Replan`: every off-chip plan searched, in the order tried, the
          first being the off-chip pass's own, each with its on-chip result, which one is kept
          and why); the kept plan's ``ctx.offchip`` and ``ctx.onchip`` and the whole typed
          ``ctx.mapping``.  Raises :class:`InfeasibleError` when no plan fits.

The L2 budgets are this pass's record, :class:`ReplanOptions`; when the on-chip answer is good
enough (``replan_above``) is the on-chip search's, :class:`passes.onchip.SearchOptions`, since the
search asks the same question before widening its own space.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from compiler.context import Context, Stage
from compiler.errors import InfeasibleError
from compiler.mdc.lowering import MdcView, chiplet_hw, chiplet_op, mdc_mapping
from compiler.mdc.onchip_space import l1_footprint
from passes import offchip as offchip_pass
from passes.offchip import OffchipSchedule
from passes.onchip import OPTIONS, NothingFits, OnchipResult, best_for, objective_key


@dataclass(frozen=True)
class ReplanOptions:
    """The re-planning's tuning: the ``l2_budgets`` (fractions of L2, largest first) the off-chip
    subspace is solved at again.  The defaults are :data:`REPLAN`."""

    l2_budgets: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.25, 0.1, 0.03, 0.01)


REPLAN = ReplanOptions()


@dataclass(frozen=True)
class Candidate:
    """One off-chip plan searched for an on-chip mapping, and what that search found (None:
    nothing fits L1/L2 with exact MACs)."""

    plan: OffchipSchedule
    result: OnchipResult | None
    kept: bool

    def line(self) -> str:
        """One line: the plan's L2 tiles, DRAM order and budget, and the best on-chip runtime."""
        p, r = self.plan, self.result
        tiles = ", ".join(f"{d}={t}" for d, t in p.l2_tile.items())
        order = " ".join(d for d in p.order if p.trips.get(d, 1) > 1) or "one L2 tile"
        got = ("nothing fits L1/L2" if r is None else
               f"{r.metrics.runtime_cycles:,} cycles{'' if r.within_bw else ' (over the bandwidth)'}")
        return f"{'*' if self.kept else ' '} L2 budget {p.l2_budget:.0%}: {tiles}; DRAM loops {order} -> {got}"

    def report(self) -> dict:
        r = self.result
        return {"l2_tile": dict(self.plan.l2_tile), "order": list(self.plan.order),
                "l2_budget": self.plan.l2_budget, "runtime_cycles": r.metrics.runtime_cycles if r else None,
                "within_bw": bool(r and r.within_bw), "kept": self.kept}


@dataclass(frozen=True)
class Replan:
    """The off-chip plans searched, in the order tried (the first is the off-chip pass's own),
    and why the kept one is kept."""

    candidates: tuple[Candidate, ...]
    why: str

    @property
    def kept(self) -> Candidate:
        return next(c for c in self.candidates if c.kept)

    @property
    def replaced(self) -> bool:
        """Whether the kept plan is not the off-chip pass's own."""
        return not self.candidates[0].kept

    def pretty(self) -> str:
        head = "replan: the off-chip pass's plan is " + ("replaced" if self.replaced else "kept")
        more = len(self.candidates) > 1
        return "\n".join([f"{head} ({len(self.candidates)} off-chip plans searched, * = kept)" if more else head]
                         + [f"  {c.line()}" for c in self.candidates] + [f"  {self.why}"])

    def explain(self) -> str:
        lines = [self.why]
        if len(self.candidates) > 1:
            lines.append("Off-chip plans searched (the first is the off-chip pass's own; * = kept):")
            lines += [f"  {c.line()}" for c in self.candidates]
        if self.replaced:   # the on-chip step told the first plan's story: this is the kept one's
            lines.append(self.kept.result.explain())
        return "\n".join(lines)

    def report(self) -> dict:
        return {"replan": {"replaced": self.replaced, "why": self.why,
                           "offchip_plans": [c.report() for c in self.candidates]}}


def run(ctx: Context) -> Context:
    """Keep the off-chip pass's plan or search others (see the module doc); fill in the mapping."""
    first = None if isinstance(ctx.onchip, NothingFits) else ctx.onchip
    if first is None and not isinstance(ctx.onchip, NothingFits):  # pragma: no cover - pipeline-order bug
        raise RuntimeError("the replan pass needs the onchip pass's result")
    if first is not None and first.within_bw and first.bandwidth_cost <= OPTIONS.replan_above:
        why = ("The off-chip pass's plan is kept: its best on-chip mapping is within the NoC and "
               "off-chip bandwidth" + (f", at {first.bandwidth_cost:.2f}x the runtime of the fastest "
                                       f"candidate (replanning starts above {OPTIONS.replan_above}x)."
                                       if first.held_back else "."))
        return _leave(ctx, (Candidate(ctx.offchip, first, True),), why)
    # one (result, plan) per distinct plan, kept as the same object: the budget walk below
    # compares candidates by identity, and budgets often repeat a plan
    memo: dict[tuple, tuple[OnchipResult, OffchipSchedule] | None] = {
        _key(ctx.offchip): None if first is None else (first, ctx.offchip)}
    plans: dict[tuple, OffchipSchedule] = {_key(ctx.offchip): ctx.offchip}   # in the order first tried
    searched = 0

    def attempt(hints, budget: float):
        nonlocal searched
        plan = _solve(ctx, hints, budget)
        if plan is None:
            return None
        key = _key(plan)
        if key not in memo:
            result = best_for(ctx, plan)
            memo[key], plans[key] = None if result is None else (result, plan), plan
            searched += result.candidates + result.refined if result else 0
        return memo[key]

    def largest_budget(hints) -> tuple[int, tuple | None]:
        for i, budget in enumerate(REPLAN.l2_budgets):
            if (found := attempt(hints, budget)) is not None:
                return i, found
        return len(REPLAN.l2_budgets), None

    def best(tried):
        return min(tried, key=lambda t: objective_key(t[2][0].metrics.runtime_cycles,
                                                      t[2][0].metrics.energy_mac_units, ctx.options.objective))

    variants = _hint_variants(ctx)
    reached, fits = largest_budget(variants[0])
    chosen = fits
    if fits is not None and (not fits[0].within_bw or fits[0].bandwidth_cost > OPTIONS.replan_above):
        tried = [(variants[0], reached, fits)] + [(h, *largest_budget(h)) for h in variants[1:]]
        fitting = [t for t in tried if t[2] is not None and t[2][0].within_bw]
        if fitting:
            # Smaller L2 tiles of the best plan's kind may beat idling PEs: fewer units are busy
            # per step for the same bandwidth, but none of them idles.
            # Walked for the best plan's kind and the off-chip pass's own (the on-chip space's
            # top spreads already take other row counts, so the best kind at full budget may not
            # be the best one at smaller budgets).
            walks = [best(fitting)[:2]] + [(variants[0], reached)]
            for hints, i in [w for k, w in enumerate(walks) if all(w[0] is not v[0] for v in walks[:k])]:
                misses = 0
                for j in range(i + 1, len(REPLAN.l2_budgets)):
                    if (f := attempt(hints, REPLAN.l2_budgets[j])) is not None and f[0].within_bw:
                        fitting.append((hints, j, f))
                        misses = 0 if best(fitting)[2] is f else misses + 1
                        if misses == 2:
                            break   # smaller tiles stopped paying: each step refetches more
        for j in range(reached + 1, len(REPLAN.l2_budgets)) if not fitting else ():
            fitting = [(h, j, f) for h in variants if (f := attempt(h, REPLAN.l2_budgets[j])) is not None
                       and f[0].within_bw]
            if fitting:
                break
        if fitting:
            chosen = best(fitting)[2]
    if chosen is None:
        _infeasible(ctx)
    ctx = ctx.note_search("replan", searched, chosen[0].status)
    candidates = tuple(Candidate(p, memo[k][0] if memo[k] else None, p is chosen[1]) for k, p in plans.items())
    return _leave(ctx, candidates, _why(ctx, fits, chosen, first))


def _leave(ctx: Context, candidates: tuple[Candidate, ...], why: str) -> Context:
    """The context with the kept candidate's plan, on-chip result and whole mapping."""
    kept = next(c for c in candidates if c.kept)
    mapping = mdc_mapping(MdcView(chiplet_op(ctx.op, kept.plan), ctx.mdc_form),
                          offchip_pass.offchip_mapping(kept.plan), kept.result.choice)
    return replace(ctx, offchip=kept.plan, onchip=kept.result, mapping=mapping,
                   replan=Replan(candidates, why), stage=Stage.ONCHIP)


def _key(plan: OffchipSchedule) -> tuple:
    """What makes two off-chip plans the same plan for the on-chip search."""
    return (tuple(plan.l2_tile.items()), tuple(plan.order), tuple(plan.chiplet_split),
            tuple(sorted(plan.part_extents.items())) if plan.chiplet_split else ())


def _hint_variants(ctx: Context) -> list:
    """The off-chip hints to try: the mdc-limits pass's own, then (on a layer whose strided rows
    are level 0's units) one per other allowed number of rows per L2 tile."""
    hints = ctx.offchip_hints
    view = MdcView(ctx.op, ctx.mdc_form)
    if "Y" not in view.strided_windows():
        return [hints]
    rows = view.form.op_dim("Y")
    caps = dict(hints.tile_caps)
    return [hints] + [replace(hints, tile_caps=tuple((d, (v,) if d == rows else c) for d, c in caps.items()))
                      for v in sorted((u for u in caps[rows] if u != ctx.offchip.l2_tile[rows]), reverse=True)]


def _solve(ctx: Context, hints, budget: float) -> OffchipSchedule | None:
    """The off-chip plan for ``hints`` with the L2 tiles limited to ``budget`` of L2, or None
    when that cannot hold even the smallest tiles."""
    if budget == 1 and hints is ctx.offchip_hints:
        return ctx.offchip
    target = replace(ctx.target, l2_bytes=int(ctx.target.l2_bytes * budget))
    try:
        plan = offchip_pass.run(replace(ctx, target=target, offchip_hints=hints)).offchip
    except InfeasibleError:
        return None
    return replace(plan, l2_capacity_bytes=ctx.target.l2_bytes, l2_budget=budget) if budget < 1 else plan


def _why(ctx: Context, fits, chosen, first: OnchipResult | None) -> str:
    """Why the plan in ``chosen`` is kept (``fits``: the first plan of the off-chip pass's kind
    that fit, at the largest budget; ``first``: the on-chip result for the pass's own plan)."""
    offchip = chosen[1]
    if offchip is ctx.offchip:   # nothing within the bandwidth, or nothing faster within it
        return ("The off-chip pass's plan is kept: its best on-chip mapping "
                + ("exceeds the NoC or off-chip bandwidth, and so does every other plan's." if not first.within_bw
                   else f"is within the bandwidth at {first.bandwidth_cost:.2f}x the runtime of the fastest "
                        "candidate, and no other plan's is faster within it."))
    tiles = ", ".join(f"{d}={t}" for d, t in offchip.l2_tile.items() if ctx.offchip.l2_tile.get(d) != t)
    if fits[1] is offchip:
        before = "did not fit L1/L2 as MAESTRO counts them"
    else:
        m = fits[0].metrics
        before = (f"{'took' if fits[0].within_bw else 'exceeded the bandwidth at'} {m.runtime_cycles:,} "
                  f"cycles" + (f" (L2 budget {fits[1].l2_budget:.0%})" if fits[1].l2_budget < 1 else ""))
    return (f"The off-chip plan was solved again: with its own L2 tiles the best on-chip mapping {before}; "
            f"with {tiles or 'the same tiles'} (L2 budget {offchip.l2_budget:.0%}) it "
            f"{'is within the bandwidth at' if chosen[0].within_bw else 'takes'} "
            f"{chosen[0].metrics.runtime_cycles:,}.")


def _infeasible(ctx: Context) -> None:
    """Raise the error for an op no off-chip plan gives an on-chip mapping, saying why."""
    offchip = ctx.offchip
    view = MdcView(chiplet_op(ctx.op, offchip), ctx.mdc_form)
    least = l1_footprint(view, {d: 1 if view.mdc_dim(d) not in ("R", "S") else ctx.op.extent(d)
                                for d in view.dims})
    l1 = chiplet_hw(ctx.target, ctx.op.output.element_bytes).l1_size
    why = (f"the smallest per-PE tile (whole filter taps, as MDC requires) needs {least} L1 elements "
           f"double-buffered as MAESTRO counts them, and a PE has {l1}" if least > l1 else
           f"even with the L2 tiles shrunk to {REPLAN.l2_budgets[-1]:.0%} of L2")
    raise InfeasibleError(f"no on-chip mapping of {ctx.op.name} fits {ctx.target.name}'s L1 and L2 with "
                          f"exact MACs: {why}", file=ctx.target.source or None, place="l1_bytes_per_pe"
                          if least > l1 else "l2_bytes")

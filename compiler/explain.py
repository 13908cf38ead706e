"""Teaching text for ``mapc explain``: what :func:`compiler.pipeline.narrate` adds to each pass's own
``explain()``.

Each function reads a finished context and returns plain text; none of them decides anything.
They cover what a student needs to follow one compilation: the loop nest behind the IR, why the
operator conforms to MDC (subscript by subscript), where the off-chip DRAM traffic comes from in
the distinct-block model, which off-chip plans the replan step searched and why it kept one,
why the chosen on-chip point beat the runner-up, every MDC directive
in words, and how large each subspace was.
"""
from __future__ import annotations

import math
import re

from .context import Context
from .ir import mapping_space_log10


def loop_nest(ctx: Context) -> str:
    """The operator as the plain loop nest the polyhedral IR describes."""
    op = ctx.source_op or ctx.op
    lines = ["The IR is this loop nest (one statement instance per point of the domain below):"]
    for depth, d in enumerate(op.dims):
        lines.append(f"{'  ' * (depth + 1)}for {d.name} in 0..{d.extent}:")
    lines.append(f"{'  ' * (len(op.dims) + 1)}{op.statement}")
    return "\n".join(lines)


def conformance_verdict(ctx: Context) -> str:
    """Why the operator is expressible in MDC: every subscript, classified."""
    op, form = ctx.source_op or ctx.op, ctx.mdc_form
    lines = ["Verdict: conforms. MDC can express a tensor subscript that is a loop dim, or a sliding "
             "window stride*p + dilation*r of one output dim and one filter dim:"]
    for t in op.tensors:
        windows = {w.axis: w for w in t.windows}
        parts = []
        for axis, sub in enumerate(t.index):
            w = windows.get(axis)
            if w is None:
                parts.append(f"{sub} (loop dim)")
            elif w.filter_dim:
                parts.append(f"{sub} (window: output {w.out_dim}, filter {w.filter_dim}, stride {w.stride}, "
                             f"dilation {w.dilation})")
            else:
                parts.append(f"{sub} (strided: output {w.out_dim}, stride {w.stride})")
        lines.append(f"  {t.name}: " + "; ".join(parts))
    if form is not None:
        lines.append(f"So it is an MDC {form.layer_type} layer"
                     + (f", repeated once per value of {', '.join(form.repeat_dims)}" if form.repeat_dims else "")
                     + ".")
    return "\n".join(lines)


def offchip_traffic(ctx: Context, s) -> str:
    """The DB-model numbers of the off-chip plan ``s``, per tensor, against compulsory traffic."""
    op = ctx.source_op or ctx.op
    if s is None or not hasattr(s, "traffic"):
        return ""
    loops = [d for d in s.order if s.trips.get(d, 1) > 1]
    lines = ["Distinct-block model, per tensor (a tile is brought in again whenever a DRAM loop outside "
             "the innermost loop that indexes it moves on):"]
    for name, moved in s.traffic.items():
        t = next((x for x in op.tensors if x.name == name), None)
        dims = set(t.dims) if t is not None else set()
        inner = max((i for i, d in enumerate(loops) if d in dims), default=-1)
        refetch = [d for d in loops[:inner] if d not in dims]
        why = (f"refetched for every trip of {', '.join(refetch)}" if refetch
               else "each tile fetched once")
        if t is not None and t is op.output and refetch:
            why = f"partial sums written and read back for every trip of {', '.join(refetch)}"
        lines.append(f"  {name}: tile {s.footprint[name]:,} el; moved {moved:,} el = "
                     f"{moved / s.compulsory[name]:.2f}x its compulsory {s.compulsory[name]:,} ({why})")
    lines.append(f"  total {s.dram_traffic_elements:,} el = {s.ratio:.3f}x the compulsory {s.compulsory_elements:,}")
    return "\n".join(lines)


def onchip_step(ctx: Context) -> tuple[str, bool]:
    """The on-chip step's story: the search for the off-chip pass's own plan, which the replan
    step may have replaced (``ctx.onchip`` is then the kept plan's, told under replan)."""
    r = ctx.replan
    if r is None or not r.replaced:
        return runner_up(ctx), False
    first = r.candidates[0].result
    told = first.explain() if first is not None else (
        "No on-chip candidate for the off-chip pass's plan fits L1 and L2 with exact MACs as MAESTRO "
        "counts them (its L2 accounting can exceed the off-chip model's).")
    return told + "\nThe replan step below replaced this off-chip plan, and with it this mapping.", True


def runner_up(ctx: Context) -> str:
    """Why the chosen on-chip point beat the runner-up, in the objective's terms."""
    r = ctx.onchip
    if r is None or not getattr(r, "runner_up", None):
        return ""
    (alt, alt_runtime, alt_energy), (best, bm) = r.runner_up, (r.choice, r.metrics)
    diffs = [what for what, a, b in (("the spatial map", alt.spatial, best.spatial),
                                     ("the L1 tile", alt.l1_tile, best.l1_tile),
                                     ("the inner loop order", alt.inner_order, best.inner_order)) if a != b]
    differ = f"It differs from the choice in {' and '.join(diffs)}." if diffs else ""
    objective = ctx.options.objective
    rt = (alt_runtime - bm.runtime_cycles) / bm.runtime_cycles
    en = (alt_energy - bm.energy_mac_units) / bm.energy_mac_units
    if rt == 0 and en == 0:
        why = ("It ties on runtime and energy; ties go to the candidate generated first, so both are "
               "equally good under the model.")
    elif objective == "energy" and en != 0:
        why = f"The objective is energy: the runner-up needs {en:+.1%} energy ({rt:+.1%} runtime)."
    elif rt != 0:
        why = f"The objective is {objective}: the runner-up takes {rt:+.1%} cycles ({en:+.1%} energy)."
    else:
        why = f"Same runtime; the runner-up needs {en:+.1%} energy, which breaks the tie."
    return f"Why not the runner-up? {why} {differ}".rstrip()


_DIRECTIVE = re.compile(r"^(\s*)(TemporalMap|SpatialMap)\((\w+(?:\(\w+\))?),(\w+(?:\(\w+\))?)\)\s*(\w+'?);")
_CLUSTER = re.compile(r"^(\s*)Cluster\((\d+),\s*([PL])\);")
_DIMS = re.compile(r"Dimensions\s*\{([^}]*)\}")


def annotate_mdc(text: str, num_pes: int) -> str:
    """The MDC text with every directive explained on its line (steps, units, folds)."""
    decl = _DIMS.search(text)
    extents = {k.strip(): int(v) for k, v in (p.split(":") for p in decl.group(1).split(","))} if decl else {}
    clusters = [int(m.group(2)) for line in text.splitlines() if (m := _CLUSTER.match(line))]
    layers = max(1, text.count("Dataflow {"))
    per_layer = clusters[:len(clusters) // layers] if clusters else []
    units = [num_pes // max(1, math.prod(per_layer))] + per_layer
    level, ext, out = 0, dict(extents), []

    def size(tok: str) -> int:
        m = re.fullmatch(r"Sz\((\w+)\)", tok)
        return extents.get(m.group(1), 1) if m else int(tok)
    width = max((len(line) for line in text.splitlines()), default=0) + 2
    for line in text.splitlines():
        note = ""
        if line.strip() == "Dataflow {":
            level, ext = 0, dict(extents)
        elif m := _DIRECTIVE.match(line):
            kind, sz, ofs, dim = m.group(2), size(m.group(3)), size(m.group(4)), m.group(5).rstrip("'")
            e = ext.get(dim, sz)
            steps = max(1, math.ceil(max(e - sz, 0) / max(ofs, 1)) + 1)
            if kind == "TemporalMap":
                note = (f"{dim}: all {e} in one step" if steps == 1 and sz >= e
                        else f"{dim}: {sz} at a time, advancing {ofs}: {steps} steps")
            else:
                u = units[level] if level < len(units) else 1
                folds = math.ceil(steps / max(u, 1))
                base = "i" if ofs == 1 else f"{ofs}i"
                note = (f"{dim}: unit i of {u} gets [{base}, {base}+{sz}); {steps} tiles"
                        + (f" -> {folds} folds in time" if folds > 1 else " in one pass"))
            ext[dim] = min(sz, e)
        elif m := _CLUSTER.match(line):
            level += 1
            per_unit = math.prod(per_layer[level:]) if level <= len(per_layer) else 1
            note = (f"end of level {level - 1}; level {level} below: {m.group(2)} unit(s)"
                    + (f" of {per_unit} PEs each" if per_unit > 1 else ", single PEs"))
        out.append(f"{line.ljust(width)}// {note}" if note else line)
    return "\n".join(out)


def emitted(ctx: Context) -> str:
    """The MDC backend's result: measured runtime against the bounds, then the annotated file."""
    low = ctx.lowered
    m, b = low.metrics, low.bounds
    bound = "compute" if b["compute_cycles"] >= b["dram_cycles"] else "DRAM"
    head = (f"MAESTRO's model on the emitted file: {m['runtime_cycles']:,} cycles = "
            f"{m['runtime_cycles'] / b['roofline_cycles']:.2f}x the roofline bound {b['roofline_cycles']:,} "
            f"({bound}-bound: compute {b['compute_cycles']:,}, DRAM {b['dram_cycles']:,} cycles), "
            f"utilisation {m['utilization']:.3f}, energy {m['energy_mac_units']:,.0f} MAC units.\n"
            "The file, each directive annotated (within a level, directives are loops, outermost first; "
            "level 0 walks the L2 tiles in the DRAM loop order):")
    return head + "\n" + annotate_mdc(low.mapping_text, ctx.target.num_pes)


def space_summary(ctx: Context) -> str:
    """How large the full space and each searched subspace were."""
    lines = ["Search summary:"]
    s, r = ctx.offchip, ctx.onchip
    op = ctx.source_op or ctx.op
    if op is not None:
        lines.append(f"  full mapping space (tiles and orders at three levels, spatial dims): "
                     f"~10^{mapping_space_log10([d.extent for d in op.dims]):.0f}")
    if s is not None and hasattr(s, "space_size"):
        lines.append(f"  off-chip subspace: {s.space_size:,} points, {s.evaluated:,} ranked exactly "
                     f"after dominance pruning -> {s.solver_status}")
    if ctx.replan is not None and len(ctx.replan.candidates) > 1:
        lines.append(f"  off-chip plans searched for an on-chip mapping: {len(ctx.replan.candidates)} "
                     "-> " + ("another plan" if ctx.replan.replaced else "the off-chip pass's own plan") + " kept")
    if r is not None and hasattr(r, "structures"):
        lines.append(f"  on-chip subspace: {r.structures:,} array structures -> {r.structures_kept} kept"
                     + (f" (+{r.overlapping} overlapping)" if r.overlapping else "") + " -> "
                     f"{r.tilings:,} per-PE tilings -> {r.candidates:,} scored candidates (+{r.refined:,} by refinement) -> "
                     f"{r.feasible:,} within L1/L2 with exact MACs ({r.within_bw:,} also within bandwidth) "
                     f"-> {r.status}")
    return "\n".join(lines) if len(lines) > 1 else ""


def extra(pass_name: str, ctx: Context) -> tuple[str, bool]:
    """Text to add for ``pass_name`` and whether it replaces the pass's own ``explain()``."""
    if pass_name == "frontend":
        return loop_nest(ctx), False
    if pass_name == "conformance" and ctx.mdc_form is not None:
        return conformance_verdict(ctx), False
    replaced = ctx.replan is not None and ctx.replan.replaced
    if pass_name == "offchip" and replaced:   # ctx.offchip is the replan step's: tell the pass's own
        own = ctx.replan.candidates[0].plan
        return "\n".join([own.explain(), offchip_traffic(ctx, own),
                          "The replan step below replaced this plan."]), True
    if pass_name == "offchip":
        return offchip_traffic(ctx, ctx.offchip), False
    if pass_name == "onchip":
        return onchip_step(ctx)
    if pass_name == "replan" and replaced:
        return "\n".join(t for t in ("The kept plan's DRAM traffic. " + offchip_traffic(ctx, ctx.offchip),
                                      runner_up(ctx)) if t), False
    if pass_name == "mdc-emit" and hasattr(ctx.lowered, "mapping_text"):
        return emitted(ctx), True
    return "", False

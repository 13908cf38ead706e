"""The package schedule's outputs: ``schedule`` in ``model.report.json``, its narration for
``mapc explain`` and its Gantt chart for ``--plot``.

Every figure is per *period*: one frame of a model file, or ``weight`` frames of each model of a
workload (one second's worth of frames when the workload gives ``fps``).
"""
from __future__ import annotations

import io

from .errors import MapcError
from .package_costs import PackageCompile
from .package_schedule import KEPT_NOTE, Solved, solve


def figures_dict(s: Solved) -> dict:
    """The figures of one schedule kind (the ``lockstep`` baseline has the same keys)."""
    f = s.figures
    return {"kind": f.kind, "solver": s.solver, "status": s.status, "solve_seconds": round(s.seconds, 6),
            "cycles_per_frame": f.cycles_per_frame, "latency_cycles": f.latency_cycles,
            "dram_elements_per_frame": f.dram_elements, "link_element_hops_per_frame": f.link_element_hops,
            "energy_mac_units_per_frame": f.energy} | ({"note": KEPT_NOTE} if s.status == "UNKNOWN" else {})


def stages_list(pc: PackageCompile, s: Solved) -> list[dict]:
    """One entry per stage: its model (chain), chiplets and their kinds, layers and cycles."""
    out = []
    chains = s.chains
    problem_chains = {c.name: c for c in pc.problem.chains}
    joined = [l for c in pc.problem.chains for l in c.layers]
    for st in s.figures.stages:
        p = st.placement
        layers = problem_chains[chains[p.chain]].layers if chains[p.chain] in problem_chains else joined
        out.append({"model": chains[p.chain], "chiplets": list(p.chiplets),
                    "kinds": [pc.problem.package.kinds[c] for c in p.chiplets],
                    "layers": [l.name for l in layers[p.first:p.last + 1]],
                    "layer_cycles": list(st.layer_cycles), "compute_cycles": st.compute_cycles,
                    "transfer_cycles": st.transfer_cycles, "cycles": st.cycles,
                    "to_next": ("links" if st.via_links else "dram") if st.links else None})
    return out


def schedule_report(pc: PackageCompile, kind: str, objective: str, time_limit: float, clock_ghz: float,
                    timings: bool = True) -> dict:
    """Solve the package schedule and describe it (the ``schedule`` key of ``model.report.json``)."""
    chosen, tried = solve(pc.problem, kind, objective, time_limit)
    if not timings:
        tried = {k: _untimed(v) for k, v in tried.items()}
        chosen = tried[chosen.figures.kind]
    base = tried["lockstep"].figures
    rep = figures_dict(chosen) | {
        "requested": kind, "objective": objective, "stages": stages_list(pc, chosen),
        "models": [{"name": m.name, "frames_per_period": w} for m, w in zip(pc.workload.models, pc.workload.weights)],
        "period": "one second" if pc.workload.fps else "one frame of each model (x its weight)",
        "throughput_over_lockstep": round(base.cycles_per_frame / chosen.figures.cycles_per_frame, 4),
        "latency_over_lockstep": round(chosen.figures.latency_cycles / base.latency_cycles, 4),
        "bound_cycles": pc.bound_cycles,
        "cycles_per_frame_over_bound": round(chosen.figures.cycles_per_frame / pc.bound_cycles, 4),
        "frames_per_second": round(clock_ghz * 1e9 / chosen.figures.cycles_per_frame, 3),
        "lockstep": figures_dict(tried["lockstep"]) | {"stages": stages_list(pc, tried["lockstep"])},
        "kinds": {k: figures_dict(v) for k, v in tried.items()},
        "layer_files": {stem: {f"{kd}.k{k}": r.files[-1][0] for (s2, kd, k), r in pc.results.items()
                               if s2 == stem and r.files} for stem in sorted({k[0] for k in pc.results})},
    }
    if pc.workload.fps:
        rep["meets_fps"] = chosen.figures.cycles_per_frame <= clock_ghz * 1e9
    return rep


def _untimed(s: Solved) -> Solved:
    from dataclasses import replace
    return replace(s, seconds=0.0)


def narrate(schedule: dict, target: str) -> str:
    """``mapc explain`` on a model or workload: the schedule chosen and why, in plain text."""
    s = schedule
    lines = [f"Package schedule on {target} ({s['objective']} objective, --schedule {s['requested']}):"]
    for k, f in s["kinds"].items():
        lines.append(f"  {k:<10} {f['cycles_per_frame']:>14,} cycles/period  latency {f['latency_cycles']:>14,}"
                     f"  energy {f['energy_mac_units_per_frame']:.4g}  ({f['solver']}, {f['status']})")
        if "note" in f:
            lines.append(f"             {f['note']}")
    lines.append(f"Chosen: {s['kind']} — {s['throughput_over_lockstep']:.3f}x the lockstep throughput, "
                 f"{s['latency_over_lockstep']:.3f}x its latency; {s['cycles_per_frame_over_bound']:.3f}x the "
                 f"aggregate bound of {s['bound_cycles']:,} cycles (all MACs on all PEs, or all compulsory "
                 "DRAM traffic through the one interface).")
    for i, st in enumerate(s["stages"]):
        kinds = sorted(set(st["kinds"]))
        first, last = st["layers"][0], st["layers"][-1]
        span = first if first == last else f"{first} .. {last} ({len(st['layers'])} layers)"
        lines.append(f"  stage {i}: {st['model']} {span} on chiplets {st['chiplets']} ({', '.join(kinds)}): "
                     f"{st['compute_cycles']:,} cycles of compute"
                     + (f", {st['transfer_cycles']:,} streaming its output over the links" if st["to_next"] == "links"
                        else ", output through DRAM (too large for the next stage's L2)" if st["to_next"] == "dram"
                        else ""))
    slowest = max(s["stages"], key=lambda st: st["cycles"])
    lines.append(f"The interval is set by the stage on chiplets {slowest['chiplets']} ({slowest['cycles']:,} "
                 f"cycles); per period {s['dram_elements_per_frame']:,} DRAM elements and "
                 f"{s['link_element_hops_per_frame']:,} element-hops on the links.")
    return "\n".join(lines) + "\n"


def gantt_png(schedule: dict, name: str, chiplets: int, frames: int = 3) -> bytes:
    """Chiplets x time over ``frames`` periods, frames admitted once per interval."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MapcError("--plot needs matplotlib (pip install 'mapc[plot]')", place="--plot") from None
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.6 * chiplets))
    colours = plt.get_cmap("tab10")
    period = schedule["cycles_per_frame"]
    lockstep = schedule["kind"] == "lockstep"
    for f in range(frames):
        start = {}
        for i, st in enumerate(schedule["stages"]):
            # lockstep: the models take turns; otherwise a stage starts when its predecessor ends
            t0 = start.get(st["model"], f * period) if not lockstep else \
                f * period + sum(x["compute_cycles"] for x in schedule["stages"][:i])
            for c in st["chiplets"]:
                ax.broken_barh([(t0, st["compute_cycles"])], (c - 0.4, 0.8), facecolors=colours(i % 10),
                               edgecolor="black", linewidth=0.3)
            ax.text(t0 + st["compute_cycles"] / 2, min(st["chiplets"]) - 0.5, f"f{f}", fontsize=6, ha="center")
            start[st["model"]] = t0 + st["cycles"]
    ax.set_yticks(range(chiplets))
    ax.set_yticklabels([f"chiplet {c}" for c in range(chiplets)])
    ax.invert_yaxis()
    ax.set_xlabel("cycles")
    ax.set_title(f"{name}: {schedule['kind']} schedule, {period:,} cycles/period, latency "
                 f"{schedule['latency_cycles']:,} (colour: stage; fN: frame)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def scheduled_model(path, target, options, schedule: str, *, jobs: int = 1, timings: bool = True,
                    progress=None, worker=None):
    """Compile a model or workload for a chiplet package and attach its schedule: the model
    result (lockstep rows, every (layer, set) file, ``schedule`` in its report)."""
    from dataclasses import replace

    from .package_costs import compile_package
    kw = {"worker": worker} if worker else {}
    pc = compile_package(path, target, options, jobs=jobs, timings=timings, progress=progress, **kw)
    if pc.model_result.failures:
        return pc.model_result
    objective = options.objective
    rep = schedule_report(pc, schedule, objective, options.time_limit_s, target.clock_ghz, timings)
    return replace(pc.model_result, schedule=rep)

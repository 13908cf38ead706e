"""Models and workloads (:mod:`compiler.workload`) on a chiplet package: per-layer costs for every
chiplet-set size and kind.

The models' layers are compiled once per distinct shape and per (chiplet kind, number of
chiplets) a set could run them on: a set of ``k`` chiplets of one kind is compiled
as a package of ``k`` such chiplets with the whole DRAM interface (the lockstep lowering's split of
one layer across chiplets, on fewer of them; the schedule shares the interface between stages).  Compiles run in ``jobs`` processes through
the model compiler's worker; each (layer, set size) writes its own files (``<layer>.k2.m``, ...);
the all-chiplet compile of a homogeneous package keeps the plain names, as before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from targets import Chiplets, Target

from .context import Options
from .errors import MapcError
from .model_compile import LayerJob, LayerResult, ModelResult, compile_layer, distinct_layers, run_jobs
from .package import Chain, ChainLayer, LayerCost, Package, Problem
from .workload import Workload, load_workload


def package_of(target: Target) -> tuple[Package, dict[str, Target]]:
    """The package's geometry and one single-chiplet target per chiplet kind."""
    ch = target.chiplets
    if ch is None:
        raise MapcError(f"target '{target.name}' has no chiplets; --schedule applies to chiplet packages",
                        place="--schedule")
    kinds = dict(target.kinds) if target.kinds else {target.name: replace(target, chiplets=None)}
    layout = ch.layout or (target.name,) * ch.count
    pkg = Package(target.name, ch.mesh, layout, tuple(kinds[k].l2_bytes for k in layout),
                  ch.link_bw_elems_per_cycle, target.offchip_bw, target.energy.dram_access, target.energy.l2_access)
    return pkg, kinds


def sub_target(target: Target, kinds: dict[str, Target], kind: str, k: int) -> Target:
    """``k`` chiplets of ``kind`` as a package of their own, with the whole DRAM interface."""
    n = target.num_chiplets
    if k == n and not target.kinds:
        return target
    one = kinds[kind]
    mesh = target.chiplets.mesh if k == n else (1, k)
    name = f"{target.name}.k{k}" if not target.kinds else f"{one.name}.k{k}"
    return replace(one, name=name, kinds=(), offchip_bw=target.offchip_bw,
                   chiplets=None if k == 1 else Chiplets(k, mesh, target.chiplets.link_bw_elems_per_cycle))


@dataclass(frozen=True)
class PackageCompile:
    """Every (distinct layer, kind, chiplet count) compiled: the lockstep rows and the cost table."""

    workload: Workload
    model_result: ModelResult
    problem: Problem
    results: dict[tuple[str, str, int], LayerResult]
    bound_cycles: int


def compile_package(path: Path, target: Target, options: Options = Options(), *, jobs: int = 1,
                    timings: bool = True, progress: Callable[[int, int, str], None] | None = None,
                    worker: Callable[[LayerJob], LayerResult] = compile_layer) -> PackageCompile:
    """Compile a model or workload file's layers for every chiplet set they could run on."""
    import time
    start = time.perf_counter()
    workload = load_workload(path)
    model = workload.union()
    layers, merged = distinct_layers(model)
    pkg, kinds = package_of(target)
    needed = sorted({(pkg.kinds[p], len(s)) for s in pkg.sets() for p in s})  # no 3-chiplet sets
    keys, jobs_list = [], []
    for layer in layers:
        for kind, k in needed:
            sub = sub_target(target, kinds, kind, k)
            stem = layer.op.name if sub is target else f"{layer.op.name}.{sub.name.split('.', 1)[1]}"
            keys.append((layer.op.name, kind, k))
            jobs_list.append(LayerJob(len(jobs_list), replace(layer, op=replace(layer.op, name=stem)), sub,
                                      options, timings))
    done = run_jobs(jobs_list, jobs, progress, worker)
    results = dict(zip(keys, done))
    # the lockstep row of a layer: its all-chiplet compile (the slowest kind's on a mixed package)
    n = pkg.count
    rows = tuple(max((results[l.op.name, kind, n] for kind in sorted(set(pkg.kinds))),
                     key=lambda r: _cycles(r)) for l in layers)
    rows = tuple(replace(r, index=i, name=layers[i].name) for i, r in enumerate(rows))
    wall = time.perf_counter() - start if timings else 0.0
    result = ModelResult(model, target.name, layers, merged, rows, wall)
    result = replace(result, extra_files=tuple(f for r in results.values() for f in r.files))
    costs = {key: LayerCost(_cycles(r), r.report["metrics"]["dram_traffic_elements"],
                            r.report["metrics"]["energy_mac_units"])
             for key, r in results.items() if r.error is None}
    stem_of = {name: layer.op.name for layer, names in zip(layers, merged) for name in names}
    chains = []
    for m, w in zip(workload.models, workload.weights):
        chain = []
        for l in m.layers:
            out = l.op.output
            for i in range(l.repeat):
                name = f"{m.name}.{l.name}" + (f"#{i + 1}" if l.repeat > 1 else "")
                chain.append(ChainLayer(name, stem_of[workload.layer_name(m, l)], out.size,
                                        out.size * out.element_bytes, w))
        chains.append(Chain(m.name, tuple(chain)))
    full = {l: results[stem, pkg.kinds[0], n] for l, stem in stem_of.items()}
    bound = _bound(workload, target, pkg, full) if not result.failures else 0   # no schedule then
    return PackageCompile(workload, result, Problem(pkg, tuple(chains), costs), results, bound)


def _cycles(r: LayerResult) -> float:
    return r.report["metrics"]["runtime_cycles"] if r.report else math.inf


def _bound(workload: Workload, target: Target, pkg: Package, full: dict[str, LayerResult]) -> int:
    """max(sum of MACs / all PEs, sum of compulsory DRAM / DRAM bandwidth) for one period
    (``full``: each model layer's all-chiplet compile, which knows its compulsory traffic)."""
    kinds = dict(target.kinds) if target.kinds else {target.name: target}
    pes = sum(kinds[k].num_pes * kinds[k].macs_per_pe for k in pkg.kinds)
    macs = sum(w * m.macs for m, w in zip(workload.models, workload.weights))
    compulsory = sum(w * l.repeat * full[workload.layer_name(m, l)].report["offchip"]["compulsory_elements"]["total"]
                     for m, w in zip(workload.models, workload.weights) for l in m.layers)
    return max(math.ceil(macs / pes), math.ceil(compulsory / target.offchip_bw))

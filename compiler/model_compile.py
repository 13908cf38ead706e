"""Whole-network compilation: every distinct layer of a model file, in parallel, plus a model report.

A model (:mod:`compiler.model`) often repeats a layer shape (ResNet-50's 54 convolutions have 20
distinct shapes), so the layers are deduplicated with :func:`~compiler.model.unique_layers` and
each distinct operator is compiled once, in ``jobs`` worker processes.  Workers receive the parsed
operator and the loaded target (both pickle) and send back plain data: the files the compilation
would write and its report dict.  Results are gathered in layer order, so the output does not
depend on ``jobs`` or on which worker finished first.

Output files (all in one directory, written together by :func:`~compiler.outputs.write_all`):
``<layer>.report.json`` and the backend's files per distinct layer, one shared HW file when all
layers agree on it, and ``model.report.json`` / ``model.report.csv`` with one row per distinct
layer and totals weighted by ``repeat``.  If any layer fails, nothing is written: the failures are
listed (one line each) and the compilation raises; with ``keep_going`` (``--keep-going``) the
compiled layers are written and ``model.report.json`` lists the others under ``failed`` with
their one-line reasons, its totals marked ``complete: false``.

On a target with several backends (unless one is chosen), a layer the first backend cannot take
goes to the next; each row of the model report says which backend ran it.  A model imported
from ONNX carries ``coverage`` (MACs imported vs in the graph) into the model report.
"""
from __future__ import annotations

import csv
import ctypes
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .context import Options
from .errors import MapcError
from .outputs import file_stem, write_all
from .model import Model, ModelLayer, unique_layers
from .pipeline import run_pipeline
from .report import build_report, dump_report, without_timings
from .workload import load_workload
from .yamlio import load_yaml_mapping, read_text

MODEL_REPORT_VERSION = 1
PR_SET_PDEATHSIG = 1   # <linux/prctl.h>
MODEL_REPORT = "model.report.json"
MODEL_CSV = "model.report.csv"
CSV_COLUMNS = ("name", "repeat", "macs", "runtime_cycles", "energy_mac_units", "utilization",
               "dram_traffic_elements", "roofline_cycles", "bound", "runtime_over_roofline",
               "compile_seconds", "backend")


def is_model_file(path: Path) -> bool:
    """True when ``path`` is a YAML mapping with a ``layers`` key (a model) or ``models`` (a workload)."""
    try:
        data = load_yaml_mapping(read_text(Path(path), "operator"), str(path))
        return "layers" in data or "models" in data      # a model, or a workload of models
    except MapcError:  # let the operator path report the problem with its own message
        return False


@dataclass(frozen=True)
class LayerJob:
    """One distinct operator to compile (sent to a worker process)."""

    index: int
    layer: ModelLayer
    target: Any
    options: Options
    timings: bool


@dataclass(frozen=True)
class LayerResult:
    """What a worker sends back: the files and report of one layer, or its one-line error."""

    index: int
    name: str
    files: tuple[tuple[str, str], ...]
    report: dict | None
    error: str | None
    internal: bool = False
    seconds: float = 0.0
    trace: str = ""          # the layer's own traceback when ``internal`` (shown by --debug)
    backend: str | None = None      # the backend that compiled the layer


def _backends(job: LayerJob) -> tuple[str | None, ...]:
    """The backends to try in turn: the chosen one, or every backend of the target in its order."""
    return (job.options.backend,) if job.options.backend else tuple(job.target.backends)


def compile_layer(job: LayerJob) -> LayerResult:
    """Compile one layer, trying the next backend when one refuses it; never raises (errors come
    back as text so the others still run)."""
    layer = job.layer
    start = time.perf_counter()
    reasons: dict[str, str] = {}
    backends = _backends(job)
    for backend in backends:
        options = replace(job.options, backend=backend)
        try:
            ctx = run_pipeline(Path(layer.source), job.target, options, op=layer.op)
        except MapcError as e:
            reasons[backend] = str(e)
            continue
        except Exception as e:  # an internal error in one layer: report it, keep the others going
            return LayerResult(job.index, layer.name, (), None,
                               f"internal error: {e.__class__.__name__}: {e}", internal=True,
                               trace=traceback.format_exc())
        report = build_report(ctx) | {"backend": backend}
        report = report if job.timings else without_timings(report)
        files = tuple(ctx.artifacts) + ((f"{layer.op.name}.report.json", dump_report(report)),)
        seconds = time.perf_counter() - start if job.timings else 0.0
        return LayerResult(job.index, layer.name, files, report, None, seconds=seconds, backend=backend)
    if len(set(reasons.values())) == 1:  # refused before any backend ran (e.g. by conformance)
        return LayerResult(job.index, layer.name, (), None, next(iter(reasons.values())))
    return LayerResult(job.index, layer.name, (), None, "; ".join(f"{b}: {m}" for b, m in reasons.items()))


@dataclass(frozen=True)
class ModelResult:
    """The outcome of compiling a model: per distinct layer, in model order."""

    model: Model
    target_name: str
    layers: tuple[ModelLayer, ...]          # the distinct layers (repeats summed)
    merged: tuple[tuple[str, ...], ...]     # per distinct layer, every model layer it stands for
    results: tuple[LayerResult, ...]
    wall_seconds: float
    schedule: dict | None = None                       # chiplet packages: the package schedule
    extra_files: tuple[tuple[str, str], ...] = ()      # e.g. each layer compiled on fewer chiplets

    @property
    def failures(self) -> tuple[LayerResult, ...]:
        return tuple(r for r in self.results if r.error is not None)

    def rows(self) -> list[dict[str, Any]]:
        """One row per distinct layer (failed layers have ``error`` and no metrics)."""
        out = []
        for layer, merged, r in zip(self.layers, self.merged, self.results):
            row: dict[str, Any] = {"name": layer.name, "repeat": layer.repeat, "merged": list(merged),
                                   "source": layer.source, "macs": layer.op.macs}
            if r.report is None:
                row["error"] = r.error
            else:
                m, b = r.report.get("metrics", {}), r.report.get("bounds", {})
                roof = b.get("roofline_cycles")
                row.update({
                    "runtime_cycles": m.get("runtime_cycles"),
                    "energy_mac_units": m.get("energy_mac_units"),
                    "utilization": m.get("utilization"),
                    "dram_traffic_elements": m.get("dram_traffic_elements"),
                    "roofline_cycles": roof,
                    "bound": ("compute" if b.get("compute_cycles", 0) >= b.get("dram_cycles", 0) else "dram")
                    if roof else None,
                    "runtime_over_roofline": round(m["runtime_cycles"] / roof, 4)
                    if roof and m.get("runtime_cycles") is not None else None,
                    "compile_seconds": round(r.seconds, 4),
                    "backend": r.backend,
                    "report": f"{layer.op.name}.report.json"})
            out.append(row)
        return out

    def totals(self) -> dict[str, Any]:
        """Sums over the compiled layers, each weighted by its repeat (compile time: once each).

        ``ops`` counts every operator execution of the model, failed layers included."""
        rows = [r for r in self.rows() if "error" not in r]

        def total(key: str) -> float:
            return sum(r[key] * r["repeat"] for r in rows if r.get(key) is not None)
        runtime = total("runtime_cycles")
        busy = sum(r["utilization"] * r["runtime_cycles"] * r["repeat"] for r in rows
                   if r.get("utilization") is not None)
        roof = total("roofline_cycles")
        return {"layers": len(self.model.layers), "distinct_layers": len(self.layers),
                "compiled": len(rows), "failed": len(self.failures), "ops": self.model.num_ops,
                "macs": int(total("macs")), "runtime_cycles": int(runtime),
                "energy_mac_units": round(total("energy_mac_units"), 2),
                "utilization": round(busy / runtime, 6) if runtime else None,
                "dram_traffic_elements": int(total("dram_traffic_elements")),
                "roofline_cycles": int(roof),
                "runtime_over_roofline": round(runtime / roof, 4) if roof else None,
                "compile_seconds": round(sum(r["compile_seconds"] for r in rows), 4),
                "complete": not self.failures}

    def report(self) -> dict[str, Any]:
        """``model.report.json`` as a dict (``failed`` and ``coverage`` only when there are any)."""
        out = {"report_version": MODEL_REPORT_VERSION, "model": self.model.name, "target": self.target_name,
               "layers": self.rows(), "totals": self.totals()}
        if self.failures:
            out["failed"] = [{"name": r.name, "reason": r.error} for r in self.failures]
        if self.model.coverage is not None:
            out["coverage"] = self.model.coverage
        if self.schedule:
            out["schedule"] = self.schedule
        return out

    def csv_text(self) -> str:
        """``model.report.csv``: one row per distinct layer, then a ``TOTAL`` row."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS}
                            | ({"bound": "FAILED"} if "error" in row else {}))
        t = self.totals()
        writer.writerow({k: ("" if t.get(k) is None else t.get(k)) for k in CSV_COLUMNS}
                        | {"name": "TOTAL", "repeat": t["ops"], "bound": ""})
        return buf.getvalue()

    def files(self) -> list[tuple[str, str]]:
        """Every output file: per-layer files, shared ones once, then the two model reports."""
        out: dict[str, str] = {}
        for stem, files in [(layer.op.name, r.files) for layer, r in zip(self.layers, self.results)] + \
                [(self.model.name, self.extra_files)]:
            for name, text in files:
                if name in out and out[name] != text:  # e.g. HW files of layers with other dtypes
                    name = f"{stem}.{name}"    # the layer's file stem
                out[name] = text
        out[MODEL_REPORT] = dump_report(self.report())
        out[MODEL_CSV] = self.csv_text()
        return list(out.items())


def distinct_layers(model: Model) -> tuple[tuple[ModelLayer, ...], tuple[tuple[str, ...], ...]]:
    """The distinct layers, renamed to safe unique file names, and the model layers each covers."""
    layers = unique_layers(model)
    merged: list[list[str]] = [[] for _ in layers]
    for layer in model.layers:
        i = next(i for i, u in enumerate(layers)
                 if len(unique_layers(Model("pair", (u, layer)))) == 1)
        merged[i].append(layer.name)
    renamed, used = [], {"model"}  # model.report.json is the model's
    for layer in layers:
        base = stem = file_stem(layer.name, "layer")  # ONNX names can hold '/' or ':'
        if base.lower().endswith(".hw"):  # BASE.m would be the hardware file of a target named BASE
            base = stem = base[:-3] + "_hw"
        n = 2
        while stem.lower() in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem.lower())
        renamed.append(replace(layer, op=replace(layer.op, name=stem)))
    return tuple(renamed), tuple(tuple(m) for m in merged)


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when its parent ends (``kill -9``, SIGTERM), so no
    orphaned worker keeps computing.  Linux: a parent-death signal; elsewhere: a watchdog thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def _pool(jobs: int) -> ProcessPoolExecutor:
    # fork shares the already-imported islpy/ortools with the workers (no re-import per worker)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin" else None
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def compile_model(path: Path, target, options: Options = Options(), *, jobs: int = 1, timings: bool = True,
                  progress: Callable[[int, int, str], None] | None = None) -> ModelResult:
    """Compile every distinct layer of model file ``path`` for ``target`` (``jobs`` processes).

    ``progress(done, total, layer_name)`` is called as layers finish.  Layer failures are in the
    result (:attr:`ModelResult.failures`); only a malformed model file raises here."""
    start = time.perf_counter()
    model = load_workload(path).union()      # a model file, or a workload's models one after another
    layers, merged = distinct_layers(model)
    job_list = [LayerJob(i, layer, target, options, timings) for i, layer in enumerate(layers)]
    results = run_jobs(job_list, jobs, progress)
    wall = time.perf_counter() - start
    return ModelResult(model, target.name, layers, merged, tuple(results), wall if timings else 0.0)


def run_jobs(job_list: list[LayerJob], jobs: int, progress: Callable[[int, int, str], None] | None = None,
             worker: Callable[[LayerJob], LayerResult] = compile_layer) -> list[LayerResult]:
    """Run ``worker`` on every job in ``jobs`` processes; results in job order (``job.index``)."""
    results: list[LayerResult | None] = [None] * len(job_list)
    done = 0
    if jobs <= 1 or len(job_list) <= 1:
        for job in job_list:
            results[job.index] = worker(job)
            done += 1
            if progress:
                progress(done, len(job_list), job.layer.name)
    else:
        with _pool(min(jobs, len(job_list))) as pool:
            futures = [pool.submit(worker, job) for job in job_list]
            for fut in as_completed(futures):
                r = fut.result()
                results[r.index] = r
                done += 1
                if progress:
                    progress(done, len(job_list), r.name)
    return results


def table(result: ModelResult):
    """A rich table of the per-layer results and the weighted totals (for stdout); a backend column
    when the layers ran on more than one."""
    from rich.table import Table

    rows = result.rows()
    backends = len({r.backend for r in result.results if r.backend}) > 1
    cov = result.model.coverage or {}
    title = (f"{result.model.name} on {result.target_name}: {len(result.layers)} distinct of "
             f"{len(result.model.layers)} layers ({result.model.num_ops} ops)"
             + (f"; imported {100 * cov['fraction']:.4g} % of the graph's MACs" if cov.get("fraction") is not None
                and not cov.get("complete", True) else "")
             + (f"; {len(result.failures)} FAILED, totals incomplete" if result.failures else ""))
    t = Table(title=title, show_header=True)
    for col, right in (("layer", False), ("x", True), ("runtime cyc", True), ("energy MAC-u", True),
                       ("util", True), ("DRAM el", True), ("roofline cyc", True), ("/roof", True),
                       ("compile s", True)) + ((("backend", False),) if backends else ()):
        t.add_column(col, justify="right" if right else "left")

    def fmt(row: dict) -> list[str]:
        if "error" in row:
            return [row["name"], str(row["repeat"]), "FAILED", "", "", "", "", "", ""] + [""] * backends
        return [row["name"], str(row["repeat"]), f"{row['runtime_cycles']:,}", f"{row['energy_mac_units']:.3g}",
                f"{row['utilization']:.3f}", f"{row['dram_traffic_elements']:,}", f"{row['roofline_cycles']:,}",
                f"{row['runtime_over_roofline']:.2f}", f"{row['compile_seconds']:.2f}"] \
            + [row["backend"]] * backends
    for row in rows:
        t.add_row(*fmt(row))
    tot = result.totals()
    t.add_row("total (x repeat)", str(tot["ops"]), f"{tot['runtime_cycles']:,}", f"{tot['energy_mac_units']:.3g}",
              f"{tot['utilization']:.3f}" if tot["utilization"] is not None else "-",
              f"{tot['dram_traffic_elements']:,}", f"{tot['roofline_cycles']:,}",
              f"{tot['runtime_over_roofline']:.2f}" if tot["runtime_over_roofline"] else "-",
              f"{tot['compile_seconds']:.2f}", *[""] * backends, style="bold")
    return t


class Progress:
    """A progress bar on stderr, shown only when stderr is a terminal; use as a context manager
    and pass the instance as ``progress=`` to :func:`compile_model`."""

    def __init__(self, description: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
                                 console=Console(stderr=True), disable=not sys.stderr.isatty(), transient=True)
        self._description = description
        self._task = None

    def __enter__(self) -> "Progress":
        self._bar.__enter__()
        self._task = self._bar.add_task(self._description, total=None, last="")
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def __call__(self, done: int, total: int, name: str) -> None:
        self._bar.update(self._task, completed=done, total=total, last=name)


def write_outputs(out_dir: Path, files: list[tuple[str, str]],
                  png: tuple[str, bytes] | list[tuple[str, bytes]] | None = None) -> list[Path]:
    """Write the text files and the optional PNG(s) together with :func:`write_all`."""
    return write_all(out_dir, files + ([png] if isinstance(png, tuple) else list(png or [])))

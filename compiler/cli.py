"""The ``mapc`` command line.

Every command catches :class:`MapcError` and prints it as one line on stderr with exit code 2;
any other exception is an internal error (exit 1; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import functools
import gc
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from targets import bundled_names, load_target

from .context import Options
from .errors import MapcError
from .frontend import DTYPE_BYTES
from .model_compile import is_model_file
from .outputs import check_out_dir, output_file, write_all
from .pipeline import PASS_NAMES, PIPELINE, describe, narrate, run_pipeline
from .report import report_json

stdout = Console(highlight=False, markup=False, soft_wrap=True)


def _debug() -> bool:
    """Was ``mapc --debug`` given?"""
    return click.get_current_context().find_root().params.get("debug", False)


def handle_errors(fn):
    """Turn MapcError into one stderr line + exit 2, other errors into exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = _debug()
        try:
            return fn(*args, **kwargs)
        except MapcError as e:
            if debug:
                raise
            click.echo(f"mapc: error: {e}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # an internal error: say so, keep the traceback for --debug
            if debug:
                raise
            click.echo(f"mapc: internal error: {e.__class__.__name__}: {e} (rerun with --debug)", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="mapc", prog_name="mapc", message="%(prog)s %(version)s")
def main(debug: bool) -> None:
    """mapc: a mapping compiler for spatial DNN accelerators.

    It parses an operator into a polyhedral loop-nest IR, solves the off-chip mapping subspace
    (L2 tiles, DRAM loop order, chiplet split) and then the on-chip one (spatial map, L1 tiles),
    solving the off-chip one again when its plan holds the on-chip mapping back (MDC), and emits
    MAESTRO MDC files or tiled GEMM schedules.  Start with `mapc targets` and
    `mapc show examples/conv3x3.yaml`.
    """


@main.command()
@click.argument("op", type=click.Path(path_type=Path))
@click.option("-t", "--target", required=True, help="Bundled target name (see `mapc targets`) or a target .yaml path.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=Path("mapc-out"),
              show_default=True, help="Directory for <op>.report.json and the backend's files.")
@click.option("--objective", type=click.Choice(["latency", "throughput", "energy", "edp"]), default="latency",
              show_default=True, help="What the on-chip search and the package schedule minimise "
                                      "(throughput: the on-chip search as for latency).")
@click.option("--schedule", type=click.Choice(["lockstep", "pipeline", "concurrent", "auto"]), default="auto",
              show_default=True, help="Model/workload files on a chiplet package: how layers share the chiplets.")
@click.option("--backend", type=click.Choice(["mdc", "gemm"]), default=None,
              help="Backend for targets that have several (default: the target's first).")
@click.option("--dump-after", multiple=True, type=click.Choice(PASS_NAMES), metavar="PASS",
              help=f"Print the IR after PASS (repeatable). Passes: {', '.join(PASS_NAMES)}.  After "
                   "offchip and onchip: the off-chip pass's own plan and its mapping; after replan: "
                   "every off-chip plan searched, the one kept and why.")
@click.option("--stop-after", type=click.Choice(PASS_NAMES), metavar="PASS", default=None,
              help="Stop after PASS (its report holds what was decided so far).")
@click.option("--time-limit", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Wall-time limit in seconds for each solver call.")
@click.option("--offchip-slack", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="MDC backend: DRAM traffic allowed above the off-chip optimum when that makes "
                   "MAESTRO's per-step time shorter (0: pure traffic minimisation).")
@click.option("--bandwidth", type=click.Choice(["within", "priced"]), default="within", show_default=True,
              help="MDC backend: 'within' ranks mappings within the NoC and off-chip bandwidth before "
                   "faster ones over it; 'priced' ranks by MAESTRO's runtime alone (it includes the stalls).")
@click.option("--emit", type=click.Choice(["loops"]), default=None,
              help="Also print the GEMM schedule as a readable loop nest (gemm backend).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model files: compile distinct layers in this many processes (same output for any N).")
@click.option("--plot", is_flag=True, help="Model files: also write <model>.png (runtime vs roofline, utilisation).")
@click.option("--keep-going", is_flag=True,
              help="Model files: write every layer that compiled; model.report.json lists the failed ones "
                   "under 'failed' and marks its totals incomplete.")
@click.option("--no-timings", is_flag=True, help="Write 0 for wall times in reports (byte-identical reruns).")
@handle_errors
def compile(op: Path, target: str, out_dir: Path, objective: str, schedule: str, backend: str | None,
            dump_after: tuple[str, ...], stop_after: str | None, time_limit: float, offchip_slack: float,
            bandwidth: str, emit: str | None,
            jobs: int, plot: bool, keep_going: bool, no_timings: bool) -> None:
    """Compile operator file OP for a target and write the mapping and <op>.report.json.

    OP may also be a model file (a YAML file with a `layers` key, e.g. from `mapc import`): each
    distinct layer shape is compiled once (-j N processes) and OUT gets, per distinct layer,
    <layer>.report.json and the backend's files, plus model.report.json and model.report.csv
    (per layer and totals weighted by repeat).  On a target with several backends a layer the
    first cannot take goes to the next.  If any layer fails, every failure is printed (one line
    each), nothing is written, and the exit code is 2 (1 if a layer hit an internal error) --
    unless --keep-going: then the compiled layers are written and the failures listed in the
    model report.
    """
    tgt = load_target(target)
    check_out_dir(out_dir)
    if plot:
        from .plots import require_matplotlib
        require_matplotlib()  # before compiling, not after
    if is_model_file(op):
        for flag, given in (("--dump-after", dump_after), ("--stop-after", stop_after), ("--emit", emit)):
            if given:
                raise MapcError(f"{flag} applies to operator files, not to a model", file=str(op), place=flag)
        check_pass_options(str(op), tgt, backend, None, (), None)
        _compile_model(op, tgt, Options(objective=objective, backend=backend, time_limit_s=time_limit,
                                offchip_slack=offchip_slack, bandwidth=bandwidth),
                       out_dir, jobs=jobs, plot=plot, timings=not no_timings, keep_going=keep_going,
                       schedule=schedule)
        return
    for flag, place, given in (("--plot", "--plot", plot), ("-j", "--jobs", jobs > 1),
                               ("--keep-going", "--keep-going", keep_going)):
        if given:
            raise MapcError(f"{flag} applies to model files (a YAML file with 'layers')", file=str(op), place=place)
    check_pass_options(str(op), tgt, backend, stop_after, dump_after, emit)
    ctx = run_pipeline(op, tgt, Options(objective=objective, backend=backend, time_limit_s=time_limit,
                                offchip_slack=offchip_slack, bandwidth=bandwidth),
                       stop_after=stop_after, dump_after=dump_after, dump=stdout.print)
    files = list(ctx.artifacts) + [(f"{ctx.op.name}.report.json", report_json(ctx, timings=not no_timings))]
    written = write_all(out_dir, files)
    table = Table(title=f"{ctx.op.name} on {tgt.name}", show_header=True)
    table.add_column("pass")
    table.add_column("seconds", justify="right")
    table.add_column("space", justify="right")
    table.add_column("solver")
    for r in ctx.records:
        table.add_row(r.name, f"{r.seconds:.3f}", f"{r.space_size:,}" if r.space_size else "-",
                      r.solver_status or "-")
    stdout.print(table)
    stdout.print(f"MACs {ctx.op.macs:,}; " + (ctx.mdc_form.pretty() if ctx.mdc_form else ""))
    if emit == "loops":
        stdout.print(ctx.lowered.schedule.loop_nest(), end="")
    for path in written:
        stdout.print(f"wrote {path}")


def check_pass_options(file: str, tgt, backend: str | None, stop_after: str | None,
                       dump_after: tuple[str, ...], emit: str | None) -> None:
    """Refuse option combinations the selected backend cannot honour, before anything runs."""
    chosen = backend or tgt.backends[0]
    if chosen not in tgt.backends:
        raise MapcError(f"target '{tgt.name}' has no '{chosen}' backend (it has: {', '.join(tgt.backends)})",
                        file=file, place="--backend")
    runs = [p.name for p in PIPELINE if p.backend in (None, chosen)]
    for flag, name in [("--stop-after", stop_after)] + [("--dump-after", d) for d in dump_after]:
        if name is not None and name not in runs:
            raise MapcError(f"pass '{name}' does not run for the {chosen} backend (its passes: "
                            f"{', '.join(runs)})", file=file, place=flag)
    if emit == "loops" and (chosen != "gemm" or stop_after not in (None, "gemm-schedule")):
        raise MapcError(f"--emit loops needs the gemm backend (target '{tgt.name}' has: "
                        f"{', '.join(tgt.backends)}) and no --stop-after before gemm-schedule: the loop "
                        "nest is the GEMM schedule's", file=file, place="--emit")


def _compile_model(path: Path, tgt, options: Options, out_dir: Path, *, jobs: int, plot: bool,
                   timings: bool, keep_going: bool, schedule: str = "auto") -> None:
    """The model branch of `mapc compile`: all layers or nothing (or what compiled, --keep-going)."""
    from .model_compile import Progress, compile_model, table, write_outputs

    with Progress(f"compiling {path.name}") as progress:
        if tgt.chiplets:  # a package: every layer on every chiplet-set size, then the schedule
            from .package_report import scheduled_model
            result = scheduled_model(path, tgt, options, schedule, jobs=jobs, timings=timings, progress=progress)
        else:
            result = compile_model(path, tgt, options, jobs=jobs, timings=timings, progress=progress)
    Console(highlight=False, markup=False, width=max(stdout.width, 140)).print(table(result))
    if result.schedule:
        from .package_report import narrate as narrate_schedule
        stdout.print(narrate_schedule(result.schedule, tgt.name), end="")
    failures = result.failures
    if failures:
        internal = [r for r in failures if r.internal]
        for r in failures:
            click.echo(f"mapc: {'warning' if keep_going else 'error'}: layer {r.name}: {r.error}", err=True)
            if r.internal and _debug():
                click.echo(f"--- traceback of layer {r.name} ---\n{r.trace}", err=True, nl=False)
        if keep_going:
            click.echo(f"mapc: warning: {len(failures)} of {len(result.layers)} distinct layers failed; the "
                       "model report lists them under 'failed' and its totals are incomplete", err=True)
        else:
            why = "" if not internal else (f" ({len(internal)} by an internal error of mapc"
                                           + ("" if _debug() else "; --debug shows its traceback") + ")")
            click.echo(f"mapc: error: {path}: {len(failures)} of {len(result.layers)} distinct layers failed"
                       f"{why}; nothing written", err=True)
            sys.exit(1 if internal else 2)
    png = None
    if plot:
        from .plots import model_png
        png = [(f"{result.model.name}.png", model_png(result.report()))]
        if result.schedule:  # chiplets x time over a few periods
            from .package_report import gantt_png
            png.append((f"{result.model.name}.schedule.png",
                        gantt_png(result.schedule, result.model.name, tgt.num_chiplets)))
    written = write_outputs(out_dir, result.files(), png)
    stdout.print(f"wrote {len(written)} files to {out_dir}: model.report.json, model.report.csv"
                 + (f", {', '.join(n for n, _ in png)}" if png else "") + f" and per-layer files; {result.wall_seconds:.1f} s "
                 f"with {jobs} job(s)")


def _operator_only(op: Path, command: str) -> None:
    if is_model_file(op):
        raise MapcError(f"a model file (it has 'layers'); `mapc {command}` needs an operator file: "
                        "pass one layer's operator file, or compile the model", file=str(op))


@main.command()
@click.argument("op", type=click.Path(path_type=Path))
@handle_errors
def show(op: Path) -> None:
    """Print operator file OP: statement, dims, ISL domain, access maps and its MDC form."""
    _operator_only(op, "show")
    ctx = run_pipeline(op, load_target("edge"), stop_after="conformance")
    stdout.print(describe(ctx).split("\n", 1)[1])


@main.command()
@click.argument("op", type=click.Path(path_type=Path))
@click.option("-t", "--target", required=True, help="Bundled target name or a target .yaml path.")
@click.option("--objective", type=click.Choice(["latency", "throughput", "energy", "edp"]), default="latency",
              show_default=True)
@click.option("--schedule", type=click.Choice(["lockstep", "pipeline", "concurrent", "auto"]), default="auto",
              show_default=True, help="Model/workload files on a chiplet package: the schedule to narrate.")
@click.option("--backend", type=click.Choice(["mdc", "gemm"]), default=None)
@click.option("--time-limit", type=click.FloatRange(min=0.01), default=10.0, show_default=True)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@handle_errors
def explain(op: Path, target: str, objective: str, schedule: str, backend: str | None, time_limit: float,
            jobs: int) -> None:
    """Narrate how OP is compiled for a target: each pass, what it decided and why (writes nothing).

    For a model or workload file on a chiplet package: the package schedule, stage by stage."""
    tgt = load_target(target)
    if is_model_file(op) and tgt.chiplets:
        from .package_report import narrate as narrate_schedule, scheduled_model
        result = scheduled_model(op, tgt, Options(objective=objective, backend=backend, time_limit_s=time_limit),
                                 schedule, jobs=jobs)
        if result.failures:
            raise MapcError(f"layer {result.failures[0].name}: {result.failures[0].error}", file=str(op))
        stdout.print(narrate_schedule(result.schedule, tgt.name), end="")
        return
    _operator_only(op, "explain")
    ctx = run_pipeline(op, load_target(target), Options(objective=objective, backend=backend,
                                                         time_limit_s=time_limit))
    stdout.print(narrate(ctx), end="")


@main.command("import")
@click.argument("onnx_file", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_file", type=click.Path(path_type=Path), required=True,
              help="The model file to write (YAML; compile it with `mapc compile`).")
@click.option("--dtype", type=click.Choice(sorted(DTYPE_BYTES)), default=None,
              help="Element type of every layer (default: the type of each node's input in the graph).")
@click.option("--name", default=None, help="Model name (default: the file name without .onnx).")
@click.option("--allow-partial", is_flag=True,
              help="Write the layers that import even if some MAC-carrying nodes cannot be imported "
                   "(the model file's 'coverage' lists them).")
@handle_errors
def import_cmd(onnx_file: Path, out_file: Path, dtype: str | None, name: str | None, allow_partial: bool) -> None:
    """Import ONNX_FILE as a model file: one layer per MAC-carrying node.

    Conv (1-3 spatial axes), ConvTranspose, Gemm, MatMul, Einsum, LSTM, GRU and RNN become layers
    (two per recurrent node: input and recurrent gate GEMMs).  Shapes come from ONNX shape
    inference with constant folding (symbolic input dims are set to 1); weights are not read.
    Nodes without MACs are summarised in one line on stderr.  A MAC-carrying node that cannot be
    imported is an error naming it and its share of the MACs, unless --allow-partial."""
    from .onnx_import import import_onnx

    real = output_file(out_file)  # checked before the (possibly long) import
    if real.exists() and onnx_file.exists() and real.samefile(onnx_file):  # a slip must not destroy the export
        raise MapcError("is the ONNX file being imported: -o names the model file (YAML) to write; nothing written",
                        file=str(out_file))
    result = import_onnx(onnx_file, dtype=dtype, name=name, allow_partial=allow_partial)
    write_all(real.parent, [(real.name, result.yaml_text())])
    note = result.skipped_line()
    if note:
        click.echo(f"mapc: import: {note}", err=True)
    kinds = Counter(layer.get("kind", "statement") for layer in result.layers)
    cov = result.coverage()
    stdout.print(f"{result.name}: {len(result.layers)} layers ("
                 + ", ".join(f"{k} x{n}" for k, n in kinds.most_common()) + f"), {cov['macs_imported']:,} "
                 f"MACs ({100 * (cov['fraction'] or 0):.4g} % of the graph's); wrote {out_file}")


@main.command()
@handle_errors
def targets() -> None:
    """List the bundled targets."""
    table = Table(show_header=True)
    for col in ("name", "PEs", "L1/PE B", "L2 B", "NoC BW", "DRAM BW", "backends"):
        table.add_column(col, no_wrap=True)
    for name in bundled_names():
        t = load_target(name)
        pes = f"{t.num_pes}" + (f" x {t.num_chiplets}" if t.chiplets else "")
        table.add_row(t.name, pes, f"{t.l1_bytes:,}", f"{t.l2_bytes:,}", f"{t.noc_bw:g}", f"{t.offchip_bw:g}",
                      ",".join(t.backends))
    stdout.print(table)
    stdout.print("Bandwidths in elements/cycle; capacities per chiplet where a target has chiplets.\n"
                 "`mapc show-target NAME` describes one.")


@main.command("show-target")
@click.argument("name")
@handle_errors
def show_target(name: str) -> None:
    """Show every property of target NAME (a bundled name or a .yaml path)."""
    table = Table(show_header=False)
    table.add_column("property")
    table.add_column("value")
    for key, value in load_target(name).rows():
        table.add_row(key, value)
    stdout.print(table)


@main.command("eval")
@click.argument("mapping", type=click.Path(path_type=Path))
@click.option("--hw", "hw_file", type=click.Path(path_type=Path), help="MAESTRO HW file.")
@click.option("--target", help="Bundled target name or .yaml (instead of --hw).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@handle_errors
def eval_cmd(mapping: Path, hw_file: Path | None, target: str | None, as_json: bool) -> None:
    """Cost MDC file MAPPING with the MAESTRO model: one row of metrics per layer."""
    from .mdc.commands import eval_json, eval_mapping, eval_table, load_hw

    metrics = eval_mapping(mapping, load_hw(hw_file, target))
    if as_json:
        click.echo(eval_json(metrics))
    else:  # wide enough for all columns even when piped
        Console(highlight=False, width=max(stdout.width, 170)).print(eval_table(metrics))


@main.command("check")
@click.argument("mapping", type=click.Path(path_type=Path))
@click.option("--hw", "hw_file", type=click.Path(path_type=Path), help="MAESTRO HW file.")
@click.option("--target", help="Bundled target name or .yaml (instead of --hw).")
@handle_errors
def check_cmd(mapping: Path, hw_file: Path | None, target: str | None) -> None:
    """Check MDC file MAPPING against MAESTRO's rules; exit 2 if any rule is broken."""
    from .mdc.commands import check_mapping, load_hw

    hw = load_hw(hw_file, target) if (hw_file or target) else None
    lines, code = check_mapping(mapping, hw)
    for line in lines:
        click.echo(line)
    skipped = ""
    if hw is None:
        from .mdc.checker import NEEDS_HW
        skipped = f"only rules that need no hardware ran; without --target or --hw not checked: {', '.join(NEEDS_HW)}"
    if code == 0:
        click.echo(f"{mapping}: ok" + (" (bandwidth warnings only)" if lines else "")
                   + (f" ({skipped})" if skipped else ""))
    elif skipped:
        click.echo(f"{mapping}: {skipped}")
    sys.exit(code)


@main.command()
@click.argument("schedule", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random matrices.")
@click.option("--element", is_flag=True, help="Walk every loop down to the PEs (slow; small schedules).")
@handle_errors
def verify(schedule: Path, seed: int, element: bool) -> None:
    """Execute SCHEDULE.yaml on random integer matrices; check the product and the claimed traffic."""
    from .gemm.interp import verify_file

    lines, ok = verify_file(schedule, seed=seed, granularity="element" if element else "tile")
    for line in lines:
        stdout.print(line)
    if not ok:
        sys.exit(2)


def run() -> None:
    """The ``mapc`` program: :func:`main` in a process tuned for it.

    A compilation allocates many short-lived arrays and tuples and makes few reference cycles.
    At the collector's default pace (a collection every 700 allocations, rescanning every object
    the imports made) collecting took 2.2 % of the instructions of four ResNet-50 layers, at this
    one 0.04 %.  Workers forked by ``-j`` inherit it.  (Not in :func:`main`, which tests call
    in one long process.)"""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    main()


if __name__ == "__main__":  # pragma: no cover
    run()

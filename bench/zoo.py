"""Model-zoo benchmark: torchvision networks exported to ONNX, imported, compiled whole.

Usage: ``python bench/zoo.py [--targets edge,cloud] [--jobs 2] [--models resnet50,vit_b_16]
[--cache /tmp/mapc-zoo] [--out docs/zoo-bench.md]``

Needs torch and torchvision (never a dependency of mapc; without them the script says so and
exits 0).  Each model is built with random weights (``weights=None``: nothing is downloaded) and
exported with the TorchScript exporter at opset 17 (``--exporter dynamo`` for the other one) into
the cache directory, once.  Then, per model:

* ``mapc import`` in this process: layers, MACs imported, and the graph's own MAC count
  (each MAC-carrying node counted from its tensor shapes) -- and torchvision's published
  ``_ops`` for the architecture (GMACs, from the weights' metadata, no download) as a third
  count;
* ``mapc compile MODEL --target T -j N --keep-going`` in a fresh process per target (cold wall
  time): distinct layers compiled / failed, parts created by decomposition (from each layer
  report's ``decomposition.parts``, none when a layer was not decomposed), runtime / roofline over
  the compiled layers, the compile seconds (per-layer wall times summed), the wall seconds, and the
  layers whose on-chip search the wall-time ``--time-limit`` stopped (status FEASIBLE).

Prints the table and writes it, with the machine's load, to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.onnx_import import import_onnx  # noqa: E402

# name -> (torchvision builder keyword arguments beyond weights=None, input shape)
IMAGE = (1, 3, 224, 224)
MODELS: dict[str, tuple[dict, tuple[int, ...]]] = {
    "resnet50": ({}, IMAGE),
    "mobilenet_v2": ({}, IMAGE),
    "mobilenet_v3_large": ({}, IMAGE),
    "efficientnet_b0": ({}, IMAGE),
    "vgg16": ({}, IMAGE),
    "squeezenet1_0": ({}, IMAGE),
    "densenet121": ({}, IMAGE),
    "shufflenet_v2_x1_0": ({}, IMAGE),
    "convnext_tiny": ({}, IMAGE),
    "regnet_y_400mf": ({}, IMAGE),
    "vit_b_16": ({}, IMAGE),
    "swin_t": ({}, IMAGE),
    "deeplabv3_mobilenet_v3_large": ({"weights_backbone": None, "aux_loss": False}, (1, 3, 520, 520)),
    "r3d_18": ({}, (1, 3, 16, 112, 112)),
}


def _builder(name: str):
    import torchvision.models as tvm
    import torchvision.models.segmentation as seg
    import torchvision.models.video as video

    for module in (tvm, seg, video):
        if hasattr(module, name):
            return getattr(module, name)
    raise SystemExit(f"unknown torchvision model {name}")


def published_gmacs(name: str) -> float | None:
    """torchvision's ``_ops`` (GFLOPS in its docs, counted as multiply-adds) for the architecture."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        return None
    ops = [w.meta.get("_ops") for w in weights]
    return ops[0] if ops and ops[0] is not None else None


def export(name: str, cache: Path, exporter: str) -> tuple[Path, float]:
    """The ONNX file of ``name`` (exported once into ``cache``) and the export seconds (0 if cached)."""
    import torch

    path = cache / f"{name}.{exporter}.onnx"
    if path.exists():
        return path, 0.0
    kwargs, shape = MODELS[name]
    torch.manual_seed(0)
    model = _builder(name)(weights=None, **kwargs).eval()
    start = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    # not under no_grad: there MultiheadAttention takes a fused fast path the TorchScript exporter
    # cannot translate (aten::_native_multi_head_attention)
    if exporter == "dynamo":
        torch.onnx.export(model, (torch.randn(*shape),), str(tmp), dynamo=True, external_data=False)
    else:
        torch.onnx.export(model, (torch.randn(*shape),), str(tmp), opset_version=17, dynamo=False)
    tmp.rename(path)
    return path, time.perf_counter() - start


def compile_cold(model_yaml: Path, target: str, jobs: int, limit: float) -> tuple[float, int, dict | None, int, int]:
    """``mapc compile --keep-going`` in a fresh process: (wall s, exit code, model report, parts,
    layers whose on-chip search --time-limit stopped); exit code -1 when it ran longer than ``limit``
    seconds."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "compiler.cli", "compile", str(model_yaml), "--target",
                                   target, "-j", str(jobs), "--keep-going", "-o", out], cwd=ROOT,
                                  capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return time.perf_counter() - start, -1, None, 0, 0
        wall = time.perf_counter() - start
        report_path = Path(out) / "model.report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        parts = stopped = 0
        for row in (report or {}).get("layers", []):
            if "report" in row:
                layer = json.loads((Path(out) / row["report"]).read_text())
                parts += len((layer.get("decomposition") or {}).get("parts", [])) * row["repeat"]
                # the search's wall-time limit: on a loaded machine it stops before the space is scored
                stopped += (layer.get("onchip") or {}).get("solver_status") == "FEASIBLE"
    if report is None:
        print(f"  {model_yaml.stem} on {target}: mapc exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    for failed in (report or {}).get("failed", []):
        print(f"  {model_yaml.stem} on {target}: failed {failed}")
    return wall, proc.returncode, report, parts, stopped


def measure(name: str, cache: Path, targets: list[str], jobs: int, exporter: str, work: Path, limit: float) -> dict:
    """One row per model: import numbers, then per target the compile numbers."""
    onnx_path, export_s = export(name, cache, exporter)
    start = time.perf_counter()
    result = import_onnx(onnx_path, name=name, allow_partial=True)
    import_s = time.perf_counter() - start
    model_yaml = work / f"{name}.yaml"
    model_yaml.write_text(result.yaml_text())
    cov = result.coverage()
    row = {"model": name, "layers": len(result.layers), "macs_imported": cov["macs_imported"],
           "macs_graph": cov["macs_graph"], "published_gmacs": published_gmacs(name),
           "unimported": len(result.unimported), "import_s": import_s, "export_s": export_s, "targets": {}}
    for target in targets:
        wall, code, report, parts, stopped = compile_cold(model_yaml, target, jobs, limit)
        t = (report or {}).get("totals", {})
        row["targets"][target] = {"exit": code, "wall_s": wall, "parts": parts, "stopped": stopped, **t}
        print(f"  {name} on {target}: {t.get('compiled', 0)}/{t.get('distinct_layers', '?')} distinct layers, "
              f"x{t.get('runtime_over_roofline')} roofline, {wall:.1f} s wall")
    return row


def table(rows: list[dict], targets: list[str]) -> str:
    """The markdown table: import columns, then per target compile columns."""
    head = "| model | layers | MACs imported | graph's MACs | torchvision GMACs |"
    for t in targets:
        head += (f" {t}: compiled/distinct | {t}: parts | {t}: runtime ÷ roofline | {t}: compile s / wall s |"
                 f" {t}: search stopped |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        pub = f"{r['published_gmacs']:.3f}" if r["published_gmacs"] is not None else "-"
        line = (f"| {r['model']} | {r['layers']} | {r['macs_imported']:,} | {r['macs_graph']:,}"
                + (" (100 %)" if r["macs_imported"] == r["macs_graph"]
                   else f" ({100 * r['macs_imported'] / r['macs_graph']:.3g} %)") + f" | {pub} |")
        for t in targets:
            m = r["targets"][t]
            if "compiled" not in m:
                what = f"over {m['wall_s']:.0f} s" if m["exit"] == -1 else f"exit {m['exit']}"
                line += f" {what} | - | - | - / {m['wall_s']:.0f} | - |"
                continue
            roof = m.get("runtime_over_roofline")
            line += (f" {m['compiled']}/{m['distinct_layers']} | {m['parts']} | {roof:.2f} |" if roof is not None
                     else f" {m['compiled']}/{m['distinct_layers']} | {m['parts']} | - |")
            line += f" {m['compile_seconds']:.0f} / {m['wall_s']:.0f} | {m['stopped']} |"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="edge,cloud")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    ap.add_argument("--limit", type=float, default=1200.0, help="seconds allowed per model and target")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mapc-zoo")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "zoo-bench.md")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        print("bench/zoo.py needs torch and torchvision (pip install torch torchvision); nothing measured")
        return
    torch.set_num_threads(1)
    targets = args.targets.split(",")
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    load_before = os.getloadavg()
    commit = _commit()
    started = time.strftime("%H:%M", time.gmtime())
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            print(f"{name}:")
            rows.append(measure(name, args.cache, targets, args.jobs, args.exporter, Path(work), args.limit))
            # rewritten after every model, so a long run leaves its finished rows behind
            write_doc(args, rows, targets, commit, started, load_before, torch.__version__, torchvision.__version__)
    print(table(rows, targets))
    print(f"wrote {args.out}")


def _commit() -> str:
    """The measured tree's commit (``MAPC_COMMIT`` for a snapshot outside git), for the record."""
    if os.environ.get("MAPC_COMMIT"):
        return os.environ["MAPC_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def write_doc(args, rows: list[dict], targets: list[str], commit: str, started: str,
              load_before: tuple[float, float, float], torch_version: str, tv_version: str) -> None:
    """Write the table of the rows measured so far, with how and where they were measured, to ``--out``."""
    text = table(rows, targets)
    load_after = os.getloadavg()
    doc = [
        "# Model-zoo benchmark",
        "",
        f"`python bench/zoo.py --targets {args.targets} --jobs {args.jobs} --exporter {args.exporter}`: torch "
        f"{torch_version}, torchvision {tv_version}, random weights; each network exported "
        f"once, imported with `mapc import` (default dtype: the graph's, fp32) and compiled with "
        f"`mapc compile --keep-going -j {args.jobs}` in a fresh process per target.",
        "",
        "*MACs imported* is the sum over the model file's layers (polyhedral counts, repeats included); "
        "*graph's MACs* counts every MAC-carrying ONNX node from its tensor shapes; *torchvision GMACs* is "
        "the `_ops` torchvision publishes for the architecture at its reference input size. *compiled/distinct*: distinct "
        "layer shapes that compiled; the runtime ÷ roofline and compile seconds (per-layer wall times summed) are "
        "over the compiled ones only "
        "(the report's totals are marked incomplete when a layer failed). *parts*: MDC layers created by "
        "decomposition (repeats included). *search stopped*: distinct layers (not decomposed) whose on-chip "
        "search `--time-limit` (wall time) stopped before it scored its whole space (status FEASIBLE): on a "
        "loaded machine their mappings can be worse than on an idle one.",
        "",
        text,
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work; load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after the run; commit {commit}, started "
        f"{started} UTC, {len(rows)} of {len(args.models.split(','))} models done at "
        f"{time.strftime('%H:%M', time.gmtime())} UTC.",
        "",
    ]
    args.out.write_text("\n".join(doc))


if __name__ == "__main__":
    main()

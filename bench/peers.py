"""mapc against the peer mappings in ``../shared/peer-mappings`` (valid MAESTRO mappings a genetic
mapper found with about 100x mapc's compile time): each layer compiled for its target, cycles
under mapc's cost model (MAESTRO's, to the cycle) against the peer file's.

Usage::

    python bench/peers.py [-o DIR]

Prints one row per peer and writes mapc's ``.m`` (and the target's HW file) per layer to ``DIR``
(default ``/tmp/mapc-peers``) for running through MAESTRO by hand (see ``bench/maestro_check.py``).
A layer mapc decomposes (strided rows as stride-1 phases) has several MDC layers; its cycles are
their sum.  ``tests/test_peers.py`` asserts the same for the three edge layers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.context import Options  # noqa: E402
from compiler.mdc.checker import check_layer  # noqa: E402
from compiler.mdc.costmodel import analytical_macs, evaluate_file  # noqa: E402
from compiler.mdc.lowering import chiplet_hw  # noqa: E402
from compiler.mdc.parser import parse_mdc_file  # noqa: E402
from compiler.model import load_model  # noqa: E402
from compiler.outputs import write_all  # noqa: E402
from compiler.pipeline import run_pipeline  # noqa: E402
from targets import load_target  # noqa: E402

PEERS = ROOT.parent / "shared" / "peer-mappings"
# peer file -> (model, layer, target)
CASES = {
    "resnet50_conv1__cloud.m": ("resnet50", "conv1", "cloud"),
    "mbv2_project_1x1__edge.m": ("mobilenetv2", "b2_rest_project", "edge"),
    "vgg16_conv1_2__edge.m": ("vgg16", "conv1_2", "edge"),
    "vgg16_conv5__edge.m": ("vgg16", "conv5_123", "edge"),
}


def peer_cycles(name: str, hw) -> int:
    """The peer file's cycles under mapc's cost model; asserts it is a valid mapping (exact MACs,
    no hard rule broken) so that the comparison means something."""
    mdc = parse_mdc_file(PEERS / name)
    (layer,) = mdc.layers
    (m,) = evaluate_file(mdc, hw)
    assert m.macs == analytical_macs(layer), name
    assert not [v for v in check_layer(layer, hw) if v.severity == "hard"], name
    return m.runtime_cycles


def compile_case(name: str):
    """mapc's context for the peer's layer and target."""
    model, layer_name, tname = CASES[name]
    layer = next(l for l in load_model(ROOT / "examples" / "models" / f"{model}.yaml").layers
                 if l.name == layer_name)
    return run_pipeline(Path(layer.source), load_target(tname), Options(), op=layer.op)


def main() -> None:
    """Compile every case, compare, write the .m files."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="/tmp/mapc-peers")
    args = ap.parse_args()
    print("| peer file | layer | target | peer cycles | mapc cycles | mapc / peer | mapc compile CPU s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, (model, layer_name, tname) in CASES.items():
        start = time.process_time()
        ctx = compile_case(name)
        cpu = time.process_time() - start
        hw = chiplet_hw(ctx.target, ctx.op.output.element_bytes)
        peer, mine = peer_cycles(name, hw), ctx.lowered.metrics["runtime_cycles"]
        write_all(Path(args.out) / name.removesuffix(".m"), list(ctx.artifacts))
        print(f"| {name} | {model} {layer_name} | {tname} | {peer:,} | {mine:,} | {mine / peer:.4f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()

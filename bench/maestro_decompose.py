"""Run the real MAESTRO on decomposed layers: every part's layer, exact MACs, mapc's runtime.

Usage::

    python bench/maestro_decompose.py [--targets edge,cloud] [--out DIR]

Compiles one op of each decomposition kind (a 7x7 fp32 stem, a stride-2 depthwise conv, a
dilation-2 conv, two transposed convs, a Conv3d, a ViT patchify conv), runs MAESTRO on the
emitted ``.m`` (one layer per part) through :func:`maestro_check.check`, and replaces the
"Decomposed layers" section of ``docs/maestro-check.md``.  mapc's runtime compared with
MAESTRO's is the sum of the parts' layers (the partial-sum re-reads mapc adds between parts are
its own estimate, listed apart).  Without MAESTRO the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compiler.frontend import build_op  # noqa: E402
from maestro_check import BINARY, WRAPPER, check  # noqa: E402

CONV = "O[n,k,p,q] += I[n,c,{s}*p+{d}*r,{s}*q+{d}*s] * W[k,c,r,s]"
OPS = [
    ("resnet50_conv1_fp32", CONV.format(s=2, d=1), dict(n=1, k=64, c=3, p=112, q=112, r=7, s=7), "fp32"),
    ("mobilenetv2_b2_first_dw", "O[n,c,p,q] += I[n,c,2*p+r,2*q+s] * W[c,r,s]",
     dict(n=1, c=96, p=56, q=56, r=3, s=3), "int8"),
    ("dilated2_conv3x3", CONV.format(s=1, d=2), dict(n=1, k=64, c=64, p=28, q=28, r=3, s=3), "int8"),
    ("unet_up_convt2x2", "O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]",
     dict(n=1, k=64, c=128, h=28, w=28, r=2, s=2), "int8"),
    ("convt3x3_s2", "O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]",
     dict(n=1, k=32, c=64, h=14, w=14, r=3, s=3), "int8"),
    ("r3d_conv3x3x3", "O[n,k,d,p,q] += I[n,c,d+t,p+r,q+s] * W[k,c,t,r,s]",
     dict(n=1, k=64, c=64, d=8, p=28, q=28, t=3, r=3, s=3), "int8"),
    ("vit_patchify", CONV.format(s=16, d=1), dict(n=1, k=768, c=3, p=14, q=14, r=16, s=16), "int8"),
]
HEADING = "## Decomposed layers"


def section(rows: list[dict], seconds: float) -> str:
    lines = [HEADING, "",
             f"`python bench/maestro_decompose.py` ({seconds:.0f} s): one op of each decomposition kind, "
             "its `.m` (one layer per part) run in MAESTRO. *mapc* is the parts' runtime (the "
             "report's `runtime_cycles` minus `partial_sum_cycles`, mapc's own estimate of "
             "re-reading partial sums between parts).", "",
             "| op | target | plan | layers | MACs MAESTRO = op | MAESTRO runtime | mapc | diff | partial-sum cycles "
             "| MAESTRO's buffer / BW analysis |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['layer']} | {r['target']} | | | {r['error']} | | | | | |")
            continue
        exact = "=" if r["maestro_macs"] == r["macs"] else "**≠**"
        diff = r["maestro_runtime"] - r["mapc_runtime"]
        lines.append(f"| {r['layer']} | {r['target']} | {r['plan']} | {r['layers']} | "
                     f"{r['maestro_macs']:,} {exact} {r['macs']:,} | {r['maestro_runtime']:,} | "
                     f"{r['mapc_runtime']:,} | {diff:+,} | {r['partial_sum_cycles']:,} | "
                     f"{'PASS' if r['buffer_pass'] else 'FAIL'} / {'PASS' if r['bw_pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="edge,cloud")
    ap.add_argument("--out", default="/tmp/mapc-maestro-decompose")
    args = ap.parse_args()
    if not (WRAPPER.exists() and BINARY.exists()):
        print(f"MAESTRO not found ({WRAPPER}, {BINARY}); nothing measured")
        return 0
    start, rows = time.perf_counter(), []
    for tname in args.targets.split(","):
        for name, statement, dims, dtype in OPS:
            row = check(name, build_op(name, statement, dims, dtype), f"{name}.yaml", tname, Path(args.out))
            rows.append(row)
            print(row.get("error") or f"{name} {tname}: MAESTRO {row['maestro_runtime']:,} mapc {row['mapc_runtime']:,}",
                  flush=True)
    doc = ROOT / "docs" / "maestro-check.md"
    text = doc.read_text()
    head = text.split(HEADING)[0].rstrip("\n")
    doc.write_text(head + "\n\n" + section(rows, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())

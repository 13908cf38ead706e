"""Compare mapc's cost model with MAESTRO's numbers in maestro-reference/reference.csv.

Usage: python bench/fidelity.py [--shared DIR] [--markdown] [--verbose]

Prints, per compared column, how many status=ok rows agree (exactly, or within 5 %).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from compiler.mdc.costmodel import evaluate_layer
from compiler.errors import MapcError
from compiler.mdc.hw import parse_hw_file
from compiler.mdc.parser import parse_mdc_file

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"

#: (metric attribute, reference column, tolerance: None = exact, else relative)
COLUMNS = [
    ("macs", "csv_num_macs", None),
    ("runtime_cycles", "csv_runtime", 0.05),
    ("energy_mac_units", "scr_energy_mac_units", 0.05),
    ("l1_elements", "csv_l1_req", None),
    ("l2_elements", "csv_l2_req", None),
    ("noc_bw_required", "csv_noc_bw_req", None),
    ("noc_bw_avg", "csv_avg_bw_req", 0.05),
    ("offchip_bw_required", "csv_offchip_bw_req", None),
    ("avg_util_pes", "csv_avg_util_pes", 0.05),
]


def _agree(ours: float, ref: float, tol: float | None) -> bool:
    if tol is None:
        return round(ours) == round(ref)
    if ref == 0:
        return abs(ours) < 1e-9
    return abs(ours - ref) <= tol * abs(ref)


def compare(shared: Path) -> tuple[dict, list[dict]]:
    """Evaluate every status=ok row; return per-column agreement counts and per-row details."""
    ref_dir = shared / "maestro-reference"
    rows = list(csv.DictReader(open(ref_dir / "reference.csv")))
    hws = {}
    counts = {c[1]: [0, 0] for c in COLUMNS}
    details = []
    for row in rows:
        if row["status"] != "ok":
            continue
        hw = hws.setdefault(row["hw"], parse_hw_file(ref_dir / "hw" / f"{row['hw']}.m"))
        mdc = parse_mdc_file(ref_dir / row["mapping_file"])
        try:
            m = evaluate_layer(mdc.layers[0], hw, constants=mdc.constant_map())
        except MapcError as exc:
            details.append({"row": row, "error": str(exc)})
            for c in counts.values():
                c[1] += 1
            continue
        d = {"row": row, "metrics": m, "bad": []}
        for attr, col, tol in COLUMNS:
            ok = _agree(getattr(m, attr), float(row[col]), tol)
            counts[col][0] += ok
            counts[col][1] += 1
            if not ok:
                d["bad"].append((col, getattr(m, attr), row[col]))
        details.append(d)
    return counts, details


def main(argv: list[str] | None = None) -> int:
    """Print the agreement table (plain or markdown)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    counts, details = compare(args.shared)
    if args.markdown:
        print("| column | criterion | agree | rows | fraction |")
        print("|---|---|---|---|---|")
    for attr, col, tol in COLUMNS:
        ok, n = counts[col]
        crit = "exact" if tol is None else f"within {tol:.0%}"
        if args.markdown:
            print(f"| `{col}` | {crit} | {ok} | {n} | {ok / n:.3f} |")
        else:
            print(f"{col:24s} {crit:10s} {ok:4d}/{n:<4d} {ok / n:.3f}")
    if args.verbose:
        for d in details:
            r = d["row"]
            if "error" in d:
                print("ERROR", r["layer"], r["dataflow"], r["hw"], d["error"])
            elif d["bad"]:
                print(r["layer"], r["dataflow"], r["hw"], d["bad"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

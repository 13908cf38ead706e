"""``mapc compile MODEL --plot``: one PNG per model with per-layer runtime against the roofline bound
and the PE utilisation.

matplotlib is imported only here, inside :func:`model_png`, with the Agg backend (no display), so
the compiler neither needs nor pays for it unless ``--plot`` is given.
"""
from __future__ import annotations

import io

from .errors import MapcError


def require_matplotlib():
    """``matplotlib.pyplot`` with the Agg backend, or a one-line error naming the extra to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MapcError("--plot needs matplotlib (pip install 'mapc[plot]')", place="--plot") from None
    return plt


def model_png(report: dict) -> bytes:
    """Render a ``model.report.json`` dict as PNG bytes (failed layers are left out)."""
    plt = require_matplotlib()
    rows = [r for r in report["layers"] if "error" not in r]
    if not rows:
        raise MapcError("--plot: no layer compiled, nothing to plot", place="--plot")
    names = [f"{r['name']} x{r['repeat']}" if r["repeat"] > 1 else r["name"] for r in rows]
    x = range(len(rows))
    width = max(8.0, 0.32 * len(rows) + 2.5)
    fig, (ax_rt, ax_ut) = plt.subplots(2, 1, figsize=(width, 8.0), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 2]})
    runtime = [r["runtime_cycles"] for r in rows]
    roof = [r["roofline_cycles"] for r in rows]
    xs = list(x)
    ax_rt.bar([i - 0.2 for i in xs], runtime, width=0.4, color="#4c72b0", label="runtime (one execution)")
    ax_rt.bar([i + 0.2 for i in xs], roof, width=0.4, color="#dd8452",
              label="roofline bound = max(compute, DRAM) cycles")
    for i, (rt, rf) in enumerate(zip(runtime, roof)):
        ax_rt.annotate(f"{rt / rf:.2f}x", (i, max(rt, rf)), xytext=(0, 3), textcoords="offset points",
                       ha="center", va="bottom", fontsize=7, rotation=90 if len(rows) > 12 else 0)
    ax_rt.set_ylabel("cycles per execution")
    ax_rt.set_ylim(0, max(max(runtime), max(roof)) * (1.4 if len(rows) > 12 else 1.2))  # room for labels
    ax_rt.ticklabel_format(axis="y", style="sci", scilimits=(0, 4))
    tot = report["totals"]
    ax_rt.set_title(f"{report['model']} on {report['target']}: runtime per layer vs roofline bound (label: runtime / bound)\n"
                    f"total {tot['runtime_cycles']:,} cycles = {tot['runtime_over_roofline'] or 0:.2f}x "
                    f"the roofline ({tot['compiled']} of {tot['distinct_layers']} distinct layers compiled)",
                    fontsize=11)
    ax_rt.legend(loc="upper right", fontsize=9)
    ax_rt.grid(axis="y", which="major", alpha=0.3)
    util = [r["utilization"] for r in rows]
    ax_ut.bar(x, util, width=0.7, color="#55a868")
    ax_ut.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax_ut.set_ylim(0, max(1.05, max(util) * 1.05))
    ax_ut.set_ylabel("PE utilisation")
    ax_ut.set_title("utilisation per layer (MACs / (runtime x PEs))", fontsize=11)
    ax_ut.grid(axis="y", alpha=0.3)
    ax_ut.set_xticks(list(x))
    ax_ut.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax_ut.set_xlabel("layer (distinct shapes; xN = repeated N times)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()

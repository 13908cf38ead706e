"""Pass ``mdc-limits``: what the MDC backend asks of the off-chip search.

Reads:    ``ctx.op``, ``ctx.mdc_form``, the target, ``ctx.options.offchip_slack``.
Decides:  L2 tile caps MDC needs and the step model of MAESTRO's top level:
          * R/S maps must cover the whole filter, so filter dims are not tiled;
          * on a strided sliding window MAESTRO counts ``size - R + 1`` outputs per Y/X step
            whatever the stride (measured: 3.86x the MACs for 28-row tiles of ResNet-50 conv1),
            so a strided output dim may only hold one output per unit: a strided X gets L2 tile
            1, a strided Y is spread over the units of level 0 one row each, so its L2 tile is a
            unit count (a divisor of the PEs that divides the rows, or the least that covers them);
          * MAESTRO refetches the whole L2 tile from DRAM on every top-level step, so among
            tilings within ``1 + slack`` of the optimal DRAM traffic the off-chip pass takes the
            one whose steps keep the PEs busiest (on a target that spreads only some dims, only
            as many PEs as those dims' tiles can fill count as busy).
Leaves:   ``ctx.offchip_hints``.
"""
from __future__ import annotations

from dataclasses import replace

from compiler.context import Context, OffchipHints
from compiler.mdc.lowering import MdcView, chiplet_hw
from compiler.mdc.onchip_space import divisors, spreadable_dims


def run(ctx: Context) -> Context:
    """Derive the hints from the op's windows and the target."""
    op, target = ctx.op, ctx.target
    view = MdcView(op, ctx.mdc_form)
    hw = chiplet_hw(target, op.output.element_bytes)   # one chiplet's PEs and DRAM share
    pes = divisors(target.num_pes)

    def units(dim: str) -> tuple[int, ...]:
        # MAESTRO counts strided rows exactly when the units cover the rows in one fold or
        # divide them (5 rows on 4 units: 1.4x the MACs); the cost model rejects the rest anyway.
        e = op.extent(dim)
        cover = min((u for u in pes if u >= e), default=None)
        return tuple(v for v in pes if e % v == 0 or v == cover)
    spread = tuple(spreadable_dims(view, target.spatial_roles)) if target.spatial_roles else ()
    # Strided rows go one per level-0 unit: one unit (rows walked in turn) where rows may not spread.
    strided = tuple((d, units(d) if m == "Y" and (not spread or d in spread) else (1,))
                    for m in view.strided_windows() if (d := view.form.op_dim(m)))
    # MAESTRO's R/S rule: filter taps are never tiled.
    filters = tuple((d, (op.extent(d),)) for m in ("R", "S") if (d := view.form.op_dim(m)))
    caps = filters + strided
    why = "whole filter taps (MAESTRO's R/S rule); " + (
        f"strided window(s) on {', '.join(d for d, _ in strided)}: one output per unit (MAESTRO "
        "miscounts larger strided tiles); " if strided else "")
    hints = OffchipHints(
        tile_caps=caps, slack=ctx.options.offchip_slack,
        macs_per_cycle=target.num_pes * target.macs_per_pe,
        dram_bw=hw.offchip_bw, noc_bw=hw.noc_bw, spread_dims=spread,
        why=why + f"tilings within {ctx.options.offchip_slack:.0%} of the optimal DRAM traffic ranked "
                  "by MAESTRO's per-step time (it refetches every L2 tile"
                  + (f"; only the {'/'.join(spread)} tiles can keep PEs busy)" if spread else ")"))
    return replace(ctx, offchip_hints=hints)

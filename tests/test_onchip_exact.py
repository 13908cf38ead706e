"""The on-chip search against brute force: on a 4x4-PE target every choice of the on-chip space
(for mapc's own L2 tiling) is scored, and mapc's mapping must be within 2 % of the best one; on
4- and 6-PE targets every MDC dataflow of tiny ops (:mod:`compiler.mdc.fullspace`), and mapc's
must be within 1 %."""
from __future__ import annotations

import pytest

from compiler.context import Options
from compiler.mdc.costmodel import evaluate_layer, runtime_counts_every_mac
from compiler.mdc.syntax import print_layer
from compiler.mdc.fullspace import full_space_bests
from compiler.mdc.lowering import MdcView, build_layer, chiplet_hw, chiplet_op
from compiler.mdc.scoring import score_choices
from compiler.mdc.onchip_space import whole_space
from compiler.pipeline import run_pipeline
from conftest import SMALL_TARGET
from passes.onchip import keys, rank
from targets import parse_target

OPS = {
    "conv1x1": ("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", "{n: 1, k: 8, c: 8, p: 4, q: 4, r: 1, s: 1}"),
    "conv3x3": ("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", "{n: 1, k: 4, c: 4, p: 4, q: 4, r: 3, s: 3}"),
    "dwconv": ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", "{n: 1, c: 8, p: 4, q: 4, r: 3, s: 3}"),
    "gemm": ("O[m,n] += I[m,k] * W[k,n]", "{m: 8, n: 6, k: 12}"),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_within_two_percent_of_brute_force(name, write):
    statement, dims = OPS[name]
    path = write(f"{name}.yaml", f"name: {name}\nstatement: {statement}\ndims: {dims}\n")
    target = parse_target(SMALL_TARGET, "small.yaml")
    ctx = run_pipeline(path, target, Options())
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    hw = chiplet_hw(target, ctx.op.output.element_bytes)
    l2_tile, order = dict(ctx.offchip.l2_tile), tuple(ctx.offchip.order)
    space = whole_space(view, l2_tile, target.num_pes, target.spatial_roles, hw.l1_size)
    scores = score_choices(view, l2_tile, order, space, hw)
    best = space[rank(scores, "latency")[0]]
    best_key = keys(scores, "latency")[space.index(best)]
    mine = keys(score_choices(view, l2_tile, order, [ctx.onchip.choice], hw), "latency")[0]
    # the same bandwidth class (both within it here), and the runtime within 2 %
    assert mine[0] == best_key[0] == 1.0
    assert mine[1] <= 1.02 * best_key[1], (ctx.onchip.choice.describe(), best.describe(), mine, best_key)
    # the brute-force optimum is a real mapping: exact MACs, a runtime that counts them all
    m = evaluate_layer(build_layer(view, l2_tile, order, best, name), hw)
    assert m.runtime_cycles == best_key[1] and m.macs == view.layer_macs
    assert runtime_counts_every_mac(m.compute_delay_cycles, m.macs, hw.num_pes)


# Two tiny targets for the whole-MDC-space brute force (8 ops on each): 4 PEs, and 6 PEs (cluster
# sizes 4 and 5 leave PEs idle there).
FOUR_PES = (SMALL_TARGET.replace("small", "four").replace("rows: 4, cols: 4", "rows: 2, cols: 2")
            .replace("l1_bytes_per_pe: 64", "l1_bytes_per_pe: 32").replace("l2_bytes: 4096", "l2_bytes: 512")
            .replace("offchip_bw_elems_per_cycle: 4", "offchip_bw_elems_per_cycle: 2")
            .replace("noc_bw_elems_per_cycle: 8", "noc_bw_elems_per_cycle: 4"))
SIX_PES = FOUR_PES.replace("four", "six").replace("rows: 2, cols: 2", "rows: 2, cols: 3").replace(
    "l1_bytes_per_pe: 32", "l1_bytes_per_pe: 48")
CONV = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
GEMM = "O[m,n] += I[m,k] * W[k,n]"
TINY = {
    "gemv": (GEMM, "{m: 4, n: 1, k: 3}"),
    "fc": (CONV, "{n: 1, k: 3, c: 4, p: 1, q: 1, r: 1, s: 1}"),
    "row3": (CONV, "{n: 1, k: 3, c: 1, p: 4, q: 1, r: 3, s: 1}"),
    "dwrow": ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", "{n: 1, c: 4, p: 3, q: 1, r: 2, s: 1}"),
    "gemvT": (GEMM, "{m: 1, n: 5, k: 4}"),
    "colq": (CONV, "{n: 1, k: 2, c: 1, p: 1, q: 5, r: 1, s: 2}"),
    "dwcol": ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", "{n: 1, c: 3, p: 1, q: 4, r: 1, s: 2}"),
    "gemv5": (GEMM, "{m: 5, n: 1, k: 2}"),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_within_one_percent_of_the_whole_mdc_space(name, write):
    """mapc against every MDC dataflow of 1-3 cluster levels (any cluster size, tile and order of
    the loops that step), not only its own encoding, on both tiny targets (scored together: one
    cost-model call per template); the optimum is a real mapping."""
    statement, dims = TINY[name]
    path = write(f"{name}.yaml", f"name: {name}\nstatement: {statement}\ndims: {dims}\n")
    targets = [parse_target(text, "t.yaml") for text in (FOUR_PES, SIX_PES)]
    ctxs = [run_pipeline(path, target, Options()) for target in targets]
    view = MdcView(ctxs[0].op, ctxs[0].mdc_form)
    hws = [chiplet_hw(target, ctxs[0].op.output.element_bytes) for target in targets]
    assert targets[0].spatial_roles == targets[1].spatial_roles
    for ctx, hw, best in zip(ctxs, hws, full_space_bests(view, hws, targets[0].spatial_roles)):
        mine = ctx.lowered.metrics["runtime_cycles"]
        assert ctx.onchip.within_bw and best.key[0] == 1.0
        assert mine <= 1.01 * best.key[1], (hw.num_pes, ctx.onchip.choice.describe(), print_layer(best.layer))
        m = evaluate_layer(best.layer, hw)
        assert m.runtime_cycles == best.key[1] and m.macs == view.layer_macs
        assert runtime_counts_every_mac(m.compute_delay_cycles, m.macs, hw.num_pes)


def test_bandwidth_priced_lets_the_runtime_decide():
    """A GEMV on cloud: within the bandwidth (the default) mapc idles PEs to ask at most 64
    elements/cycle of DRAM; ``priced`` takes MAESTRO's faster mapping that asks more (its runtime
    already has the stalls), and calls nothing held back."""
    from conftest import EXAMPLES
    from targets import load_target
    target = load_target("cloud")
    within = run_pipeline(EXAMPLES / "gemv.yaml", target, Options())
    priced = run_pipeline(EXAMPLES / "gemv.yaml", target, Options(bandwidth="priced"))
    assert within.lowered.metrics["offchip_bw_required"] <= target.offchip_bw
    assert priced.lowered.metrics["offchip_bw_required"] > target.offchip_bw
    assert priced.lowered.metrics["runtime_cycles"] < within.lowered.metrics["runtime_cycles"]
    assert within.onchip.held_back is not None and priced.onchip.held_back is None

"""The on-chip search against brute force: on a 4x4-PE target every choice of the on-chip space
(for mapc's own L2 tiling) is scored, and mapc's mapping must be within 2 % of the best one."""
from __future__ import annotations

import pytest

from compiler.context import Options
from compiler.costmodel_vec import evaluate_layer, runtime_counts_every_mac
from compiler.mdc_lowering import MdcView, build_layer, chiplet_hw, chiplet_op
from compiler.mdc_scoring import score_choices
from compiler.onchip_space import whole_space
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

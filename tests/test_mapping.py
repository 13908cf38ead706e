"""The typed mapping (compiler.ir.OpMapping) between the passes and the backends.

The MDC file and the GEMM schedule are lowerings of it: writing a candidate through the typed
mapping gives exactly the MDC text the on-chip search scored, for every candidate of the whole
on-chip space of small ops and for many candidates of layers with merged levels, chiplets and
repeated layers; the schedule's loops are the mapping's; report.json and --dump-after show it.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from compiler.context import Options
from compiler.mdc.syntax import print_layer
from compiler.mdc.lowering import (MdcView, build_file, build_layer, chiplet_hw, chiplet_op,
                                   mdc_mapping)
from compiler.mdc.onchip_space import inner_choices, inner_orders, spatial_structures, whole_space
from compiler.pipeline import run_pipeline
from conftest import EXAMPLES, SMALL_TARGET
from passes.decompose import compile_part
from passes.gemm_schedule import schedule_buffers, schedule_loops
from passes.offchip import offchip_mapping
from targets import load_target, parse_target

SMALL_OPS = {
    "conv3x3": ("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", "{n: 1, k: 4, c: 4, p: 4, q: 4, r: 3, s: 3}"),
    "strided": ("O[n,k,p,q] += I[n,c,2*p+r,2*q+s] * W[k,c,r,s]", "{n: 1, k: 8, c: 2, p: 6, q: 6, r: 3, s: 3}"),
    "gemm": ("O[m,n] += I[m,k] * W[k,n]", "{m: 8, n: 6, k: 12}"),
}


def _same_text(ctx, choices) -> int:
    """Every choice written through the typed mapping equals the directly built layer."""
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    l2_tile, order = dict(ctx.offchip.l2_tile), tuple(ctx.offchip.order)
    offchip = offchip_mapping(ctx.offchip)
    for c in choices:
        typed = mdc_mapping(view, offchip, c)
        direct = build_layer(view, l2_tile, order, c, ctx.op.name)
        written = replace(build_file(view, typed).layers[0], name=direct.name)  # repeats add _0
        assert print_layer(written) == print_layer(direct), c.describe()
    return len(choices)


def _candidates(ctx, target, structures=None, per_structure=None):
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    l2_tile = dict(ctx.offchip.l2_tile)
    out = []
    for s in spatial_structures(view, l2_tile, target.num_pes, target.spatial_roles)[:structures]:
        # every stationarity order (the search keeps one of those that only move single-step loops)
        out += [replace(c, inner_order=o) for c in inner_choices(view, l2_tile, s, chiplet_hw(target, 1).l1_size)[0]
                for o in inner_orders(view, s.levels[-1].dim)][:per_structure]
    return list(dict.fromkeys(out))


@pytest.mark.parametrize("name", sorted(SMALL_OPS))
def test_whole_space_round_trips(name, write):
    statement, dims = SMALL_OPS[name]
    path = write(f"{name}.yaml", f"name: {name}\nstatement: {statement}\ndims: {dims}\n")
    target = parse_target(SMALL_TARGET, "small.yaml")
    ctx = run_pipeline(path, target, Options())
    if ctx.offchip is None:   # the decompose pass kept stride-1 phases: the op as written, as it compiled it
        ctx = compile_part(ctx, ctx.op)
    view = MdcView(chiplet_op(ctx.op, ctx.offchip), ctx.mdc_form)
    if name == "strided":  # whole_space leaves out strided rows; every structure's choices instead
        space = _candidates(ctx, target)
        assert any(c.merged for c in space)
    else:
        space = whole_space(view, dict(ctx.offchip.l2_tile), target.num_pes, target.spatial_roles,
                            chiplet_hw(target, 1).l1_size)
    assert _same_text(ctx, space) >= (7 if name == "strided" else 50)


@pytest.mark.parametrize("example,target", [("conv_strided", "edge"), ("conv3x3", "chiplet4"),
                                            ("attention", "edge"), ("dwconv", "cloud")])
def test_real_layers_round_trip(example, target):
    """Merged level 0 (strided rows), a chiplet split, repeated layers (heads), depthwise."""
    t = load_target(target)
    ctx = run_pipeline(EXAMPLES / f"{example}.yaml", t, Options(), stop_after="offchip")
    assert _same_text(ctx, _candidates(ctx, t, 12, 15)) >= 14
    if target == "chiplet4":
        assert ctx.offchip.chiplet_split


def test_compile_records_the_mapping_and_reports_it(write):
    """The off-chip pass leaves the dram level, the on-chip pass the rest; the tile left after
    the last level is the per-PE tile; report.json carries it; --dump-after shows both, and that
    the replan pass keeps this plan (tests/test_replan.py: a layer where it does not)."""
    dumps: list[str] = []
    ctx = run_pipeline(EXAMPLES / "conv3x3.yaml", load_target("edge"), Options(),
                       dump_after=("offchip", "onchip", "replan"), dump=dumps.append)
    names = [lv.name for lv in ctx.mapping.levels]
    assert names[0] == "dram" and names[-1] == "pe" and "array" in names
    choice = ctx.onchip.choice
    assert ctx.mapping.tiles_after("pe") == {**dict(choice.l1_tile), choice.spatial[-1].dim: choice.spatial[-1].tile}
    assert [lv.units for lv in ctx.mapping.levels if lv.name == "array"] == \
        [s.units for s in choice.spatial[1 if choice.merged else 0:]]   # a merged first level is on dram's units
    dram = ctx.mapping.level("dram")
    top = choice.spatial[0].dim if choice.merged else None   # a merged first level: its own loops
    assert [(lp.dim, lp.tile, lp.trips) for lp in dram.loops if lp.dim != top] == \
        [(d, ctx.offchip.l2_tile[d], ctx.offchip.trips[d]) for d in ctx.offchip.order if d != top]
    tensors = ("O", "I", "W")
    assert [(lv.name, lv.keeps) for lv in ctx.mapping.levels if lv.keeps] == \
        [("dram", tensors), ("array", tensors), ("pe", tensors)]
    l2 = {t: tile for level, t, tile in ctx.mapping.buffers() if level == "array"}
    assert {d: t for d, t in l2["W"].items() if d != top} == \
        {d: t for d, t in ctx.offchip.l2_tile.items() if d != top}   # the L2 tile of every dim
    assert "mapping resnet50_res3_conv3x3" in dumps[0] and "// pe" not in dumps[0]
    assert "// pe" in dumps[1] and "parallel-for" in dumps[1]
    assert ctx.mapping.pretty() in dumps[1] and ctx.mapping.pretty() in dumps[2]
    assert "replan: the off-chip pass's plan is kept\n" in dumps[2] and not ctx.replan.replaced
    assert [c.plan for c in ctx.replan.candidates] == [ctx.offchip]
    from compiler.report import build_report
    report = json.loads(json.dumps(build_report(ctx)))
    assert report["mapping"] == ctx.mapping.report()["mapping"]
    assert [lv["name"] for lv in report["mapping"]["levels"]] == names


def test_gemm_schedule_is_a_lowering_of_the_mapping():
    target = load_target("chiplet4")
    ctx = run_pipeline(EXAMPLES / "gemm.yaml", target, Options(backend="gemm"))
    assert ctx.lowered.schedule.loops == schedule_loops(ctx.mapping)
    operands = ctx.lowered.schedule.operands
    assert ctx.lowered.schedule.buffers == schedule_buffers(ctx.mapping, operands)
    stationary = [b.role for b in ctx.lowered.schedule.buffers if b.level.value == "array"]
    assert ctx.mapping.level("array").keeps == tuple(o.tensor for o in operands if o.role in stationary)
    names = [lv.name for lv in ctx.mapping.levels]
    assert names == ["chiplet", "dram", "l2", "array", "pe"]
    assert ctx.mapping.level("array").units == target.num_pes
    assert ctx.mapping.level("chiplet").units == target.num_chiplets
    from compiler.report import build_report
    assert build_report(ctx)["mapping"] == ctx.mapping.report()["mapping"]

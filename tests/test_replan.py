"""The ``replan`` pass: every off-chip plan the on-chip search tries is a step of the pipeline.

On a layer where re-planning happens, the dump after each pass shows the plan that pass left: the
off-chip pass's own plan after ``offchip``, the mapping for it after ``onchip``, every candidate
and the one kept (and why) after ``replan``, and the kept plan's mapping from then on; report.json
and ``mapc explain`` show the same.  When nothing fits the off-chip pass's plan, ``onchip`` says so
and ``replan`` raises the error.

The layers are small strided convs on the 4x4-PE test target (stride-2 rows are level 0's units,
so the number of rows per L2 tile decides what the NoC must carry at once).  The ``decompose``
pass is taken out of the pipeline here: it would compile the op as written and its stride-1
phases in full first (for the replanned conv the op as written wins, 4,816 cycles against 4,841),
and what is tested is the passes after it.
"""
from __future__ import annotations

import json

import pytest

from compiler import pipeline
from compiler.context import Options, Stage
from compiler.errors import InfeasibleError
from compiler.mdc.lowering import MdcView, chiplet_op, mdc_mapping
from compiler.report import build_report
from conftest import SMALL_TARGET
from passes.offchip import offchip_mapping
from passes.onchip import NothingFits
from targets import parse_target

CONV = "O[n,k,p,q] += I[n,c,2*p+r,2*q+s] * W[k,c,r,s]"
REPLANNED = f"name: strided\nstatement: {CONV}\ndims: {{n: 1, k: 8, c: 16, p: 8, q: 8, r: 3, s: 3}}\n"
# a 5x5 filter: whole taps need 2 * (25 + 25 + 25) = 150 L1 elements as MAESTRO counts them
TOO_BIG = f"name: wide\nstatement: {CONV}\ndims: {{n: 1, k: 4, c: 4, p: 6, q: 6, r: 5, s: 5}}\n"
DUMPED = ("offchip", "onchip", "replan", "mdc-emit")


def _without_decompose(mp: pytest.MonkeyPatch) -> None:
    """The pipeline without its decompose pass (the pass list is data)."""
    mp.setattr(pipeline, "PIPELINE", tuple(p for p in pipeline.PIPELINE if p.name != "decompose"))


@pytest.fixture
def no_decompose(monkeypatch):
    _without_decompose(monkeypatch)


@pytest.fixture(scope="module")
def replanned(tmp_path_factory):
    """The replanned conv compiled once, with the IR dumped after each pass of :data:`DUMPED`."""
    path = tmp_path_factory.mktemp("replan") / "strided.yaml"
    path.write_text(REPLANNED)
    dumps: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        _without_decompose(mp)
        ctx = pipeline.run_pipeline(path, parse_target(SMALL_TARGET, "small.yaml"), Options(),
                                    dump_after=DUMPED, dump=dumps.append)
        text = pipeline.narrate(ctx)
    return ctx, dict(zip(DUMPED, dumps)), text


def _mapping(ctx, candidate):
    """The whole typed mapping of one candidate off-chip plan and its on-chip result."""
    view = MdcView(chiplet_op(ctx.op, candidate.plan), ctx.mdc_form)
    return mdc_mapping(view, offchip_mapping(candidate.plan), candidate.result.choice)


def test_each_dump_shows_the_plan_that_pass_left(replanned):
    ctx, dumps, _ = replanned
    plans = ctx.replan.candidates
    first, kept = plans[0], ctx.replan.kept
    assert ctx.replan.replaced and len(plans) >= 2 and sum(c.kept for c in plans) == 1
    assert kept.plan is ctx.offchip and kept.result is ctx.onchip
    assert kept.plan.l2_tile != first.plan.l2_tile
    # after offchip: the pass's own plan, not the one emitted
    assert first.plan.pretty() in dumps["offchip"] and ctx.offchip.pretty() not in dumps["offchip"]
    # after onchip: the on-chip mapping for that plan, as a whole typed mapping
    own = _mapping(ctx, first)
    assert first.result.pretty() in dumps["onchip"] and own.pretty() in dumps["onchip"]
    assert ctx.mapping.pretty() not in dumps["onchip"]
    # after replan: that it is replaced, every candidate (one kept) and why, then the kept plan
    text = dumps["replan"]
    assert "replan: the off-chip pass's plan is replaced" in text
    # (the kept plan as replan left it: top-steps may retile it afterwards)
    assert all(c.line() in text for c in plans if not (c.result and c.result.tuned))
    assert [c.line()[0] for c in plans].count("*") == 1
    assert "The off-chip plan was solved again" in ctx.replan.why and ctx.replan.why in text
    for part in (ctx.offchip, ctx.onchip, ctx.mapping) if not ctx.onchip.tuned else ():
        assert part.pretty() in text
    # and that is what is emitted: the mapping the .m file lowers is the kept plan's
    assert ctx.mapping == _mapping(ctx, kept) != own and ctx.mapping.pretty() in dumps["mdc-emit"]


def test_the_report_lists_every_plan(replanned):
    ctx, _, _ = replanned
    report = json.loads(json.dumps(build_report(ctx)))
    tried = report["replan"]["offchip_plans"]
    assert report["replan"]["replaced"] is True and report["replan"]["why"] == ctx.replan.why
    assert [p["l2_tile"] for p in tried] == [c.plan.l2_tile for c in ctx.replan.candidates]
    assert [p["kept"] for p in tried] == [c.kept for c in ctx.replan.candidates]
    assert report["offchip"]["l2_tile"] == next(p["l2_tile"] for p in tried if p["kept"])
    assert report["metrics"]["runtime_cycles"] == next(p["runtime_cycles"] for p in tried if p["kept"])
    assert "replanned" not in report["onchip"] and [p["name"] for p in report["passes"]][-4:] == \
        ["onchip", "replan", "top-steps", "mdc-emit"]


def test_explain_lists_the_step(replanned):
    ctx, _, text = replanned
    steps = [line.split(":")[0] for line in text.splitlines() if line[:1].isdigit()]
    assert steps[-5:] == ["4. offchip", "5. onchip", "6. replan", "7. top-steps", "8. mdc-emit"]
    summary = pipeline.PIPELINE[[p.name for p in pipeline.PIPELINE].index("replan")].summary
    assert summary.startswith("solve the off-chip subspace again") and f"6. replan: {summary}" in text
    offchip, onchip, replan = (text.split(f"\n{i}. ")[1].split(f"\n{i + 1}. ")[0] for i in (4, 5, 6))
    # each step tells its own plan; the ones replaced say so
    assert ctx.replan.candidates[0].plan.explain().splitlines()[0] in offchip
    assert "The replan step below replaced this plan." in offchip
    assert "replaced this off-chip plan" in onchip
    assert all(c.line() in replan for c in ctx.replan.candidates) and ctx.replan.why in replan
    assert "off-chip plans searched for an on-chip mapping" in text


def test_stop_after_onchip_leaves_the_offchip_pass_plan(no_decompose, tmp_path):
    """Nothing fits the off-chip pass's plan: onchip leaves that fact, replan raises the error."""
    path = tmp_path / "wide.yaml"
    path.write_text(TOO_BIG)
    target = parse_target(SMALL_TARGET.replace("l1_bytes_per_pe: 64", "l1_bytes_per_pe: 128"), "small.yaml")
    dumps: list[str] = []
    ctx = pipeline.run_pipeline(path, target, Options(), stop_after="onchip", dump_after=("onchip",),
                                dump=dumps.append)
    assert isinstance(ctx.onchip, NothingFits) and ctx.stage is Stage.OFFCHIP and ctx.replan is None
    assert "on-chip: nothing fits L1/L2" in dumps[0] and "replan pass" in dumps[0]
    assert build_report(ctx)["onchip"] == {"fits": False}
    with pytest.raises(InfeasibleError, match="needs 150 L1 elements double-buffered .* a PE has 128"):
        pipeline.run_pipeline(path, target, Options())


def test_every_pass_is_a_cli_choice(run_cli):
    code, out, _ = run_cli("compile", "--help")
    assert code == 0 and "replan" in pipeline.PASS_NAMES
    assert "onchip, replan, top-steps, mdc-emit" in " ".join(out.split())

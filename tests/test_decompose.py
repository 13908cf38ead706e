"""Decomposition into MDC layers: the parts compute the op (numpy on small random tensors), cover
its MACs exactly once (ISL), and compile on edge and cloud into checker-clean files whose MACs,
as MAESTRO counts them, add up to the op's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from compiler.mdc.checker import check_file, is_clean
from compiler.mdc.costmodel import evaluate_file
from compiler.decomposition import (Part, Plan, as_gemm, assert_exact, axis_split, filter_split, phases, root,
                                    scatter_taps)
from compiler.errors import ConformanceError
from compiler.frontend import build_op
from compiler.ir import AffineIndex, Op
from compiler.mdc.hw import parse_hw
from compiler.mdc.parser import parse_mdc
from compiler.pipeline import run_pipeline
from passes.conformance import conform
from compiler.mdc import parts
from compiler.mdc.parts import plan_cost, plan_rereads
from conftest import SMALL_TARGET
from passes import decompose
from passes.decompose import compile_part, plans
from targets import load_target, parse_target


def _points(op: Op) -> dict[str, np.ndarray]:
    grids = np.indices([d.extent for d in op.dims]).reshape(len(op.dims), -1)
    return dict(zip(op.dim_names, grids))


def _at(index: tuple[AffineIndex, ...], pts: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    n = len(next(iter(pts.values())))
    return tuple(sum((c * pts[d] for d, c in ix.terms), np.full(n, ix.const)) for ix in index)


def execute(op: Op, data: dict[str, np.ndarray]) -> np.ndarray:
    """The statement run point by point: ``O[...] += A[...] * B[...]``."""
    pts = _points(op)
    out, a, b = op.tensors
    result = np.zeros(out.extents)
    np.add.at(result, _at(out.index, pts), data[a.name][_at(a.index, pts)] * data[b.name][_at(b.index, pts)])
    return result


def _embed(part: Part, pts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    orig = {}
    for d, e in part.embed:
        if isinstance(e, str):  # ISL quasi-affine text: floor(x/c) and "mod"
            py = re.sub(r"floor\(([^()]*)\)", r"((\1))", e).replace("/", "//").replace(" mod ", " % ")
            orig[d] = eval(py, {}, dict(pts))  # noqa: S307 - text the decomposition wrote
        else:
            orig[d] = _at((e,), pts)[0]
    return orig


def _view(part_t, orig_t, part_pts, orig_pts, shape):
    """The part's tensor as a view: part element -> original element, checked to be a function."""
    p_idx = np.ravel_multi_index(_at(part_t.index, part_pts), part_t.extents)
    o_idx = np.ravel_multi_index(_at(orig_t.index, orig_pts), shape)
    pairs = np.unique(np.stack([p_idx, o_idx]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1], f"{part_t.name} is not a view of the original"
    return pairs


def execute_parts(op: Op, parts, data: dict[str, np.ndarray]) -> np.ndarray:
    """Each part run on its views of the original tensors, its output added into the original's."""
    result = np.zeros(op.output.extents)
    for part in parts:
        pts = _points(part.op)
        orig = _embed(part, pts)
        local = {}
        for pt, ot in zip(part.op.reads, op.reads):
            pairs = _view(pt, ot, pts, orig, ot.extents)
            buf = np.zeros(int(np.prod(pt.extents)))
            buf[pairs[0]] = data[ot.name].reshape(-1)[pairs[1]]
            local[pt.name] = buf.reshape(pt.extents)
        part_out = execute(part.op, local).reshape(-1)
        pairs = _view(part.op.output, op.output, pts, orig, op.output.extents)
        np.add.at(result.reshape(-1), pairs[1], part_out[pairs[0]])
    return result


def _random(op: Op, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(t.extents) for t in op.reads}


def _check(op: Op, parts) -> None:
    assert_exact(op, tuple(parts))
    assert sum(p.op.macs for p in parts) == op.macs
    data = _random(op)
    np.testing.assert_allclose(execute_parts(op, parts, data), execute(op, data), rtol=1e-9, atol=1e-9)


CONV = "O[n,k,p,q] += I[n,c,{s}*p+{d}*r,{s}*q+{d}*s] * W[k,c,r,s]"


@pytest.mark.parametrize("stride,dilation,taps", [(2, 1, 3), (2, 1, 7), (1, 2, 3), (2, 2, 3), (3, 2, 3), (2, 3, 2)])
def test_phases_compute_the_op(stride, dilation, taps):
    op = build_op("t", CONV.format(s=stride, d=dilation), dict(n=2, k=3, c=2, p=5, q=4, r=taps, s=taps))
    parts = phases(root(op))
    _check(op, parts)
    for p in parts:  # every part is stride-1, dilation-1
        assert all(w.stride == 1 and w.dilation == 1 for w in p.op.reads[0].windows)


@pytest.mark.parametrize("groups", [{"r": 3}, {"r": 1}, {"r": 2, "s": 4}])
def test_filter_split_computes_the_op(groups):
    op = build_op("t", CONV.format(s=2, d=1), dict(n=1, k=2, c=3, p=4, q=4, r=7, s=7))
    _check(op, filter_split(root(op), groups))


@pytest.mark.parametrize("statement,dims", [
    ("O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]", dict(n=1, k=3, c=2, h=4, w=3, r=3, s=3)),
    ("O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]", dict(n=2, k=2, c=3, h=3, w=3, r=2, s=2)),
    ("O[k,3*h+2*r,w+s] += I[c,h,w] * W[c,k,r,s]", dict(k=2, c=2, h=3, w=4, r=3, s=2)),
])
def test_scatter_taps_compute_the_transposed_conv(statement, dims):
    op = build_op("t", statement, dims)
    taps = tuple(d for d in ("r", "s"))
    parts = [q for p in scatter_taps(root(op), ("r",)) for q in scatter_taps(p, ("s",))]
    _check(op, parts)
    assert len(parts) == dims["r"] * dims["s"] and all(conform(p.op) is not None for p in parts), taps


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_axis_split_computes_the_conv3d(axis):
    op = build_op("t", "O[n,k,d,p,q] += I[n,c,2*d+t,p+r,q+2*s] * W[k,c,t,r,s]",
                  dict(n=2, k=2, c=2, d=3, p=3, q=3, t=2, r=3, s=2))
    parts = axis_split(root(op), axis)
    _check(op, parts)
    assert all(len(p.op.reads[0].windows) <= 2 for p in parts)


def test_patchify_is_one_exact_gemm():
    op = build_op("t", "O[n,k,p,q] += I[n,c,4*p+r,4*q+s] * W[k,c,r,s]", dict(n=2, k=3, c=2, p=3, q=2, r=4, s=4))
    part = as_gemm(op)
    _check(op, [part])
    assert conform(part.op).layer_type == "GEMM" and part.op.macs == op.macs
    assert as_gemm(build_op("t", CONV.format(s=2, d=1), dict(n=1, k=2, c=2, p=3, q=3, r=3, s=3))) is None


def test_a_wrong_decomposition_is_refused():
    op = build_op("t", CONV.format(s=2, d=1), dict(n=1, k=2, c=2, p=3, q=3, r=3, s=3))
    parts = phases(root(op))
    with pytest.raises(AssertionError, match="MACs"):
        assert_exact(op, tuple(parts[:-1]))
    rows = filter_split(root(op), {"r": 1})          # three one-row parts of equal MACs
    with pytest.raises(AssertionError, match="repeats"):
        assert_exact(op, (rows[0], rows[1], rows[0]))


# Every kind through the whole MDC pipeline: (name, statement, dims, dtype, plan expected to win or
# None when the cost model may pick either of several valid plans).
KINDS = [
    ("stem7x7_fp32", CONV.format(s=2, d=1), dict(n=1, k=8, c=3, p=14, q=14, r=7, s=7), "fp32", None),
    ("dw_s2", "O[n,c,p,q] += I[n,c,2*p+r,2*q+s] * W[c,r,s]", dict(n=1, c=32, p=14, q=14, r=3, s=3), "int8", None),
    ("dilated", CONV.format(s=1, d=2), dict(n=1, k=16, c=8, p=8, q=8, r=3, s=3), "int8", "phases"),
    ("convt", "O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]", dict(n=1, k=8, c=16, h=7, w=7, r=3, s=3),
     "int8", "taps"),
    ("conv3d", "O[n,k,d,p,q] += I[n,c,d+t,p+r,q+s] * W[k,c,t,r,s]",
     dict(n=1, k=8, c=4, d=4, p=6, q=6, t=3, r=3, s=3), "int8", None),
    ("patchify", "O[n,k,p,q] += I[n,c,4*p+r,4*q+s] * W[k,c,r,s]", dict(n=1, k=32, c=3, p=7, q=7, r=4, s=4),
     "int8", None),
]


@pytest.fixture(scope="module")
def compiled():
    cache = {}

    def get(name, target):
        if (name, target) not in cache:
            _, statement, dims, dtype, _ = next(k for k in KINDS if k[0] == name)
            op = build_op(name, statement, dims, dtype)
            cache[name, target] = (op, run_pipeline(Path(f"{name}.yaml"), load_target(target), op=op))
        return cache[name, target]
    return get


@pytest.mark.parametrize("target", ["edge", "cloud"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k[0])
def test_every_kind_compiles_exactly(compiled, kind, target):
    name, _, _, _, expected = kind
    op, ctx = compiled(name, target)
    record = ctx.decomposition
    assert record is not None
    if expected:
        assert record.chosen.kind == expected
    parts = record.chosen.parts
    assert sum(p.op.macs for p in parts) == op.macs
    low = ctx.lowered
    assert low.metrics["macs"] == op.macs
    mdc, hw = parse_mdc(low.mapping_text, f"{name}.m"), parse_hw(low.hw_text, "hw.m")
    assert is_clean(check_file(mdc, hw))
    per_layer = evaluate_file(mdc, hw)
    assert sum(m.macs for m in per_layer) * low.metrics.get("chiplets_used", 1) == op.macs
    if len(parts) > 1:
        assert len(mdc.layers) >= len(parts) and low.metrics["parts"] == len(parts)
        assert low.metrics["runtime_cycles"] >= sum(m.runtime_cycles for m in per_layer)
    assert low.metrics["runtime_cycles"] >= low.bounds["compute_cycles"]


@pytest.mark.parametrize("kind", KINDS + [
    ("skewed", "O[i,i+j] += A[i+j,k] * B[k,i]", dict(i=5, j=4, k=3), "int8", None),
    ("stride3", CONV.format(s=3, d=2), dict(n=1, k=2, c=2, p=5, q=4, r=3, s=2), "int8", None),
], ids=lambda k: k[0])
@pytest.mark.parametrize("target", ["edge", "cloud"])
def test_image_counts_by_enumeration_equal_isl(kind, target):
    """Touched elements and partial-sum re-reads, counted per axis and on an output bitmap, equal
    ISL's counts on every plan (and fall back to ISL where an index shares a dim across axes)."""
    name, statement, dims, dtype, _ = kind
    op = build_op(name, statement, dims, dtype)
    try:
        tried = plans(op, conform(op), load_target(target))
    except ConformanceError:    # no MDC form (the skewed access): the op itself only
        tried = []
    for plan in [Plan("as-written", (root(op),))] + tried:
        bitmap = parts._rereads_by_bitmap(op, plan)     # (a GEMM's flattened dims are quasi-affine)
        assert (bitmap is None) == (plan.kind == "gemm" or name == "skewed"), plan.kind
        assert bitmap is None or bitmap == parts._rereads_by_isl(op, plan), plan.kind
        for part in plan.parts:
            assert parts.touched_elements(part.op) == [
                int(part.op.domain.apply(t.access).count_val().to_python()) for t in part.op.tensors]


def test_partial_sums_keep_their_room_in_l2():
    """Four stride-1 phases add into one output that fits L2, but compiled with all of L2 their
    tiles leave no room for it, so the partial sums go to DRAM and back; compiled again with the
    output's bytes kept free, they stay in L2 and the plan is faster."""
    target = parse_target(SMALL_TARGET, "small.yaml")
    op = build_op("dw", "O[n,c,p,q] += I[n,c,2*p+r,2*q+s] * W[c,r,s]", dict(n=1, c=16, p=14, q=14, r=3, s=3),
                  "int8")
    ctx = run_pipeline(Path("dw.yaml"), target, op=op)
    plan, cost = next((p, c) for p, c in ctx.decomposition.tried if p.kind == "phases")
    assert ctx.decomposition.chosen is plan and ctx.lowered.metrics["runtime_cycles"] == cost.runtime_cycles
    written = 16 * 14 * 14      # int8 output elements, one byte each
    assert cost.partial_sums_in_l2 and cost.l2_kept_free == written
    assert f"{written:,} bytes of L2 kept free" in ctx.decomposition.pretty()
    assert ctx.lowered.metrics["l2_elements"] <= target.l2_bytes - written
    alone = plan_cost(op, [compile_part(ctx, p.op) for p in plan.parts], plan_rereads(op, plan),
                      cost.lower_bound_cycles, ctx)
    assert not alone.partial_sums_in_l2 and alone.partial_sum_cycles > 0
    assert cost.runtime_cycles < alone.runtime_cycles
    # the file is for the target as it is: the parts' smaller L2 stays in their search
    assert f"l2_size_cstr: {target.l2_bytes}" in ctx.lowered.hw_text


def test_room_first_skips_all_of_l2_only_within_the_gap(monkeypatch):
    """A stride-2 conv whose output takes nearly half of edge's L2: its phases are compiled with
    that room kept free first, and since they then run within GAP of the plan's lower bound,
    not again with all of L2; compiling both (no gap) finds nothing better by more than the gap."""
    op = build_op("s2", CONV.format(s=2, d=1), dict(n=1, k=256, c=128, p=14, q=14, r=3, s=3), "int8")
    edge = load_target("edge")

    def phases_cost():
        ctx = run_pipeline(Path("s2.yaml"), edge, op=op)
        told.append(ctx.decomposition.pretty())
        return next(c for p, c in ctx.decomposition.tried if p.kind == "phases")
    gap, told = decompose.GAP, []
    quick = phases_cost()
    assert quick.all_l2_skipped and quick.l2_kept_free == 256 * 14 * 14
    assert "so not compiled with all of L2" in told[0]
    assert quick.runtime_cycles <= (1 + gap) * quick.lower_bound_cycles
    monkeypatch.setattr(decompose, "GAP", -1.0)
    both = phases_cost()
    assert not both.all_l2_skipped
    assert quick.runtime_cycles <= (1 + gap) * both.runtime_cycles


def test_as_written_is_not_compiled_when_a_plan_runs_within_the_gap_of_its_bound(monkeypatch):
    """A stride-2 3x3 conv: as written and as phases it has the same lower bound (MACs over the
    PEs); the phases go first and run within GAP of it, so the op as written is not compiled.
    Compiling everything (no gap) finds it slower, and the same plan wins (within the gap)."""
    op = build_op("s2", CONV.format(s=2, d=1), dict(n=1, k=256, c=128, p=14, q=14, r=3, s=3), "int8")
    edge = load_target("edge")

    def tried():
        ctx = run_pipeline(Path("s2.yaml"), edge, op=op)
        return ctx.decomposition.chosen.kind, {p.kind: c for p, c in ctx.decomposition.tried}
    gap = decompose.GAP
    chosen, quick = tried()
    assert chosen == "phases" and quick["as-written"].skipped and not quick["phases"].skipped
    assert quick["as-written"].lower_bound_cycles == quick["phases"].lower_bound_cycles
    assert quick["phases"].runtime_cycles <= (1 + gap) * quick["as-written"].lower_bound_cycles
    assert quick["as-written"].report()["skipped"].startswith(f"a plan already compiled runs within {100 * gap:g} %")
    monkeypatch.setattr(decompose, "GAP", -1.0)
    chosen_all, everything = tried()
    assert not everything["as-written"].skipped
    assert everything["as-written"].runtime_cycles > everything["phases"].runtime_cycles
    assert chosen_all == chosen and quick["phases"].runtime_cycles <= (1 + gap) * everything["phases"].runtime_cycles


def test_stem_plans_on_edge_are_all_exact():
    op = build_op("stem", CONV.format(s=2, d=1), dict(n=1, k=8, c=3, p=14, q=14, r=7, s=7), "fp32")
    edge = load_target("edge")
    assert conform(op) is not None
    tried = plans(op, conform(op), edge)
    assert {p.kind for p in tried} == {"phases", "taps"}        # the whole 7x7 filter does not fit
    for plan in tried:
        _check(op, plan.parts)


def test_mapc_check_passes_the_written_file(write, run_cli, tmp_path):
    """Through the CLI: the report lists the parts, and ``mapc check`` accepts the ``.m`` they make."""
    op = write("dil.yaml", "name: dil\nstatement: O[n,k,p,q] += I[n,c,p+2*r,q+2*s] * W[k,c,r,s]\n"
                           "dims: {n: 1, k: 16, c: 8, p: 8, q: 8, r: 3, s: 3}\n")
    code, _, err = run_cli("compile", op, "--target", "edge", "-o", tmp_path / "o")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "dil.report.json").read_text())
    parts = report["decomposition"]["parts"]
    assert report["decomposition"]["plan"] == "phases" and sum(p["macs"] for p in parts) == report["macs"]
    assert parts[3]["original_elements"]["O"] == "O[n,k,2*p+1,2*q+1]"
    code, out, err = run_cli("check", tmp_path / "o" / "dil.m", "--target", "edge")
    assert code == 0 and out.strip().endswith("ok"), out + err


def test_presets_write_the_documented_statements(write):
    from compiler.frontend import load_op
    up = load_op(write("up.yaml", "name: up\nkind: conv_transpose\n"
                                  "params: {K: 4, C: 8, H: 5, W: 6, R: 3, S: 3, stride: 2}\n"))
    assert up.statement == "O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]"
    assert up.output.extents == (1, 4, 2 * 4 + 3, 2 * 5 + 3) and up.macs == 4 * 8 * 5 * 6 * 9
    v = load_op(write("v.yaml", "name: v\nkind: conv3d\n"
                                "params: {K: 4, C: 2, D: 3, P: 5, Q: 5, T: 3, R: 3, S: 3, stride: 2}\n"))
    assert v.statement == "O[n,k,d,p,q] += I[n,c,2*d+t,2*p+r,2*q+s] * W[k,c,t,r,s]"
    assert v.tensor("I").extents == (1, 2, 7, 11, 11)
    assert [p.kind for p in plans(v, conform(v), load_target("edge"))] == ["split-t", "split-r", "split-s"]

"""The off-chip search is exact: brute force over every tile size (divisors or not) and every loop
order (and every chiplet split) finds the same optimum objective as the pass, on small ops."""
from __future__ import annotations

import itertools
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import offchip_model as om
from compiler.context import Context, Options, Stage
from compiler.frontend import build_op
from passes import offchip
from targets import Chiplets, load_target

CONV = "O[n,k,p,q] += I[n,c,{s}*p+{d}*r,{s}*q+{d}*s] * W[k,c,r,s]"
GEMM = "O[m,n] += I[m,k] * W[k,n]"

# (name, statement, dims, tensor dtypes); extents kept tiny so brute force stays fast.
OPS = [
    ("gemm_small", GEMM, {"m": 4, "n": 6, "k": 5}, None),
    ("gemm_primes", GEMM, {"m": 7, "n": 5, "k": 3}, None),
    ("gemm_prime11", GEMM, {"m": 11, "n": 2, "k": 3}, None),
    ("gemv", GEMM, {"m": 1, "n": 13, "k": 6}, None),
    ("gemm_int32_out", GEMM, {"m": 6, "n": 4, "k": 5}, {"O": "int32"}),
    ("gemm_fp16_weight", GEMM, {"m": 5, "n": 6, "k": 4}, {"W": "fp16"}),
    ("conv3x3", CONV.format(s=1, d=1), {"n": 1, "k": 3, "c": 2, "p": 4, "q": 1, "r": 3, "s": 1}, None),
    ("conv3x3_2d", CONV.format(s=1, d=1), {"n": 1, "k": 2, "c": 1, "p": 3, "q": 2, "r": 2, "s": 2}, None),
    ("conv_prime", CONV.format(s=1, d=1), {"n": 1, "k": 5, "c": 1, "p": 7, "q": 1, "r": 3, "s": 1}, None),
    ("conv_stride2", CONV.format(s=2, d=1), {"n": 1, "k": 2, "c": 2, "p": 5, "q": 1, "r": 3, "s": 1}, None),
    ("conv_stride3", CONV.format(s=3, d=1), {"n": 1, "k": 3, "c": 1, "p": 4, "q": 2, "r": 2, "s": 1}, None),
    ("conv_dilated", CONV.format(s=1, d=2), {"n": 1, "k": 2, "c": 2, "p": 5, "q": 1, "r": 3, "s": 1}, None),
    ("conv_batch", CONV.format(s=1, d=1), {"n": 2, "k": 2, "c": 3, "p": 3, "q": 1, "r": 2, "s": 1}, None),
    ("conv1x1_stride2", "O[k,p,q] += I[c,2*p,2*q] * W[k,c]", {"k": 3, "c": 2, "p": 5, "q": 3}, None),
    ("dwconv", "O[c,p,q] += I[c,p+r,q+s] * W[c,r,s]", {"c": 3, "p": 5, "q": 2, "r": 3, "s": 2}, None),
    ("dwconv_stride2", "O[c,p,q] += I[c,2*p+r,2*q+s] * W[c,r,s]", {"c": 2, "p": 4, "q": 3, "r": 3, "s": 1}, None),
    ("gconv", "O[g,k,p] += I[g,c,p+r] * W[g,k,c,r]", {"g": 2, "k": 2, "c": 3, "p": 4, "r": 2}, None),
    ("bmm", "O[b,m,n] += I[b,m,k] * W[b,k,n]", {"b": 3, "m": 4, "n": 2, "k": 5}, None),
    ("attn_score", "O[h,i,j] += Q[h,i,d] * KT[h,d,j]", {"h": 2, "i": 5, "j": 3, "d": 4}, None),
    ("fc", "O[n,k] += I[n,c] * W[c,k]", {"n": 3, "k": 9, "c": 7}, None),
    ("elementwise", "O[i,j] = A[i,j] * B[i,j]", {"i": 6, "j": 5}, None),
    ("conv1d_dil_stride", "O[k,p] += I[c,2*p+3*r] * W[k,c,r]", {"k": 3, "c": 2, "p": 5, "r": 3}, None),
]


def _op(name, statement, dims, dtypes):
    return build_op(name, statement, dims, tensor_dtypes=dtypes)


def _capacities(model: om.TrafficModel, extents: dict) -> list[int]:
    """A tight, a middling and a roomy L2 (bytes) for one op: the constraint binds differently."""
    whole = sum(t.element_bytes * om.footprint(t, extents) for t in model.tensors)
    unit = sum(t.element_bytes for t in model.tensors)
    return sorted({2 * unit + 3, 2 * max(unit + 1, whole // 4), 2 * max(unit + 1, whole // 2) + 1, 2 * whole})


def _brute(model, extents, capacity, chiplets=1, weight=Fraction(1), all_orders=False) -> int:
    """Minimum objective over every split, every tile vector (1..E per dim) and every order (of the
    dims of extent > 1, the others placed outermost, unless ``all_orders``)."""
    dims = model.dims
    ones = tuple(d for d in dims if extents[d] == 1)
    perms = [ones + p for p in itertools.permutations([d for d in dims if d not in ones])]
    if all_orders:
        perms = list(itertools.permutations(dims))
    best = None
    if chiplets > 1:
        splits = []
        for k in (1, 2):
            for ds in itertools.combinations(dims, k):
                for fs in itertools.product(range(2, chiplets + 1), repeat=k):
                    if math.prod(fs) <= chiplets and all(extents[d] % f == 0 for d, f in zip(ds, fs)):
                        splits.append(om.Split(tuple(zip(ds, fs))))
        most = max((s.chiplets() for s in splits), default=1)
        splits = [s for s in splits if s.chiplets() == most] or [om.Split()]
    else:
        splits = [om.Split()]
    for split in splits:
        part = split.part_extents(extents)
        for tiles in itertools.product(*[range(1, part[d] + 1) for d in dims]):
            t = dict(zip(dims, tiles))
            if 2 * sum(x.element_bytes * om.footprint(x, t) for x in model.tensors) > capacity:
                continue
            for order in perms:
                traffic, link = om.dram_traffic(model, extents, t, order, split)
                obj = weight.denominator * sum(x.element_bytes * traffic[x.name] for x in model.tensors) \
                    + weight.numerator * model.output.element_bytes * link
                best = obj if best is None else min(best, obj)
    return best


def _run(op, target) -> Context:
    # The pass reads only ctx.op (some ops here, e.g. the elementwise one, are not MDC layers).
    ctx = Context(op_path=Path("x.yaml"), target=target, options=Options(time_limit_s=60.0), op=op,
                  stage=Stage.CONFORMING)
    return offchip.run(ctx)


def _objective(sched, weight=Fraction(1)) -> int:
    """The pass's objective recomputed from its schedule (the output is the first tensor)."""
    out = next(iter(sched.footprint))
    return weight.denominator * sum(sched.element_bytes[n] * v for n, v in sched.traffic.items()) \
        + weight.numerator * sched.element_bytes[out] * sched.link_traffic_elements


@pytest.mark.parametrize("spec", OPS, ids=[o[0] for o in OPS])
def test_matches_brute_force(spec):
    op = _op(*spec)
    model, extents = om.model_of(op), {d.name: d.extent for d in op.dims}
    if sum(1 for e in extents.values() if e > 1) > 6:
        pytest.skip("too many dims for a brute force")
    edge = load_target("edge")
    for cap in _capacities(model, extents):
        sched = _run(op, replace(edge, l2_bytes=cap)).offchip
        assert sched.solver_status == "OPTIMAL"
        assert _objective(sched) == _brute(model, extents, cap), f"L2 {cap} B"
        assert sched.l2_bytes_used <= cap
        for name, moved in sched.traffic.items():
            assert moved >= sched.compulsory[name]


@pytest.mark.parametrize("spec", [o for o in OPS if o[0] in
                                  ("gemm_small", "conv3x3", "bmm", "conv_stride2", "fc", "gemm_int32_out")],
                         ids=lambda o: o[0])
def test_chiplet_split_matches_brute_force(spec):
    op = _op(*spec)
    model, extents = om.model_of(op), {d.name: d.extent for d in op.dims}
    chip = load_target("chiplet4")
    weight = Fraction(str(chip.offchip_bw)) / Fraction(str(chip.chiplets.link_bw_elems_per_cycle))
    for cap in _capacities(model, extents)[:3]:
        sched = _run(op, replace(chip, l2_bytes=cap)).offchip
        assert _objective(sched, weight) == _brute(model, extents, cap, chiplets=4, weight=weight)
        assert sched.dram_traffic_elements >= sched.compulsory_elements


def test_extent_one_dims_do_not_change_the_optimum():
    """Orders over all seven conv dims (n = q = s = 1 included) change nothing: such loops are
    not loops, which is why the brute force above permutes only the dims of extent > 1."""
    op = _op("c", CONV.format(s=1, d=1), {"n": 1, "k": 2, "c": 2, "p": 3, "q": 1, "r": 2, "s": 1}, None)
    model, extents = om.model_of(op), {d.name: d.extent for d in op.dims}
    for cap in _capacities(model, extents)[:2]:
        sched = _run(op, replace(load_target("edge"), l2_bytes=cap)).offchip
        assert _objective(sched) == _brute(model, extents, cap, all_orders=True)


def test_candidate_tiles_cover_every_trip_count():
    for e in (1, 2, 7, 10, 12, 97, 224):
        cand = om.candidate_tiles(e)
        assert {int(om.trips(e, t)) for t in cand} == {int(om.trips(e, t)) for t in range(1, e + 1)}
        for t in range(1, e + 1):  # the candidate with the same trip count is never larger
            n = om.trips(e, t)
            assert min(c for c in cand if om.trips(e, c) == n) <= t


def test_deterministic_and_chiplet_split_uses_all_chiplets():
    op = _op("g", GEMM, {"m": 8, "n": 12, "k": 6}, None)
    chip = replace(load_target("chiplet4"), l2_bytes=200)
    a, b = _run(op, chip).offchip, _run(op, chip).offchip
    assert replace(a, seconds=0) == replace(b, seconds=0)
    assert math.prod(f for _, f in a.chiplet_split) == 4


def test_split_uses_as_many_chiplets_as_divisors_allow():
    op = _op("g", GEMM, {"m": 7, "n": 5, "k": 3}, None)
    target = replace(load_target("chiplet4"), chiplets=Chiplets(4, (2, 2), 32.0), l2_bytes=100)
    assert _run(op, target).offchip.chiplet_split == (("k", 3),)  # 3 | 3; 7 and 5 cannot be cut


def test_time_limit_keeps_the_best_point_found_as_feasible():
    op = _op("c", CONV.format(s=1, d=1), {"n": 1, "k": 16, "c": 16, "p": 8, "q": 8, "r": 3, "s": 3}, None)
    chip = replace(load_target("chiplet4"), l2_bytes=600)      # tight: several splits stay in play
    ctx = Context(op_path=Path("x.yaml"), target=chip, options=Options(time_limit_s=0.0), op=op,
                  stage=Stage.CONFORMING)
    rushed, full = offchip.run(ctx).offchip, _run(op, chip).offchip
    assert (rushed.solver_status, full.solver_status) == ("FEASIBLE", "OPTIMAL")
    assert rushed.l2_bytes_used <= 600 and rushed.dram_traffic_elements >= full.dram_traffic_elements


@settings(max_examples=30, deadline=None, derandomize=True)
@given(k=st.integers(1, 5), c=st.integers(1, 4), p=st.integers(1, 7), r=st.integers(1, 3),
       stride=st.integers(1, 3), dilation=st.integers(1, 2), cap_frac=st.floats(0.0, 1.0))
def test_random_conv1d_matches_brute_force(k, c, p, r, stride, dilation, cap_frac):
    op = _op("h", f"O[k,p] += I[c,{stride}*p+{dilation}*r] * W[k,c,r]", {"k": k, "c": c, "p": p, "r": r}, None)
    model, extents = om.model_of(op), {d.name: d.extent for d in op.dims}
    unit = 2 * sum(t.element_bytes for t in model.tensors)
    whole = 2 * sum(t.element_bytes * om.footprint(t, extents) for t in model.tensors)
    cap = unit + int(cap_frac * (whole - unit))
    sched = _run(op, replace(load_target("edge"), l2_bytes=cap)).offchip
    assert _objective(sched) == _brute(model, extents, cap)


def test_retile_recomputes_traffic_and_keeps_the_limits():
    """``retile`` (the top-steps pass's other L2 tiles) gives the plan's own tiles back unchanged,
    recomputes traffic and footprints for others in the same order, and refuses tiles that
    overflow L2 or cost more than the search allowed (no slack here: only the optimum's cost)."""
    name, statement, dims, dtypes = OPS[0]
    target = replace(load_target("edge"), l2_bytes=200)
    ctx = _run(_op(name, statement, dims, dtypes), target)
    plan = ctx.offchip
    assert plan.objective_limit == _objective(plan)
    assert offchip.retile(ctx, plan, dict(plan.l2_tile)) == plan
    model = om.model_of(ctx.op)
    taken = set()
    for d in plan.l2_tile:
        for v in range(1, dims[d] + 1):
            tiles = {**plan.l2_tile, d: v}
            got = offchip.retile(ctx, plan, tiles)
            traffic, _ = om.dram_traffic(model, dims, tiles, plan.order)
            fits = 2 * sum(t.element_bytes * om.footprint(t, tiles) for t in model.tensors) <= 200
            cost = sum(plan.element_bytes[n] * x for n, x in traffic.items())
            assert (got is not None) == (fits and cost <= plan.objective_limit), (d, v)
            taken.add(got is not None and got != plan)
            if got is not None:
                assert got.traffic == traffic and got.l2_tile == tiles and got.order == plan.order
                assert got.trips[d] == -(-dims[d] // v)
    assert taken == {True, False}        # some other tiles pass, some do not

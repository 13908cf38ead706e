"""Schedules executed by the interpreter (compiler.gemm.interp): random shapes, tilings, dataflows.

Hypothesis builds schedules the way the gemm-schedule pass does (any L2 tile, DRAM order, chiplet
split, array tiling and L2 order), including prime and non-dividing extents; each must compute
exactly A @ B, and the traffic the interpreter counts must equal what the model claims.
"""
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from compiler.frontend import build_op
from compiler.gemm.interp import verify
from compiler.gemm.model import evaluate
from compiler.gemm.schedule import Axis, Schedule, parse_schedule
from passes.gemm_schedule import DATAFLOWS, L2Plan, build_schedule, with_claims
from targets import Chiplets, Target


def make_target(rows: int, cols: int, chiplets: int, dataflow: str) -> Target:
    mesh = {1: None, 2: (1, 2), 4: (2, 2)}[chiplets]
    return Target(name="t", description="", backends=("gemm",), pe_rows=rows, pe_cols=cols, macs_per_pe=1,
                  l1_bytes=8, l2_bytes=1 << 20, noc_bw=7.0, offchip_bw=3.0, systolic_dataflow=dataflow,
                  chiplets=Chiplets(chiplets, mesh, 4.0) if mesh else None)


@st.composite
def schedules(draw) -> tuple[Schedule, Target]:
    ext = {"m": draw(st.integers(1, 13)), "n": draw(st.integers(1, 13)), "k": draw(st.integers(1, 13))}
    if draw(st.booleans()):
        ext = {"b": draw(st.integers(1, 3)), **ext}
    dataflow = draw(st.sampled_from(sorted(DATAFLOWS)))
    chiplets = draw(st.sampled_from([1, 1, 2, 4]))
    target = make_target(draw(st.integers(1, 5)), draw(st.integers(1, 5)), chiplets, dataflow)
    split = ()
    share = dict(ext)
    if chiplets > 1:
        dims = draw(st.sampled_from([("m",), ("n",), ("m", "n")] if chiplets == 4 else [("m",), ("n",)]))
        parts = {1: [chiplets], 2: [2, 2]}[len(dims)]
        axes = (Axis.COLS,) if len(dims) == 1 else (Axis.ROWS, Axis.COLS)
        split = tuple((d, -(-ext[d] // p), a) for d, p, a in zip(dims, parts, axes))
        for d, step, _ in split:
            share[d] = step
    tile = {d: draw(st.integers(1, share[d])) for d in ext}
    order = tuple(draw(st.permutations(list(ext))))
    plan = L2Plan(split, tuple(tile.items()), order, "test")
    r_dim, c_dim, s_dim = DATAFLOWS[dataflow]
    rows = draw(st.integers(1, min(target.pe_rows, tile[r_dim])))
    cols = draw(st.integers(1, min(target.pe_cols, tile[c_dim])))
    stream = draw(st.integers(1, tile[s_dim]))
    l2_order = tuple(draw(st.permutations([d for d in (r_dim, c_dim, s_dim)])))
    if "b" in ext:
        l2_order = ("b",) + l2_order
    batch = "b," if "b" in ext else ""
    op = build_op("g", f"O[{batch}m,n] += I[{batch}m,k] * W[{batch}k,n]", ext)
    s = build_schedule(op, target, dataflow, plan, rows, cols, stream, l2_order, None)
    return with_claims(s, evaluate(s, target)), target


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_random_schedules_compute_the_product_and_match_the_model(case):
    s, _ = case
    res = verify(s, seed=1, granularity="element")
    assert res.correct
    assert res.mismatches == []
    assert res.overflows == ()


@settings(max_examples=40, deadline=None)
@given(schedules())
def test_tile_granularity_counts_the_same(case):
    s, _ = case
    assert verify(s, granularity="tile").counted == verify(s, granularity="element").counted


@settings(max_examples=30, deadline=None)
@given(schedules())
def test_yaml_round_trip(case):
    s, _ = case
    assert parse_schedule(s.to_yaml()).to_yaml() == s.to_yaml()


def _fixed() -> Schedule:
    target = make_target(4, 4, 1, "weight_stationary")
    op = build_op("g", "O[m,n] += I[m,k] * W[k,n]", {"m": 7, "n": 5, "k": 11})
    plan = L2Plan((), (("m", 4), ("n", 5), ("k", 6)), ("n", "k", "m"), "test")
    s = build_schedule(op, target, "weight_stationary", plan, 4, 4, 4, ("n", "k", "m"), None)
    return with_claims(s, evaluate(s, target))


def test_wrong_claim_is_caught():
    s = _fixed()
    claims = s.claimed()
    claims["dram_to_l2"]["A"] += 1
    bad = dataclasses.replace(s, traffic=tuple((k, tuple(v.items())) for k, v in claims.items()))
    res = verify(bad)
    assert res.correct and not res.ok
    assert res.mismatches == [f"dram_to_l2.A: claimed {claims['dram_to_l2']['A']}, "
                              f"counted {claims['dram_to_l2']['A'] - 1}"]


def test_small_buffer_is_caught():
    s = _fixed()
    bufs = tuple(dataclasses.replace(b, elements=3) if b.level.value == "array" else b for b in s.buffers)
    res = verify(dataclasses.replace(s, buffers=bufs))
    assert res.correct and res.overflows and not res.ok


def test_malformed_schedule_lists_every_problem():
    text = _fixed().to_yaml().replace("{dim: k, step: 1, kind: spatial, level: array, axis: rows}",
                                      "{dim: k, step: 1, kind: temporal, level: array}")
    text = text.replace("step: 6, kind: temporal, level: dram", "step: 0, kind: temporal, level: dram")
    with pytest.raises(Exception) as err:
        parse_schedule(text, "x.yaml")
    msg = str(err.value)
    assert msg.startswith("x.yaml: ")
    assert "step must be a positive integer" in msg and "array loops must be spatial" in msg

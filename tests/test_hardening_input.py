"""Bad input at the edges of the supported range: huge extents, odd targets, mistyped fields, long
index expressions, oversized MDC numbers and schedules, time limits, one-MAC ops.  Each one ends in
exit 0 or one clean line with exit 2, and the analyses it reaches are closed-form."""
from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_gemm_interp import schedules

from compiler.mdc.checker import check_layer, coverage
from compiler.errors import MapcError
from compiler.gemm.interp import run_schedule, random_operands, work
from compiler.mdc.hw import HwConfig
from compiler.mdc.syntax import cluster, make_layer, spatial, temporal
from compiler.offchip_model import candidate_tiles, trips, window_span_distinct
from compiler.mdc.onchip_space import divisors, trip_tiles

GEMM = "statement: O[m,n] += I[m,k] * W[k,n]\n"


def one_clean_line(code: int, err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mapc: error: "), (code, err)
    assert "Traceback" not in err and "internal error" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- extents (item 8)


@pytest.mark.parametrize("dims, words", [
    ("{m: 1000000000000000000000000000000, n: 4, k: 4}", ["dims.m", "2,147,483,647"]),
    ("{m: 1099511627776, n: 4, k: 4}", ["dims.m", "2,147,483,647"]),
    ("{m: 9223372036854775808, n: 4, k: 4}", ["dims.m", "2,147,483,647"]),
    ("{m: 2097152, n: 2097152, k: 2097152}", ["MACs", "2^53"]),
])
def test_extents_beyond_the_range_are_refused(dims, words, write, run_cli, tmp_path):
    code, _, err = run_cli("compile", write("big.yaml", GEMM + f"dims: {dims}\n"), "--target", "edge",
                           "-o", tmp_path / "out")
    one_clean_line(code, err, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, words", [
    ("kind: gemm\nparams: {M: 1e20, N: 4, K: 4}\n", ["params.M"]),
    ("kind: gemm\nparams: {M: 100000000000000000000, N: 4, K: 4}\n", ["params.M", "2,147,483,647"]),
    ("kind: conv2d\nparams: {K: 64, C: 64, P: 8, Q: 8, R: 3, S: 3, stride: 2147483647}\n",
     ["tensor I", "spans"]),
])
def test_preset_values_beyond_the_range_are_refused(text, words, write, run_cli, tmp_path):
    code, _, err = run_cli("compile", write("p.yaml", text), "--target", "edge", "-o", tmp_path / "out")
    one_clean_line(code, err, *words)


def test_im2col_beyond_the_range_names_the_gemm_form(write, run_cli, tmp_path):
    text = "kind: conv2d\nparams: {K: 64, C: 64, P: 100000, Q: 100000, R: 3, S: 3}\n"
    code, _, err = run_cli("compile", write("c.yaml", text), "--target", "systolic", "-o", tmp_path / "out")
    one_clean_line(code, err, "GEMM form", "m = n*p*q")


def test_largest_extent_compiles_in_closed_form(write, run_cli, tmp_path):
    """M = 2^31 - 1: the tile candidates of the off-chip search and the MAC-coverage check no
    longer enumerate the extent (this needed a 16 GiB array before)."""
    out = tmp_path / "out"
    code, _, err = run_cli("compile", write("g.yaml", GEMM + "dims: {m: 2147483647, n: 4, k: 4}\n"),
                           "--target", "edge", "-o", out, "--no-timings")
    assert code == 0, err
    report = json.loads((out / "g.report.json").read_text())
    assert report["macs"] == 2147483647 * 16
    assert report["offchip"]["compulsory_elements"]["I"] == 2147483647 * 4


def test_candidate_tiles_and_compulsory_traffic_match_enumeration():
    for e in list(range(1, 400)) + [4096, 10007, 65536]:
        assert np.array_equal(candidate_tiles(e), np.unique(trips(e, np.arange(1, e + 1))))
    for s, d, a, b in itertools.product(range(1, 5), range(1, 5), range(1, 9), range(1, 6)):
        assert window_span_distinct(s, d, a, b) == len({s * o + d * f for o in range(a) for f in range(b)})


def _random_layer(rng: random.Random):
    dims = {"K": rng.randint(1, 9), "C": rng.randint(1, 7), "R": rng.randint(1, 4), "S": rng.randint(1, 3),
            "Y": rng.randint(4, 14), "X": rng.randint(4, 12)}
    dirs = []
    for _ in range(rng.randint(1, 9)):
        kind, dim = rng.choice("tsc"), rng.choice(["K", "C", "R", "S", "Y", "X"])
        a = rng.randint(1, 8)
        b = rng.choice([a, a, a + rng.randint(0, 3), rng.randint(1, 8)])
        if kind == "c":
            dirs.append(cluster(rng.randint(1, 6)))
        elif dim in "RS" and rng.random() < 0.7:
            dirs.append((temporal if kind == "t" else spatial)(dims[dim], dims[dim], dim))
        else:
            dirs.append((temporal if kind == "t" else spatial)(a, b, dim))
    stride = {"X": rng.randint(1, 3), "Y": rng.randint(1, 3)}
    return make_layer("L", rng.choice(["CONV", "CONV", "DSCONV"]), dims, dirs, stride=stride)


def test_coverage_by_tile_shape_equals_the_walk():
    """The closed-form count (disjoint tiles) and the walk agree on random strided layers."""
    rng, compared = random.Random(7), 0
    for _ in range(2500):
        try:
            layer = _random_layer(rng)
            walked = coverage(layer, 16, closed_form=False)
        except (MapcError, KeyError, ZeroDivisionError, ValueError):
            continue
        assert coverage(layer, 16) == walked
        compared += 1
    assert compared > 300


def test_coverage_of_a_huge_layer_is_instant_or_refused():
    big = {"M": 10 ** 9, "N": 64, "K": 64}
    exact = make_layer("G", "GEMM", big, [temporal(1, 1, "M"), spatial(1, 1, "N"), temporal(64, 64, "K")])
    cov = coverage(exact, 256)
    assert cov.exact and cov.visited == 64 * 64 * 10 ** 9
    gappy = make_layer("G", "GEMM", big, [temporal(1, 2, "M"), spatial(1, 1, "N"), temporal(64, 64, "K")])
    cov = coverage(gappy, 256)
    assert cov.missing == 64 * 64 * 10 ** 9 // 2 and cov.repeated == 0
    overlapping = make_layer("G", "GEMM", big, [temporal(2, 1, "M"), spatial(1, 1, "N"), temporal(64, 64, "K")])
    (v,) = [v for v in check_layer(overlapping, HwConfig(num_pes=256)) if v.rule == "S6"]
    assert "not checked" in str(v) and "1,000,000,000" in str(v)


# ---------------------------------------------------------------- targets (item 9)


@pytest.mark.parametrize("line, words", [
    ("offchip_bw_elems_per_cycle: .inf", ["offchip_bw_elems_per_cycle", "finite"]),
    ("offchip_bw_elems_per_cycle: .nan", ["offchip_bw_elems_per_cycle", "finite"]),
    ("noc_bw_elems_per_cycle: 1e300", ["noc_bw_elems_per_cycle"]),
    ("l2_bytes: 1000000000000000000000", ["l2_bytes", "2,147,483,647"]),
    ("energy: {mac: .inf}", ["energy.mac"]),
    ("pe_array: {rows: 100000, cols: 100000}", ["pe_array", "10,000,000,000 PEs"]),
])
def test_target_values_beyond_the_range(line, words, write, run_cli, tmp_path):
    from conftest import SMALL_TARGET
    key = line.split(":")[0]
    text = "".join(l for l in SMALL_TARGET.splitlines(True) if not l.startswith(key + ":")) + line + "\n"
    target = write("t.yaml", text)
    code, _, err = run_cli("compile", write("g.yaml", GEMM + "dims: {m: 4, n: 4, k: 4}\n"), "--target",
                           target, "-o", tmp_path / "out")
    one_clean_line(code, err, str(target), *words)


def test_divisors_by_factorisation():
    for n in range(1, 2000):
        assert divisors(n) == [d for d in range(1, n + 1) if n % d == 0]
    assert len(divisors(10 ** 8)) == 81 and divisors(2 ** 31 - 1) == [1, 2 ** 31 - 1]



def test_trip_tiles_without_walking_the_chunk():
    for c in range(1, 2000):
        assert trip_tiles(c) == sorted({-(-c // n) for n in range(1, c + 1)})
    tiles = trip_tiles(2 ** 31 - 1)   # sqrt-sized: a walk of the chunk would not finish
    assert tiles[0] == 1 and tiles[-1] == 2 ** 31 - 1 and len(tiles) < 2 * 46341

def test_a_huge_pe_array_compiles(write, run_cli, tmp_path):
    from conftest import SMALL_TARGET
    target = write("t.yaml", SMALL_TARGET.replace("{rows: 4, cols: 4}", "{rows: 10000, cols: 10000}"))
    code, _, err = run_cli("compile", write("g.yaml", GEMM + "dims: {m: 4, n: 4, k: 4}\n"), "--target",
                           target, "-o", tmp_path / "out")
    assert code == 0, err


# ---------------------------------------------------------------- types (item 10)

BAD_TYPES = [
    ("op.yaml", "kind: [gemm]\nparams: {M: 4, N: 4, K: 4}\n", "line 1", ["'kind' must be", "got a list"]),
    ("op.yaml", "kind: {a: 1}\nparams: {M: 4, N: 4, K: 4}\n", "line 1", ["'kind' must be", "got a mapping"]),
    ("op.yaml", GEMM + "dims: {m: 4, n: 4, k: 4}\ndtype: [int8]\n", "line 3", ["'dtype' must be"]),
    ("op.yaml", GEMM + "dims: {m: 4, n: 4, k: 4}\ntensor_dtypes: {O: [x]}\n", "line 3", ["'tensor_dtypes.O'"]),
    ("op.yaml", GEMM + "dims: {m: 4, n: 4, k: 4}\nname: [a]\n", "line 3", ["'name' must be"]),
    ("op.yaml", GEMM + "dims: {1: 4}\n", "line 2", ["'dims' has a key 1"]),
    ("op.yaml", GEMM + "dims: [4, 4, 4]\n", "line 2", ["'dims' must be a mapping"]),
    ("op.yaml", "statement: [O]\ndims: {m: 4}\n", "line 1", ["'statement' must be a string"]),
    ("op.yaml", "kind: gemm\nparams: [4, 4]\n", "line 2", ["'params' must be a mapping"]),
    ("op.yaml", "kind: gemm\nparams: {M: true, N: 4, K: 4}\n", "line 2", ["'params.M' must be an integer"]),
    ("model.yaml", "layers: {a: 1}\n", "line 1", ["'layers' must be a non-empty list"]),
    ("model.yaml", "name: {x: 1}\nlayers: [{include: a.yaml}]\n", "line 1", ["'name' must be"]),
    ("model.yaml", "layers:\n- {include: [a.yaml]}\n", "layers[0]", ["'include' must be a file path"]),
    ("model.yaml", "layers:\n- {kind: gemm, params: {M: 4, N: 4, K: 4}, repeat: [2]}\n", "layers[0]",
     ["'repeat' must be an integer"]),
]


@pytest.mark.parametrize("name, text, place, words", BAD_TYPES, ids=[f"{i}" for i in range(len(BAD_TYPES))])
def test_every_field_has_a_type(name, text, place, words, write, run_cli, tmp_path):
    path = write(name, text)
    code, _, err = run_cli("compile", path, "--target", "edge", "-o", tmp_path / "out")
    one_clean_line(code, err, f"{path}:{place}", *words)


@pytest.mark.parametrize("line, words", [
    ("name: [x]", ["'name' must be"]),
    ("backends: mdc", ["'backends' must be"]),
    ("pe_array: [4, 4]", ["'pe_array' must be a mapping"]),
    ("dataflow: {spatial_dims: K}", ["'dataflow.spatial_dims'"]),
    ("chiplets: {count: 2, mesh: [a, b], link_bw_elems_per_cycle: 4}", ["'chiplets.mesh'"]),
    ("clock_ghz: yes", ["'clock_ghz'"]),
])
def test_every_target_field_has_a_type(line, words, write, run_cli):
    from conftest import SMALL_TARGET
    key = line.split(":")[0]
    text = "".join(l for l in SMALL_TARGET.splitlines(True) if not l.startswith(key + ":")) + line + "\n"
    target = write("t.yaml", text)
    code, _, err = run_cli("show-target", target)
    one_clean_line(code, err, str(target), *words)


# ---------------------------------------------------------------- long expressions (item 11)


def test_a_5000_term_index_expression(write, run_cli, tmp_path):
    long = "+".join(["m"] * 5000)
    path = write("long.yaml", f"statement: O[m,n] += I[{long},k] * W[k,n]\ndims: {{m: 4, n: 4, k: 4}}\n")
    code, out, err = run_cli("compile", path, "--target", "edge", "-o", tmp_path / "out", "--stop-after", "conformance")
    assert code == 0, err
    path = write("long2.yaml", f"statement: O[m,n] += I[m{'+1' * 5000},k] * W[k,n]\ndims: {{m: 4, n: 4, k: 4}}\n")
    code, _, err = run_cli("compile", path, "--target", "edge", "-o", tmp_path / "out2")
    one_clean_line(code, err, "m+5000")


# ---------------------------------------------------------------- mapc check and verify (12, 13)


def test_check_refuses_numbers_maestro_cannot_read(write, run_cli):
    text = ("Network n {\n Layer g {\n  Type: GEMM\n  Dimensions { M: 1, N: 1, K: 99999999999999999999 }\n"
            "  Dataflow {\n   SpatialMap(1,1) M;\n   TemporalMap(1,1) N;\n   TemporalMap(1,1) K;\n  }\n }\n}\n")
    path = write("huge.m", text)
    code, _, err = run_cli("check", path)
    one_clean_line(code, err, f"{path}:4", "99999999999999999999", "32-bit")
    code, _, err = run_cli("check", write("ok.m", text.replace("99999999999999999999", "2147483647")))
    assert code == 0, err


def test_verify_refuses_oversized_runs_with_their_size(write, run_cli, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("compile", write("v.yaml", GEMM + "dims: {m: 5120000, n: 64, k: 64}\n"),
                           "--target", "systolic", "-o", out)
    assert code == 0, err
    code, _, err = run_cli("verify", out / "v.schedule.yaml")
    one_clean_line(code, err, "too large to execute", "655,364,096 matrix elements")
    code, _, err = run_cli("compile", write("s.yaml", GEMM + "dims: {m: 512, n: 512, k: 512}\n"),
                           "--target", "systolic", "-o", out)
    code, _, err = run_cli("verify", out / "s.schedule.yaml", "--element")
    one_clean_line(code, err, "element steps", "without --element")
    code, stdout, err = run_cli("verify", out / "s.schedule.yaml")
    assert code == 0 and stdout.strip().endswith("ok"), err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_work_counts_the_bodies_the_walk_executes(case):
    s, _ = case
    a, b = random_operands(s)
    for granularity in ("tile", "element"):
        assert work(s, granularity)[1] == run_schedule(s, a, b, granularity=granularity)[2]


# ---------------------------------------------------------------- time limit (14)


def test_a_stopped_search_says_feasible(write, run_cli, tmp_path):
    """A 65536^3 GEMM: at 0.05 s the off-chip search stops after its first order class."""
    out = tmp_path / "out"
    code, _, err = run_cli("compile", write("g.yaml", GEMM + "dims: {m: 65536, n: 65536, k: 65536}\n"),
                           "--target", "edge", "-o", out, "--time-limit", "0.05", "--stop-after", "offchip")
    assert code == 0, err
    assert json.loads((out / "g.report.json").read_text())["offchip"]["solver_status"] == "FEASIBLE"


# ---------------------------------------------------------------- one MAC (15)


@pytest.mark.parametrize("target", ["edge", "nvdla", "chiplet4", "systolic"])
def test_a_one_mac_op_compiles(target, write, run_cli, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("compile", write("one.yaml", GEMM + "dims: {m: 1, n: 1, k: 1}\n"),
                           "--target", target, "-o", out, "--no-timings")
    assert code == 0, err
    report = json.loads((out / "one.report.json").read_text())
    assert report["macs"] == 1 and report["metrics"]["runtime_cycles"] >= 1


def test_a_search_stopped_between_order_classes_reports_the_true_traffic(write, run_cli, tmp_path):
    """Stopped after its first order class, the off-chip search may hold a class that over-estimates
    the traffic; the plan is kept (FEASIBLE) with the plain model's traffic, not an internal error."""
    text = "statement: O[k,p,q] += I[c,2*p+r,2*q+s] * W[k,c,r,s]\ndims: {k: 6, p: 6, q: 5, c: 12, r: 6, s: 3}\n"
    out = tmp_path / "out"
    code, _, err = run_cli("compile", write("s.yaml", text), "--target", "edge", "-o", out, "--time-limit", "0.01",
                           "--stop-after", "offchip")
    assert code == 0, err     # the op is decomposed into strided parts, each with its own search
    assert json.loads((out / "s.report.json").read_text())["decomposition"]["parts"]

"""Checker tests: every rule on small layers, and MAESTRO's malformed-input experiments."""
import ast
import csv
from pathlib import Path

import pytest

from compiler.mdc.checker import check_file, check_layer, coverage, is_clean
from compiler.mdc.costmodel import evaluate_layer
from compiler.errors import MappingError
from compiler.mdc.hw import HwConfig, parse_hw_file
from compiler.mdc.parser import parse_mdc_file
from compiler.mdc.syntax import cluster, make_layer, spatial, temporal

REF = Path(__file__).resolve().parents[2] / "shared" / "maestro-reference"
needs_ref = pytest.mark.skipif(not REF.is_dir(), reason="maestro-reference not available")
HW = HwConfig(num_pes=256, l1_size=512, l2_size=108000, noc_bw=64, offchip_bw=16)
DIMS = {"K": 64, "C": 64, "R": 3, "S": 3, "Y": 58, "X": 58}


def conv(*dirs, dims=DIMS, ltype="CONV"):
    return make_layer("L", ltype, dims, dirs, stride={"X": 1, "Y": 1})


GOOD = [spatial(1, 1, "K"), temporal(64, 64, "C"), temporal(3, 3, "R"), temporal(3, 3, "S"),
        temporal(3, 1, "Y"), temporal(3, 1, "X"), cluster(64),
        spatial(1, 1, "C"), temporal(3, 1, "Y"), temporal(3, 1, "X"), temporal(3, 3, "R"),
        temporal(3, 3, "S")]


def rules(layer, hw=HW):
    return {v.rule for v in check_layer(layer, hw)}


def test_good_layer_is_clean():
    v = check_layer(conv(*GOOD), HW)
    assert is_clean(v), [str(x) for x in v]
    assert coverage(conv(*GOOD), 256).exact


@pytest.mark.parametrize("change, rule", [
    (lambda d: [temporal(1, 1, "K")] + d[1:], "H5"),                 # no SpatialMap at level 0
    (lambda d: d[:1] + [spatial(1, 1, "C"), spatial(1, 1, "R")] + d[1:], "H5"),
    (lambda d: d[:2] + [temporal(1, 1, "R")] + d[3:], "H6"),
    (lambda d: d[:6] + [cluster(512)] + d[7:], "H7"),
    (lambda d: d[:6] + [cluster(100)] + d[7:], "S7"),
    (lambda d: d[:1] + [temporal(8, 16, "C")] + d[2:], "S1"),
    (lambda d: d[:4] + [temporal(1, 1, "Y")] + d[5:], "S2"),
    (lambda d: d[:1] + [spatial(1, 1, "C")] + d[2:], "S3"),
    (lambda d: d[:2] + [temporal(8, 8, "C")] + d[2:], "S4"),
    (lambda d: d + [temporal(1, 1, "N")], "H4"),
])
def test_each_rule(change, rule):
    assert rule in rules(conv(*change(list(GOOD))))


def test_primed_without_window_and_capacity():
    d = [spatial(1, 1, "K"), temporal(64, 64, "C"), temporal(1, 1, "Y'"), temporal(3, 1, "X")]
    assert "S5" in rules(conv(*d))
    assert "C2" in rules(conv(*GOOD), HwConfig(256, 512, 100, 64, 16))
    assert "C1" in rules(conv(*GOOD), HwConfig(256, 10, 10**6, 64, 16))


def test_dsconv_k_inherited_below_cluster():
    dims = {"K": 1, "C": 64, "R": 3, "S": 3, "Y": 58, "X": 58}
    d = [spatial(1, 1, "K"), temporal(64, 64, "C"), cluster(8), spatial(1, 1, "C")]
    assert "H8" in rules(conv(*d, dims=dims, ltype="DSCONV"))


def test_violation_is_one_line():
    v = check_layer(conv(*GOOD[:6], cluster(100), *GOOD[7:]), HW)
    text = [str(x) for x in v]
    assert all("\n" not in t and "[S7]" in t for t in text if "S7" in t)
    assert any(t.startswith("layer L: Cluster(100, P): [S7]") for t in text)


def _malformed_results():
    out = {r["case"]: r for r in csv.DictReader(open(REF / "malformed" / "results_part1.csv"))}
    for line in open(REF / "malformed" / "results_part2.txt"):
        name, _, rest = line.partition(" ")
        if rest.startswith("{"):
            out[name] = ast.literal_eval(rest)
    return out


# MAESTRO ran these and reported wrong numbers without any message.
SILENTLY_WRONG = {
    "offset_gt_size_C": "S1", "spatial_offset_gt_size": "S1", "duplicate_directive_same_level": "S4",
    "two_spatialmaps_one_level": "S3", "Y_size_lt_R": "S2", "spatial_on_Y_size1": "S2",
    "Yprime_without_R_same_level": "S5", "R_spatialmap_1_1": "S6",
    "temporal_X_offset_too_big": "S1", "negative_number": "S9",
    "cluster_not_dividing_pes_100": "S7",
}


@needs_ref
def test_every_malformed_file_is_handled():
    results = _malformed_results()
    hw = parse_hw_file(REF / "hw" / "accel1.m")
    seen = 0
    for f in sorted((REF / "malformed").glob("*.m")):
        if f.name.endswith(".hw.m"):
            try:
                parse_hw_file(f)
            except MappingError as exc:
                assert "\n" not in str(exc)
            continue
        seen += 1
        res = results.get(f.stem)
        rc = int(res["rc"]) if res and str(res["rc"]) not in ("",) else None
        try:
            mdc = parse_mdc_file(f)
        except MappingError as exc:  # a clear one-line error, where MAESTRO failed too
            assert "\n" not in str(exc) and str(exc).startswith(str(f))
            assert rc != 0, f.stem
            continue
        v = check_file(mdc, hw)
        found = {x.rule for x in v}
        if rc is not None and rc != 0:
            assert any(x.severity == "hard" for x in v), (f.stem, [str(x) for x in v])
        if f.stem in SILENTLY_WRONG:
            assert SILENTLY_WRONG[f.stem] in found, (f.stem, found)
            assert not is_clean(v)
        if rc == 0 and f.stem not in SILENTLY_WRONG:
            # MAESTRO's own numbers are right: no hard rule is reported.
            assert not any(x.severity == "hard" for x in v), (f.stem, [str(x) for x in v])
    assert seen > 60


@needs_ref
def test_wrong_mac_counts_are_flagged():
    hw = parse_hw_file(REF / "hw" / "accel1.m")
    for name in ("offset_gt_size_C", "duplicate_directive_same_level", "two_spatialmaps_one_level",
                 "Y_size_lt_R"):
        v = check_file(parse_mdc_file(REF / "malformed" / f"{name}.m"), hw)
        assert any(x.rule == "S6" and "MAESTRO will report" in x.text for x in v), name


def _folded_1x1(k_tile):
    """A 1x1 conv over three cluster levels (Y x K x C on 256 PEs), K's per-unit tile ``k_tile``."""
    dims = {"N": 1, "K": 16, "C": 16, "R": 1, "S": 1, "Y": 8, "X": 8}
    rs = [temporal(1, 1, "R"), temporal(1, 1, "S")]
    return conv(temporal(1, 1, "N"), temporal(16, 16, "K"), temporal(8, 8, "Y"), temporal(8, 8, "X"),
                spatial(16, 16, "C"), *rs, cluster(8),
                spatial(1, 1, "Y"), temporal(1, 1, "N"), temporal(16, 16, "K"), temporal(8, 8, "X"),
                temporal(16, 16, "C"), *rs, cluster(2),
                spatial(k_tile, k_tile, "K"), temporal(1, 1, "N"), temporal(1, 1, "Y"), temporal(8, 8, "X"),
                temporal(16, 16, "C"), *rs, cluster(16),
                spatial(1, 1, "C"), temporal(1, 1, "N"), temporal(1, 1, "Y"), *rs, temporal(2, 2, "K"),
                temporal(3, 3, "X"), dims=dims)


def test_optimistic_runtime_is_flagged():
    """K folded 5+5 then 3+3 over two units: MAESTRO (4eb08d1, run by hand) reports exact MACs
    and 96 cycles, but its runtime computes for 48 cycles where 16,384 MACs on 256 PEs need 64."""
    layer = _folded_1x1(5)
    m = evaluate_layer(layer, HW)
    assert (m.macs, m.runtime_cycles, m.compute_delay_cycles) == (16384, 96, 48)
    assert "S8" in rules(layer) and "S6" not in rules(layer)
    assert not is_clean(check_layer(layer, HW))
    # the same mapping with K in one fold (8 per unit) computes for 64 cycles: no S8
    even = evaluate_layer(_folded_1x1(8), HW)
    assert even.compute_delay_cycles == 64 and "S8" not in rules(_folded_1x1(8))


from hypothesis import given, settings, strategies as st  # noqa: E402

_dim = st.sampled_from(["K", "C", "R", "S", "Y", "X", "Y'"])
_item = st.tuples(st.sampled_from(["t", "s", "c"]), st.integers(1, 12), st.integers(1, 12), _dim)


@settings(max_examples=80, deadline=None)
@given(st.lists(_item, min_size=1, max_size=10))
def test_checker_never_crashes(items):
    """Any programmatic layer gets a list of one-line violations, never an exception."""
    small = {"K": 8, "C": 6, "R": 3, "S": 3, "Y": 10, "X": 9}
    dirs = []
    for kind, a, b, dim in items:
        if kind == "c":
            dirs.append(cluster(a))
        elif kind == "t" and dim in "RS":
            dirs.append(temporal(3, 3, dim))
        else:
            dirs.append((temporal if kind == "t" else spatial)(a, b, dim))
    layer = conv(*dirs, dims=small)
    v = check_layer(layer, HwConfig(num_pes=16, noc_bw=8, offchip_bw=4))
    assert all("\n" not in str(x) for x in v)
    if is_clean(v):
        assert coverage(layer, 16).exact

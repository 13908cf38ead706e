"""The vectorised cost model agrees with the scalar one, candidate by candidate."""
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.costmodel import evaluate_layer
from compiler.costmodel_vec import evaluate_batch, template_from_layer
from compiler.errors import MapcError
from compiler.mdc import (ClusterDirective, Directive, HwConfig, make_layer, parse_hw_file,
                          parse_mdc_file)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import costmodel_speed as speed  # noqa: E402

REF = Path(__file__).resolve().parents[2] / "shared" / "maestro-reference"
INT_FIELDS = ("macs", "runtime_cycles", "l1_elements", "l2_elements", "noc_bw_required",
              "offchip_bw_required", "offchip_bw_step", "compute_delay_cycles")
FLOAT_FIELDS = ("energy_mac_units", "noc_bw_avg", "avg_util_pes")


def _layer_of(t, sizes, offs, cl):
    dirs, j, k = [], 0, 0
    for kind, dim in t.items:
        if kind == "C":
            dirs.append(ClusterDirective(int(cl[k])))
            k += 1
        else:
            dirs.append(Directive("spatial" if kind == "S" else "temporal", int(sizes[j]),
                                  int(offs[j]), dim))
            j += 1
    return make_layer(t.layer.name, t.layer.type, dict(t.layer.dims), dirs,
                      stride=t.layer.stride_map())


def _same(batch, i, m):
    for f in INT_FIELDS:
        assert int(getattr(batch, f)[i]) == getattr(m, f), f
    for f in FLOAT_FIELDS:
        assert getattr(batch, f)[i] == pytest.approx(getattr(m, f), rel=1e-9, abs=1e-9), f
    for group in ("l2_reads", "l2_writes", "l1_reads", "l1_writes"):
        for tensor, value in getattr(m, group).items():
            assert int(getattr(batch, group)[tensor][i]) == value, (group, tensor)


@pytest.mark.parametrize("divisors_only", [False, True])
def test_random_candidates_agree(divisors_only):
    t = speed.template()
    s, o, c = speed.candidates(40, seed=7, divisors_only=divisors_only)
    for hw in (speed.HW, HwConfig(num_pes=1024, l1_size=1024, l2_size=2 * 10**6, noc_bw=256,
                                  offchip_bw=64, noc_hops=3)):
        batch = evaluate_batch(t, s, o, c, hw)
        for i in range(len(s)):
            layer = _layer_of(t, s[i], o[i], c[i])
            try:
                m = evaluate_layer(layer, hw)
            except MapcError:
                assert not batch.valid[i]
                continue
            assert batch.valid[i]
            _same(batch, i, m)


def test_gemm_template_with_edges():
    layer = make_layer("g", "GEMM", {"M": 100, "N": 70, "K": 90}, [])
    from compiler.costmodel_vec import MappingTemplate
    t = MappingTemplate(layer, (("T", "N"), ("S", "M"), ("T", "K"), ("C", ""), ("T", "N"),
                                ("T", "M"), ("S", "K")))
    rng = np.random.default_rng(3)
    n = 30
    a, b, k = rng.integers(1, 71, n), rng.integers(1, 101, n), rng.integers(1, 91, n)
    sizes = np.stack([a, b, k, a, b, np.ones(n, int)], 1)
    offs = sizes.copy()
    cl = rng.choice([2, 5, 10, 16], n).reshape(n, 1)
    hw = HwConfig(num_pes=256, noc_bw=64, offchip_bw=16)
    batch = evaluate_batch(t, sizes, offs, cl, hw)
    for i in range(n):
        _same(batch, i, evaluate_layer(_layer_of(t, sizes[i], offs[i], cl[i]), hw))


@pytest.mark.skipif(not REF.is_dir(), reason="maestro-reference not available")
def test_reference_mappings_agree():
    hw = parse_hw_file(REF / "hw" / "edge.m")
    n = 0
    for f in sorted((REF / "mappings").glob("*.m"))[::3]:
        try:
            mdc = parse_mdc_file(f)
            m = evaluate_layer(mdc.layers[0], hw, constants=mdc.constant_map())
        except MapcError:
            continue
        t, s, o, c = template_from_layer(mdc.layers[0], mdc.constant_map())
        _same(evaluate_batch(t, s, o, c, hw), 0, m)
        n += 1
    assert n > 20

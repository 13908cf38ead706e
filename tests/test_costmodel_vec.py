"""The cost model scores a candidate the same in a batch as alone (a batch of one), reads the
target's MACs per PE and energy, and refuses what MAESTRO cannot analyse."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.mdc.checker import check_layer
from compiler.mdc.costmodel import evaluate_batch, evaluate_layer
from compiler.errors import MapcError
from compiler.mdc.hw import HwConfig
from compiler.mdc.parser import parse_mdc
from compiler.mdc.syntax import ClusterDirective, Directive, make_layer
from compiler.mdc.commands import hw_from_target
from targets import load_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import costmodel_speed as speed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
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
def test_random_candidates_score_as_alone(divisors_only):
    """The cases a batch analyses are the union over its candidates; a candidate's numbers must
    not depend on which others share its batch."""
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
    """Non-divisor tiles on two levels of a GEMM: every edge case, in a batch and alone."""
    layer = make_layer("g", "GEMM", {"M": 100, "N": 70, "K": 90}, [])
    from compiler.mdc.costmodel import MappingTemplate
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


def test_sub_levels_analysed_once_per_distinct_row(monkeypatch):
    """Candidates that differ only above a cluster level share that level's analysis; the batch's
    numbers are the same with and without finding the distinct rows, and alone."""
    from compiler.mdc import costmodel_cases
    layer = make_layer("g", "GEMM", {"M": 100, "N": 70, "K": 90}, [])
    from compiler.mdc.costmodel import MappingTemplate
    t = MappingTemplate(layer, (("T", "N"), ("S", "M"), ("T", "K"), ("C", ""), ("T", "N"),
                                ("S", "K"), ("C", ""), ("T", "M"), ("S", "N")))
    rng = np.random.default_rng(5)
    n = 300
    a, b, k = rng.integers(1, 71, n), rng.integers(1, 101, n), rng.integers(1, 91, n)
    lower = rng.choice([1, 3, 7], n)         # few distinct lower levels under many upper ones
    sizes = np.stack([a, b, k, lower, np.ones(n, int), np.full(n, 2), np.ones(n, int)], 1)
    offs = sizes.copy()
    cl = np.stack([rng.choice([4, 8], n), np.full(n, 4)], 1)
    hw = HwConfig(num_pes=256, noc_bw=64, offchip_bw=16)
    rows = {}
    analyze = costmodel_cases._analyze

    def spy(ctx, li, idx, dims):
        rows[li] = rows.get(li, 0) + len(idx)
        return analyze(ctx, li, idx, dims)
    monkeypatch.setattr(costmodel_cases, "_analyze", spy)
    distinct = evaluate_batch(t, sizes, offs, cl, hw)
    deduped, rows = rows, {}
    monkeypatch.setattr(costmodel_cases, "DISTINCT_FROM", 10**9)
    every = evaluate_batch(t, sizes, offs, cl, hw)
    assert deduped[2] < rows[2] / 4, (deduped, rows)
    for f in INT_FIELDS + FLOAT_FIELDS:
        assert np.array_equal(getattr(distinct, f), getattr(every, f)), f
    for i in range(0, n, 15):
        _same(distinct, i, evaluate_layer(_layer_of(t, sizes[i], offs[i], cl[i]), hw))


GEMM_OS = """Network n {
  Layer g {
    Type: GEMM
    Dimensions { M: 16, N: 8, K: 8 }
    Dataflow { SpatialMap(1,1) M; TemporalMap(8,8) N; TemporalMap(8,8) K; }
  }
}
"""


def _target_file(tmp_path, macs: int, energy: str) -> Path:
    text = (ROOT / "targets" / "edge.yaml").read_text()
    text = text.replace("macs_per_pe_per_cycle: 1", f"macs_per_pe_per_cycle: {macs}")
    text = "\n".join(f"energy: {energy}" if l.startswith("energy:") else l
                      for l in text.splitlines())
    path = tmp_path / f"t{macs}.yaml"
    path.write_text(text.replace("name: edge", f"name: t{macs}"))
    return path


def test_target_macs_per_pe_and_energy(tmp_path):
    """Each PE computes its 64 MACs per step at ``macs_per_pe_per_cycle``, and the energy weighs
    the access counts with the target's ``energy`` block (not MAESTRO's 18.61/1.68/1)."""
    layer = parse_mdc(GEMM_OS).layers[0]
    base = evaluate_layer(layer, hw_from_target(load_target("edge")))
    assert (base.macs, base.compute_delay_cycles) == (1024, 64)
    l2 = sum(base.l2_reads.values()) + sum(base.l2_writes.values())
    l1 = sum(base.l1_reads.values()) + sum(base.l1_writes.values())
    assert base.energy_mac_units == pytest.approx(18.61 * l2 + 1.68 * l1 + 1024)
    for macs, compute in ((2, 32), (3, 22)):
        path = _target_file(tmp_path, macs, "{mac: 2.5, l1_access: 3.0, l2_access: 40.0}")
        hw = hw_from_target(load_target(str(path)))
        assert (hw.macs_per_pe, hw.energy.l2_access) == (macs, 40.0)
        m = evaluate_layer(layer, hw)
        assert m.compute_delay_cycles == compute and m.runtime_cycles < base.runtime_cycles
        assert (m.macs, m.l1_elements, m.l2_elements) == (1024, base.l1_elements, base.l2_elements)
        assert m.energy_mac_units == pytest.approx(40.0 * l2 + 3.0 * l1 + 2.5 * 1024)
    mfile = tmp_path / "g.m"
    mfile.write_text(GEMM_OS)
    out = subprocess.run([sys.executable, "-m", "compiler.cli", "eval", str(mfile), "--target",
                          str(path), "--json"], capture_output=True, text=True, check=True)
    row = json.loads(out.stdout)["layers"][0]
    assert row["compute_delay_cycles"] == 22
    assert row["energy_mac_units"] == pytest.approx(m.energy_mac_units)


@pytest.mark.parametrize("with_y", [False, True])
def test_primed_dim_without_window_is_refused(with_y):
    """``Y'`` with no R directive at its level makes MAESTRO read an uninitialised window
    size (mdc-format.md §3.3), also when Y is mapped there too: the model refuses both, and the
    checker reports S5 for both, not H4."""
    extra = "TemporalMap(3,1) Y; " if with_y else ""
    text = GEMM_OS.replace("Type: GEMM", "Type: CONV").replace(
        "Dimensions { M: 16, N: 8, K: 8 }", "Dimensions { K: 4, C: 4, R: 3, S: 3, Y: 8, X: 8 }"
    ).replace("Dataflow { SpatialMap(1,1) M; TemporalMap(8,8) N; TemporalMap(8,8) K; }",
              "Dataflow { SpatialMap(1,1) K; TemporalMap(4,4) C; TemporalMap(Sz(S),Sz(S)) S; "
              f"{extra}TemporalMap(1,1) Y'; TemporalMap(3,1) X; }}")
    layer = parse_mdc(text).layers[0]
    with pytest.raises(MapcError, match="without an explicit R directive"):
        evaluate_layer(layer, HwConfig(num_pes=16))
    rules = {v.rule for v in check_layer(layer, HwConfig(num_pes=16))}
    assert "S5" in rules and "H4" not in rules

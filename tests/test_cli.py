"""The CLI's happy paths: show, targets, show-target, compile with dump/stop."""
from __future__ import annotations

import json

from compiler.pipeline import PASS_NAMES
from targets import bundled_names, load_target

STRIDED = """name: strided
statement: O[n,k,p,q] += I[n,c,2*p+r,2*q+s] * W[k,c,r,s]
dims: {n: 1, k: 64, c: 3, p: 112, q: 112, r: 7, s: 7}
"""


def test_show_strided_conv(write, run_cli):
    code, out, err = run_cli("show", write("s.yaml", STRIDED))
    assert code == 0, err
    # ISL domain and access maps as islpy prints them
    assert "0 <= p <= 111" in out and "0 <= r <= 6" in out
    assert "-> I[n, c, 2p + r, 2q + s]" in out
    # derived input extent: (112-1)*2 + 7 = 229
    assert "1 x 3 x 229 x 229 = 157,323 elements" in out
    assert "window axis 2: 2*p + 1*r (stride 2, dilation 1)" in out
    assert "MDC form: CONV" in out


def test_preset_matches_statement(write, run_cli):
    preset = write("p.yaml", "name: strided\nkind: conv2d\n"
                             "params: {K: 64, C: 3, P: 112, Q: 112, R: 7, S: 7, stride: 2}\n")
    _, a, _ = run_cli("show", preset)
    _, b, _ = run_cli("show", write("s.yaml", STRIDED))
    assert a.replace("  (preset conv2d)", "") == b


def test_dump_and_stop_after(write, run_cli, tmp_path):
    code, out, err = run_cli("compile", write("s.yaml", STRIDED), "--target", "edge", "-o", tmp_path / "o",
                             "--dump-after", "frontend", "--stop-after", "frontend")
    assert code == 0, err
    assert "IR after frontend" in out and "{ [n, k, p, q, c, r, s] -> W[k, c, r, s] }" in out
    report = json.loads((tmp_path / "o" / "strided.report.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["frontend"]
    assert report["macs"] == 64 * 3 * 112 * 112 * 49
    assert report["tensors"]["I"]["extents"] == [1, 3, 229, 229]


def test_pass_list_is_the_cli_choice():
    assert PASS_NAMES[:2] == ("frontend", "conformance")


def test_targets_listing(run_cli):
    code, out, _ = run_cli("targets")
    assert code == 0
    for name in ("edge", "cloud", "systolic", "chiplet4", "nvdla", "maeri"):
        assert name in bundled_names() and name in out
    code, out, _ = run_cli("show-target", "nvdla")
    assert code == 0 and "K, C" in out


def test_edge_and_cloud_match_maestro_reference(tmp_path):
    """The edge/cloud targets are MAESTRO's reference HW files (int8: bytes = elements)."""
    from conftest import SHARED
    import pytest
    if not (SHARED / "maestro-reference").exists():
        pytest.skip("shared reference data not present")
    for name in ("edge", "cloud"):
        hw = dict(line.split(":") for line in (SHARED / "maestro-reference/hw" / f"{name}.m").read_text().split("\n")
                  if ":" in line and not line.startswith("//"))
        t = load_target(name)
        assert int(hw["num_pes"]) == t.num_pes
        assert int(hw["l1_size_cstr"]) == t.l1_elements(1)
        assert int(hw["l2_size_cstr"]) == t.l2_elements(1)
        assert float(hw["noc_bw_cstr"]) == t.noc_bw
        assert float(hw["offchip_bw_cstr"]) == t.offchip_bw


def test_help_everywhere(run_cli):
    for cmd in ((), ("compile",), ("show",), ("targets",), ("show-target",)):
        code, out, _ = run_cli(*cmd, "--help")
        assert code == 0 and "Usage:" in out


def test_explain_narrates_each_pass(run_cli):
    from conftest import EXAMPLES
    code, out, err = run_cli("explain", EXAMPLES / "conv3x3.yaml", "--target", "edge")
    assert code == 0, err
    assert out.startswith("1. frontend:")
    assert "2. conformance:" in out and "MDC form: CONV" in out

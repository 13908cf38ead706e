"""Every class of bad input: one line naming file and place, exit 2, no traceback, no outputs."""
from __future__ import annotations

import pytest
from conftest import SMALL_TARGET

GOOD = "name: g\nstatement: O[m,n] += I[m,k] * W[k,n]\ndims: {m: 4, n: 4, k: 4}\n"

BAD_OPS = [
    # (case, file text, words the one-line message must contain)
    ("malformed-yaml", "name: x\nstatement: [unclosed\n", ["malformed YAML", "line"]),
    ("not-a-mapping", "- just\n- a list\n", ["mapping"]),
    ("unknown-key", GOOD + "tiles: 3\n", ["unknown key 'tiles'", "line 4"]),
    ("duplicate-key", GOOD + "dims: {m: 1}\n", ["duplicate key 'dims'", "line 4"]),
    ("missing-dims", "statement: O[m,n] += I[m,k] * W[k,n]\n", ["missing required key 'dims'"]),
    ("missing-statement", "dims: {m: 4}\n", ["missing required key 'statement'"]),
    ("no-extent", "statement: O[m,n] += I[m,k] * W[k,n]\ndims: {m: 4, n: 4}\n", ["'k'", "no extent"]),
    ("zero-extent", "statement: O[m,n] += I[m,k] * W[k,n]\ndims: {m: 0, n: 4, k: 4}\n", ["dims.m", ">= 1"]),
    ("negative-extent", "statement: O[m,n] += I[m,k] * W[k,n]\ndims: {m: -3, n: 4, k: 4}\n", ["dims.m"]),
    ("non-integer-extent", "statement: O[m,n] += I[m,k] * W[k,n]\ndims: {m: 2.5, n: 4, k: 4}\n", ["dims.m"]),
    ("non-affine", "statement: O[p,k] += I[p*q] * W[k,q]\ndims: {p: 3, q: 3, k: 2}\n",
     ["non-affine", "p*q", "column"]),
    ("syntax", "statement: O[m,n] += I[m,k] ** W[k,n]\ndims: {m: 4, n: 4, k: 4}\n", ["syntax error", "column"]),
    ("unknown-preset", "kind: conv4d\nparams: {K: 1}\n", ["unknown kind 'conv4d'", "line 1"]),
    ("preset-missing-param", "kind: gemm\nparams: {M: 4, N: 4}\n", ["params.K"]),
    ("preset-unknown-param", "kind: gemm\nparams: {M: 4, N: 4, K: 4, Z: 1}\n", ["params.Z"]),
    ("bad-dtype", GOOD + "dtype: int7\n", ["unknown dtype 'int7'", "line 4"]),
    ("not-conformant", "statement: O[i] += A[i,i] * B[i]\ndims: {i: 4}\n", ["tensor A", "two axes"]),
]


def assert_clean_error(code: int, out: str, err: str, words: list[str], file: str | None, out_dir):
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert lines[0].startswith("mapc: error: ")
    if file:
        assert file in lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize("case,text,words", BAD_OPS, ids=[c[0] for c in BAD_OPS])
def test_bad_op_file(case, text, words, write, run_cli, tmp_path):
    path = write(f"{case}.yaml", text)
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", path, "--target", "edge", "-o", out_dir)
    assert_clean_error(code, out, err, words, str(path), out_dir)


def test_unreadable_file(tmp_path, run_cli):
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", tmp_path / "missing.yaml", "--target", "edge", "-o", out_dir)
    assert_clean_error(code, out, err, ["not found"], "missing.yaml", out_dir)
    code, out, err = run_cli("compile", tmp_path, "--target", "edge", "-o", out_dir)
    assert_clean_error(code, out, err, ["directory"], str(tmp_path), out_dir)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, out, err = run_cli("compile", binary, "--target", "edge", "-o", out_dir)
    assert_clean_error(code, out, err, ["cannot read"], "bin.yaml", out_dir)


def test_unknown_target(write, run_cli, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", write("g.yaml", GOOD), "--target", "tpu9", "-o", out_dir)
    assert_clean_error(code, out, err, ["unknown target 'tpu9'", "edge"], None, out_dir)


EDGE = SMALL_TARGET

BAD_TARGETS = [
    ("unknown-key", EDGE + "l3_bytes: 9\n", ["unknown key 'l3_bytes'", "line 8"]),
    ("missing-key", EDGE.replace("l2_bytes: 4096\n", ""), ["missing required key 'l2_bytes'"]),
    ("bad-value", EDGE.replace("l2_bytes: 4096", "l2_bytes: -1"), ["'l2_bytes'", "line 5"]),
    ("bad-backend", EDGE.replace("[mdc]", "[tpu]"), ["'backends'", "line 2"]),
    ("bad-pe-array", EDGE.replace("rows: 4, ", ""), ["pe_array.rows"]),
    ("bad-mesh", EDGE + "chiplets: {count: 4, mesh: [3, 2], link_bw_elems_per_cycle: 8}\n", ["chiplets.mesh"]),
    ("bad-spatial", EDGE + "dataflow: {spatial_dims: [K, Q]}\n", ["dataflow.spatial_dims"]),
    ("malformed", EDGE + "energy: {mac: [\n", ["malformed YAML"]),
]


@pytest.mark.parametrize("case,text,words", BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
def test_bad_target_file(case, text, words, write, run_cli, tmp_path):
    target = write(f"{case}.target.yaml", text)
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", write("g.yaml", GOOD), "--target", target, "-o", out_dir)
    assert_clean_error(code, out, err, words, str(target), out_dir)
    code, out, err = run_cli("show-target", target)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_good_compile_writes_report(write, run_cli, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run_cli("compile", write("g.yaml", GOOD), "--target", "edge", "-o", out_dir,
                             "--stop-after", "conformance")
    assert code == 0, err
    assert (out_dir / "g.report.json").exists()

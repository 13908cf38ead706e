"""Fuzzing op, target and model files through `mapc compile`: whatever the values, the result is
exit 0, or exit 2 with one `mapc: error:` line and no output; never a traceback or an internal
error, never a file outside `-o`, never a hidden temp file left behind."""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from conftest import SMALL_TARGET
from hypothesis import HealthCheck, given, settings, strategies as st

BAD = [0, -1, 2 ** 31, 10 ** 30, 1.5, float("inf"), float("nan"), "x", "", [1], {"a": 1}, True, None]
value = st.one_of(st.integers(1, 24), st.integers(1, 24), st.sampled_from(BAD))
name = st.one_of(st.text(alphabet="abcxyz_0123456789", min_size=1, max_size=8), st.text(min_size=1, max_size=8),
                st.sampled_from(["../escaped", "/tmp/abs", ".hidden", "edge.hw", "small.hw", "a/b", "x..y",
                                 "\u00fcn\u00ef", "a-b", "a b", "op.report", ".."]))
STATEMENTS = {
    "O[m,n] += I[m,k] * W[k,n]": "mnk",
    "O[k,p,q] += I[c,2*p+r,2*q+s] * W[k,c,r,s]": "kpqcrs",
    "O[c,p,q] += I[c,p+r,q+s] * W[c,r,s]": "cpqrs",
}


@st.composite
def op_files(draw) -> dict:
    data: dict = {}
    if draw(st.booleans()):
        data["name"] = draw(st.one_of(name, st.sampled_from(BAD)))
    if draw(st.integers(0, 3)) == 0:
        data["kind"] = draw(st.sampled_from(["gemm", "conv2d", "dwconv", "fc", "conv3d", 7, ["gemm"]]))
        data["params"] = {k: draw(value) for k in draw(st.lists(st.sampled_from("MNKCPQRS"), max_size=8, unique=True))}
        data["params"].update({k: draw(st.integers(1, 6)) for k in "MNKCPQRS" if k not in data["params"]}
                              if draw(st.booleans()) else {})
    else:
        statement = draw(st.sampled_from(sorted(STATEMENTS)))
        data["statement"] = statement
        data["dims"] = {d: draw(value) if draw(st.integers(0, 4)) == 0 else draw(st.integers(1, 12))
                        for d in STATEMENTS[statement]}
    if draw(st.integers(0, 3)) == 0:
        data["dtype"] = draw(st.sampled_from(["int8", "fp16", "int7", ["int8"], 3]))
    return data


def target_files(draw_value=value):
    base = yaml.safe_load(SMALL_TARGET)
    keys = sorted(base) + ["noc_hops", "macs_per_pe_per_cycle", "energy", "clock_ghz"]

    @st.composite
    def build(draw) -> dict:
        data = dict(base, name=draw(name))
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            if key == "pe_array":
                data[key] = {"rows": draw(draw_value), "cols": draw(draw_value)}
            elif key == "energy":
                data[key] = {"mac": draw(draw_value)}
            elif key != "name":
                data[key] = draw(draw_value)
        return data
    return build()


def run(run_cli, files: dict[str, object], *args: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mapc-fuzz-") as tmp:
        root = Path(tmp)
        for fname, data in files.items():
            (root / fname).write_text(yaml.safe_dump(data, allow_unicode=False))
        out = root / "out"
        code, stdout, err = run_cli("compile", *[root / a if a in files else a for a in args],
                                    "-o", out, "--time-limit", "0.5")
        assert "Traceback" not in stdout + err and "internal error" not in err, err
        assert code in (0, 2), (code, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert lines and all(l.startswith("mapc: error: ") for l in lines), err
            assert len(lines) == 1 or "layers failed" in lines[-1], err
            assert not out.exists() or not any(out.iterdir())
        made = [p for p in root.rglob("*") if p.is_file() and p.name not in files]
        assert all(out in p.parents for p in made), made
        assert not [p for p in made if p.name.startswith(".")], made


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


@SETTINGS
@given(op_files())
def test_fuzz_op_files(run_cli, op):
    run(run_cli, {"op.yaml": op}, "op.yaml", "--target", "edge")


@SETTINGS
@given(target_files())
def test_fuzz_target_files(run_cli, target):
    run(run_cli, {"t.yaml": target, "op.yaml": {"statement": "O[m,n] += I[m,k] * W[k,n]",
                                                "dims": {"m": 8, "n": 8, "k": 8}}},
        "op.yaml", "--target", "t.yaml")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(op_files(), st.sampled_from([{"include": "nothere.yaml"}, {"include": 3}, 5])),
                min_size=1, max_size=2),
       st.lists(st.one_of(st.integers(1, 3), st.sampled_from(BAD)), min_size=2, max_size=2),
       st.one_of(name, st.sampled_from(BAD)))
def test_fuzz_model_files(run_cli, layers, repeats, model_name):
    entries = []
    for i, (layer, rep) in enumerate(zip(layers, repeats)):
        if isinstance(layer, dict) and "include" not in layer:
            layer = dict(layer, name=f"l{i}", repeat=rep)
        entries.append(layer)
    run(run_cli, {"m.yaml": {"name": model_name, "layers": entries}}, "m.yaml", "--target", "edge")

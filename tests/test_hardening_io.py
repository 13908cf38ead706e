"""Unsafe or lossy writes, faults and small CLI promises: outputs stay inside ``-o``, two outputs
never share a path, bad option combinations are refused before anything runs, failed writes leave
nothing behind, workers die with their parent, and the messages say what really happened."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.cli import main
from compiler.errors import MapcError
from compiler.outputs import file_stem, write_all

from conftest import EXAMPLES, ROOT, SHARED, SMALL_TARGET

TINY = "kind: gemm\nparams: {M: 8, K: 8, N: 8}\n"


def cli(*args, **kw):
    """(exit code, stdout, stderr) of an in-process ``mapc`` run."""
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)
    return res.exit_code, res.stdout, res.stderr


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones included), relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_error_line(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("mapc: error: ") and "Traceback" not in stderr
    return stderr


# ----------------------------------------------------------------------- 1. names and -o


@pytest.mark.parametrize("name", ["../escaped", "/tmp/x/abs", "caf\u00e9", ".hidden", "a\\u0001b", "x" * 120,
                                  "my-op"])
def test_unsafe_op_name_refused_before_compiling(name, tmp_path, monkeypatch):
    op = tmp_path / "in" / "op.yaml"
    op.parent.mkdir()
    op.write_text(f'name: "{name}"\n{TINY}')
    monkeypatch.chdir(tmp_path / "in")
    before = tree(tmp_path)
    code, _, err = cli("compile", op, "--target", "edge", "-o", tmp_path / "in" / "out")
    assert "op.yaml:line 1: 'name'" in one_error_line(code, err) and "cannot become a file name" in err
    assert "MAESTRO's tokenizer reads ASCII and splits words at '-'" in err
    assert tree(tmp_path) == before


def test_unsafe_target_and_model_names_refused(tmp_path, write):
    evil_hw = write("evil.yaml", SMALL_TARGET.replace("name: small", "name: ../../evil_hw"))
    op = write("op.yaml", TINY)
    before = tree(tmp_path)
    code, _, err = cli("compile", op, "--target", evil_hw, "-o", tmp_path / "a" / "b")
    assert "evil.yaml:line 1: 'name' '../../evil_hw' cannot become a file name" in one_error_line(code, err)
    model = write("m.yaml", f"name: ../../evil_model\nlayers:\n  - {{include: op.yaml}}\n")
    before = tree(tmp_path)
    code, _, err = cli("compile", model, "--target", "edge", "--plot", "-o", tmp_path / "a" / "b")
    assert "m.yaml:line 1: 'name' '../../evil_model' cannot become a file name" in one_error_line(code, err)
    assert tree(tmp_path) == before


def test_file_stem_is_the_one_sanitiser():
    assert file_stem("../../evil") == "____evil" and file_stem("/tmp/x") == "_tmp_x"
    assert file_stem("..") == "_" and file_stem("...") == "_" and file_stem(".") == "op"
    assert file_stem("a\x00b\nc") == "a_b_c" and file_stem("caf\u00e9") == "caf_" and file_stem("a-b") == "a_b"
    long = file_stem("y" * 300)
    assert len(long) == 100 and long != file_stem("y" * 301)   # cut, and still distinct


@pytest.mark.parametrize("bad", ["../x.m", "/abs.m", "sub/x.m", "..", ""])
def test_write_all_refuses_paths_outside_out(bad, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(MapcError, match="not a plain file name"):
        write_all(out, [("good.m", "x"), (bad, "y")])
    assert tree(tmp_path) == set()


def test_write_all_refuses_a_link_leading_outside(tmp_path):
    out, secret = tmp_path / "out", tmp_path / "secret.txt"
    out.mkdir()
    secret.write_text("keep")
    (out / "x.m").symlink_to(secret)
    with pytest.raises(MapcError, match="outside the output directory"):
        write_all(out, [("a.m", "1"), ("x.m", "2")])
    assert secret.read_text() == "keep" and (out / "x.m").is_symlink() and tree(out) == {"x.m"}


# ----------------------------------------------------------------------- 2. collisions


def test_op_named_like_the_hw_file_is_refused(tmp_path, write):
    op = write("op.yaml", f"name: edge.hw\n{TINY}")
    code, _, err = cli("compile", op, "--target", "edge", "-o", tmp_path / "out")
    assert "two outputs of this run would both be written to edge.hw.m" in one_error_line(code, err)
    assert not (tmp_path / "out").exists()


def test_write_all_refuses_names_equal_up_to_case(tmp_path):
    with pytest.raises(MapcError, match="A.m and a.m"):
        write_all(tmp_path / "o", [("A.m", "1"), ("a.m", "2")])
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------- 3. option combinations


@pytest.mark.parametrize("extra, words", [
    (["--emit", "loops"], "--emit loops needs the gemm backend (target 'edge' has: mdc)"),
    (["--stop-after", "gemm-schedule"], "pass 'gemm-schedule' does not run for the mdc backend"),
    (["--dump-after", "gemm-lowering"], "pass 'gemm-lowering' does not run for the mdc backend"),
    (["--backend", "gemm"], "target 'edge' has no 'gemm' backend"),
])
def test_option_combinations_refused_before_the_pipeline(extra, words, tmp_path, write, monkeypatch):
    import compiler.cli

    def never(*a, **k):
        raise AssertionError("the pipeline ran")
    monkeypatch.setattr(compiler.cli, "run_pipeline", never)
    code, out, err = cli("compile", write("op.yaml", TINY), "--target", "edge", "-o", tmp_path / "out", *extra)
    assert words in one_error_line(code, err) and out == ""
    assert not (tmp_path / "out").exists()


def test_emit_loops_after_an_early_stop_refused(tmp_path, write):
    code, out, err = cli("compile", write("op.yaml", TINY), "--target", "systolic", "--emit", "loops",
                         "--stop-after", "offchip", "-o", tmp_path / "out")
    assert "no --stop-after before gemm-schedule" in one_error_line(code, err)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- 4, 7. import -o


@pytest.fixture
def tiny_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 8]),
                                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 2])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_import_writes_through_a_symlink(tiny_onnx, tmp_path):
    real, link = tmp_path / "real" / "model.yaml", tmp_path / "link.yaml"
    real.parent.mkdir()
    real.write_text("old\n")
    link.symlink_to(real)
    code, out, err = cli("import", tiny_onnx, "-o", link)
    assert code == 0, err
    assert link.is_symlink() and "layers:" in real.read_text() and f"wrote {link}" in out
    assert tree(real.parent) == {"model.yaml"}


def test_import_refuses_non_regular_targets(tiny_onnx, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "to_fifo.yaml"
    link.symlink_to(fifo)
    for target in (fifo, link):
        code, _, err = cli("import", tiny_onnx, "-o", target)
        assert f"{fifo}: is not a regular file" in one_error_line(code, err)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_import_into_a_directory_names_it(tiny_onnx, tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    code, _, err = cli("import", tiny_onnx, "-o", d)
    assert one_error_line(code, err).startswith(f"mapc: error: {d}: is a directory")
    assert tree(d) == set()


# ----------------------------------------------------------------------- 5, 6. modes and failed writes


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(mask, mode, tmp_path):
    old = os.umask(mask)
    try:
        paths = write_all(tmp_path / "o", [("a.m", "x"), ("b.png", b"\x89PNG")])
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [mode, mode]


def test_replaced_output_keeps_its_mode(tmp_path):
    (tmp_path / "a.m").write_text("old")
    (tmp_path / "a.m").chmod(0o640)
    write_all(tmp_path, [("a.m", "new")])
    assert stat.S_IMODE((tmp_path / "a.m").stat().st_mode) == 0o640 and (tmp_path / "a.m").read_text() == "new"


def test_file_size_limit_leaves_nothing_behind(tmp_path):
    """``ulimit -f``: the second file cannot be written; no temp file, no first file, no -o dir."""
    out = tmp_path / "deep" / "out"
    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "from compiler.errors import MapcError\n"
              "from compiler.outputs import write_all\n"
              "try:\n"
              f"    write_all({str(out)!r}, [('small.m', 'x' * 100), ('big.report.json', 'y' * 10000)])\n"
              "except MapcError as e:\n"
              "    print(e)\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "cannot write outputs (File too large); nothing written" in res.stdout, res.stderr
    assert tree(tmp_path) == set()


def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    """Disk full while writing the second file (the write itself raises ENOSPC)."""
    import errno

    real_fdopen = os.fdopen
    calls = []

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *a, **k):
        calls.append(fd)
        fh = real_fdopen(fd, *a, **k)
        return fh if len(calls) == 1 else Full(fh)
    monkeypatch.setattr(os, "fdopen", fdopen)
    (tmp_path / "keep.m").write_text("earlier")
    with pytest.raises(MapcError, match="No space left on device"):
        write_all(tmp_path, [("a.m", "1"), ("keep.m", "2")])
    assert tree(tmp_path) == {"keep.m"} and (tmp_path / "keep.m").read_text() == "earlier"


# ----------------------------------------------------------------------- 16, 17. model faults


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_die_with_their_parent(sig, tmp_path):
    parent = subprocess.Popen([sys.executable, "-m", "compiler.cli", "compile",
                               str(EXAMPLES / "models" / "resnet50.yaml"), "--target", "cloud", "-j", "2",
                               "-o", str(tmp_path / "out")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and parent.poll() is None and time.monotonic() < deadline:
            workers = _children(parent.pid)
            time.sleep(0.05)
        assert len(workers) == 2, "the pool did not start"
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers)
    finally:
        parent.kill()
        parent.wait()
        for w in workers:  # do not leave them running if the test failed
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    assert not (tmp_path / "out").exists()


def _raise_in_layer(op_path, target, options, op=None, **kw):
    """Stands in for the pipeline: one layer hits an internal error."""
    if op.name == "b":
        raise RuntimeError("boom in layer b")
    from compiler.pipeline import run_pipeline
    return run_pipeline(op_path, target, options, op=op, **kw)


def test_internal_layer_failure_summary_and_debug_traceback(tmp_path, write, monkeypatch):
    import compiler.model_compile

    monkeypatch.setattr(compiler.model_compile, "run_pipeline", _raise_in_layer)
    model = write("m.yaml", "name: m\nlayers:\n"
                            "  - {name: a, kind: gemm, params: {M: 8, K: 8, N: 8}}\n"
                            "  - {name: b, kind: gemm, params: {M: 8, K: 16, N: 8}}\n")
    code, _, err = cli("compile", model, "--target", "edge", "-o", tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == [
        "mapc: error: layer b: internal error: RuntimeError: boom in layer b",
        f"mapc: error: {model}: 1 of 2 distinct layers failed (1 by an internal error of mapc; "
        "--debug shows its traceback); nothing written"]
    code, _, err = cli("--debug", "compile", model, "--target", "edge", "-o", tmp_path / "out")
    assert code == 1 and "--- traceback of layer b ---" in err
    assert "in _raise_in_layer" in err and 'raise RuntimeError("boom in layer b")' in err
    assert "in wrapper" not in err and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- smaller, same spirit


def test_check_without_hardware_says_which_rules_ran():
    m = SHARED / "maestro-reference" / "mappings" / "rn50_conv1__kcp_ws.m"
    code, out, _ = cli("check", m)
    assert code == 0 and out == (f"{m}: ok (only rules that need no hardware ran; without --target or --hw "
                                 "not checked: H7, H9, S6 (MAESTRO's MAC count), S7, S8, C1, C2, W1, W2)\n")
    code, out, _ = cli("check", m, "--target", "cloud")
    assert code == 0 and out == f"{m}: ok\n"


def test_violation_lines_name_the_file_and_a_clean_place():
    bad = SHARED / "maestro-reference" / "malformed"
    code, out, _ = cli("check", bad / "cluster_gt_pes_512.m", "--target", "edge")
    assert code == 2
    assert f"{bad / 'cluster_gt_pes_512.m'}:13: layer L: Cluster(512, P): [H7] product of cluster sizes 512 " \
           "exceeds num_pes 256" in out.splitlines()
    code, out, _ = cli("check", bad / "negative_number.m")
    assert code == 2 and out.splitlines()[0] == (f"{bad / 'negative_number.m'}:8: [S9] '-8' is read as 8: "
                                                 "'-' is a separator in MDC")
    assert "<file>" not in out and ";:" not in out


def test_verify_without_traffic_claims_does_not_claim_a_match(tmp_path):
    code, _, err = cli("compile", EXAMPLES / "gemv.yaml", "--target", "systolic", "-o", tmp_path)
    assert code == 0, err
    schedule = next(tmp_path.glob("*.schedule.yaml"))
    text = schedule.read_text()
    head, rest = text.split("traffic:", 1)
    tail = "".join(line + "\n" for line in rest.splitlines()[1:] if not line.startswith((" ", "\t")))
    schedule.write_text(head + tail)
    code, out, _ = cli("verify", schedule)
    assert "traffic: matches" not in out and "traffic: not checked: the schedule has no 'traffic:' claims" in out


@pytest.mark.parametrize("command", [["show"], ["explain", "-t", "edge"]])
def test_show_and_explain_need_an_operator_file(command):
    model = EXAMPLES / "models" / "bert_base.yaml"
    code, _, err = cli(*command, model)
    assert one_error_line(code, err) == (f"mapc: error: {model}: a model file (it has 'layers'); "
                                         f"`mapc {command[0]}` needs an operator file: pass one layer's "
                                         "operator file, or compile the model\n")


def test_plot_checks_matplotlib_before_compiling(tmp_path, monkeypatch):
    import compiler.model_compile

    def never(*a, **k):
        raise AssertionError("compiled before checking matplotlib")
    monkeypatch.setattr(compiler.model_compile, "compile_model", never)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    code, _, err = cli("compile", EXAMPLES / "models" / "bert_base.yaml", "--target", "edge", "--plot",
                       "-o", tmp_path / "out")
    assert one_error_line(code, err) == "mapc: error: --plot: --plot needs matplotlib (pip install 'mapc[plot]')\n"


def test_import_checks_onnx_and_the_output_before_reading(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = cli("import", tmp_path / "missing.onnx", "-o", tmp_path / "m.yaml")
    assert "needs the onnx package" in one_error_line(code, err)
    monkeypatch.delitem(sys.modules, "onnx")
    code, _, err = cli("import", tmp_path / "missing.onnx", "-o", tmp_path)   # -o checked first
    assert one_error_line(code, err).startswith(f"mapc: error: {tmp_path}: is a directory")


def test_version():
    from importlib.metadata import version

    code, out, _ = cli("--version")
    assert code == 0 and out == f"mapc {version('mapc')}\n"


def test_out_naming_a_file_is_refused_before_compiling(tmp_path, write, monkeypatch):
    import compiler.cli

    def never(*a, **k):
        raise AssertionError("the pipeline ran")
    monkeypatch.setattr(compiler.cli, "run_pipeline", never)
    out = write("out", "a file")
    code, _, err = cli("compile", write("op.yaml", TINY), "--target", "edge", "-o", out)
    assert one_error_line(code, err) == f"mapc: error: {out}: -o names an existing file, not a directory; nothing written\n"
    assert out.read_text() == "a file"


def test_sigterm_while_writing_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    script = ("import os, signal\n"
              "import compiler.outputs as o\n"
              "real = os.fdopen\n"
              "def fdopen(fd, *a, **k):\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    return real(fd, *a, **k)\n"
              "o.os.fdopen = fdopen\n"
              f"o.write_all({str(out)!r}, [('a.m', 'x'), ('b.m', 'y')])\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert tree(tmp_path) == set()

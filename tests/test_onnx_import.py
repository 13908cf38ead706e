"""`mapc import`: small ONNX graphs built here with onnx.helper become model files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from compiler.model import load_model  # noqa: E402
from compiler.onnx_import import import_onnx  # noqa: E402


def _weight(name: str, shape: tuple[int, ...]):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def _save(tmp_path, nodes, inputs, outputs, inits, name="net", elem=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, elem, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, elem, None) for n in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def cnn(tmp_path):
    """conv 7x7/2 pad 3, relu, depthwise 3x3 pad 1, grouped 3x3 (4 groups, dilation 2), pool, gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem/conv", strides=[2, 2], pads=[3, 3, 3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], name="grouped", group=4, dilations=[2, 2],
                         pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["c3", "w4"], ["c4"], name="rect", strides=[1, 2]),
        helper.make_node("GlobalAveragePool", ["c4"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fcw", "fcb"], ["y"], name="fc", transB=1),
    ]
    inits = [_weight("w1", (16, 3, 7, 7)), _weight("w2", (16, 1, 3, 3)), _weight("w3", (32, 4, 3, 3)),
             _weight("w4", (8, 32, 1, 3)), _weight("fcw", (10, 8)), _weight("fcb", (10,))]
    return _save(tmp_path, nodes, [("x", [1, 3, 32, 32])], ["y"], inits, name="tinycnn")


def test_conv_variants_and_gemm(cnn):
    r = import_onnx(cnn)
    by = {layer["name"]: layer for layer in r.layers}
    assert list(by) == ["stem_conv", "dw", "grouped", "rect", "fc"]
    # pads enlarge the input: 32 + 2*3 - 7 = 31, /2 + 1 = 16 outputs
    assert by["stem_conv"] == {"name": "stem_conv", "kind": "conv2d", "dtype": "fp32",
                               "params": {"N": 1, "K": 16, "C": 3, "P": 16, "Q": 16, "R": 7, "S": 7, "stride": 2}}
    assert by["dw"]["kind"] == "dwconv" and by["dw"]["params"] == {"N": 1, "C": 16, "P": 16, "Q": 16, "R": 3, "S": 3}
    # dilation and unequal strides are statements (a decomposition makes them MDC layers)
    assert by["grouped"]["statement"] == "O[n,g,k,p,q] += I[n,g,c,p+2*r,q+2*s] * W[g,k,c,r,s]"
    assert by["grouped"]["dims"] == {"n": 1, "p": 16, "q": 16, "r": 3, "s": 3, "g": 4, "k": 8, "c": 4}
    assert by["rect"]["statement"] == "O[n,k,p,q] += I[n,c,p+r,2*q+s] * W[k,c,r,s]"
    assert by["rect"]["dims"] == {"n": 1, "p": 16, "q": 7, "r": 1, "s": 3, "k": 8, "c": 32}
    assert by["fc"] == {"name": "fc", "kind": "gemm", "dtype": "fp32", "params": {"M": 1, "K": 8, "N": 10}}
    assert r.skipped_line() == "skipped 3 node(s) without MACs: Flatten, GlobalAveragePool, Relu"
    macs = 16 * 16 * 16 * 3 * 49 + 16 * 16 * 16 * 9 + 16 * 16 * 32 * 4 * 9 + 16 * 7 * 8 * 32 * 3 + 8 * 10
    assert r.coverage() == {"macs_imported": macs, "macs_graph": macs, "fraction": 1.0, "complete": True,
                            "skipped": []}


def test_written_file_loads_as_a_model(cnn, tmp_path, run_cli):
    out = tmp_path / "m" / "tinycnn.yaml"
    code, stdout, stderr = run_cli("import", cnn, "-o", out, "--dtype", "int8")
    assert code == 0, stderr
    assert "mapc: import: skipped 3 node(s) without MACs" in stderr
    assert "tinycnn: 5 layers (statement x2, conv2d x1, dwconv x1, gemm x1), 1,019,984 MACs (100 % of" in stdout
    model = load_model(out)
    assert model.macs == 1_019_984 and model.coverage["macs_graph"] == 1_019_984
    assert [l.name for l in model.layers] == ["stem_conv", "dw", "grouped", "rect", "fc"]
    assert {l.op.dtype for l in model.layers} == {"int8"}
    stem = model.layers[0].op
    assert stem.tensor("I").extents == (1, 3, 37, 37)   # (16-1)*2 + 7: the padded input
    assert model.layers[3].op.tensor("I").extents == (1, 32, 16, 15)
    assert yaml.safe_load(out.read_text())["name"] == "tinycnn"


def test_transformer_matmuls(tmp_path):
    """Linear layers fold batch and sequence into M; the two attention products are recognised."""
    h, l, d = 4, 8, 16
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["qh", "kt"], ["s"], name="scores"),
        helper.make_node("Div", ["s", "scale"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "v"], ["ctx"], name="context"),
        helper.make_node("MatMul", ["qh", "v2"], ["plain"], name="bmm"),
    ]
    inits = [_weight("wq", (64, 64)), numpy_helper.from_array(np.array(4.0, dtype=np.float32), "scale")]
    path = _save(tmp_path, nodes, [("x", ["batch", l, 64]), ("qh", [1, h, l, d]), ("kt", [1, h, d, l]),
                                   ("v", [1, h, l, d]), ("v2", [1, h, d, 32])],
                 ["q", "ctx", "plain"], inits, name="attn")
    r = import_onnx(path, dtype="int8")
    by = {layer["name"]: layer for layer in r.layers}
    assert by["q_proj"]["params"] == {"M": l, "K": 64, "N": 64} and by["q_proj"]["kind"] == "gemm"
    assert by["scores"]["kind"] == "attn_score" and by["scores"]["params"] == {"H": h, "L": l, "LK": l, "D": d}
    assert by["context"]["kind"] == "attn_context"
    assert by["context"]["params"] == {"H": h, "L": l, "LK": l, "D": d}
    assert by["bmm"]["kind"] == "bmm" and by["bmm"]["params"] == {"B": h, "M": l, "K": d, "N": 32}
    assert "symbolic input dims set to 1: batch" in r.skipped_line()
    assert "Div" in r.skipped_line() and "Softmax" in r.skipped_line()
    out = tmp_path / "attn.yaml"
    out.write_text(r.yaml_text())
    assert [x.op.macs for x in load_model(out).layers] == [l * 64 * 64, h * l * l * d, h * l * l * d, h * l * d * 32]


def test_vector_matmul_and_gemm_transpose(tmp_path):
    nodes = [helper.make_node("MatMul", ["v", "w"], ["y"], name="gemv"),
             helper.make_node("Gemm", ["a", "b"], ["z"], name="gt", transA=1)]
    path = _save(tmp_path, nodes, [("v", [32]), ("a", [12, 5])], ["y", "z"],
                 [_weight("w", (32, 7)), _weight("b", (12, 9))], name="vec")
    by = {x["name"]: x["params"] for x in import_onnx(path).layers}
    assert by == {"gemv": {"M": 1, "K": 32, "N": 7}, "gt": {"M": 5, "K": 12, "N": 9}}


def test_errors(tmp_path, run_cli):
    code, _, err = run_cli("import", tmp_path / "missing.onnx", "-o", tmp_path / "m.yaml")
    assert code == 2 and err.strip() == f"mapc: error: {tmp_path / 'missing.onnx'}: ONNX file not found"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not protobuf at all \xff")
    code, _, err = run_cli("import", bad, "-o", tmp_path / "m.yaml")
    assert code == 2 and err.startswith(f"mapc: error: {bad}: not a readable ONNX model") and err.count("\n") == 1
    relu_only = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 4])], ["y"], [], name="relu")
    code, _, err = run_cli("import", relu_only, "-o", tmp_path / "m.yaml")
    assert code == 2 and "no Conv, Gemm, MatMul, Einsum or recurrent node" in err
    assert not (tmp_path / "m.yaml").exists()
    # -o naming the ONNX file itself (or a link to it) would overwrite the export with YAML
    (tmp_path / "link.onnx").symlink_to(relu_only)
    before = relu_only.read_bytes()
    for out in (relu_only, tmp_path / "link.onnx"):
        code, _, err = run_cli("import", relu_only, "-o", out)
        assert (code, err) == (2, f"mapc: error: {out}: is the ONNX file being imported: -o names the model file "
                                  "(YAML) to write; nothing written\n")
    assert relu_only.read_bytes() == before


def test_imported_model_compiles_end_to_end(cnn, tmp_path, run_cli):
    """ONNX -> model file -> every layer mapped, with the model report, CSV and plot."""
    model = tmp_path / "tinycnn.yaml"
    code, _, stderr = run_cli("import", cnn, "-o", model, "--dtype", "int8")
    assert code == 0, stderr
    out = tmp_path / "out"
    # MDC has no dilation: the dilated grouped conv becomes its dilation-1 phases, with exact MACs ...
    code, _, stderr = run_cli("compile", model, "--target", "edge", "-o", tmp_path / "edge")
    assert code == 0, stderr
    grouped = json.loads((tmp_path / "edge" / "grouped.report.json").read_text())
    assert grouped["decomposition"]["plan"] == "phases" and grouped["metrics"]["macs"] == grouped["macs"]
    # ... and the GEMM backend (im2col) maps every layer as it is
    code, _, stderr = run_cli("compile", model, "--target", "systolic", "-o", out, "--plot")
    assert code == 0, stderr
    report = json.loads((out / "model.report.json").read_text())
    names = {row["name"] for row in report["layers"]}
    assert names == {"stem_conv", "dw", "grouped", "rect", "fc"}
    assert (out / "model.report.csv").read_text().count("\n") >= 6
    assert (out / "tinycnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

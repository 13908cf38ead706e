"""`mapc import` of every MAC-carrying node kind, coverage, names and shape folding.

Each graph is built here with onnx.helper; the expected statements, extents and MAC counts are
worked out by hand in the comments and checked again through the model loader (the polyhedral
MAC count of each layer)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from compiler.errors import InputError  # noqa: E402
from compiler.model import load_model  # noqa: E402
from compiler.onnx_import import import_onnx, layer_macs  # noqa: E402
from compiler.onnx_shapes import skim  # noqa: E402


def _w(name: str, shape, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name)


def _i64(name: str, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _save(tmp_path, nodes, inputs, inits, name="net", graph_name="main_graph", **save):
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes[-1:]]
    graph = helper.make_graph(nodes, graph_name,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path), **save)
    return path


def _load(tmp_path, result):
    """The import written and read back: per layer name, the polyhedral MACs (repeat included)."""
    out = tmp_path / f"{result.name}.yaml"
    out.write_text(result.yaml_text())
    model = load_model(out)
    assert model.macs == result.macs_imported == sum(layer_macs(x) for x in result.layers)
    return model, {x.name: x.op.macs * x.repeat for x in model.layers}


def test_conv_transpose_is_a_scatter_with_every_tap(tmp_path):
    """3x3/2 transposed conv, pads 1 and output_padding 1: 5x5 -> 10x10, but all 5*5*9 taps count."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1]),
             helper.make_node("ConvTranspose", ["y", "wg"], ["z"], name="upg", group=2, strides=[2, 2]),
             helper.make_node("ConvTranspose", ["z", "wd"], ["o"], name="updw", group=4)]
    path = _save(tmp_path, nodes, [("x", [1, 8, 5, 5])],
                 [_w("w", (8, 4, 3, 3)), _w("wg", (4, 2, 2, 2)), _w("wd", (4, 1, 3, 3))], name="deconv")
    r = import_onnx(path)
    by = {x["name"]: x for x in r.layers}
    assert by["up"]["statement"] == "O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]"
    assert by["up"]["dims"] == {"n": 1, "h": 5, "w": 5, "r": 3, "s": 3, "c": 8, "k": 4}
    assert by["upg"]["statement"] == "O[n,g,k,2*h+r,2*w+s] += I[n,g,c,h,w] * W[g,c,k,r,s]"
    assert by["upg"]["dims"] == {"n": 1, "h": 10, "w": 10, "r": 2, "s": 2, "g": 2, "c": 2, "k": 2}
    assert by["updw"]["statement"] == "O[n,c,h+r,w+s] += I[n,c,h,w] * W[c,r,s]"
    model, macs = _load(tmp_path, r)
    assert macs == {"up": 5 * 5 * 9 * 8 * 4, "upg": 10 * 10 * 4 * 2 * 2 * 2, "updw": 20 * 20 * 9 * 4}
    assert r.coverage()["macs_graph"] == sum(macs.values())
    # the scatter writes (5-1)*2 + 3 = 11 rows; the 10 the graph keeps are a crop of them
    assert model.layers[0].op.tensor("O").extents == (1, 4, 11, 11)


def test_conv3d_and_dilation_statements(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c3d", strides=[1, 2, 2], pads=[1] * 6),
             helper.make_node("Conv", ["x2", "w2"], ["y2"], name="dil", dilations=[2, 2], pads=[2] * 4),
             helper.make_node("Conv", ["x3", "w3"], ["y3"], name="c1d", dilations=[3], strides=[2])]
    path = _save(tmp_path, nodes, [("x", [1, 3, 8, 16, 16]), ("x2", [1, 4, 9, 9]), ("x3", [1, 4, 40])],
                 [_w("w", (8, 3, 3, 3, 3)), _w("w2", (6, 4, 3, 3)), _w("w3", (5, 4, 3))], name="c3")
    r = import_onnx(path)
    by = {x["name"]: x for x in r.layers}
    assert by["c3d"]["statement"] == "O[n,k,d,p,q] += I[n,c,d+t,2*p+r,2*q+s] * W[k,c,t,r,s]"
    assert by["c3d"]["dims"] == {"n": 1, "d": 8, "p": 8, "q": 8, "t": 3, "r": 3, "s": 3, "k": 8, "c": 3}
    assert by["dil"]["statement"] == "O[n,k,p,q] += I[n,c,p+2*r,q+2*s] * W[k,c,r,s]"
    assert by["dil"]["dims"]["p"] == 9
    # a 1-D conv is one row of a 2-D one: (40 - 7) // 2 + 1 = 17 outputs
    assert by["c1d"]["statement"] == "O[n,k,p,q] += I[n,c,p+r,2*q+3*s] * W[k,c,r,s]"
    assert by["c1d"]["dims"] == {"n": 1, "p": 1, "q": 17, "r": 1, "s": 3, "k": 5, "c": 4}
    _, macs = _load(tmp_path, r)
    assert macs == {"c3d": 8 ** 4 * 27 * 3, "dil": 81 * 6 * 4 * 9, "c1d": 17 * 5 * 4 * 3}
    assert r.coverage()["fraction"] == 1.0


def test_einsum_equations(tmp_path):
    nodes = [helper.make_node("Einsum", ["q", "k"], ["s"], name="scores", equation="bhid,bhjd->bhij"),
             helper.make_node("Einsum", ["a", "b"], ["y"], name="ell", equation="...ij,jk->...ik"),
             helper.make_node("Einsum", ["u", "v"], ["z"], name="bcast", equation="bij,bjk"),
             helper.make_node("Einsum", ["s"], ["st"], name="transpose", equation="bhij->bhji")]
    path = _save(tmp_path, nodes, [("q", [2, 4, 8, 16]), ("k", [2, 4, 8, 16]), ("a", [2, 3, 4, 5]),
                                   ("u", [1, 6, 7]), ("v", [3, 7, 2])], [_w("b", (5, 6))], name="ein")
    r = import_onnx(path)
    by = {x["name"]: x for x in r.layers}
    assert by["scores"]["statement"] == "O[b,h,i,j] += I[b,h,i,d] * W[b,h,j,d]"
    assert by["scores"]["dims"] == {"b": 2, "h": 4, "i": 8, "d": 16, "j": 8}
    assert by["ell"]["statement"] == "O[e0,e1,i,k] += I[e0,e1,i,j] * W[j,k]"
    # implicit output (letters seen once, sorted): b and j are summed; b is broadcast, so u (batch 1)
    # is not indexed by it
    assert by["bcast"]["statement"] == "O[i,k] += I[i,j] * W[b,j,k]"
    assert "transpose" not in by and r.skipped["Einsum"] == 1   # one operand: no MACs
    _, macs = _load(tmp_path, r)
    assert macs == {"scores": 2 * 4 * 8 * 8 * 16, "ell": 2 * 3 * 4 * 5 * 6, "bcast": 3 * 6 * 7 * 2}
    assert r.coverage()["macs_graph"] == sum(macs.values())


def test_recurrent_gate_gemms(tmp_path):
    """LSTM (bidirectional, seq 5, batch 2, 16 in, 32 hidden) and GRU (batch-first layout)."""
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=32,
                              direction="bidirectional"),
             helper.make_node("GRU", ["x2", "W2", "R2"], ["y2"], name="gru", hidden_size=8, layout=1)]
    path = _save(tmp_path, nodes, [("x", [5, 2, 16]), ("x2", [3, 4, 10])],
                 [_w("W", (2, 128, 16)), _w("R", (2, 128, 32)), _w("W2", (1, 24, 10)), _w("R2", (1, 24, 8))],
                 name="rnn")
    r = import_onnx(path)
    assert r.layers == [
        {"name": "lstm.x", "kind": "gemm", "dtype": "fp32", "params": {"M": 10, "K": 16, "N": 128}, "repeat": 2},
        {"name": "lstm.h", "kind": "gemm", "dtype": "fp32", "params": {"M": 2, "K": 32, "N": 128}, "repeat": 10},
        {"name": "gru.x", "kind": "gemm", "dtype": "fp32", "params": {"M": 12, "K": 10, "N": 24}},
        {"name": "gru.h", "kind": "gemm", "dtype": "fp32", "params": {"M": 3, "K": 8, "N": 24}, "repeat": 4}]
    _, macs = _load(tmp_path, r)
    lstm, gru = 2 * 5 * 2 * 128 * (16 + 32), 3 * 4 * 24 * (10 + 8)
    assert macs["lstm.x"] + macs["lstm.h"] == lstm and macs["gru.x"] + macs["gru.h"] == gru
    assert r.coverage()["macs_graph"] == lstm + gru


def test_broadcast_matmul(tmp_path):
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="heads_shared"),
             helper.make_node("MatMul", ["c", "d"], ["z"], name="left_shared")]
    path = _save(tmp_path, nodes, [("a", [2, 4, 8, 16]), ("b", [4, 16, 32]), ("c", [8, 16]), ("d", [3, 16, 4])],
                 [], name="bmm")
    by = {x["name"]: x for x in import_onnx(path).layers}
    assert by["heads_shared"]["statement"] == "O[b,h,m,n] += I[b,h,m,k] * W[h,k,n]"
    assert by["heads_shared"]["dims"] == {"b": 2, "h": 4, "m": 8, "k": 16, "n": 32}
    assert by["left_shared"]["statement"] == "O[b,m,n] += I[m,k] * W[b,k,n]"
    assert layer_macs(by["left_shared"]) == 3 * 8 * 16 * 4


def test_shape_chain_is_folded(tmp_path):
    """A window-padding chain (pad H up to a multiple of 8 with Mod) that shape inference alone
    cannot follow: the Pad's pads are computed from Shape(x), so the Conv's shape needs folding."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i2"], ["h"], axis=0),
             helper.make_node("Mod", ["h", "eight"], ["hm"]),
             helper.make_node("Sub", ["eight", "hm"], ["p0"]),
             helper.make_node("Mod", ["p0", "eight"], ["p"]),
             helper.make_node("Unsqueeze", ["p", "ax0"], ["pu"]),
             helper.make_node("Concat", ["zeros6", "pu", "pu"], ["pads"], axis=0),
             helper.make_node("Pad", ["x", "pads"], ["xp"]),
             helper.make_node("Conv", ["xp", "w"], ["y"], name="conv")]
    inits = [_i64("i2", 2), _i64("eight", 8), _i64("ax0", [0]), _i64("zeros6", [0] * 6), _w("w", (4, 4, 3, 3))]
    r = import_onnx(_save(tmp_path, nodes, [("x", [1, 4, 6, 6])], inits, name="pad"))
    # 6 is padded to 8 at the end of both axes: 8 - 3 + 1 = 6 outputs... of an 8x8 input
    assert r.layers[0]["params"] == {"N": 1, "K": 4, "C": 4, "P": 6, "Q": 6, "R": 3, "S": 3}
    assert r.coverage()["complete"]


def test_unimportable_mac_nodes_are_an_error_unless_allowed(tmp_path, run_cli):
    """A Conv with 4 spatial axes holds MACs mapc cannot import: exit 2 naming it and its share."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv4d"),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("MatMul", ["f", "m"], ["z"], name="fc")]
    path = _save(tmp_path, nodes[:2] + nodes[2:], [("x", [1, 2, 3, 3, 3, 3]), ("f", [1, 54])],
                 [_w("w", (2, 2, 1, 1, 1, 1)), _w("m", (54, 2))], name="part")
    conv4d, fc = 2 * 81 * 2, 54 * 2   # prod(Y) * prod(W[1:]) and M*K*N
    out = tmp_path / "part.yaml"
    code, _, err = run_cli("import", path, "-o", out)
    share = f"{100 * conv4d / (conv4d + fc):.3g} %"
    assert code == 2 and not out.exists() and err.count("\n") == 1
    assert err.startswith(f"mapc: error: {path}: 1 MAC-carrying node(s) not imported, {share} of the graph's "
                          f"MACs: Conv 'conv4d' (4 spatial axes, {share} of the MACs) (--allow-partial")
    code, stdout, err = run_cli("import", path, "-o", out, "--allow-partial")
    assert code == 0 and "skipped 1 node(s) without MACs: Relu" in err and "Conv 'conv4d'" in err
    cov = load_model(out).coverage
    assert cov == {"macs_imported": fc, "macs_graph": conv4d + fc, "fraction": round(fc / (conv4d + fc), 6),
                   "complete": False, "skipped": [{"node": "conv4d", "op": "Conv", "macs": conv4d,
                                                   "reason": "4 spatial axes"}]}
    # ... and every model report says so
    code, stdout, err = run_cli("compile", out, "--target", "edge", "-o", tmp_path / "out")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "model.report.json").read_text())["coverage"] == cov
    assert f"imported {100 * fc / (conv4d + fc):.4g} % of the graph's MACs" in stdout
    # an unknown shape leaves the share unknown
    nodes = [helper.make_node("Foo", ["x"], ["u"], domain="custom"), helper.make_node("MatMul", ["u", "m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 54])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_w("m", (54, 2))])
    bad = tmp_path / "unknown.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)]),
              str(bad))
    with pytest.raises(InputError, match=r"no MAC-carrying node could be imported: 1 .* MatMul 'matmul1' "
                                         r"\(unknown shape, MACs unknown\)"):
        import_onnx(bad, allow_partial=True)


def test_names_from_the_exporters(tmp_path):
    """Module paths from node metadata or TorchScript scopes; '-' sanitised; the file stem names the model."""
    meta = helper.make_node("Conv", ["x", "w"], ["a"], name="node_Conv_809")
    for key, value in (("pkg.torch.onnx.name_scopes", "['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']"),
                       ("pkg.torch.onnx.class_hierarchy", "['M', 'S', 'B', 'C', 'aten.conv2d.default']")):
        entry = meta.metadata_props.add()
        entry.key, entry.value = key, value
    nodes = [meta, helper.make_node("Conv", ["a", "w"], ["b"], name="/layer2/layer2.0/downsample/downsample.0/Conv"),
             helper.make_node("Conv", ["b", "w"], ["b2"], name="/stage2/stage2.0/branch1/branch1.0/Conv_3"),
             helper.make_node("Conv", ["b2", "w"], ["c"], name="trunk.block1-0"),
             helper.make_node("Conv", ["c", "w"], ["d"], name="trunk.block1-0")]
    r = import_onnx(_save(tmp_path, nodes, [("x", [1, 4, 4, 4])], [_w("w", (4, 4, 1, 1))], name="reg-net.v1"))
    assert r.name == "reg_net.v1"
    assert [x["name"] for x in r.layers] == ["layer1.0.conv1", "layer2.0.downsample.0", "stage2.0.branch1.0",
                                             "trunk.block1_0",
                                             "trunk.block1_0_2"]


def test_a_conv_with_a_folded_batchnorm_is_named_by_its_weight(tmp_path):
    """The dynamo exporter folds BatchNorm into the Conv and keeps the BatchNorm's scopes on it; the
    weight's parameter name still names the conv, as the TorchScript exporter's node name does."""
    def conv(inp, out, weight, scopes, classes):
        node = helper.make_node("Conv", [inp, weight], [out], name=f"node_Conv_{out}")
        for key, value in (("pkg.torch.onnx.name_scopes", scopes), ("pkg.torch.onnx.class_hierarchy", classes)):
            entry = node.metadata_props.add()
            entry.key, entry.value = key, value
        return node
    bn = "['M', 'BasicConv2d', 'BatchNorm2d', 'aten._native_batch_norm_legit_no_training.default']"
    nodes = [conv("x", "a", "conv1.conv.weight", "['', 'conv1', 'conv1.bn', '_native_batch_norm']", bn),
             conv("a", "b", "val_12", "['', 'layer1', 'layer1.bn', '_native_batch_norm']", bn)]
    r = import_onnx(_save(tmp_path, nodes, [("x", [1, 4, 4, 4])], [_w("conv1.conv.weight", (4, 4, 1, 1)),
                                                                     _w("val_12", (4, 4, 1, 1))]))
    assert [x["name"] for x in r.layers] == ["conv1.conv", "layer1.bn"]


def test_weights_are_not_read(tmp_path):
    """External weight data is never opened: the import works with the data file gone."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    path = _save(tmp_path, nodes, [("x", [1, 8, 16, 16])], [_w("w", (16, 8, 3, 3))], name="ext",
                 save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    r = import_onnx(path)
    assert r.layers[0]["params"] == {"N": 1, "K": 16, "C": 8, "P": 16, "Q": 16, "R": 3, "S": 3}
    assert r.macs_imported == math.prod((16, 16, 16, 8, 9))
    # inline weights are skipped while reading: the skimmed model holds the graph and small constants
    inline = _save(tmp_path, nodes + [helper.make_node("Reshape", ["y", "shape"], ["z"])], [("x", [1, 8, 16, 16])],
                   [numpy_helper.from_array(np.ones((16, 8, 3, 3), np.float32), "w"), _i64("shape", [1, -1])],
                   name="inline")
    small = onnx.load_model_from_string(skim(str(inline)))
    assert inline.stat().st_size > 4608 > 10 * small.ByteSize()
    assert [(i.name, list(i.dims), len(i.raw_data)) for i in small.graph.initializer] == [("w", [16, 8, 3, 3], 0),
                                                                                          ("shape", [2], 16)]
    assert import_onnx(inline).layers == r.layers


def test_recurrent_einsum_and_broadcast_layers_compile_on_edge(tmp_path, run_cli):
    """The gate GEMMs, an einsum and a broadcast product map on MDC with every imported MAC."""
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=8),
             helper.make_node("Einsum", ["q", "k"], ["s"], name="scores", equation="bhid,bhjd->bhij"),
             helper.make_node("MatMul", ["a", "b"], ["z"], name="shared")]
    path = _save(tmp_path, nodes, [("x", [3, 1, 8]), ("q", [1, 2, 4, 8]), ("k", [1, 2, 4, 8]), ("a", [2, 2, 4, 8]),
                                   ("b", [2, 8, 4])], [_w("W", (1, 32, 8)), _w("R", (1, 32, 8))], name="mixed")
    model = tmp_path / "mixed.yaml"
    assert run_cli("import", path, "-o", model)[0] == 0
    code, _, err = run_cli("compile", model, "--target", "edge", "-o", tmp_path / "out")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    assert report["totals"]["complete"] and report["totals"]["failed"] == 0
    assert report["totals"]["macs"] == report["coverage"]["macs_graph"] == 3 * 32 * 16 + 2 * 4 * 4 * 8 + 2 * 2 * 4 * 8 * 4


def test_scatter_3d_and_dilated_statements_compile_on_edge(tmp_path, run_cli):
    """The statement forms of ConvTranspose, Conv3d and a dilated conv map on MDC through the
    decomposition, each with exactly the MACs the import counted."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="dil", dilations=[2, 2], pads=[2] * 4),
             helper.make_node("ConvTranspose", ["a", "w2"], ["b"], name="up", strides=[2, 2]),
             helper.make_node("Conv", ["v", "w3"], ["c"], name="c3d", pads=[1] * 6)]
    path = _save(tmp_path, nodes, [("x", [1, 4, 8, 8]), ("v", [1, 4, 4, 8, 8])],
                 [_w("w1", (4, 4, 3, 3)), _w("w2", (4, 4, 2, 2)), _w("w3", (4, 4, 3, 3, 3))], name="forms")
    model = tmp_path / "forms.yaml"
    assert run_cli("import", path, "-o", model)[0] == 0
    code, _, err = run_cli("compile", model, "--target", "edge", "-o", tmp_path / "out", "-j", "2")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "model.report.json").read_text())
    macs = {"dil": 64 * 16 * 9, "up": 64 * 16 * 4, "c3d": 256 * 16 * 27}
    assert {r["name"]: r["macs"] for r in report["layers"]} == macs
    assert report["totals"]["macs"] == report["coverage"]["macs_graph"] == sum(macs.values())
    for name in macs:
        layer = json.loads((tmp_path / "out" / f"{name}.report.json").read_text())
        assert layer["metrics"]["macs"] == layer["macs"] == macs[name]
        assert len(layer["decomposition"]["parts"]) > 1

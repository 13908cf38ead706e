"""Model files: loading, bundled networks and their MAC totals, includes, repeats, dedupe, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from compiler.errors import InputError
from compiler.frontend import load_op
from compiler.model import Model, ModelLayer, load_model, unique_layers
from passes.conformance import classify, conform

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
MODEL_FILES = sorted(MODELS.glob("*.yaml"))
OP_FILES = sorted((ROOT / "examples").glob("*.yaml"))

# Exact totals derived from the layer shapes (batch 1).
MACS = {
    "resnet50": 4_089_184_256,       # the well-known ~4.09 GMACs (v1.5)
    "mobilenetv2": 300_774_272,      # ~300 MMACs
    "vgg16": 15_470_264_320,         # ~15.5 GMACs
    "bert_base": 4_026_531_840,      # one encoder layer, L = 512
    "gpt2_small": 8_858_370_048,     # one block, L = 1024
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_models_present():
    assert {p.stem for p in MODEL_FILES} >= set(MACS)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_bundled_model_loads_and_conforms(path):
    model = load_model(path)
    assert isinstance(model, Model) and model.name == path.stem
    assert model.layers and all(isinstance(l, ModelLayer) and l.repeat >= 1 for l in model.layers)
    assert len({l.name for l in model.layers}) == len(model.layers)
    for layer in model.layers:
        assert layer.op.dtype == "int8"
        assert conform(layer.op) is not None
    assert model.macs == MACS[model.name]


def test_resnet50_structure():
    model = load_model(MODELS / "resnet50.yaml")
    convs = [l for l in model.layers if l.op.kind == "conv2d"]
    assert sum(l.repeat for l in convs) == 53
    conv1 = model.layers[0].op
    assert conv1.extent("p") == 112 and conv1.extent("r") == 7
    assert conv1.tensor("I").extents[2:] == (229, 229)    # 224 + padding, stride 2
    strided = [l.name for l in convs if any(w.stride == 2 for w in l.op.tensor("I").windows)]
    assert strided == ["conv1", "res3a_3x3", "res3a_proj", "res4a_3x3", "res4a_proj",
                       "res5a_3x3", "res5a_proj"]
    fc = model.layers[-1].op
    assert (fc.extent("k"), fc.extent("c")) == (1000, 2048)


def test_mobilenetv2_structure():
    model = load_model(MODELS / "mobilenetv2.yaml")
    dws = [l for l in model.layers if l.op.kind == "dwconv"]
    assert sum(l.repeat for l in dws) == 17
    assert model.num_ops == 53            # conv0 + 17 blocks (16 with expansion) + conv_last + fc
    assert model.layers[-2].op.extent("k") == 1280


def test_vgg16_structure():
    model = load_model(MODELS / "vgg16.yaml")
    assert sum(l.repeat for l in model.layers if l.op.kind == "conv2d") == 13
    assert sum(l.repeat for l in model.layers if l.op.kind == "fc") == 3


def test_transformer_layers():
    bert = {l.name: l.op for l in load_model(MODELS / "bert_base.yaml").layers}
    assert {n: bert[n].macs for n in ("q_proj", "k_proj", "v_proj", "out_proj")} == dict.fromkeys(
        ("q_proj", "k_proj", "v_proj", "out_proj"), 512 * 768 * 768)
    assert bert["attn_score"].macs == bert["attn_context"].macs == 12 * 512 * 512 * 64
    assert bert["ffn2"].extent("k") == 3072
    gpt = {l.name: l.op for l in load_model(MODELS / "gpt2_small.yaml").layers}
    assert gpt["qkv_proj"].extent("n") == 2304 and gpt["qkv_proj"].extent("m") == 1024


@pytest.mark.parametrize("path", OP_FILES, ids=lambda p: p.stem)
def test_example_op_files_conform(path):
    op = load_op(path)
    assert conform(op) is not None


def test_example_op_layer_types():
    kinds = {p.stem: classify(load_op(p)).layer_type for p in OP_FILES}
    assert kinds["conv_strided"] == kinds["conv1x1"] == "CONV"
    assert kinds["dwconv"] == "DSCONV" and kinds["gconv"] == "CONV"      # one CONV per group
    assert classify(load_op(ROOT / "examples" / "gconv.yaml")).repeat_dims == ("g",)
    assert kinds["gemm"] == kinds["gemv"] == kinds["attention"] == "GEMM"
    assert load_op(ROOT / "examples" / "conv_strided.yaml").macs == \
        load_model(MODELS / "resnet50.yaml").layers[0].op.macs


def test_includes_repeats_and_inline(tmp_path):
    write(tmp_path, "ops/conv.yaml", (ROOT / "examples" / "conv3x3.yaml").read_text())
    path = write(tmp_path, "models/m.yaml", """\
name: tiny
layers:
  - {name: conv1, kind: conv2d, params: {K: 8, C: 3, P: 4, Q: 4, R: 3, S: 3, stride: 2}}
  - {include: ../ops/conv.yaml, repeat: 3}
  - {include: ../ops/conv.yaml, name: again}
  - {name: l2, statement: "O[m,n] += I[m,k] * W[k,n]", dims: {m: 4, n: 4, k: 4}, repeat: 2}
""")
    model = load_model(path)
    assert model.name == "tiny"
    assert [(l.name, l.repeat) for l in model.layers] == [
        ("conv1", 1), ("resnet50_res3_conv3x3", 3), ("again", 1), ("l2", 2)]
    assert model.layers[2].op.name == "again"
    assert model.layers[1].source.endswith("conv.yaml")
    assert model.layers[0].source.endswith("m.yaml:layers[0]")
    conv = model.layers[1].op.macs
    assert model.macs == 8 * 3 * 16 * 9 + 4 * conv + 2 * 64
    assert model.num_ops == 7


def test_include_of_a_model_splices_layers(tmp_path):
    write(tmp_path, "block.yaml", """\
layers:
  - {name: a, kind: gemm, params: {M: 2, N: 2, K: 2}, repeat: 2}
  - {name: b, kind: gemm, params: {M: 2, N: 2, K: 4}}
""")
    path = write(tmp_path, "net.yaml", "layers:\n  - {include: block.yaml, repeat: 3, name: blk}\n")
    model = load_model(path)
    assert model.name == "net"
    assert [(l.name, l.repeat) for l in model.layers] == [("blk.a", 6), ("blk.b", 3)]


def test_unique_layers(tmp_path):
    path = write(tmp_path, "m.yaml", """\
layers:
  - {name: first, kind: gemm, params: {M: 4, N: 4, K: 4}}
  - {name: other, kind: gemm, params: {M: 4, N: 4, K: 8}, repeat: 2}
  - {name: same_as_first, statement: "O[m,n] += I[m,k] * W[k,n]", dims: {m: 4, n: 4, k: 4}, repeat: 5}
  - {name: wider, kind: gemm, params: {M: 4, N: 4, K: 4}, dtype: fp16}
""")
    model = load_model(path)
    uniq = unique_layers(model)
    assert [(l.name, l.repeat) for l in uniq] == [("first", 6), ("other", 2), ("wider", 1)]
    assert sum(l.macs for l in uniq) == model.macs
    resnet = load_model(MODELS / "resnet50.yaml")
    runs = unique_layers(resnet)
    assert len(runs) < len(resnet.layers)
    assert sum(l.repeat for l in runs) == resnet.num_ops and sum(l.macs for l in runs) == resnet.macs


def _error(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    return info.value


@pytest.mark.parametrize("layer, needle", [
    ("{name: x, kind: gemm, params: {M: 1, N: 1, K: 1}, bogus: 1}", "unknown key 'bogus'"),
    ("{include: op.yaml, dims: {m: 1}}", "unknown key 'dims'"),
    ("{name: x, kind: gemm, params: {M: 1, N: 1, K: 1}, repeat: 0}", "'repeat' must be an integer >= 1"),
    ("{name: x, kind: gemm, params: {M: 1, N: 1, K: 1}, repeat: two}", "'repeat'"),
    ("{include: nowhere.yaml}", "included file 'nowhere.yaml' not found"),
    ("{name: x, kind: nope}", "unknown kind 'nope'"),
    ("{include: bad_op.yaml}", "bad_op.yaml:line 3: unknown key 'extra'"),
    ("[1, 2]", "a layer must be a mapping"),
])
def test_layer_errors_name_file_and_layer(tmp_path, layer, needle):
    write(tmp_path, "op.yaml", "kind: gemm\nparams: {M: 1, N: 1, K: 1}\n")
    write(tmp_path, "bad_op.yaml", "kind: gemm\nparams: {M: 1, N: 1, K: 1}\nextra: 3\n")
    path = write(tmp_path, "m.yaml", f"layers:\n  - {{include: op.yaml}}\n  - {layer}\n")
    err = _error(path)
    assert err.file == str(path) and err.place == "layers[1]"
    assert str(err).startswith(f"{path}:layers[1]: ")
    assert needle in str(err)


def test_include_cycle(tmp_path):
    a = write(tmp_path, "a.yaml", "layers:\n  - {include: b.yaml}\n")
    write(tmp_path, "b.yaml", "layers:\n  - {include: a.yaml}\n")
    err = _error(a)
    assert err.place == "layers[0]" and "include cycle: a.yaml -> b.yaml -> a.yaml" in str(err)
    self_ref = write(tmp_path, "self.yaml", "layers:\n  - {include: self.yaml}\n")
    assert "include cycle" in str(_error(self_ref))


def test_model_level_errors(tmp_path):
    assert "model file not found" in str(_error(tmp_path / "absent.yaml"))
    assert "unknown key 'layer'" in str(_error(write(tmp_path, "k.yaml", "layer: []\n")))
    assert "missing required key 'layers'" in str(_error(write(tmp_path, "n.yaml", "name: x\n")))
    assert "non-empty list" in str(_error(write(tmp_path, "e.yaml", "layers: []\n")))
    dup = write(tmp_path, "d.yaml", """\
layers:
  - {name: x, kind: gemm, params: {M: 1, N: 1, K: 1}}
  - {name: x, kind: gemm, params: {M: 2, N: 1, K: 1}}
""")
    err = _error(dup)
    assert err.place == "layers[1]" and "duplicate layer name 'x'" in str(err)

"""``mapc import``: an ONNX graph -> a model file (the YAML that ``mapc compile`` reads).

Only the nodes that carry the multiply-accumulates become layers:

* ``Conv`` (2-D, or 1-D as a 1-row 2-D conv): ``conv2d``; ``group == C == M`` gives ``dwconv``;
  other groups (and depthwise with a channel multiplier) give ``gconv``.  Strides and dilations
  come from the attributes; padding is not a parameter of ours: it enlarges the input, so the
  output sizes P, Q are taken from ONNX shape inference (or computed from ``pads``/``auto_pad``
  when inference left them unknown).  Non-square strides or dilations are written as statements.
* ``Gemm``: ``gemm`` with ``transA``/``transB`` applied (the bias is not a MAC).
* ``MatMul``: ``gemm`` when the right operand has no batch dims (batch dims of the left one fold
  into M, as in a transformer's linear layers); otherwise ``bmm`` over the broadcast batch, or
  ``attn_score``/``attn_context`` when the product feeds / is fed by a ``Softmax`` (through
  scale, mask, cast or dropout nodes).

Symbolic input dims (a dynamic batch or sequence length) are set to 1 before shape inference.
Everything else (activations, pooling, additions, reshapes) is skipped and listed once in
:attr:`ImportResult.skipped`; that is not an error.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import InputError, MapcError
from .outputs import file_stem

# ONNX TensorProto element types -> our dtypes
_DTYPES = {1: "fp32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 10: "fp16", 16: "bf16"}
_PASS_THROUGH = {"Div", "Mul", "Add", "Sub", "Where", "Cast", "Dropout", "Identity", "Reshape",
                 "Transpose", "Softmax"}


@dataclass
class ImportResult:
    """The imported model: its name, one dict per layer (model-file keys), and the skipped nodes."""

    name: str
    layers: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    source: str = ""
    symbolic: list[str] = field(default_factory=list)   # symbolic input dims that were set to 1
    notes: list[str] = field(default_factory=list)

    def yaml_text(self) -> str:
        """The model file, one flow-style line per layer."""
        lines = [f"# Imported from {Path(self.source).name} by `mapc import`: one layer per Conv, Gemm "
                 "and MatMul node.", f"name: {_scalar(self.name)}", "layers:"]
        for layer in self.layers:
            lines.append("  - {" + ", ".join(f"{k}: {_flow(v)}" for k, v in layer.items()) + "}")
        return "\n".join(lines) + "\n"

    def skipped_line(self) -> str | None:
        """One line naming the node types that did not become layers (and other notes), or None."""
        parts = []
        if self.skipped:
            kinds = [f"{op} x{n}" if n > 1 else op
                     for op, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))]
            parts.append(f"skipped {sum(self.skipped.values())} unsupported node(s): {', '.join(kinds)}")
        if self.symbolic:
            parts.append(f"symbolic input dims set to 1: {', '.join(self.symbolic)}")
        return "; ".join(parts + self.notes) or None


def _scalar(value) -> str:
    """A YAML scalar that reads back as the same string (quoted only when needed)."""
    text = str(value)
    try:
        plain = yaml.safe_load(text) == text and not re.search(r"[\[\]{}:,#]", text)
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    return str(value) if isinstance(value, int) else _scalar(value)


def _safe_name(name: str) -> str:
    return file_stem(name, "layer").strip("_") or "layer"


class _Graph:
    """Shapes, producers and consumers of an inferred ONNX graph."""

    def __init__(self, graph):
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.elem: dict[str, int] = {}
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            t = vi.type.tensor_type
            self.elem[vi.name] = t.elem_type
            if t.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
                self.shapes[vi.name] = None if None in dims else tuple(dims)
        for init in graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
            self.elem[init.name] = init.data_type
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def feeds_softmax(self, name: str, hops: int = 4) -> bool:
        """Does tensor ``name`` reach a Softmax through scale/mask/cast nodes?"""
        for node in self.consumers.get(name, ()):
            if node.op_type == "Softmax":
                return True
            if hops > 0 and node.op_type in _PASS_THROUGH and self.feeds_softmax(node.output[0], hops - 1):
                return True
        return False

    def from_softmax(self, name: str, hops: int = 4) -> bool:
        """Is tensor ``name`` a Softmax output, possibly through cast/dropout/reshape nodes?"""
        node = self.producer.get(name)
        if node is None:
            return False
        if node.op_type == "Softmax":
            return True
        return hops > 0 and node.op_type in _PASS_THROUGH and bool(node.input) \
            and self.from_softmax(node.input[0], hops - 1)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fix_symbolic_inputs(model) -> list[str]:
    """Give symbolic graph-input dims the value 1 (shape inference needs numbers); returns their names."""
    named = []
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                named.append(d.dim_param or "?")
                d.dim_value = 1
    return named


def _conv_out(size: int, k: int, s: int, d: int, pads: tuple[int, int], auto_pad: str) -> int:
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return math.ceil(size / s)
    if auto_pad == "VALID":
        pads = (0, 0)
    return (size + pads[0] + pads[1] - ((k - 1) * d + 1)) // s + 1


def _conv(node, g: _Graph) -> dict | str:
    """A Conv node as a layer dict, or the reason it is skipped."""
    x, w = g.shape(node.input[0]), g.shape(node.input[1]) if len(node.input) > 1 else None
    if x is None or w is None:
        return "Conv (unknown shape)"
    if len(x) not in (3, 4) or len(w) != len(x):
        return f"Conv ({len(x) - 2}-D)"
    a = _attrs(node)
    one_d = len(x) == 3
    group = int(a.get("group", 1))
    strides = list(a.get("strides", [1] * (len(x) - 2)))
    dilations = list(a.get("dilations", [1] * (len(x) - 2)))
    n, c = x[0], x[1]
    m, kr = w[0], w[2:]
    y = g.shape(node.output[0])
    if y is not None and len(y) == len(x):
        outs = list(y[2:])
    else:
        pads = list(a.get("pads", [0] * 2 * (len(x) - 2)))
        half = len(x) - 2
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        outs = [_conv_out(x[2 + i], kr[i], strides[i], dilations[i], (pads[i], pads[i + half]), auto)
                for i in range(half)]
    if one_d:  # a 1-D conv is a 2-D conv with one row
        outs, kr, strides, dilations = [1] + outs, (1,) + tuple(kr), [1] + strides, [1] + dilations
    (p, q), (r, s) = outs, kr
    if min(p, q) < 1:
        return "Conv (empty output)"
    if group == 1:
        kind, params = "conv2d", {"N": n, "K": m, "C": c}
    elif group == c == m:
        kind, params = "dwconv", {"N": n, "C": c}
    else:
        kind, params = "gconv", {"N": n, "G": group, "K": m // group, "C": c // group}
    params.update({"P": p, "Q": q, "R": r, "S": s})
    if strides[0] == strides[1] and dilations[0] == dilations[1]:
        if strides[0] != 1:
            params["stride"] = strides[0]
        if dilations[0] != 1:
            params["dilation"] = dilations[0]
        return {"kind": kind, "params": params}
    return _conv_statement(kind, params, strides, dilations)


def _conv_statement(kind: str, params: dict, strides: list[int], dilations: list[int]) -> dict:
    """A conv with different row and column strides/dilations, written as a statement."""
    win = f"{strides[0]}*p+{dilations[0]}*r,{strides[1]}*q+{dilations[1]}*s"
    dims = {"n": params["N"], "p": params["P"], "q": params["Q"], "r": params["R"], "s": params["S"]}
    if kind == "conv2d":
        st = f"O[n,k,p,q] += I[n,c,{win}] * W[k,c,r,s]"
        dims |= {"k": params["K"], "c": params["C"]}
    elif kind == "dwconv":
        st = f"O[n,c,p,q] += I[n,c,{win}] * W[c,r,s]"
        dims |= {"c": params["C"]}
    else:
        st = f"O[n,g,k,p,q] += I[n,g,c,{win}] * W[g,k,c,r,s]"
        dims |= {"g": params["G"], "k": params["K"], "c": params["C"]}
    return {"statement": st, "dims": dims}


def _gemm(node, g: _Graph) -> dict | str:
    a, b = g.shape(node.input[0]), g.shape(node.input[1])
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return "Gemm (unknown shape)"
    at = _attrs(node)
    m, k = (a[1], a[0]) if at.get("transA", 0) else a
    n = b[0] if at.get("transB", 0) else b[1]
    return {"kind": "gemm", "params": {"M": m, "K": k, "N": n}}


def _matmul(node, g: _Graph) -> dict | str:
    a, b = g.shape(node.input[0]), g.shape(node.input[1])
    if a is None or b is None:
        return "MatMul (unknown shape)"
    a = (1,) + a if len(a) == 1 else a          # a vector times a matrix: one row
    b = b + (1,) if len(b) == 1 else b          # a matrix times a vector: one column
    (m, k), n = a[-2:], b[-1]
    a_batch, b_batch = math.prod(a[:-2]), math.prod(b[:-2])
    if b_batch == 1:  # shared right operand (weights): the left operand's batch folds into M
        return {"kind": "gemm", "params": {"M": a_batch * m, "K": k, "N": n}}
    y = g.shape(node.output[0])
    batch = math.prod(y[:-2]) if y is not None and len(y) >= 2 else max(a_batch, b_batch)
    if g.feeds_softmax(node.output[0]):
        return {"kind": "attn_score", "params": {"H": batch, "L": m, "LK": n, "D": k}}
    if g.from_softmax(node.input[0]):
        return {"kind": "attn_context", "params": {"H": batch, "L": m, "LK": k, "D": n}}
    return {"kind": "bmm", "params": {"B": batch, "M": m, "K": k, "N": n}}


_HANDLERS = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}


def import_onnx(path: str | Path, *, dtype: str | None = None, name: str | None = None) -> ImportResult:
    """Read ONNX file ``path`` into an :class:`ImportResult` (raises one-line :class:`MapcError`).

    ``dtype`` overrides the element type read from the graph (default: the input tensor's type,
    int8 when it has none we know)."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise MapcError("mapc import needs the onnx package (pip install 'mapc[onnx]')") from None
    path = Path(path)
    if not path.is_file():
        raise InputError("ONNX file not found" if not path.exists() else "not a file", file=str(path))
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises several types for a file that is not ONNX
        raise InputError(f"not a readable ONNX model ({e.__class__.__name__}: {e})", file=str(path)) from None
    symbolic = _fix_symbolic_inputs(model)
    result = ImportResult(name=_safe_name(name or model.graph.name or path.stem), source=str(path),
                          symbolic=sorted(set(symbolic)))
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as e:  # keep going: conv output sizes are then computed from the attributes
        result.notes.append(f"shape inference failed ({e.__class__.__name__}), used the declared shapes")
    g = _Graph(model.graph)
    used: set[str] = set()
    for i, node in enumerate(model.graph.node):
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            result.skipped[node.op_type] += 1
            continue
        layer = handler(node, g)
        if isinstance(layer, str):
            result.skipped[layer] += 1
            continue
        base = stem = _safe_name(node.name or f"{node.op_type.lower()}{i}")
        n = 2
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        elem = dtype or _DTYPES.get(g.elem.get(node.input[0], 0), "int8")
        result.layers.append({"name": stem, **{k: v for k, v in layer.items() if k != "params"},
                              "dtype": elem, **({"params": layer["params"]} if "params" in layer else {})})
    if not result.layers:
        raise InputError("no Conv, Gemm or MatMul node with known shapes: nothing to compile", file=str(path))
    return result

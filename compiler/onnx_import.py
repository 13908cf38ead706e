"""``mapc import``: an ONNX graph -> a model file (the YAML that ``mapc compile`` reads).

The nodes that carry the multiply-accumulates become layers (forms in :mod:`compiler.onnx_nodes`:
Conv with 1-3 spatial axes, ConvTranspose, Gemm, MatMul, Einsum, LSTM, GRU, RNN and their
integer variants); shapes come from :mod:`compiler.onnx_shapes`, which reads the file without its
weights.  Every other node carries no MACs (activations, pooling, additions, reshapes) and is
listed once in :attr:`ImportResult.skipped`.

Import never loses a MAC silently: each MAC-carrying node is also counted from its tensor shapes
(:func:`~compiler.onnx_nodes.graph_macs`), and a node that cannot be imported is an error naming
it and its share of the graph's MACs, unless ``allow_partial``.  The model file always carries
``coverage``: MACs imported, MACs in the graph, and the MAC-carrying nodes left out.

Layer names are the exporter's module paths (``layer1.0.conv1``): from the node metadata
``pkg.torch.onnx.name_scopes`` of the dynamo exporter (or, there, the weight's parameter name
``layer1.0.conv1.weight``, which survives a BatchNorm folded into the Conv), from
``/layer1/layer1.0/conv1/Conv`` node names of the TorchScript one, else the node name; the model name is the file stem.  Each name
goes through :func:`~compiler.outputs.file_stem`, the one sanitiser for names that become files.
"""
from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import InputError
from .frontend import _expand_preset
from .onnx_nodes import HANDLERS, Shapes, graph_macs
from .onnx_shapes import declared_shapes, load_shapes, require_onnx
from .outputs import file_stem
from .yamlio import LocDict

# ONNX TensorProto element types -> our dtypes
_DTYPES = {1: "fp32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 10: "fp16", 16: "bf16"}
_SHOWN = 6   # unimported nodes named in the one-line error


@dataclass(frozen=True)
class Unimported:
    """A MAC-carrying node that did not become a layer."""

    node: str
    op: str
    reason: str
    macs: int | None      # from the tensor shapes; None when they are unknown

    def as_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "macs": self.macs, "reason": self.reason}


@dataclass
class ImportResult:
    """The imported model: its name, one dict per layer (model-file keys), and what was left out."""

    name: str
    layers: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)        # MAC-free node types
    unimported: list[Unimported] = field(default_factory=list)
    macs_graph: int = 0                                       # MAC-carrying nodes of known shape
    source: str = ""
    symbolic: list[str] = field(default_factory=list)        # symbolic input dims that were set to 1
    notes: list[str] = field(default_factory=list)

    @property
    def macs_imported(self) -> int:
        return sum(layer_macs(layer) for layer in self.layers)

    def coverage(self) -> dict:
        """MACs imported / MACs in the graph and the MAC-carrying nodes left out."""
        total = self.macs_graph
        return {"macs_imported": self.macs_imported, "macs_graph": total,
                "fraction": round(self.macs_imported / total, 6) if total else None,
                "complete": not self.unimported, "skipped": [u.as_dict() for u in self.unimported]}

    def yaml_text(self) -> str:
        """The model file, one flow-style line per layer, then ``coverage``."""
        lines = [f"# Imported from {Path(self.source).name} by `mapc import`: one layer per MAC-carrying "
                 "node (two per LSTM/GRU/RNN).", f"name: {_scalar(self.name)}", "layers:"]
        for layer in self.layers:
            lines.append("  - " + _flow(layer))
        cov = self.coverage()
        lines.append("coverage:")
        for key, value in cov.items():
            if key != "skipped":
                lines.append(f"  {key}: {_flow(value)}")
        lines.append("  skipped:" + ("" if cov["skipped"] else " []"))
        lines += [f"    - {_flow(s)}" for s in cov["skipped"]]
        return "\n".join(lines) + "\n"

    def skipped_line(self) -> str | None:
        """One line naming the node types that carry no MACs (and other notes), or None."""
        parts = []
        if self.skipped:
            kinds = [f"{op} x{n}" if n > 1 else op
                     for op, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))]
            parts.append(f"skipped {sum(self.skipped.values())} node(s) without MACs: {', '.join(kinds)}")
        if self.unimported:
            parts.append(self.unimported_text() + "; imported " + _share(self.macs_imported, self.macs_graph)
                         + " of the graph's MACs")
        if self.symbolic:
            parts.append(f"symbolic input dims set to 1: {', '.join(self.symbolic)}")
        return "; ".join(parts + self.notes) or None

    def unimported_text(self) -> str:
        """The MAC-carrying nodes left out, with their share of the graph's MACs."""
        shown = [f"{u.op} '{u.node}' ({u.reason}, "
                 + (f"{_share(u.macs, self.macs_graph)} of the MACs)" if u.macs is not None else "MACs unknown)")
                 for u in sorted(self.unimported, key=lambda u: -(u.macs or 0))[:_SHOWN]]
        more = len(self.unimported) - len(shown)
        known = sum(u.macs or 0 for u in self.unimported)
        return (f"{len(self.unimported)} MAC-carrying node(s) not imported, {_share(known, self.macs_graph)} "
                f"of the graph's MACs: " + ", ".join(shown) + (f" and {more} more" if more > 0 else ""))


def _share(part: int, total: int) -> str:
    return f"{100 * part / total:.3g} %" if total else "?"


def layer_macs(layer: dict) -> int:
    """MACs of one imported layer (``repeat`` included): the product of its loop extents."""
    if "statement" in layer:
        dims = layer["dims"]
    else:
        _, dims, _ = _expand_preset(LocDict(kind=layer["kind"], params=LocDict(layer["params"])), "<import>")
    return math.prod(dims.values()) * layer.get("repeat", 1)


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
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value) if isinstance(value, (int, float)) else _scalar(value)


def _safe_name(name: str) -> str:
    return file_stem(name, "layer").strip("_") or "layer"


def node_path(node, index: int) -> str:
    """A readable name: the module path the exporter recorded, else the node name."""
    props = {p.key: p.value for p in node.metadata_props}
    scopes = _literal_list(props.get("pkg.torch.onnx.name_scopes", ""))
    classes = _literal_list(props.get("pkg.torch.onnx.class_hierarchy", ""))
    if len(scopes) == len(classes) and classes and classes[-1].startswith("aten."):
        scopes = scopes[:-1]  # the last scope names the aten op, not a module
    scopes = [s for s in scopes if s]
    if scopes:
        # a Conv with a BatchNorm folded in carries the BatchNorm's scopes (``conv1.bn``); its
        # weight keeps the parameter's name (``conv1.conv.weight``), which names the conv itself
        weight = re.fullmatch(r"([A-Za-z_]\w*(?:\.\w+)*)\.weight", node.input[1] if len(node.input) > 1 else "")
        return weight.group(1) if weight else _join_scopes(scopes)
    name = node.name
    if name.startswith("/"):  # TorchScript: /layer1/layer1.0/conv1/Conv
        parts = [p for p in name.split("/") if p]
        if len(parts) > 1 and re.fullmatch(rf"{node.op_type}(_\d+)?", parts[-1]):
            parts = parts[:-1]
        return _join_scopes(parts) if parts else name
    return name or f"{node.op_type.lower()}{index}"


def _literal_list(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _join_scopes(scopes: list[str]) -> str:
    """Module scopes -> one dotted path.  A scope is a full path (``layer1.0`` after ``layer1``), a
    path relative to the previous scope (``branch1.0`` after ``branch1``) or a child's name."""
    out = last = ""
    for s in scopes:
        if not out or s.startswith(out + "."):
            out = s
        elif last and s.startswith(last + "."):
            out += s[len(last):]
        else:
            out = f"{out}.{s}"
        last = s
    return out


def import_onnx(path: str | Path, *, dtype: str | None = None, name: str | None = None,
                allow_partial: bool = False) -> ImportResult:
    """Read ONNX file ``path`` into an :class:`ImportResult` (raises one-line :class:`InputError`).

    ``dtype`` overrides the element type read from the graph (default: the input tensor's type,
    int8 when it has none we know).  A MAC-carrying node that cannot be imported is an error
    unless ``allow_partial``."""
    require_onnx()  # before looking at the file: the missing package is the first thing to fix
    path = Path(path)
    if not path.is_file():
        raise InputError("ONNX file not found" if not path.exists() else "not a file", file=str(path))
    model, symbolic, notes = load_shapes(str(path))
    result = ImportResult(name=_safe_name(name or path.stem), source=str(path), symbolic=sorted(set(symbolic)),
                          notes=notes)
    g = Shapes(model.graph, *declared_shapes(model.graph))
    used: set[str] = set()
    for i, node in enumerate(model.graph.node):
        handler = HANDLERS.get(node.op_type)
        if handler is None or (node.op_type == "Einsum" and len(node.input) < 2):  # a transpose or sum
            result.skipped[node.op_type] += 1
            continue
        macs = graph_macs(node, g)
        layers = handler(node, g)
        label = node_path(node, i)
        if macs is None and not isinstance(layers, str):  # output shape unknown, sizes from attributes
            macs = sum(layer_macs(layer) for _, layer in layers)
        result.macs_graph += macs or 0
        if isinstance(layers, str):
            result.unimported.append(Unimported(label, node.op_type, layers, macs))
            continue
        base = _safe_name(label)
        elem = dtype or _DTYPES.get(g.elem.get(node.input[0], 0), "int8")
        for suffix, layer in layers:
            stem = first = f"{base}.{suffix}" if suffix else base
            n = 2
            while stem.lower() in used:
                stem, n = f"{first}_{n}", n + 1
            used.add(stem.lower())
            result.layers.append({"name": stem, **{k: v for k, v in layer.items() if k not in ("params", "repeat")},
                                  "dtype": elem, **({"params": layer["params"]} if "params" in layer else {}),
                                  **({"repeat": layer["repeat"]} if layer.get("repeat", 1) > 1 else {})})
    if not result.layers:
        what = f": {result.unimported_text()}" if result.unimported else ""
        raise InputError(f"no MAC-carrying node could be imported{what}; nothing to compile"
                         if result.unimported else "no Conv, Gemm, MatMul, Einsum or recurrent node: nothing "
                         "to compile", file=str(path))
    if result.unimported and not allow_partial:
        raise InputError(result.unimported_text() + " (--allow-partial imports the rest)", file=str(path))
    return result

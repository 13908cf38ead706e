"""Static shapes of an ONNX graph for ``mapc import``: read shapes, not weights.

:func:`load_shapes` reads the file's protobuf fields without the weights' bytes (:func:`skim`
copies every field except the data of weight-sized initializers; external data is never
opened), replaces each such initializer by a graph input that declares only its shape, sets
symbolic input dims to 1, and then alternates ONNX shape inference (with data propagation) with
a small constant folder.  The folder evaluates the integer tensors that
exporters compute from shapes at run time (``Shape -> Gather -> Concat -> Reshape``, the pads of
a ``Pad``, the sizes of a ``Resize``, the bounds of a ``Slice``) and turns each value it knows into
an initializer, so that the next round of inference sees constants where the graph had
computations.  It stops when a round folds nothing new.
"""
from __future__ import annotations

import mmap

import numpy as np

from .errors import InputError, MapcError

# Initializers up to this many elements are kept (shape chains read them); larger ones are weights.
SMALL = 64
# A folded value larger than this is not a shape computation: leave it to run time.
_FOLD_LIMIT = 4096
_ROUNDS = 200   # each round folds at least one node; real graphs need a few dozen


def require_onnx():
    """The onnx module, or the one-line error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MapcError("mapc import needs the onnx package (pip install 'mapc[onnx]')") from None
    return onnx


def attrs(node) -> dict:
    """A node's attributes as plain Python values (strings decoded)."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# protobuf field numbers (onnx.proto): ModelProto.graph, GraphProto.initializer, TensorProto.dims
_GRAPH, _INITIALIZER, _DIMS = 7, 5, 1
# TensorProto fields that hold or locate the data: *_data, raw_data, external_data, data_location
_DATA_FIELDS = {4, 5, 6, 7, 9, 10, 11, 13, 14}


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf, start: int, end: int):
    """``(field number, wire type, start of the field, start of its payload, end)`` per field."""
    pos = start
    while pos < end:
        key, p = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            q = _varint(buf, p)[1]
        elif wire == 1:
            q = p + 8
        elif wire == 5:
            q = p + 4
        elif wire == 2:
            n, p = _varint(buf, p)
            q = p + n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        if q > end:
            raise ValueError("truncated protobuf field")
        yield key >> 3, wire, pos, p, q
        pos = q


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _packed(buf, p: int, q: int) -> list[int]:
    out = []
    while p < q:
        value, p = _varint(buf, p)
        out.append(value)
    return out


def _skim_tensor(buf, start: int, end: int) -> bytes:
    """A TensorProto without its data when it holds more than :data:`SMALL` elements."""
    dims, kept = [], []
    for number, wire, pos, p, q in _fields(buf, start, end):
        if number == _DIMS:
            dims += [_varint(buf, p)[0]] if wire == 0 else _packed(buf, p, q)
        if number not in _DATA_FIELDS:
            kept.append(bytes(buf[pos:q]))
    return b"".join(kept) if int(np.prod(dims, dtype=np.int64)) > SMALL else bytes(buf[start:end])


def skim(path: str) -> bytes:
    """The ModelProto bytes of ``path`` with the data of every weight-sized initializer left out
    (through a memory map: the pages that hold only weights are never read)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        out = []
        for number, _, pos, p, q in _fields(buf, 0, len(buf)):
            if number != _GRAPH:
                out.append(bytes(buf[pos:q]))
                continue
            graph = [_length_field(_INITIALIZER, _skim_tensor(buf, gp, gq)) if n == _INITIALIZER
                     else bytes(buf[gpos:gq]) for n, _, gpos, gp, gq in _fields(buf, p, q)]
            out.append(_length_field(_GRAPH, b"".join(graph)))
        return b"".join(out)


def _strip_weights(graph, onnx) -> None:
    """Move weight-sized initializers to graph inputs that declare only their shape."""
    inputs = {vi.name for vi in graph.input}
    keep = []
    for init in graph.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= SMALL:
            keep.append(init)
        elif init.name not in inputs:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    del graph.initializer[:]
    graph.initializer.extend(keep)


def fix_symbolic_inputs(graph) -> list[str]:
    """Give symbolic graph-input dims the value 1 (shape inference needs numbers); returns their names."""
    named = []
    for vi in graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                named.append(d.dim_param or "?")
                d.dim_value = 1
    return named


def load_shapes(path: str) -> tuple[object, list[str], list[str]]:
    """The model with weights stripped and shapes inferred; its symbolic dims; notes."""
    onnx = require_onnx()
    try:
        model = onnx.load_model_from_string(skim(path))
    except Exception as e:  # protobuf (or the skim) raises several types for a file that is not ONNX
        raise InputError(f"not a readable ONNX model ({e.__class__.__name__}: {e})", file=path) from None
    _strip_weights(model.graph, onnx)
    symbolic = fix_symbolic_inputs(model.graph)
    notes: list[str] = []
    folded = 0
    for _ in range(_ROUNDS):
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception as e:  # keep going with what is declared; conv sizes come from attributes
            notes.append(f"shape inference failed ({e.__class__.__name__}), used the declared shapes")
            break
        new = _fold(model.graph, onnx)
        if not new:
            break
        folded += new
    return model, symbolic, notes


def declared_shapes(graph) -> tuple[dict[str, tuple[int, ...] | None], dict[str, int]]:
    """Every tensor's static shape (None if any dim is unknown) and element type."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    elem: dict[str, int] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = vi.type.tensor_type
        if t.elem_type:
            elem[vi.name] = t.elem_type
        if t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
            shapes[vi.name] = None if None in dims else tuple(dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        elem[init.name] = init.data_type
    return shapes, elem


def _fold(graph, onnx) -> int:
    """Evaluate the small integer computations whose inputs are known; each value becomes an
    initializer and its producing node is removed.  Returns how many nodes were folded."""
    from onnx import numpy_helper

    shapes, _ = declared_shapes(graph)
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer
              if i.data_location != onnx.TensorProto.EXTERNAL}
    keep, new_inits = [], []
    for node in graph.node:
        out = _evaluate(node, values, shapes)
        if out is None or len(out) != len(node.output) or any(v.size > _FOLD_LIMIT for v in out):
            keep.append(node)
            continue
        for name, value in zip(node.output, out):
            values[name] = value
            new_inits.append(numpy_helper.from_array(np.asarray(value), name))
    if not new_inits:
        return 0
    # a folded tensor is now an initializer: drop its producer and any stale value_info
    done = {i.name for i in new_inits}
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    stale = [vi for vi in graph.value_info if vi.name in done]
    for vi in stale:
        graph.value_info.remove(vi)
    return len(done)


def _ints(values: dict, node, i: int):
    return values.get(node.input[i]) if len(node.input) > i and node.input[i] else None


def _evaluate(node, values: dict, shapes: dict) -> list[np.ndarray] | None:
    """The outputs of ``node`` when every input it reads is known, else None."""
    op, a = node.op_type, attrs(node)
    if op == "Constant":
        from onnx import numpy_helper
        if "value" in a:
            return [numpy_helper.to_array(a["value"])]
        for key, dtype in (("value_ints", np.int64), ("value_int", np.int64), ("value_floats", np.float32),
                           ("value_float", np.float32)):
            if key in a:
                return [np.array(a[key], dtype=dtype)]
        return None
    if op in ("Shape", "Size"):
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        if op == "Size":
            return [np.array(int(np.prod(shape)), dtype=np.int64)]
        return [np.array(shape[a.get("start", 0):a.get("end", len(shape))], dtype=np.int64)]
    ins = [values.get(name) if name else None for name in node.input]
    if not ins or any(v is None for v, name in zip(ins, node.input) if name):
        return None
    try:
        return _compute(op, a, ins)
    except Exception:  # a value we cannot compute is simply left to run time
        return None


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
           "Greater": np.greater, "And": np.logical_and, "Or": np.logical_or, "Max": np.maximum,
           "Min": np.minimum, "Mod": np.mod, "Pow": np.power}
_UNARY = {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
          "Not": np.logical_not, "Identity": lambda x: x, "Reciprocal": np.reciprocal}


def _axes(a: dict, ins: list, i: int) -> list[int] | None:
    if len(ins) > i and ins[i] is not None:
        return [int(x) for x in np.ravel(ins[i])]
    return list(a["axes"]) if "axes" in a else None


def _compute(op: str, a: dict, ins: list) -> list[np.ndarray] | None:
    """Numpy semantics of the ONNX ops that shape computations use."""
    from onnx import helper

    x = ins[0]
    if op in _BINARY:
        return [_BINARY[op](x, ins[1])]
    if op in _UNARY:
        return [_UNARY[op](x)]
    if op == "Div":
        both_int = np.issubdtype(x.dtype, np.integer) and np.issubdtype(ins[1].dtype, np.integer)
        return [np.trunc(x / ins[1]).astype(x.dtype) if both_int else x / ins[1]]
    if op == "Cast":
        return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Gather":
        return [np.take(x, ins[1], axis=a.get("axis", 0))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in ins], axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        axes = _axes(a, ins, 1)
        out = x
        for ax in sorted(ax % (x.ndim + len(axes)) for ax in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Squeeze":
        axes = _axes(a, ins, 1)
        return [np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)]
    if op == "Slice":
        starts, ends = (_axes(a, ins, 1), _axes(a, ins, 2)) if len(ins) > 1 else (a["starts"], a["ends"])
        axes = _axes(a, ins, 3) if len(ins) > 1 else a.get("axes")
        steps = _axes(a, ins, 4) or [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes or range(len(starts)), steps):
            sl[ax] = slice(s, e, st)
        return [x[tuple(sl)]]
    if op == "Reshape":
        shape = [int(d) for d in ins[1]]
        shape = [x.shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "ConstantOfShape":
        from onnx import numpy_helper
        fill = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return [np.full([int(d) for d in x], fill.ravel()[0], dtype=fill.dtype)]
    if op == "Range":
        return [np.arange(x, ins[1], ins[2]).astype(x.dtype)]
    if op == "Where":
        return [np.where(x, ins[1], ins[2])]
    if op == "Expand":
        return [x * np.ones([int(d) for d in ins[1]], dtype=x.dtype)]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin"):
        fn = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}[op]
        axes = _axes(a, ins, 1)
        return [fn(x, axis=tuple(axes) if axes else None, keepdims=bool(a.get("keepdims", 1)))]
    return None

"""The ONNX nodes that carry multiply-accumulates, as model-file layers (for ``mapc import``).

Each handler takes a node and the graph's static shapes and returns either a list of
``(suffix, layer)`` pairs (``layer`` holds model-file keys: ``kind``/``params`` or
``statement``/``dims``, and ``repeat``) or the one-line reason it cannot.  Independently,
:func:`graph_macs` counts a node's MACs from the tensor shapes alone (``prod(Y) * prod(W[1:])`` for
a convolution, ``prod(Y) * K`` for a product), which is what import coverage is measured against.

Forms (``s``, ``d`` stride and dilation per axis; coefficients of 1 are not written):

* ``Conv`` with 2 spatial axes (1 is a 2-D conv with one row), square stride, no dilation:
  ``conv2d``/``dwconv``/``gconv``; otherwise, and with 3 spatial axes, a statement such as
  ``O[n,k,d,p,q] += I[n,c,d+t,p+r,q+s] * W[k,c,t,r,s]`` or ``I[n,c,p+2*r,q+2*s]``.
* ``ConvTranspose``: the scatter form ``O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]``; every input
  pixel meets every tap (all ``H*W*R*S`` MACs); padding only crops the output.
* ``Gemm``; ``MatMul``: ``gemm`` when the right operand has no batch (the left one's batch folds into
  M), ``bmm``/``attn_score``/``attn_context`` over equal batches, otherwise a broadcasting statement
  ``O[b,h,m,n] += I[b,h,m,k] * W[h,k,n]``.
* ``Einsum`` with two operands: the equation as a statement (``...`` expanded from the shapes).
* ``LSTM``/``GRU``/``RNN``: the gate GEMMs, ``x`` (input projection of all steps at once, one per
  direction) and ``h`` (the recurrent product, once per step and direction).
"""
from __future__ import annotations

import math

from .onnx_shapes import attrs

_PASS_THROUGH = {"Div", "Mul", "Add", "Sub", "Where", "Cast", "Dropout", "Identity", "Reshape",
                 "Transpose", "Softmax"}
# operand positions (input, weight) of each MAC-carrying op type
OPERANDS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "ConvTranspose": (0, 1),
            "Gemm": (0, 1), "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
            "Einsum": (0, 1), "LSTM": (0, 1), "GRU": (0, 1), "RNN": (0, 1)}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


class Shapes:
    """Static shapes, producers and consumers of an inferred ONNX graph."""

    def __init__(self, graph, shapes: dict, elem: dict):
        self.shapes, self.elem = shapes, elem
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name) if name else None

    def operands(self, node) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        a, b = OPERANDS[node.op_type]
        return (self.shape(node.input[a]) if len(node.input) > a else None,
                self.shape(node.input[b]) if len(node.input) > b else None)

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


def graph_macs(node, g: Shapes) -> int | None:
    """The node's MACs counted from its tensor shapes alone (None when a shape is unknown)."""
    op = node.op_type
    x, w = g.operands(node)
    y = g.shape(node.output[0]) if node.output else None
    if x is None or w is None:
        return None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        return math.prod(y) * math.prod(w[1:]) if y is not None else None
    if op == "ConvTranspose":
        return math.prod(x) * math.prod(w[1:])
    if op in _GATES:
        hidden = w[1] // _GATES[op]
        return math.prod(x[:2]) * w[0] * w[1] * (w[2] + hidden)
    if op == "Einsum":
        parsed = _einsum_terms(attrs(node)["equation"], x, w) if len(node.input) == 2 else None
        return math.prod(parsed[2].values()) if isinstance(parsed, tuple) else None
    if y is None:
        return None
    if op == "Gemm":
        return math.prod(y) * (x[0] if attrs(node).get("transA", 0) else x[1])
    return math.prod(y) * x[-1]   # MatMul family: every output element is a K-long dot product


def _term(coef: int, var: str) -> str:
    return var if coef == 1 else f"{coef}*{var}"


def _axis(s: int, out: str, d: int, tap: str) -> str:
    """``s*out + d*tap`` as written in a statement."""
    return f"{_term(s, out)}+{_term(d, tap)}"


def _window_operands(node, g: "Shapes"):
    """``(x, w, attributes, group, strides, dilations)`` of a Conv or ConvTranspose, or the reason
    it cannot be imported."""
    x, w = g.operands(node)
    if x is None or w is None:
        return "unknown shape"
    if len(x) not in (3, 4, 5) or len(w) != len(x):
        return f"{len(x) - 2} spatial axes"
    a, rank = attrs(node), len(x) - 2
    return x, w, a, int(a.get("group", 1)), list(a.get("strides", [1] * rank)), list(a.get("dilations", [1] * rank))


def _one_row(*axes: list[int]) -> list[list[int]]:
    """Per-axis lists of a 1-D window with a unit row in front (a 1-D conv is one row of a 2-D one)."""
    return [[1] + list(v) for v in axes] if len(axes[0]) == 1 else [list(v) for v in axes]


def _conv_out(size: int, k: int, s: int, d: int, pads: tuple[int, int], auto_pad: str) -> int:
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return math.ceil(size / s)
    if auto_pad == "VALID":
        pads = (0, 0)
    return (size + pads[0] + pads[1] - ((k - 1) * d + 1)) // s + 1


_OUT = {2: ("p", "q"), 3: ("d", "p", "q")}
_TAP = {2: ("r", "s"), 3: ("t", "r", "s")}
_IN = {2: ("h", "w"), 3: ("d", "h", "w")}


def conv(node, g: Shapes) -> list | str:
    """Conv (and its integer forms) with 1, 2 or 3 spatial axes."""
    found = _window_operands(node, g)
    if isinstance(found, str):
        return found
    x, w, a, group, strides, dilations = found
    n, c, m, kernel, rank = x[0], x[1], w[0], list(w[2:]), len(x) - 2
    y = g.shape(node.output[0])
    if y is not None and len(y) == len(x):
        outs = list(y[2:])
    else:
        pads = list(a.get("pads", [0] * 2 * rank))
        outs = [_conv_out(x[2 + i], kernel[i], strides[i], dilations[i], (pads[i], pads[i + rank]),
                          a.get("auto_pad", "NOTSET")) for i in range(rank)]
    outs, kernel, strides, dilations = _one_row(outs, kernel, strides, dilations)
    rank = len(outs)
    if min(outs) < 1:
        return "empty output"
    kind = "conv2d" if group == 1 else "dwconv" if group == c == m else "gconv"
    if rank == 2 and strides[0] == strides[1] and dilations == [1, 1]:
        if kind == "conv2d":
            params = {"N": n, "K": m, "C": c}
        elif kind == "dwconv":
            params = {"N": n, "C": c}
        else:
            params = {"N": n, "G": group, "K": m // group, "C": c // group}
        params.update({"P": outs[0], "Q": outs[1], "R": kernel[0], "S": kernel[1]})
        if strides[0] != 1:
            params["stride"] = strides[0]
        return [("", {"kind": kind, "params": params})]
    o, t = _OUT[rank], _TAP[rank]
    win = ",".join(_axis(strides[i], o[i], dilations[i], t[i]) for i in range(rank))
    out, taps = ",".join(o), ",".join(t)
    dims = {"n": n} | dict(zip(o, outs)) | dict(zip(t, kernel))
    if kind == "conv2d":
        st, dims = f"O[n,k,{out}] += I[n,c,{win}] * W[k,c,{taps}]", dims | {"k": m, "c": c}
    elif kind == "dwconv":
        st, dims = f"O[n,c,{out}] += I[n,c,{win}] * W[c,{taps}]", dims | {"c": c}
    else:
        st = f"O[n,g,k,{out}] += I[n,g,c,{win}] * W[g,k,c,{taps}]"
        dims |= {"g": group, "k": m // group, "c": c // group}
    return [("", {"statement": st, "dims": dims})]


def conv_transpose(node, g: Shapes) -> list | str:
    """ConvTranspose as a scatter: input pixel ``h`` meets tap ``r`` at output ``s*h + d*r``."""
    found = _window_operands(node, g)
    if isinstance(found, str):
        return found
    x, w, _, group, strides, dilations = found
    n, c, per_group = x[0], x[1], w[1]
    sizes, kernel, strides, dilations = _one_row(x[2:], w[2:], strides, dilations)
    rank = len(sizes)
    i, t = _IN[rank], _TAP[rank]
    win = ",".join(_axis(strides[k], i[k], dilations[k], t[k]) for k in range(rank))
    ins, taps = ",".join(i), ",".join(t)
    dims = {"n": n} | dict(zip(i, sizes)) | dict(zip(t, kernel))
    if group == 1:
        st, dims = f"O[n,k,{win}] += I[n,c,{ins}] * W[c,k,{taps}]", dims | {"c": c, "k": per_group}
    elif group == c and per_group == 1:
        st, dims = f"O[n,c,{win}] += I[n,c,{ins}] * W[c,{taps}]", dims | {"c": c}
    else:
        st = f"O[n,g,k,{win}] += I[n,g,c,{ins}] * W[g,c,k,{taps}]"
        dims |= {"g": group, "c": c // group, "k": per_group}
    return [("", {"statement": st, "dims": dims})]


def gemm(node, g: Shapes) -> list | str:
    """Gemm with ``transA``/``transB`` applied (the bias is not a MAC)."""
    a, b = g.operands(node)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return "unknown shape"
    at = attrs(node)
    m, k = (a[1], a[0]) if at.get("transA", 0) else a
    n = b[0] if at.get("transB", 0) else b[1]
    return [("", {"kind": "gemm", "params": {"M": m, "K": k, "N": n}})]


_BATCH = ("b", "h", "e", "f", "u", "v")


def matmul(node, g: Shapes) -> list | str:
    """MatMul with numpy broadcasting of the batch dims."""
    a, b = g.operands(node)
    if a is None or b is None:
        return "unknown shape"
    a = (1,) + a if len(a) == 1 else a          # a vector times a matrix: one row
    b = b + (1,) if len(b) == 1 else b          # a matrix times a vector: one column
    (m, k), n = a[-2:], b[-1]
    if math.prod(b[:-2]) == 1:  # shared right operand (weights): the left operand's batch folds into M
        return [("", {"kind": "gemm", "params": {"M": math.prod(a[:-2]) * m, "K": k, "N": n}})]
    nb = max(len(a), len(b)) - 2
    if nb > len(_BATCH):
        return f"{nb} batch dims"
    pa, pb = (1,) * (nb + 2 - len(a)) + a[:-2], (1,) * (nb + 2 - len(b)) + b[:-2]
    batch = [max(x, y) for x, y in zip(pa, pb)]
    if pa == pb:  # no broadcasting: one batch dim
        total = math.prod(batch)
        if g.feeds_softmax(node.output[0]):
            return [("", {"kind": "attn_score", "params": {"H": total, "L": m, "LK": n, "D": k}})]
        if g.from_softmax(node.input[0]):
            return [("", {"kind": "attn_context", "params": {"H": total, "L": m, "LK": k, "D": n}})]
        return [("", {"kind": "bmm", "params": {"B": total, "M": m, "K": k, "N": n}})]
    names = [(_BATCH[i], e) for i, e in enumerate(batch) if e > 1]
    ia = [_BATCH[i] for i, e in enumerate(pa) if e > 1]
    ib = [_BATCH[i] for i, e in enumerate(pb) if e > 1]
    out = ",".join([d for d, _ in names] + ["m", "n"])
    st = f"O[{out}] += I[{','.join(ia + ['m', 'k'])}] * W[{','.join(ib + ['k', 'n'])}]"
    return [("", {"statement": st, "dims": dict(names) | {"m": m, "k": k, "n": n}})]


def _ellipsis(term: str, rank: int, width: int) -> list[str]:
    """``term``'s indices with ``...`` standing for the last ``rank - len(letters)`` of ``width``."""
    if "..." not in term:
        return list(term)
    head, tail = term.split("...")
    k = rank - len(head) - len(tail)
    return list(head) + [str(i) for i in range(width - k, width)] + list(tail)


def _einsum_terms(equation: str, a: tuple[int, ...], b: tuple[int, ...]):
    """The index lists of both operands and the output (``...`` expanded to ``0``, ``1``, ...) and
    each index's extent, or the reason the equation has no two-operand statement."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if lhs.count(",") != 1:
        return f"{lhs.count(',') + 1} operands"
    ta, tb = lhs.split(",")
    width = max(len(s) - len(t.replace("...", "")) for s, t in ((a, ta), (b, tb)))
    terms = [_ellipsis(ta, len(a), width), _ellipsis(tb, len(b), width)]
    if not arrow:  # implicit output: the ellipsis, then the letters seen once, in alphabetical order
        seen = [x for t in terms for x in t]
        out = [str(i) for i in range(width)] + sorted(x for x in set(seen) if seen.count(x) == 1
                                                     and not x.isdigit())
    else:
        out = _ellipsis(rhs, len(rhs.replace("...", "")) + width, width)
    if any(len(set(t)) != len(t) for t in terms + [out]):
        return "repeated index in one operand"
    extents: dict[str, int] = {}
    for term, shape in zip(terms, (a, b)):
        if len(term) != len(shape):
            return "equation does not match the operand ranks"
        for letter, e in zip(term, shape):
            extents[letter] = max(extents.get(letter, 1), e)
    return terms, out, extents


def einsum(node, g: Shapes) -> list | str:
    """A two-operand Einsum as a statement; broadcast (size-1) axes are not indexed."""
    a, b = g.operands(node)
    if len(node.input) != 2:
        return f"{len(node.input)} operands"
    if a is None or b is None:
        return "unknown shape"
    parsed = _einsum_terms(attrs(node)["equation"], a, b)
    if isinstance(parsed, str):
        return parsed
    terms, rhs, extents = parsed
    names = {x: _dim_name(x) for x in extents}
    out = [names[x] for x in rhs if x in names]
    if not out:
        return "scalar output"

    def access(tensor: str, term: list[str], shape) -> str:
        idx = [names[x] for x, e in zip(term, shape) if e > 1 or extents[x] == 1]
        return f"{tensor}[{','.join(idx or [names[term[0]]])}]"
    st = f"O[{','.join(out)}] += {access('I', terms[0], a)} * {access('W', terms[1], b)}"
    return [("", {"statement": st, "dims": {names[x]: e for x, e in extents.items()}})]


def _dim_name(letter: str) -> str:
    if letter.isdigit():
        return f"e{letter}"
    return letter if letter.islower() else f"{letter.lower()}{letter.lower()}"


def recurrent(node, g: Shapes) -> list | str:
    """LSTM/GRU/RNN: the input projection over all steps and the recurrent product per step."""
    x, w = g.operands(node)
    if x is None or w is None or len(x) != 3 or len(w) != 3:
        return "unknown shape"
    layout = attrs(node).get("layout", 0)
    seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
    dirs, gates_h, inputs = w
    hidden = gates_h // _GATES[node.op_type]
    return [("x", {"kind": "gemm", "params": {"M": seq * batch, "K": inputs, "N": gates_h}, "repeat": dirs}),
            ("h", {"kind": "gemm", "params": {"M": batch, "K": hidden, "N": gates_h}, "repeat": seq * dirs})]


HANDLERS = {"Conv": conv, "ConvInteger": conv, "QLinearConv": conv, "ConvTranspose": conv_transpose,
            "Gemm": gemm, "MatMul": matmul, "MatMulInteger": matmul, "QLinearMatMul": matmul,
            "Einsum": einsum, "LSTM": recurrent, "GRU": recurrent, "RNN": recurrent}

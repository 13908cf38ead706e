"""gemm-lowering: conv / grouped / depthwise / attention ops as (batched) GEMMs, checked numerically."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from compiler.frontend import build_op, load_op
from passes.conformance import classify
from passes.gemm_lowering import lower

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def direct(op, arrays):
    """The op's statement evaluated point by point (small ops only)."""
    out = np.zeros(op.output.extents, dtype=np.int64)
    inp, wgt = op.reads
    for point in itertools.product(*(range(d.extent) for d in op.dims)):
        env = dict(zip(op.dim_names, point))
        at = lambda t: tuple(sum(c * env[d] for d, c in sub.terms) + sub.const for sub in t.index)  # noqa: E731
        out[at(op.output)] += arrays[inp.name][at(inp)] * arrays[wgt.name][at(wgt)]
    return out


def via_gemm(op, rec, arrays):
    """Build A (im2col) and B from the lowering's dim mapping, multiply, scatter C back."""
    groups = dict(rec.dims)
    ext = dict(rec.extents)
    gemm_dims = [g for g, _ in rec.extents]

    def decode(g, idx):      # mixed-radix: the first source dim is the most significant
        env, rest = {}, idx
        for d in reversed(groups[g]):
            env[d], rest = rest % op.extent(d), rest // op.extent(d)
        return env

    def gather(t, dims):
        shape = tuple(ext[g] for g in dims)
        arr = np.zeros(shape, dtype=np.int64)
        for idx in itertools.product(*(range(s) for s in shape)):
            env = {}
            for g, i in zip(dims, idx):
                env.update(decode(g, i))
            if all(d in env for d in t.dims):
                arr[idx] = arrays[t.name][tuple(sum(c * env[d] for d, c in sub.terms) for sub in t.index)]
        return arr
    a_dims = [g for g in ("b", "m", "k") if g in gemm_dims]
    b_dims = [g for g in ("b", "k", "n") if g in gemm_dims]
    a = gather(op.reads[0], a_dims)
    b = gather(op.reads[1], b_dims)
    c = np.einsum("bmk,bkn->bmn", a.reshape(ext.get("b", 1), ext["m"], ext["k"]),
                  b.reshape(ext.get("b", 1), ext["k"], ext["n"]))
    out = np.zeros(op.output.extents, dtype=np.int64)
    for bi, mi, ni in itertools.product(range(ext.get("b", 1)), range(ext["m"]), range(ext["n"])):
        env = {**(decode("b", bi) if "b" in ext else {}), **decode("m", mi), **decode("n", ni)}
        out[tuple(env[d] for sub in op.output.index for d in sub.dims)] += c[bi, mi, ni]
    return out


CASES = {
    "conv": ("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", {"n": 2, "k": 3, "c": 2, "p": 3, "q": 4, "r": 2, "s": 3}),
    "strided": ("O[n,k,p,q] += I[n,c,2*p+r,2*q+s] * W[k,c,r,s]", {"n": 1, "k": 2, "c": 3, "p": 3, "q": 2, "r": 3, "s": 2}),
    "dilated": ("O[n,k,p,q] += I[n,c,p+2*r,q+2*s] * W[k,c,r,s]", {"n": 1, "k": 2, "c": 2, "p": 3, "q": 3, "r": 2, "s": 2}),
    "depthwise": ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", {"n": 1, "c": 3, "p": 4, "q": 3, "r": 2, "s": 2}),
    "grouped": ("O[n,g,k,p,q] += I[n,g,c,p+r,q+s] * W[g,k,c,r,s]",
                {"n": 1, "g": 2, "k": 2, "c": 3, "p": 3, "q": 2, "r": 2, "s": 1}),
    "attention": ("O[h,i,j] += Q[h,i,d] * KT[h,d,j]", {"h": 2, "i": 3, "j": 4, "d": 5}),
    "fc": ("O[n,k] += I[n,c] * W[c,k]", {"n": 3, "k": 4, "c": 5}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lowering_computes_the_same(name):
    statement, dims = CASES[name]
    op = build_op(name, statement, dims)
    lowered, rec = lower(op, classify(op))
    rng = np.random.default_rng(3)
    arrays = {t.name: rng.integers(-3, 4, size=t.extents) for t in op.reads}
    assert np.array_equal(via_gemm(op, rec, arrays), direct(op, arrays))
    assert lowered.macs == op.macs


def test_conv3x3_mapping_and_duplication():
    op = load_op(EXAMPLES / "conv3x3.yaml")
    lowered, rec = lower(op, classify(op))
    assert dict(rec.dims) == {"m": ("n", "p", "q"), "n": ("k",), "k": ("c", "r", "s")}
    assert dict(rec.extents) == {"m": 784, "n": 128, "k": 1152}
    # im2col: 784 x 1152 elements from a 128 x 30 x 30 input: 9 * 784 / 900 = 7.84x
    assert rec.duplication == pytest.approx(784 * 1152 / (128 * 30 * 30))
    assert lowered.tensor("I").size == 784 * 1152
    assert "input duplication: 115,200 -> 903,168 elements (7.840x)" in rec.pretty()


def test_depthwise_is_a_batch_over_channels():
    op = load_op(EXAMPLES / "dwconv.yaml")
    lowered, rec = lower(op, classify(op))
    assert dict(rec.extents) == {"b": 144, "m": 56 * 56, "n": 1, "k": 9}
    assert lowered.kind == "bmm"
    assert lowered.statement == "O[b,m,n] += I[b,m,k] * W[b,k,n]"


def test_pointwise_conv_has_no_duplication():
    op = load_op(EXAMPLES / "conv1x1.yaml")
    _, rec = lower(op, classify(op))
    assert rec.duplication == 1.0
    assert math.prod(e for _, e in rec.extents) == op.macs

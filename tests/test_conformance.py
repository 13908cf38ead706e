"""Conformance: which statements MDC can express, and the error for those it cannot."""
from __future__ import annotations

import pytest

from compiler.errors import ConformanceError, InputError
from compiler.frontend import build_op
from passes.conformance import conform, problems


def verdict(statement: str, dims: dict[str, int]):
    return conform(build_op("t", statement, dims), decompose=False)


ACCEPTED = [
    # (statement, dims, MDC layer type, selected roles)
    ("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", dict(n=1, k=4, c=3, p=5, q=5, r=3, s=3),
     "CONV", {"K": "k", "C": "c", "Y": "p", "R": "r", "X": "q", "S": "s", "N": "n"}),
    ("O[n,k,p,q] += I[n,c,2*p+r,2*q+s] * W[k,c,r,s]", dict(n=1, k=4, c=3, p=5, q=5, r=7, s=7),
     "CONV", {"Y": "p", "R": "r"}),
    ("O[n,k,p,q] += I[n,c,p,q] * W[k,c]", dict(n=1, k=8, c=4, p=7, q=7),
     "CONV", {"Y": "p", "X": "q", "N": "n"}),                         # 1x1 conv without r, s
    ("O[n,k,p,q] += I[n,c,2*p,2*q] * W[k,c]", dict(n=1, k=8, c=4, p=7, q=7),
     "CONV", {"Y": "p", "X": "q"}),                                   # strided 1x1
    ("O[n,c,p,q] += I[n,c,p+r,q+s] * W[c,r,s]", dict(n=1, c=8, p=5, q=5, r=3, s=3),
     "DSCONV", {"C": "c", "Y": "p"}),
    ("O[n,g,k,p,q] += I[n,g,c,p+r,q+s] * W[g,k,c,r,s]", dict(n=1, g=4, k=2, c=2, p=5, q=5, r=3, s=3),
     "CONV", {"K": "k", "C": "c"}),                                   # one CONV per group
    ("O[m,n] += I[m,k] * W[k,n]", dict(m=3, n=5, k=7), "GEMM", {"M": "m", "N": "n", "K": "k"}),
    ("O[b,m,n] += I[b,m,k] * W[b,k,n]", dict(b=2, m=3, n=5, k=7), "GEMM", {"M": "m"}),
    ("O[h,i,j] += Q[h,i,d] * KT[h,d,j]", dict(h=2, i=4, j=4, d=8), "GEMM", {"M": "i", "N": "j", "K": "d"}),
    ("O[n] += I[k] * W[k,n]", dict(n=16, k=16), "GEMM", {"N": "n", "K": "k"}),   # GEMV
    ("O[m,x,n] += I[m,x,k] * W[k,n]", dict(m=3, x=2, n=5, k=7), "CONV",
     {"Y": "m", "X": "x", "K": "n", "C": "k"}),                       # two plain rows: a 1x1 conv
]


@pytest.mark.parametrize("statement,dims,layer_type,roles", ACCEPTED)
def test_accepted(statement, dims, layer_type, roles):
    form = verdict(statement, dims)
    assert form.layer_type == layer_type
    for mdc, op_dim in roles.items():
        assert form.op_dim(mdc) == op_dim


def test_batch_dims_become_repeats():
    assert verdict("O[b,m,n] += I[b,m,k] * W[b,k,n]", dict(b=2, m=3, n=5, k=7)).repeat_dims == ("b",)


REJECTED = [
    # (statement, dims, words the message must contain)
    ("O[p,k] += I[p*q] * W[k,q]", dict(p=3, q=3, k=2), ["non-affine", "p*q"]),
    ("O[p,q,k] += I[p+q+r] * W[k,r]", dict(p=3, q=3, r=3, k=2), ["tensor I", "p+q+r", "more than two"]),
    ("O[i] += A[i,i] * B[i]", dict(i=4), ["tensor A", "two axes"]),
    ("O[m,n] += I[m,k] * W[k,n]", dict(m=3, n=5, k=7, z=2), ["'z'", "indexes no tensor"]),
    ("O[p,k] += I[p+1] * W[k]", dict(p=3, k=2), ["tensor I", "p+1", "constant offset"]),
    ("O[p,k] += I[p-r] * W[k,r]", dict(p=3, k=2, r=3), ["tensor I", "p-r", "negative"]),
    ("O[p,q,k] += I[p+q] * W[k]", dict(p=3, q=3, k=2), ["tensor I", "p+q", "output"]),
    ("O[m,n] += I[m,k] * W[2*k,n]", dict(m=3, n=5, k=7), ["tensor W", "2*k", "only the input"]),
    ("O[m,n] += I[m,k]", dict(m=3, n=5, k=7), ["two operands"]),
    ("O[m,n] += I[m,k] * W[k,n] * V[n]", dict(m=3, n=5, k=7), ["two operands"]),
    ("O[m,n] = I[m,k] * W[k,n]", dict(m=3, n=5, k=7), ["'='", "k"]),
    ("O[m,n,z] += I[m,k] * W[k,n]", dict(m=3, n=5, k=7, z=2), ["'z'", "broadcast"]),
    ("O[a,b,c,d,k] += I[a,b,c,d,r] * W[k,r]", dict(a=2, b=2, c=2, d=2, k=2, r=2), ["a, b", "one N"]),
    ("O[k,p,q,t] += I[p+r,q+s,t+u] * W[k,r,s,u]", dict(k=2, p=3, q=3, t=3, r=2, s=2, u=2),
     ["3 sliding-window axes"]),
    ("O[k,2*h+r] += I[c,h] * W[c,k,r]", dict(k=2, c=2, h=3, r=3), ["tensor O", "2*h+r", "scatter"]),
    ("O[g,h,p] += I[g,h,p+r] * W[g,h,r]", dict(g=2, h=2, p=3, r=2), ["g, h", "all three"]),
]


@pytest.mark.parametrize("statement,dims,words", REJECTED)
def test_rejected(statement, dims, words):
    with pytest.raises((ConformanceError, InputError)) as info:
        verdict(statement, dims)
    message = str(info.value)
    for word in words:
        assert word in message, message


DECOMPOSABLE = [
    # (statement, dims, kinds of the problems the MDC backend's decompose pass rewrites)
    ("O[k,p,q] += I[c,p+2*r,q+2*s] * W[k,c,r,s]", dict(k=4, c=3, p=5, q=5, r=3, s=3),
     ["dilation", "dilation"]),
    ("O[n,k,2*h+r,2*w+s] += I[n,c,h,w] * W[c,k,r,s]", dict(n=1, k=2, c=3, h=4, w=4, r=3, s=3),
     ["scatter", "scatter"]),
    ("O[n,k,d,p,q] += I[n,c,d+t,p+r,q+s] * W[k,c,t,r,s]", dict(n=1, k=2, c=2, d=3, p=3, q=3, t=2, r=2, s=2),
     ["windows"]),
]


@pytest.mark.parametrize("statement,dims,kinds", DECOMPOSABLE)
def test_decomposable_problems_leave_no_form(statement, dims, kinds):
    op = build_op("t", statement, dims)
    assert [p.kind for p in problems(op)] == kinds and all(p.decomposable for p in problems(op))
    assert conform(op) is None
    with pytest.raises(ConformanceError):
        conform(op, decompose=False)


def test_every_problem_is_reported_at_once():
    op = build_op("t", "O[p,k] += I[p+1,2*q] * W[k,k]", dict(p=3, k=2, q=2))
    with pytest.raises(ConformanceError) as info:
        conform(op)
    message = str(info.value)
    for words in ("two axes of W", "constant offsets", "strided subscript must use an output dim",
                  "'q' indexes only tensor I"):
        assert words in message, message

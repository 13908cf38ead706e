"""Operator presets: ``kind: conv2d`` and friends expand to a statement and dim extents.

Every preset is data: the parameters it takes (with defaults), the statement template and how
parameters become loop extents.  GEMM-like presets follow MAESTRO's convention
``(M x K) . (K x N) = (M x N)`` with K the reduction dim, so that the MDC and GEMM backends agree:
the first read tensor is the input/left operand, the second the weight/right operand.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A named operator family."""

    params: dict[str, int | str | None]  # parameter -> default (None: required; str: same as that one)
    statement: str                  # str.format template over params (stride/dilation only)
    dims: dict[str, str]            # loop dim -> parameter giving its extent
    doc: str


_CONV_WINDOW = "{stride}*p+{dilation}*r,{stride}*q+{dilation}*s"

PRESETS: dict[str, Preset] = {
    "conv2d": Preset(
        {"N": 1, "K": None, "C": None, "P": None, "Q": None, "R": None, "S": None, "stride": 1, "dilation": 1},
        "O[n,k,p,q] += I[n,c," + _CONV_WINDOW + "] * W[k,c,r,s]",
        {"n": "N", "k": "K", "c": "C", "p": "P", "q": "Q", "r": "R", "s": "S"},
        "2-D convolution; P, Q are output rows/cols, the input size is derived"),
    "dwconv": Preset(
        {"N": 1, "C": None, "P": None, "Q": None, "R": None, "S": None, "stride": 1, "dilation": 1},
        "O[n,c,p,q] += I[n,c," + _CONV_WINDOW + "] * W[c,r,s]",
        {"n": "N", "c": "C", "p": "P", "q": "Q", "r": "R", "s": "S"},
        "depthwise convolution (channel multiplier 1)"),
    "gconv": Preset(
        {"N": 1, "G": None, "K": None, "C": None, "P": None, "Q": None, "R": None, "S": None,
         "stride": 1, "dilation": 1},
        "O[n,g,k,p,q] += I[n,g,c," + _CONV_WINDOW + "] * W[g,k,c,r,s]",
        {"n": "N", "g": "G", "k": "K", "c": "C", "p": "P", "q": "Q", "r": "R", "s": "S"},
        "grouped convolution; K and C are per group"),
    "conv_transpose": Preset(
        {"N": 1, "K": None, "C": None, "H": None, "W": None, "R": None, "S": None, "stride": 1, "dilation": 1},
        "O[n,k,{stride}*h+{dilation}*r,{stride}*w+{dilation}*s] += I[n,c,h,w] * W[c,k,r,s]",
        {"n": "N", "k": "K", "c": "C", "h": "H", "w": "W", "r": "R", "s": "S"},
        "transposed convolution (scatter form): H, W are input rows/cols, the output is every "
        "element the scatter reaches (padding only crops it)"),
    "conv3d": Preset(
        {"N": 1, "K": None, "C": None, "D": None, "P": None, "Q": None, "T": None, "R": None, "S": None,
         "stride": 1, "dilation": 1},
        "O[n,k,d,p,q] += I[n,c,{stride}*d+{dilation}*t," + _CONV_WINDOW + "] * W[k,c,t,r,s]",
        {"n": "N", "k": "K", "c": "C", "d": "D", "p": "P", "q": "Q", "t": "T", "r": "R", "s": "S"},
        "3-D convolution; D, P, Q are output depth/rows/cols, T, R, S the filter"),
    "gemm": Preset(
        {"M": None, "N": None, "K": None},
        "O[m,n] += I[m,k] * W[k,n]",
        {"m": "M", "n": "N", "k": "K"},
        "(M x K) . (K x N)"),
    "fc": Preset(
        {"N": 1, "K": None, "C": None},
        "O[n,k] += I[n,c] * W[c,k]",
        {"n": "N", "k": "K", "c": "C"},
        "fully connected: batch N, C inputs, K outputs"),
    "bmm": Preset(
        {"B": None, "M": None, "N": None, "K": None},
        "O[b,m,n] += I[b,m,k] * W[b,k,n]",
        {"b": "B", "m": "M", "n": "N", "k": "K"},
        "batched (M x K) . (K x N)"),
    "attn_score": Preset(
        {"H": None, "L": None, "LK": "L", "D": None},
        "O[h,i,j] += Q[h,i,d] * KT[h,d,j]",
        {"h": "H", "i": "L", "j": "LK", "d": "D"},
        "attention scores Q.K^T per head: H heads, L queries, LK keys (default L), head dim D"),
    "attn_context": Preset(
        {"H": None, "L": None, "LK": "L", "D": None},
        "O[h,i,d] += A[h,i,j] * V[h,j,d]",
        {"h": "H", "i": "L", "j": "LK", "d": "D"},
        "attention context A.V per head: H heads, L queries, LK keys (default L), head dim D"),
}

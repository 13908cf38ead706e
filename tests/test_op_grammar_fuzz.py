"""Property tests for the operator language: print/parse round trips, and no crash on any text."""
from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.errors import MapcError
from compiler.frontend import build_op, load_op, parse_statement

DIMS = list("abcdefghijklmnpqrstuvwxyz")
TENSORS = ["O", "I", "W", "A", "B", "Kt", "V", "X1"]


@st.composite
def affine(draw, dims):
    chosen = draw(st.lists(st.sampled_from(dims), min_size=0, max_size=3, unique=True))
    terms = [(d, draw(st.integers(-4, 4).filter(bool))) for d in chosen]
    const = draw(st.integers(-5, 5)) if draw(st.booleans()) or not terms else 0
    text = ""
    for d, c in terms:
        mag = "" if abs(c) == 1 else f"{abs(c)}*"
        text += f"{'-' if c < 0 else ('+' if text else '')}{mag}{d}"
    if const or not text:
        text += f"{'-' if const < 0 else ('+' if text else '')}{abs(const)}"
    return text, set(chosen)


@st.composite
def statements(draw):
    dims = draw(st.lists(st.sampled_from(DIMS), min_size=1, max_size=6, unique=True))
    names = draw(st.lists(st.sampled_from(TENSORS), min_size=2, max_size=4, unique=True))
    used: set[str] = set()
    accesses = []
    for name in names:
        subs = draw(st.lists(affine(dims), min_size=1, max_size=4))
        used |= set().union(*(s[1] for s in subs))
        accesses.append(f"{name}[{','.join(s[0] for s in subs)}]")
    assign = draw(st.sampled_from(["+=", "="]))
    text = f"{accesses[0]} {assign} {' * '.join(accesses[1:])}"
    extents = {d: draw(st.integers(1, 4)) for d in sorted(used)}
    return text, extents


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statements())
def test_statement_round_trip(case):
    text, extents = case
    if not extents:  # constant subscripts only: there is no loop, the frontend must say so cleanly
        return
    op = build_op("fuzz", text, extents)
    assert op.statement == text
    assert build_op("fuzz", op.statement, extents).statement == text
    # Derived extents agree with the affine bounds computed by hand.
    for t in op.tensors:
        for sub, ext in zip(t.index, t.extents):
            hi = sum(max(0, c) * (extents[d] - 1) for d, c in sub.terms)
            lo = sum(min(0, c) * (extents[d] - 1) for d, c in sub.terms)
            assert ext == hi - lo + 1


STATEMENT_ALPHABET = string.ascii_letters[:12] + string.digits + "[],+-*=() _"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=STATEMENT_ALPHABET, max_size=60))
def test_any_statement_text_fails_cleanly(text):
    try:
        parse_statement(text)
    except MapcError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_op_file_fails_cleanly(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_op(path)
    except MapcError as e:
        assert "\n" not in str(e)

"""MAESTRO's tokenizer, shared by mapping files and HW files (mdc-format.md §2).

Each line is split at the separators `` \t,->():;``; a token that starts with ``//``
ends the line; numbers are read like C ``atoi``.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.errors import MappingError

SEPARATORS = frozenset(" \t,->():;")
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class RawToken:
    """One MAESTRO token with its (true, 1-based) line and column."""

    text: str
    line: int
    column: int


def tokenize(text: str) -> list[RawToken]:
    """Split ``text`` into tokens exactly as MAESTRO's boost tokenizer does."""
    out: list[RawToken] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        start = None
        for col, ch in enumerate(line + " "):
            if ch in SEPARATORS:
                if start is not None:
                    tok = line[start:col]
                    if tok.startswith("//"):
                        break  # comment: only recognised at the start of a token
                    out.append(RawToken(tok, lineno, start + 1))
                    start = None
            elif start is None:
                start = col
    return out


def atoi(text: str) -> int:
    """C ``atoi``: leading digits, else 0 (MAESTRO reads every number this way)."""
    digits = ""
    for ch in text.lstrip():
        if ch.isdigit():
            digits += ch
        else:
            break
    return int(digits) if digits else 0


def check_numbers(tokens: list[RawToken], file: str | None) -> None:
    """Refuse a number above ``INT_MAX``: MAESTRO's ``atoi`` into a C ``int`` would overflow
    (undefined behaviour), and mapc's analyses are stated for that range."""
    for t in tokens:
        if t.text[:1].isdigit() and atoi(t.text) > INT_MAX:
            raise MappingError(f"number {atoi(t.text)} exceeds MAESTRO's 32-bit integers (at most "
                               f"{INT_MAX:,})", file, str(t.line))

"""Read MDC mapping files as MAESTRO does.

The reader accepts what MAESTRO really accepts (see ``mdc-format.md`` §2-4): a line-wise
tokenizer that treats `` \\t,->():;`` as separators and a token starting with ``//`` as the end
of the line, then the lark grammar ``grammar/mdc.lark`` over those tokens, building the tree of
:mod:`compiler.mdc.syntax`.

API::

    parse_mdc(text, file=None) -> MdcFile
    parse_mdc_file(path) -> MdcFile

Errors are :class:`compiler.errors.MappingError` with the file and line.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput, VisitError
from lark.lexer import Lexer

from compiler.errors import MappingError
from compiler.yamlio import read_text
from compiler.mdc.syntax import (LAYER_TYPES, UNSUPPORTED_TYPES, AnyDirective, ClusterDirective, Const,
                                 Directive, MdcFile, MdcLayer, SizeExpr, Sz)
from compiler.mdc.tokens import atoi, check_numbers, tokenize

_KEYWORDS = {
    "Network": "NETWORK", "Layer": "LAYER", "Type": "TYPE", "Stride": "STRIDE",
    "Dimensions": "DIMENSIONS", "Dataflow": "DATAFLOW", "TemporalMap": "TEMPORALMAP",
    "SpatialMap": "SPATIALMAP", "Cluster": "CLUSTER", "Sz": "SZ", "Constant": "CONSTANT",
    "Accelerator": "ACCELERATOR", "{": "LBRACE", "}": "RBRACE",
}


# -------------------------------------------------------------------- tokenizer


def _kind(text: str) -> str:
    if text in _KEYWORDS:
        return _KEYWORDS[text]
    return "INT" if text.isdigit() else "NAME"


class _MaestroLexer(Lexer):
    """Feed the MAESTRO token stream into lark."""

    def __init__(self, lexer_conf):  # lark passes its configuration
        pass

    def lex(self, data, parser_state=None) -> Iterator[Token]:
        for t in data:
            yield Token(_kind(t.text), t.text, line=t.line, column=t.column,
                        end_line=t.line, end_column=t.column + len(t.text))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    text = importlib.resources.files("grammar").joinpath("mdc.lark").read_text()
    return Lark(text, parser="lalr", lexer=_MaestroLexer)


# ------------------------------------------------------------------- transformer


class _Build(Transformer):
    """Lark tree -> dataclasses, with MAESTRO's context checks."""

    def __init__(self, file: str | None):
        super().__init__()
        self.file = file
        self.constants: dict[str, int] = {}
        self.const_list: list[tuple[str, int]] = []

    def _err(self, msg: str, line: int | None) -> MappingError:
        return MappingError(msg, self.file, str(line) if line else None)

    def word(self, items):
        return items[0]

    def constant(self, items):
        name, value = items[1], items[2]
        self.constants[str(name)] = atoi(value)
        self.const_list.append((str(name), atoi(value)))
        return None

    def junk(self, items):
        return None

    def accelerator(self, items):
        return None

    def block(self, items):
        return None

    def size(self, items):
        if len(items) == 2:  # Sz word
            return ("sz", str(items[1]), items[0].line)
        tok = items[0]
        if tok.type == "INT":
            return ("int", int(tok), tok.line)
        return ("name", str(tok), tok.line)

    def temporal(self, items):
        return ("temporal", items[1], items[2], items[3], items[0].line)

    def spatial(self, items):
        return ("spatial", items[1], items[2], items[3], items[0].line)

    def cluster(self, items):
        return ("cluster", items[1], items[2], items[0].line)

    def dataflow(self, items):
        return ("dataflow", [i for i in items if isinstance(i, tuple)], items[0].line)

    def stride_entry(self, items):
        return (items[0], items[1])

    def stride(self, items):
        return ("stride", [i for i in items if isinstance(i, tuple)], items[0].line)

    def dim_entry(self, items):
        return (items[0], items[1])

    def dimensions(self, items):
        return ("dimensions", [i for i in items if isinstance(i, tuple)], items[0].line)

    def type_decl(self, items):
        return ("type", items[1], items[0].line)

    def _size(self, spec, dims: list[tuple[str, SizeExpr]], what: str) -> SizeExpr:
        kind, value, line = spec
        if kind == "int":
            if value <= 0:
                raise self._err(f"{what} must be >= 1, got {value}", line)
            return value
        if kind == "sz":
            declared = [s for n, s in dims if n == value]
            if not declared:
                raise self._err(f"Sz({value}): dimension {value!r} is not declared before the "
                                f"Dataflow", line)
            return Sz(value)
        if value in self.constants:
            if self.constants[value] <= 0:
                raise self._err(f"constant {value!r} = {self.constants[value]} used as {what}; "
                                f"it must be >= 1", line)
            return Const(value)
        raise self._err(f"{what} {value!r} is neither a number nor a defined Constant", line)

    def _value(self, size: SizeExpr, dims: list[tuple[str, SizeExpr]]) -> int:
        if isinstance(size, int):
            return size
        if isinstance(size, Const):
            return self.constants[size.name]
        return self._value([v for n, v in dims if n == size.dim][-1], dims)

    def _check_rs(self, dim: str, size: SizeExpr, ofs: SizeExpr,
                  dims: list[tuple[str, SizeExpr]], line: int) -> None:
        """MAESTRO's R/S rule (commit 486dc37): TemporalMap on R/S covers the whole filter."""
        s, o = self._value(size, dims), self._value(ofs, dims)
        if s != o:
            raise self._err(f"Tile size of {dim}({s}) should be equal to tile offset of "
                            f"{dim}({o}): TemporalMap on {dim} must be ({dim} size, {dim} size)",
                            line)
        for n, v in dims:
            if n == dim and self._value(v, dims) != s:
                raise self._err(f"Tile size of {dim}({s}) should be equal to dimension size of "
                                f"{dim}({self._value(v, dims)})", line)

    def layer(self, items):
        head = items[0]
        words = [t for t in items[1:] if isinstance(t, Token) and t.type in ("NAME", "INT")]
        name = str(words[-1]) if words else "Layer"
        ltype = None
        stride: list[tuple[str, int]] = []
        dims: list[tuple[str, SizeExpr]] = []
        directives: list[AnyDirective] | None = None
        sections: list[str] = []
        close_line = items[-1].line
        for item in items:
            if not isinstance(item, tuple):
                continue
            tag = item[0]
            if tag == "type":
                tok, line = item[1], item[2]
                t = str(tok)
                if t in UNSUPPORTED_TYPES:
                    raise self._err(f"layer type {t} is not supported by MAESTRO (it creates no "
                                    f"layer); write it as CONV/DSCONV with R=S=1 or as GEMM", line)
                if t not in LAYER_TYPES:
                    raise self._err(f"unknown layer type {t!r}; expected one of "
                                    f"{', '.join(LAYER_TYPES)}", line)
                ltype = t
                sections.append("Type")
            elif tag == "stride":
                if "Dimensions" in sections:
                    raise self._err("Stride must come before Dimensions", item[2])
                for dim, value in item[1]:
                    if value.type != "INT" or atoi(value) < 1:
                        raise self._err(f"stride of {dim} must be a positive integer literal "
                                        f"(constants are not allowed), got {str(value)!r}",
                                        value.line)
                    stride.append((str(dim), int(value)))
                sections.append("Stride")
            elif tag == "dimensions":
                for dim, value in item[1]:
                    if value.type == "INT":
                        size: SizeExpr = int(value)
                    elif str(value) in self.constants:
                        size = Const(str(value))
                        if self.constants[str(value)] <= 0:
                            raise self._err(f"dimension {dim} has size "
                                            f"{self.constants[str(value)]}", value.line)
                    else:
                        raise self._err(f"size of dimension {dim} is {str(value)!r}: not a "
                                        f"number or a defined Constant", value.line)
                    if size == 0:
                        raise self._err(f"dimension {dim} has size 0", value.line)
                    dims.append((str(dim), size))
                sections.append("Dimensions")
            elif tag == "dataflow":
                directives = directives or []
                for d in item[1]:
                    if d[0] == "cluster":
                        size = self._size(d[1], dims, "Cluster size")
                        ctype = str(d[2])
                        if ctype not in ("P", "L"):
                            raise self._err(f"Cluster type must be P or L, got {ctype!r} "
                                            f"(MAESTRO crashes on it)", d[3])
                        directives.append(ClusterDirective(size, ctype, line=d[3]))
                    else:
                        kind, sz, ofs, dim, line = d
                        s = self._size(sz, dims, "map size")
                        o = self._size(ofs, dims, "map offset")
                        if kind == "temporal" and str(dim) in ("R", "S"):
                            self._check_rs(str(dim), s, o, dims, line)
                        directives.append(Directive(kind, s, o, str(dim), line=line))
                sections.append("Dataflow")
        if ltype is None:
            raise self._err(f"layer {name!r} has no Type", close_line)
        return MdcLayer(name, ltype, tuple(dims),
                        tuple(directives) if directives is not None else None,
                        tuple(stride), line=head.line, sections=tuple(sections))

    def network(self, items):
        words = []
        layers = []
        for it in items[1:]:
            if isinstance(it, MdcLayer):
                layers.append(it)
            elif isinstance(it, Token) and it.type in ("NAME", "INT") and not layers:
                words.append(str(it))
        return ("network", words[-1] if words else None, layers, items[0].line)

    def start(self, items):
        nets = [i for i in items if isinstance(i, tuple) and i[0] == "network"]
        layers = [l for n in nets for l in n[2]]
        name = nets[0][1] if nets else None
        return MdcFile(tuple(self.const_list), name, tuple(layers), file=self.file)


def parse_mdc(text: str, file: str | None = None) -> MdcFile:
    """Parse an MDC mapping file; raise :class:`MappingError` (file:line) if MAESTRO would."""
    tokens = tokenize(text)
    check_numbers(tokens, file)
    if any(ord(ch) > 127 for t in tokens for ch in t.text):
        bad = next(t for t in tokens if any(ord(ch) > 127 for ch in t.text))
        raise MappingError(f"non-ASCII token {bad.text!r} (MAESTRO compares names byte by "
                           f"byte; use ASCII ' for primes)", file, str(bad.line))
    try:
        tree = _parser().parse(tokens)
    except UnexpectedInput as exc:
        tok = getattr(exc, "token", None)
        if tok is None or tok.type == "$END":
            last = tokens[-1].line if tokens else 1
            raise MappingError("unexpected end of file (unclosed brace?)", file, str(last)) from None
        glued = [t.text for t in tokens if t.line == tok.line and "//" in t.text[1:]]
        hint = (f" (comment glued to {glued[0]!r}: '//' starts a comment only at the start of "
                f"a token; put a space or ';' before it)" if glued else "")
        raise MappingError(f"unexpected token {str(tok)!r}{hint}", file, str(tok.line)) from None
    try:
        mdc = _Build(file).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, MappingError):
            raise exc.orig_exc from None
        raise
    lines = text.splitlines()
    negs = tuple((t.line, t.text) for t in tokens
                 if t.text[:1].isdigit() and t.column >= 2 and lines[t.line - 1][t.column - 2] == "-")
    if negs:
        mdc = replace(mdc, negatives=negs)
    if not mdc.layers:
        raise MappingError("the file has no Network with at least one Layer (MAESTRO aborts)",
                           file, None)
    return mdc


def parse_mdc_file(path: str | Path) -> MdcFile:
    """Read and parse a mapping file."""
    text = read_text(Path(path), "mapping", errors="surrogateescape")
    return parse_mdc(text, str(path))



"""The type of every field of mapc's user files, in one place.

Operator files (and the inline layers of model files), preset parameters, model files and target
files are checked against the schemas below before anything reads a value, so a list where a name
belongs, a float extent or an infinite bandwidth is one line ``FILE:line N: 'key' must be ...``
instead of a TypeError deep inside a pass.  What the loaders check afterwards is meaning (a preset
name exists, a mesh multiplies to the chiplet count), never type.

Numeric limits are part of the types: extents and capacities fit MAESTRO's 32-bit integers
(:data:`MAX_INT`), rates are finite and at most :data:`MAX_RATE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import InputError
from .presets import PRESETS
from .yamlio import LocDict

#: MAESTRO reads dimensions, capacities and PE counts into C ``int``s: the largest extent,
#: capacity, PE count or repeat mapc accepts.
MAX_INT = 2 ** 31 - 1
#: Bytes per element of each dtype an operator may name.
DTYPE_BYTES = {"int4": 1, "int8": 1, "uint8": 1, "int16": 2, "fp16": 2, "bf16": 2,
               "int32": 4, "fp32": 4}
#: Bandwidths, energies and clocks: finite, positive, at most this.
MAX_RATE = 1e9


@dataclass(frozen=True)
class Type:
    """A field type: ``what`` completes "must be ..." in the error message."""

    what: str

    def ok(self, value: Any) -> bool:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Type):
    """A string; ``name`` also forbids spaces (it names files and layers), ``blank`` allows ''."""

    name: bool = False
    blank: bool = True

    def ok(self, value: Any) -> bool:
        return (isinstance(value, str) and (self.blank or value.strip() != "")
                and not (self.name and (not value or any(c.isspace() for c in value))))


@dataclass(frozen=True)
class Int(Type):
    """An integer in ``[low, high]`` (YAML booleans are not integers)."""

    low: int = 1
    high: int = MAX_INT

    def __init__(self, low: int = 1, high: int = MAX_INT):
        object.__setattr__(self, "what", f"an integer >= {low} and <= {high:,}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def ok(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class Num(Type):
    """A finite number in ``(0, high]``."""

    high: float = MAX_RATE

    def ok(self, value: Any) -> bool:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and 0 < value <= self.high)


@dataclass(frozen=True)
class OneOf(Type):
    """One of a few strings; a string outside them is an "unknown ``noun``"."""

    values: tuple[str, ...] = ()
    noun: str = "value"

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class ListOf(Type):
    """A non-empty list whose items have type ``item`` (and ``length`` of them, if given)."""

    item: Type = Str("a string")
    length: int | None = None

    def ok(self, value: Any) -> bool:
        return (isinstance(value, list) and len(value) > 0 and (self.length is None or len(value) == self.length)
                and all(self.item.ok(v) for v in value))


@dataclass(frozen=True)
class MapOf(Type):
    """A mapping from string keys (names) to values of type ``value``; each entry is checked
    on its own so the error names it."""

    value: Type = Str("a string")


@dataclass(frozen=True)
class Record(Type):
    """A mapping with known keys: ``fields`` (key -> type), ``required`` keys."""

    fields: Mapping[str, Type] = None
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Any_(Type):
    """Anything: checked where its meaning is (e.g. the layers of a model)."""

    def ok(self, value: Any) -> bool:
        return True


def _values(noun: str, values) -> OneOf:
    return OneOf(f"a {noun} ({', '.join(values)})", tuple(values), noun)


def validate(data: Any, schema: Record, file: str, where: str = "") -> None:
    """Check ``data`` against ``schema`` (unknown, missing and mistyped keys), nested records and
    mappings included; raise a one-line :class:`InputError` naming the first bad key."""
    if not isinstance(data, dict):
        raise InputError(f"'{where.rstrip('.') or 'the file'}' must be {schema.what}", file=file)
    place = data.place if isinstance(data, LocDict) else (lambda k: f"key '{k}'")
    allowed = list(schema.fields)
    for key in data:
        if key not in schema.fields:
            raise InputError(f"unknown key '{where}{key}' (allowed: {', '.join(allowed)})",
                             file=file, place=place(key))
    for key in schema.required:
        if key not in data:
            raise InputError(f"missing required key '{where}{key}'", file=file)
    for key, value in data.items():
        check(value, schema.fields[key], file, f"{where}{key}", place(key))


def check(value: Any, typ: Type, file: str, key: str, place: str) -> None:
    """Check one value (a record or mapping recursively) against ``typ``."""
    if isinstance(typ, Record):
        if not isinstance(value, dict):
            raise InputError(f"'{key}' must be {typ.what}, got {_show(value)}", file=file, place=place)
        validate(value, typ, file, key + ".")
    elif isinstance(typ, MapOf):
        if not isinstance(value, dict):
            raise InputError(f"'{key}' must be {typ.what}, got {_show(value)}", file=file, place=place)
        inner = value.place if isinstance(value, LocDict) else (lambda k: place)
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"'{key}' has a key {_show(k)}: keys must be names", file=file, place=inner(k))
            check(v, typ.value, file, f"{key}.{k}", inner(k))
    elif isinstance(typ, OneOf) and isinstance(value, str) and not typ.ok(value):
        raise InputError(f"unknown {typ.noun} '{value}' for '{key}' (known: {', '.join(typ.values)})",
                         file=file, place=place)
    elif not typ.ok(value):
        raise InputError(f"'{key}' must be {typ.what}, got {_show(value)}", file=file, place=place)


def _show(value: Any) -> str:
    text = "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------ the schemas




NAME = Str("a non-empty string without spaces", name=True)
EXTENT = Int(1, MAX_INT)


def op_schema(extra: Mapping[str, Type] | None = None) -> Record:
    """Operator files; model files' inline layers add ``repeat``."""
    dtype = _values("dtype", DTYPE_BYTES)
    fields = {"name": NAME, "statement": Str("a string (the statement)", blank=False),
              "dims": MapOf("a mapping of loop variable to extent", EXTENT),
              "kind": _values("kind", PRESETS),
              "params": MapOf("a mapping of preset parameter to integer", EXTENT),
              "dtype": dtype, "tensor_dtypes": MapOf("a mapping of tensor name to dtype", dtype)}
    return Record("a mapping", dict(fields, **(extra or {})))


REPEAT = Int(1, MAX_INT)
MODEL = Record("a mapping", {"name": NAME, "layers": ListOf("a non-empty list of layers", Any_("a layer")),
                             "coverage": MapOf("a mapping (as `mapc import` writes it)", Any_("anything"))},
               ("layers",))
INCLUDE = Record("a mapping", {"include": Str("a file path", blank=False), "name": NAME, "repeat": REPEAT},
                 ("include",))


def target_schema() -> Record:
    """Target files (the backend and role names come from :mod:`targets`)."""
    from targets import BACKENDS, SPATIAL_ROLES, SYSTOLIC_DATAFLOWS
    count = Int(1, MAX_INT)
    rate = Num("a finite number > 0 and at most 1e9")
    return Record("a mapping", {
        "name": NAME, "description": Str("a string"),
        "backends": ListOf(f"a non-empty list of {', '.join(BACKENDS)}", _values("backend", BACKENDS)),
        "pe_array": Record("a mapping {rows, cols}", {"rows": count, "cols": count}, ("rows", "cols")),
        "macs_per_pe_per_cycle": count, "l1_bytes_per_pe": count, "l2_bytes": count,
        "noc_bw_elems_per_cycle": rate, "offchip_bw_elems_per_cycle": rate, "noc_hops": count,
        "energy": Record("a mapping of energies", {k: rate for k in ("mac", "l1_access", "l2_access", "dram_access")}),
        "chiplets": Record("a mapping {count, mesh, link_bw_elems_per_cycle}",
                           {"count": count, "mesh": ListOf("[rows, cols]", count, 2),
                            "link_bw_elems_per_cycle": rate,
                            # chiplets of several kinds: each kind's differences from the top level
                            "kinds": MapOf("a mapping of kind names to mappings", Any_("a mapping")),
                            "layout": ListOf("a list of kind names, one per chiplet", Str("a kind name"))},
                           ("count", "mesh", "link_bw_elems_per_cycle")),
        "dataflow": Record("a mapping {spatial_dims}",
                           {"spatial_dims": ListOf(f"a list of MDC roles from {', '.join(SPATIAL_ROLES)}",
                                                   _values("MDC role", SPATIAL_ROLES))}, ("spatial_dims",)),
        "systolic": Record("a mapping {dataflow}",
                           {"dataflow": _values("systolic dataflow", SYSTOLIC_DATAFLOWS)}, ("dataflow",)),
        "clock_ghz": rate},
        ("name", "backends", "pe_array", "l1_bytes_per_pe", "l2_bytes", "noc_bw_elems_per_cycle",
         "offchip_bw_elems_per_cycle"))

"""Tiled GEMM schedules: the ``<op>.schedule.yaml`` data model, its checks, YAML and loop-nest text.

A schedule multiplies ``C[b,m,n] += A[b,m,k] * B[b,k,n]`` (``b`` only for batched GEMMs) by a flat
list of loops, outermost first.  The loops of one dim form a chain of decreasing steps: each loop
walks the tile its enclosing loop of the same dim left (the whole extent for the first one) in
``step``s, the last step clipped.  Levels say where a loop runs; buffers say which tensor tile a
level keeps.  The format is documented in ``docs/schedule-format.md``; :mod:`compiler.gemm.interp`
executes it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import yaml

from ..errors import MapcError
from ..yamlio import read_text

SCHEDULE_VERSION = 1


class ScheduleError(MapcError):
    """A schedule file is malformed, inconsistent, or fails verification."""


class Level(str, Enum):
    """Where a loop runs, outermost first."""

    CHIPLET = "chiplet"   # spatial over chiplets, each with its own L2
    DRAM = "dram"         # walks L2 tiles (each step is a DRAM -> L2 transfer)
    L2 = "l2"             # walks array tiles inside an L2 tile (L2 -> array transfers)
    ARRAY = "array"       # spatial over PE rows / columns
    PE = "pe"             # temporal inside the array: the operand that streams through

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.CHIPLET: 0, Level.DRAM: 1, Level.L2: 2, Level.ARRAY: 3, Level.PE: 4}
BUFFER_LEVELS = (Level.L2, Level.ARRAY)


class Kind(str, Enum):
    """Whether a loop's iterations run one after another or side by side."""

    TEMPORAL = "temporal"
    SPATIAL = "spatial"


class Axis(str, Enum):
    """The axis of a spatial loop: PE rows/columns, or chiplet mesh rows/columns."""

    ROWS = "rows"
    COLS = "cols"


ROLES = ("A", "B", "C")


@dataclass(frozen=True)
class Loop:
    """One loop: walks the enclosing tile of ``dim`` in steps of ``step``."""

    dim: str
    step: int
    kind: Kind
    level: Level
    axis: Axis | None = None

    def as_dict(self) -> dict:
        out = {"dim": self.dim, "step": self.step, "kind": self.kind.value, "level": self.level.value}
        if self.axis is not None:
            out["axis"] = self.axis.value
        return out


@dataclass(frozen=True)
class Operand:
    """A GEMM role (A, B or C), the op tensor playing it and the GEMM dims indexing it."""

    role: str
    tensor: str
    dims: tuple[str, ...]


@dataclass(frozen=True)
class Buffer:
    """A tile of one operand kept at a level; ``elements`` per copy (two when double-buffered)."""

    level: Level
    role: str
    elements: int
    double_buffered: bool


@dataclass(frozen=True)
class Schedule:
    """A complete tiled GEMM schedule plus the model's claims about it."""

    op: str
    target: str
    dataflow: str
    array: tuple[int, int]                  # PE rows, cols (per chiplet)
    chiplets: int
    dims: tuple[tuple[str, int], ...]       # GEMM dims in order: (b,) m, n, k
    operands: tuple[Operand, ...]           # A, B, C
    loops: tuple[Loop, ...]
    buffers: tuple[Buffer, ...]
    traffic: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()   # boundary -> counts
    metrics: tuple[tuple[str, float | int], ...] = ()                   # informational
    lowering: tuple[tuple[str, str], ...] = ()                           # informational

    @property
    def extents(self) -> dict[str, int]:
        return dict(self.dims)

    def operand(self, role: str) -> Operand:
        return next(o for o in self.operands if o.role == role)

    def buffered(self, level: Level) -> tuple[str, ...]:
        """Roles with a buffer at ``level``."""
        return tuple(b.role for b in self.buffers if b.level == level)

    def claimed(self) -> dict[str, dict[str, int]]:
        return {k: dict(v) for k, v in self.traffic}

    # ---- text forms -------------------------------------------------------------------------
    def to_yaml(self) -> str:
        """The schedule file text (stable: same schedule, same bytes)."""
        dims = ", ".join(f"{d}: {e}" for d, e in self.dims)
        lines = [f"# Tiled GEMM schedule for {self.op} on {self.target}; format: docs/schedule-format.md",
                 f"schedule_version: {SCHEDULE_VERSION}",
                 f"op: {self.op}", f"target: {self.target}", f"dataflow: {self.dataflow}",
                 f"array: {{rows: {self.array[0]}, cols: {self.array[1]}}}",
                 f"chiplets: {self.chiplets}",
                 f"dims: {{{dims}}}",
                 "operands:"]
        for o in self.operands:
            lines.append(f"  {o.role}: {{tensor: {o.tensor}, dims: [{', '.join(o.dims)}]}}")
        if self.lowering:
            lines.append("lowering:")
            lines += [f"  {k}: {_scalar(v)}" for k, v in self.lowering]
        lines.append("loops:            # outermost first")
        for lp in self.loops:
            body = ", ".join(f"{k}: {v}" for k, v in lp.as_dict().items())
            lines.append(f"  - {{{body}}}")
        lines.append("buffers:")
        for b in self.buffers:
            lines.append(f"  - {{level: {b.level.value}, operand: {b.role}, elements: {b.elements}, "
                         f"double_buffered: {str(b.double_buffered).lower()}}}")
        if self.traffic:
            lines.append("traffic:          # elements moved, as the model claims them")
            for boundary, counts in self.traffic:
                lines.append(f"  {boundary}: {{{', '.join(f'{k}: {v}' for k, v in counts)}}}")
        if self.metrics:
            lines.append("metrics:")
            lines += [f"  {k}: {_scalar(v)}" for k, v in self.metrics]
        return "\n".join(lines) + "\n"

    def loop_nest(self) -> str:
        """The schedule as a readable Python-like loop nest (``mapc compile --emit loops``)."""
        ext = self.extents
        a, b, c = (self.operand(r) for r in ROLES)
        head = [f"# {self.op} on {self.target}: {self.dataflow.replace('_', '-')} "
                f"{self.array[0]}x{self.array[1]} array" + (f" x {self.chiplets} chiplets" if self.chiplets > 1 else ""),
                f"# C[{','.join(c.dims)}] += A[{','.join(a.dims)}] * B[{','.join(b.dims)}]   "
                f"(A = {a.tensor}, B = {b.tensor}, C = {c.tensor}; "
                + ", ".join(f"{d.upper()} = {e}" for d, e in self.dims) + ")"]
        current = {d: (None, e) for d, e in ext.items()}    # dim -> (loop variable, tile size)
        depth = {d: 0 for d in ext}
        out = list(head)
        indent = ""
        last_level: Level | None = None
        for lp in self.loops:
            if last_level is not None and lp.level.rank > last_level.rank:
                out += self._buffer_notes(last_level, current, indent)
            last_level = lp.level
            var, tile = current[lp.dim]
            depth[lp.dim] += 1
            new = f"{lp.dim}{depth[lp.dim]}"
            lo = var or "0"
            hi = f"min({var} + {tile}, {ext[lp.dim]})" if var else str(ext[lp.dim])
            if var and tile >= ext[lp.dim]:
                hi = str(ext[lp.dim])
            args = ([] if lo == "0" else [lo]) + [hi] + ([str(lp.step)] if lp.step != 1 else [])
            if len(args) == 2 and lo == "0":
                args.insert(0, "0")
            what = "parallel for" if lp.kind == Kind.SPATIAL else "for"
            note = lp.level.value + (f", {lp.axis.value}" if lp.axis else "")
            out.append((f"{indent}{what} {new} in range({', '.join(args)}):", f"# {note}"))
            indent += "    "
            current[lp.dim] = (new, min(lp.step, tile))
        if last_level is not None:
            out += self._buffer_notes(last_level, current, indent, final=True)

        def ref(o: Operand) -> str:
            parts = []
            for d in o.dims:
                var, tile = current[d]
                lo = var or "0"
                parts.append(lo if tile == 1 else f"{lo}:{lo}+{tile}")
            return f"{o.role}[{', '.join(parts)}]"
        scalar = all(tile == 1 for _, tile in current.values())
        out.append(f"{indent}{ref(c)} += {ref(a)} {'*' if scalar else '@'} {ref(b)}")
        width = max(len(x[0]) for x in out if isinstance(x, tuple)) + 2 if self.loops else 0
        return "\n".join(x[0].ljust(width) + x[1] if isinstance(x, tuple) else x for x in out) + "\n"

    def _buffer_notes(self, level: Level, current: dict, indent: str, final: bool = False) -> list[str]:
        here = {Level.CHIPLET: None, Level.DRAM: Level.L2, Level.L2: Level.ARRAY}.get(level)
        if here is None or final:
            return []
        held = [f"{o.role}[{' x '.join(str(current[d][1]) for d in o.dims)}]"
                for o in self.operands if o.role in self.buffered(here)]
        streamed = [o.role for o in self.operands if o.role not in self.buffered(here)]
        text = f"{indent}# {here.value} holds {', '.join(held) or 'nothing'}"
        if streamed:
            text += f"; {', '.join(streamed)} stream{'s' if len(streamed) == 1 else ''} through"
        return [text]

    def pretty(self) -> str:
        return self.loop_nest()


def _scalar(v: object) -> str:
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


# ---- reading ------------------------------------------------------------------------------------
def _need(data: dict, key: str, typ: type, where: str, problems: list[str]):
    if key not in data:
        problems.append(f"missing key '{where}{key}'")
        return None
    value = data[key]
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"'{where}{key}' must be an integer, got {value!r}")
        return None
    if typ is not int and not isinstance(value, typ):
        problems.append(f"'{where}{key}' must be a {typ.__name__}, got {value!r}")
        return None
    return value


def parse_schedule(text: str, file: str = "<schedule>") -> Schedule:
    """Read a schedule file; collects every problem found and raises one :class:`ScheduleError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScheduleError(f"malformed YAML: {e}", file=file) from None
    if not isinstance(data, dict):
        raise ScheduleError("expected a mapping at the top level", file=file)
    problems: list[str] = []
    version = data.get("schedule_version")
    if version != SCHEDULE_VERSION:
        problems.append(f"'schedule_version' must be {SCHEDULE_VERSION}, got {version!r}")
    dims = _need(data, "dims", dict, "", problems) or {}
    for d, e in dims.items():
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            problems.append(f"'dims.{d}' must be a positive integer, got {e!r}")
    ops = _need(data, "operands", dict, "", problems) or {}
    operands = []
    for role in ROLES:
        o = ops.get(role)
        if not isinstance(o, dict) or not isinstance(o.get("dims"), list):
            problems.append(f"'operands.{role}' must be {{tensor: NAME, dims: [...]}}")
            continue
        operands.append(Operand(role, str(o.get("tensor", role)), tuple(str(d) for d in o["dims"])))
    loops = []
    for i, raw in enumerate(_need(data, "loops", list, "", problems) or []):
        where = f"loops[{i}]."
        if not isinstance(raw, dict):
            problems.append(f"'loops[{i}]' must be a mapping")
            continue
        try:
            axis = Axis(raw["axis"]) if "axis" in raw else None
            loops.append(Loop(str(raw["dim"]), raw["step"], Kind(raw["kind"]), Level(raw["level"]), axis))
        except KeyError as e:
            problems.append(f"missing key '{where}{e.args[0]}'")
        except ValueError as e:
            problems.append(f"'{where}': {e}")
    buffers = []
    for i, raw in enumerate(data.get("buffers") or []):
        try:
            buffers.append(Buffer(Level(raw["level"]), str(raw["operand"]), int(raw["elements"]),
                                  bool(raw.get("double_buffered", False))))
        except (KeyError, ValueError, TypeError) as e:
            problems.append(f"'buffers[{i}]' is malformed ({e.__class__.__name__}: {e})")
    array = data.get("array") or {}
    traffic = tuple((str(k), tuple((str(t), int(n)) for t, n in v.items()))
                    for k, v in (data.get("traffic") or {}).items())
    sched = Schedule(
        op=str(data.get("op", "op")), target=str(data.get("target", "?")),
        dataflow=str(data.get("dataflow", "?")),
        array=(int(array.get("rows", 1 << 30)), int(array.get("cols", 1 << 30))),
        chiplets=int(data.get("chiplets", 1)),
        dims=tuple((str(d), int(e)) for d, e in dims.items() if isinstance(e, int)),
        operands=tuple(operands), loops=tuple(loops), buffers=tuple(buffers), traffic=traffic,
        metrics=tuple((str(k), v) for k, v in (data.get("metrics") or {}).items()),
        lowering=tuple((str(k), str(v)) for k, v in (data.get("lowering") or {}).items()))
    if not problems:
        problems = schedule_problems(sched)
    if problems:
        raise ScheduleError("; ".join(problems), file=file)
    return sched


def schedule_problems(s: Schedule) -> list[str]:
    """Every consistency problem of a schedule (empty when it is well formed)."""
    problems: list[str] = []
    ext = s.extents
    for o in s.operands:
        for d in o.dims:
            if d not in ext:
                problems.append(f"operand {o.role} uses unknown dim '{d}'")
    if len(s.operands) == 3:
        a, b, c = (set(s.operand(r).dims) for r in ROLES)
        if not (c <= a | b and a | b | c == set(ext)):
            problems.append("operands do not form a GEMM: every dim must index two of A, B, C")
    last: dict[str, int] = {}
    prev: Loop | None = None
    fan = {(Level.ARRAY, Axis.ROWS): 1, (Level.ARRAY, Axis.COLS): 1, (Level.CHIPLET, None): 1}
    tile = dict(ext)
    for i, lp in enumerate(s.loops):
        where = f"loops[{i}] ({lp.dim})"
        if lp.dim not in ext:
            problems.append(f"{where}: unknown dim")
            continue
        if isinstance(lp.step, bool) or not isinstance(lp.step, int) or lp.step < 1:
            problems.append(f"{where}: step must be a positive integer")
            continue
        if lp.dim in last and lp.step > last[lp.dim]:
            problems.append(f"{where}: step {lp.step} exceeds the enclosing step {last[lp.dim]}")
        if prev is not None and lp.level.rank < prev.level.rank:
            problems.append(f"{where}: level {lp.level.value} inside a {prev.level.value} loop")
        spatial_level = lp.level in (Level.CHIPLET, Level.ARRAY)
        if (lp.kind == Kind.SPATIAL) != spatial_level:
            problems.append(f"{where}: {lp.level.value} loops must be "
                            f"{'spatial' if spatial_level else 'temporal'}")
        if lp.level == Level.ARRAY and lp.axis is None:
            problems.append(f"{where}: a spatial array loop needs 'axis: rows|cols'")
        if lp.kind == Kind.TEMPORAL and lp.axis is not None:
            problems.append(f"{where}: only spatial loops have an axis")
        trips = math.ceil(tile[lp.dim] / lp.step)
        if lp.kind == Kind.SPATIAL:
            key = (lp.level, lp.axis if lp.level == Level.ARRAY else None)
            fan[key] = fan.get(key, 1) * trips
        tile[lp.dim] = min(tile[lp.dim], lp.step)
        last[lp.dim] = lp.step
        prev = lp
    limits = {(Level.ARRAY, Axis.ROWS): s.array[0], (Level.ARRAY, Axis.COLS): s.array[1],
              (Level.CHIPLET, None): s.chiplets}
    for key, used in fan.items():
        if used > limits[key]:
            what = f"array {key[1].value}" if key[0] == Level.ARRAY else "chiplets"
            problems.append(f"spatial loops use {used} {what}, the target has {limits[key]}")
    for b in s.buffers:
        if b.level not in BUFFER_LEVELS:
            problems.append(f"buffer of {b.role} at level {b.level.value}: buffers live at l2 or array")
        if b.role not in ROLES:
            problems.append(f"buffer names unknown operand '{b.role}'")
    return problems


def read_schedule(path) -> Schedule:
    """Read and check a schedule file."""
    return parse_schedule(read_text(Path(path), "schedule"), str(path))


@dataclass(frozen=True)
class TileClasses:
    """Tile sizes of one dim at some depth of the nest: ``{size: how many tiles}``."""

    counts: tuple[tuple[int, int], ...] = field(default=())

    @staticmethod
    def whole(extent: int) -> "TileClasses":
        return TileClasses(((extent, 1),))

    def split(self, step: int) -> "TileClasses":
        """Each tile walked in ``step``s: full steps plus one clipped remainder."""
        out: dict[int, int] = {}
        for size, n in self.counts:
            q, r = divmod(size, step)
            if q:
                out[step] = out.get(step, 0) + n * q
            if r:
                out[r] = out.get(r, 0) + n
        return TileClasses(tuple(sorted(out.items(), reverse=True)))

"""Model files: a network as an ordered list of operator layers.

A model file is YAML::

    name: resnet50
    layers:
      - {name: conv1, kind: conv2d, params: {K: 64, C: 3, P: 112, Q: 112, R: 7, S: 7, stride: 2}}
      - {include: ../conv3x3.yaml, repeat: 3}
      - {name: l2, statement: "O[m,n] += I[m,k] * W[k,n]", dims: {m: 4, n: 4, k: 4}, repeat: 2}

Each layer is either an inline operator (the keys of an operator file plus ``repeat``) or an
``include`` of another file (path relative to the including file) with optional ``repeat`` and
``name``.  An included file is normally an operator file; if it has a ``layers`` key it is itself
a model, whose layers are spliced in (their repeats multiplied by the include's, their names
prefixed with ``name.`` when a name is given).  Every error is one line naming the model file and
the layer, e.g. ``resnet50.yaml:layers[3]: unknown key 'foo' ...``.  A model written by
``mapc import`` also has ``coverage`` (MACs imported vs in the graph), kept as a plain mapping.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import InputError, MapcError
from .frontend import op_from_mapping
from .ir import Op
from .outputs import check_name, file_stem
from .schema import INCLUDE, MODEL, REPEAT, op_schema, validate
from .yamlio import LocDict, load_yaml_mapping, read_text



@dataclass(frozen=True)
class ModelLayer:
    """One layer: an operator run ``repeat`` times in sequence."""

    name: str
    op: Op
    repeat: int
    source: str      # where the op is defined: ``model.yaml:layers[i]`` or the included op file

    @property
    def macs(self) -> int:
        return self.op.macs * self.repeat


@dataclass(frozen=True)
class Model:
    """A network: its name and its layers in execution order."""

    name: str
    layers: tuple[ModelLayer, ...]
    coverage: dict[str, Any] | None = None   # from `mapc import`: MACs imported vs in the graph

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of one inference (repeats included)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def num_ops(self) -> int:
        """Number of operator executions (sum of repeats)."""
        return sum(layer.repeat for layer in self.layers)


def load_model(path: str | Path) -> Model:
    """Read a model file into a :class:`Model`; raises a one-line :class:`InputError`."""
    name, layers, data = _load(Path(path), ())
    coverage = data.get("coverage")     # a mapping: the schema checked it
    return Model(name=name, layers=tuple(layers), coverage=_plain(coverage) if coverage else None)


def _plain(value: Any) -> Any:
    """A loaded YAML value with its line-remembering mappings turned into plain dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def unique_layers(model: Model) -> tuple[ModelLayer, ...]:
    """Layers with identical operators merged: first name and source kept, repeats summed.

    Two layers are the same when statement, dim extents, dtype and per-tensor element sizes agree."""
    merged: dict[tuple, ModelLayer] = {}
    for layer in model.layers:
        op = layer.op
        key = (op.statement, tuple((d.name, d.extent) for d in op.dims), op.dtype,
               tuple(t.element_bytes for t in op.tensors))
        first = merged.get(key)
        merged[key] = layer if first is None else ModelLayer(
            first.name, first.op, first.repeat + layer.repeat, first.source)
    return tuple(merged.values())


def _load(path: Path, stack: tuple[Path, ...]) -> tuple[str, list[ModelLayer], LocDict]:
    file = str(path)
    data = load_yaml_mapping(read_text(path, "model"), file)
    validate(data, MODEL, file)
    name = data.get("name", file_stem(path.stem, "model"))
    if not stack:  # the top model's name names its files (--plot)
        check_name(name, file, data.place("name"))
    raw = data["layers"]
    stack = stack + (path.resolve(),)
    layers: list[ModelLayer] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = f"layers[{i}]"
        try:
            new = _layer(entry, path, where, stack)
        except MapcError as e:
            raise _at(e, file, where) from None
        for layer in new:
            if layer.name in seen:
                raise InputError(f"duplicate layer name '{layer.name}' (also layers[{seen[layer.name]}]); "
                                 "use 'repeat' or give a distinct 'name'", file=file, place=where)
            seen[layer.name] = i
        layers += new
    return name, layers, data


def _layer(entry: object, path: Path, where: str, stack: tuple[Path, ...]) -> list[ModelLayer]:
    file = str(path)
    if not isinstance(entry, LocDict):
        raise InputError("a layer must be a mapping (an inline op or an 'include')", file=file)
    if "include" in entry:
        return _include(entry, path, stack)
    validate(entry, op_schema({"repeat": REPEAT}), file)
    repeat = entry.get("repeat", 1)
    op_data = LocDict((k, v) for k, v in entry.items() if k != "repeat")
    op_data.lines = getattr(entry, "lines", {})
    op = op_from_mapping(op_data, file, default_name=where.replace("[", "").replace("]", ""))
    return [ModelLayer(op.name, op, repeat, f"{file}:{where}")]


def _include(entry: LocDict, path: Path, stack: tuple[Path, ...]) -> list[ModelLayer]:
    file = str(path)
    validate(entry, INCLUDE, file)
    target = entry["include"]
    repeat = entry.get("repeat", 1)
    rename = entry.get("name")
    inc = path.parent / target
    if not inc.is_file():
        what = "is a directory" if inc.is_dir() else "not found"
        raise InputError(f"included file '{target}' {what} (looked for {inc})", file=file,
                         place=entry.place("include"))
    if inc.resolve() in stack:
        chain = " -> ".join(p.name for p in stack[stack.index(inc.resolve()):]) + f" -> {inc.name}"
        raise InputError(f"include cycle: {chain}", file=file, place=entry.place("include"))
    data = load_yaml_mapping(read_text(inc, "included"), str(inc))
    if "layers" in data:  # a sub-model: splice its layers in
        _, sub, _ = _load(inc, stack)
        return [ModelLayer(f"{rename}.{l.name}" if rename else l.name, l.op, l.repeat * repeat, l.source)
                for l in sub]
    op = op_from_mapping(data, str(inc), default_name=inc.stem)
    name = rename or op.name
    if rename:
        op = replace(op, name=rename)
    return [ModelLayer(name, op, repeat, str(inc))]


def _at(e: MapcError, file: str, where: str) -> MapcError:
    """Re-attribute an error raised inside a layer to ``file:layers[i]`` (one line)."""
    if e.file not in (None, file):          # raised inside an included file: keep its location
        msg = f"in included file {e}"
    else:
        msg = f"{e.place}: {e.msg}" if e.place else e.msg
    return type(e)(msg, file=file, place=where)

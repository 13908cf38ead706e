"""Workload files: several models sharing one chiplet package.

A workload file lists models (each a model file) with how many frames of each one period holds::

    name: vision_and_llm
    models:
      - {name: cnn, include: models/mobilenetv2.yaml}           # weight 1: one frame per period
      - {name: llm, include: models/gpt2_decode.yaml, weight: 4}    # or fps: 30 (frames/second)

``weight`` (frames of that model per period, reduced by their common divisor) or ``fps`` (then the
period is one second's worth of frames, for every model) is optional.  Errors are one line naming
the file and the entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InputError
from .model import Model, load_model
from .yamlio import check_keys, load_yaml_mapping, read_text

WORKLOAD_KEYS = ("name", "models")
ENTRY_KEYS = ("name", "include", "weight", "fps")


@dataclass(frozen=True)
class Workload:
    """Models sharing a package; ``weights[i]`` frames of model ``i`` per period."""

    name: str
    models: tuple[Model, ...]
    weights: tuple[int, ...]
    fps: bool                     # weights are frames per second (the period is one second)

    def layer_name(self, model: Model, layer) -> str:
        """A layer's name in :meth:`union`: ``<model>.<layer>`` when there are several models."""
        return f"{model.name}.{layer.name}" if len(self.models) > 1 else layer.name

    def union(self) -> Model:
        """All layers of all models in one model (names from :meth:`layer_name`)."""
        coverage = self.models[0].coverage if len(self.models) == 1 else None    # from `mapc import`
        return Model(self.name, tuple(replace(l, name=self.layer_name(m, l)) for m in self.models for l in m.layers),
                     coverage=coverage)


def load_workload(path: Path) -> Workload:
    """A workload file, or a model file as a workload of one model (weight 1)."""
    path = Path(path)
    file = str(path)
    data = load_yaml_mapping(read_text(path, "workload"), file)
    if "models" not in data:
        model = load_model(path)
        return Workload(model.name, (model,), (1,), False)
    check_keys(data, WORKLOAD_KEYS, file, required=("models",))
    entries = data["models"]
    if not isinstance(entries, list) or not entries:
        raise InputError("'models' must be a non-empty list", file=file, place=data.place("models"))
    models, weights, fps, names = [], [], [], set()
    for i, e in enumerate(entries):
        where = f"models[{i}]"
        if not hasattr(e, "place"):
            raise InputError("a model entry must be a mapping with 'include'", file=file, place=where)
        check_keys(e, ENTRY_KEYS, file, required=("include",), where=f"{where}.")
        if "weight" in e and "fps" in e:
            raise InputError("give 'weight' or 'fps', not both", file=file, place=e.place("fps"))
        inc = path.parent / str(e["include"])
        if not inc.is_file():
            raise InputError(f"included model '{e['include']}' not found (looked for {inc})", file=file,
                             place=e.place("include"))
        model = load_model(inc)
        name = e.get("name", model.name)
        if not isinstance(name, str) or not name.strip() or any(c.isspace() or c == "." for c in name) \
                or name in names:
            raise InputError(f"model name '{name}' must be unique, without spaces or dots", file=file,
                             place=e.place("name") if "name" in e else where)
        names.add(name)
        models.append(replace(model, name=name))
        weights.append(_positive(e, "fps", file) if "fps" in e else _positive(e, "weight", file) if "weight" in e else 1)
        fps.append("fps" in e)
    if any(fps) and not all(fps):
        raise InputError("give 'fps' for every model or for none", file=file, place="models")
    g = math.gcd(*weights) if not all(fps) else 1
    return Workload(str(data.get("name", path.stem)), tuple(models), tuple(w // g for w in weights), all(fps))


def _positive(entry, key: str, file: str) -> int:
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"'{key}' must be a positive integer", file=file, place=entry.place(key))
    return value

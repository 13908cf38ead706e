"""YAML loading that remembers where each key was written, for one-line errors.

Op, target and model files all go through :func:`load_yaml_mapping`, so every "unknown key" or
"bad value" message can say ``file:line N: ...``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import InputError, MapcError


class LocDict(dict):
    """A dict that also knows the 1-based line of each of its keys."""

    lines: dict[Any, int]

    def place(self, key: Any) -> str:
        line = getattr(self, "lines", {}).get(key)
        return f"line {line}" if line else f"key '{key}'"


class _LocLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's parser where PyYAML has it: a model file loads ~10x faster) whose
    mappings are :class:`LocDict` and whose duplicate keys are errors."""

    def construct_mapping(self, node, deep=False):
        result = LocDict()
        result.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in result:
                raise InputError(f"duplicate key '{key}'", place=f"line {key_node.start_mark.line + 1}")
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result


_LocLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LocLoader.construct_mapping)


def read_text(path: Path, what: str, errors: str = "strict") -> str:
    """Read a UTF-8 text file or raise a one-line :class:`InputError` (``errors`` as for
    :func:`open`: MDC files keep undecodable bytes so the parser can name them)."""
    try:
        return Path(path).read_text(encoding="utf-8", errors=errors)
    except FileNotFoundError:
        raise InputError(f"{what} file not found", file=str(path)) from None
    except IsADirectoryError:
        raise InputError(f"{what} path is a directory", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} file ({e.__class__.__name__}: {e})", file=str(path)) from None


def load_yaml_mapping(text: str, file: str) -> LocDict:
    """Parse YAML text whose top level must be a mapping."""
    try:
        data = yaml.load(text, Loader=_LocLoader)
    except MapcError as e:
        raise e.with_file(file) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise InputError(f"malformed YAML: {e.problem or e.context}", file=file, place=place) from None
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML: {e}", file=file) from None
    if not isinstance(data, LocDict):
        raise InputError("expected a YAML mapping of keys at the top level", file=file)
    return data


def check_keys(data: LocDict, allowed: Iterable[str], file: str, required: Iterable[str] = (),
               where: str = "") -> None:
    """Reject unknown keys (listing the allowed ones) and missing required keys."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown key '{where}{key}' (allowed: {', '.join(allowed)})",
                             file=file, place=data.place(key))
    for key in required:
        if key not in data:
            raise InputError(f"missing required key '{where}{key}'", file=file)

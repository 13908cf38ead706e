"""The one error family of mapc.

Every problem a user can cause is a :class:`MapcError`.  The CLI catches exactly this family and
prints ``file:place: message`` on one line with exit code 2; anything else is an internal error
(exit 1).
"""
from __future__ import annotations


class MapcError(Exception):
    """A user-facing error: bad input, an unsupported operator, an infeasible problem."""

    def __init__(self, msg: str, file: str | None = None, place: str | None = None):
        super().__init__(msg)
        self.msg = msg
        self.file = file
        self.place = place

    def with_file(self, file: str) -> "MapcError":
        """Return the same error attributed to ``file`` (kept if already set)."""
        if self.file is None:
            self.file = file
        return self

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.place) if p)
        msg = " ".join(str(self.msg).split())  # one line, whatever a library put in the text
        return f"{where}: {msg}" if where else msg


class InputError(MapcError):
    """Malformed input file: YAML, grammar, unknown or missing keys, bad values."""


class ConformanceError(MapcError):
    """The operator is well formed but not expressible in MDC."""


class TargetError(MapcError):
    """A target description is missing or malformed."""


class InfeasibleError(MapcError):
    """No mapping satisfies the hardware limits (e.g. even unit tiles overflow L2)."""


class MappingError(MapcError):
    """An MDC mapping or HW file is malformed or violates a validity rule."""

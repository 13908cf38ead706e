"""Atomic output: all files of a compilation appear together, or none do."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import MapcError


def write_all(out_dir: Path, files: list[tuple[str, str]]) -> list[Path]:
    """Write every ``(name, text)`` into ``out_dir`` via temp files + rename; on failure remove
    the temp files and leave earlier outputs untouched."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MapcError(f"cannot create output directory ({e.strerror})", file=str(out_dir)) from None
    temps: list[tuple[Path, Path]] = []
    try:
        for name, text in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            temps.append((Path(tmp), out_dir / name))
        for tmp, final in temps:
            os.replace(tmp, final)
    except OSError as e:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise MapcError(f"cannot write outputs ({e.strerror})", file=str(out_dir)) from None
    return [final for _, final in temps]

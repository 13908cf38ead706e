"""Output files: safe names, and all files of a run appear together or none do.

Every name that becomes a file name (operators, targets, models, model layers) goes through
:func:`file_stem` first; :func:`write_all` then refuses, before writing anything, any output path
that would leave the output directory, two outputs sharing one path, and existing paths that are
not regular files.  Files are staged as hidden temp files next to their final path and renamed
into place; a failed write (disk full, ``ulimit -f``, SIGTERM) removes every temp file and every
directory the run created.  New files get the permissions the umask allows (0644 under 022); a
replaced file keeps its mode.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import tempfile
import threading
from pathlib import Path

from .errors import InputError, MapcError

MAX_STEM = 100   # leaves room for suffixes such as ".report.json" within NAME_MAX (255 bytes)
NAME_RULE = ("ASCII letters, digits, '_' and '.' only (MAESTRO's tokenizer reads ASCII and splits "
             f"words at '-'), no leading dot, no '..', at most {MAX_STEM} characters")


def file_stem(name: str, fallback: str = "op") -> str:
    """The one sanitiser for names that become file names (and MDC words): anything but ASCII
    letters, digits, ``_`` and ``.`` (path separators, control characters, spaces, non-ASCII, the
    ``-`` MAESTRO splits words at) becomes ``_``, ``..`` and leading/trailing dots go, and long
    names are cut with a hash suffix so they stay distinct."""
    stem = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9_.]", "_", str(name))).strip(".") or fallback
    if len(stem) > MAX_STEM:
        digest = hashlib.sha1(stem.encode()).hexdigest()[:8]
        stem = f"{stem[:MAX_STEM - 9]}_{digest}"
    return stem


def check_name(name: str, file: str | None, place: str | None, what: str = "'name'") -> str:
    """Return ``name`` if :func:`file_stem` keeps it as is, else raise a one-line InputError that
    says what is allowed (so a bad name is refused when the file is read, before compiling)."""
    if file_stem(name) != name:
        raise InputError(f"{what} {name!r} cannot become a file name: use {NAME_RULE} "
                         f"(e.g. {file_stem(name)!r})", file=file, place=place)
    return name


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exit_on_sigterm():
    """While files are staged, SIGTERM exits through Python (status 143) so the temp files are
    removed; returns the previous handler (None off the main thread, where it cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    return signal.signal(signal.SIGTERM, stop)


def _plan(out_dir: Path, names: list[str]) -> list[Path]:
    """The final path of every output, checked before anything is written."""
    root = Path(os.path.realpath(out_dir))
    finals: list[Path] = []
    seen: dict[str, str] = {}
    for name in names:
        if not name or name != os.path.basename(name) or name in (".", ".."):
            raise MapcError(f"output name {name!r} is not a plain file name; nothing written",
                            file=str(out_dir))
        final = Path(os.path.realpath(root / name))        # follows a symlink to where it writes
        if final != root / name and root not in final.parents:
            raise MapcError(f"{name} is a link to {final}, outside the output directory; nothing written",
                            file=str(out_dir))
        key = str(final).casefold()                         # one path on case-insensitive disks too
        if key in seen:
            both = name if seen[key] == name else f"{seen[key]} and {name}"
            raise MapcError(f"two outputs of this run would both be written to {final.name} ({both}): "
                            "give the operator, target or layer another name; nothing written",
                            file=str(out_dir))
        seen[key] = name
        if os.path.lexists(final) and not stat.S_ISREG(os.stat(final).st_mode):
            kind = "a directory" if final.is_dir() else "not a regular file"
            raise MapcError(f"is {kind}, not a file mapc may replace; nothing written", file=str(final))
        finals.append(final)
    return finals


def _make_dirs(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` and missing parents; returns the created ones, innermost first."""
    created = []
    d = Path(out_dir)
    while not d.exists() and d != d.parent:
        created.append(d)
        d = d.parent
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_dirs(created)
        raise MapcError(f"cannot create output directory ({e.strerror})", file=str(out_dir)) from None
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in created:
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: an output of this run is in place, keep the rest
            break


def check_out_dir(out_dir: Path) -> Path:
    """``out_dir`` if it is a directory or can become one (called before compiling, too)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MapcError("-o names an existing file, not a directory; nothing written", file=str(out_dir))
    return out_dir


def output_file(path: Path) -> Path:
    """Where writing the user-named file ``path`` lands: a symlink is written through to its
    target; a directory, device or other non-regular file is refused (one-line error)."""
    real = Path(os.path.realpath(path))
    _plan(real.parent, [real.name])
    return real


def write_all(out_dir: Path, files: list[tuple[str, str | bytes]]) -> list[Path]:
    """Write every ``(name, text or bytes)`` into ``out_dir`` via temp files + rename.

    Paths are checked first (inside ``out_dir``, distinct, regular files or new); on any failure
    the temp files and the directories created here are removed, earlier outputs stay untouched."""
    out_dir = check_out_dir(out_dir)
    finals = _plan(out_dir, [name for name, _ in files])
    created = _make_dirs(out_dir)
    new_mode = 0o666 & ~_umask()
    temps: list[tuple[str, Path]] = []
    term = _exit_on_sigterm()
    try:
        for (name, data), final in zip(files, finals):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=final.parent)
            temps.append((tmp, final))                      # registered before writing: always removed
            with os.fdopen(fd, "wb") as fh:
                fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
                os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(final).st_mode) if final.exists() else new_mode)
        for tmp, final in temps:
            os.replace(tmp, final)
    except BaseException as e:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        _remove_dirs(created)                               # only if still empty
        if isinstance(e, OSError):
            raise MapcError(f"cannot write outputs ({e.strerror}); nothing written",
                            file=str(out_dir)) from None
        raise
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)
    return [out_dir / name for name, _ in files]

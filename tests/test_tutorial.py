"""examples/TUTORIAL.md stays true: every ```console block's command still prints what it shows.

A block is ``$ mapc ARGS`` followed by the output.  The test runs each command in a temporary
directory (paths under ``examples/`` point into the repository) and checks that every shown line
appears in the real output, in order; wall times (``0.123 s``, the seconds column) are ignored.
After a deliberate change to the output, regenerate the blocks with

    python tests/test_tutorial.py --update
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "examples" / "TUTORIAL.md"
BLOCK = re.compile(r"```console\n\$ (mapc [^\n]*)\n(.*?)```", re.S)
_SECONDS = re.compile(r"\d+\.\d+ s\b")
_CELL = re.compile(r"│\s+\d+\.\d{3} │")


def blocks(text: str) -> list[tuple[str, str]]:
    """(command, shown output) for every console block."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def normalise(line: str) -> str:
    return _CELL.sub("│ #.### │", _SECONDS.sub("#.### s", line)).rstrip()


def run(command: str, cwd: Path) -> tuple[int, str]:
    """Run ``mapc ...`` in-process with ``cwd`` as the working directory; (exit code, stdout)."""
    from compiler.cli import main

    args = [str(ROOT / a) if a.startswith("examples/") else a for a in shlex.split(command)[1:]]
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout


def missing(shown: str, actual: str) -> list[str]:
    """Shown lines not found in order in the actual output."""
    got = [normalise(x) for x in actual.splitlines()]
    pos, lost = 0, []
    for line in (normalise(x) for x in shown.splitlines()):
        if not line.strip():
            continue
        try:
            pos = got.index(line, pos) + 1
        except ValueError:
            lost.append(line)
    return lost


CASES = blocks(TUTORIAL.read_text(encoding="utf-8")) if TUTORIAL.exists() else []


def test_tutorial_has_a_conv_and_a_gemm():
    commands = [c for c, _ in CASES]
    assert any("conv3x3.yaml" in c and c.startswith("mapc explain") for c in commands)
    assert any("gemm.yaml" in c for c in commands)


@pytest.mark.parametrize("command,shown", CASES, ids=[c for c, _ in CASES])
def test_command_prints_what_the_tutorial_shows(command, shown, tmp_path):
    code, out = run(command, tmp_path)
    assert code == 0, out
    lost = missing(shown, out)
    assert not lost, (f"`{command}` no longer prints {len(lost)} line(s) of the tutorial, first: {lost[0]!r}; "
                      "run `python tests/test_tutorial.py --update` if the change is intended")


def update() -> None:
    """Rewrite every console block with the command's current output."""
    import tempfile

    text = TUTORIAL.read_text(encoding="utf-8")

    def fresh(m: re.Match) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            code, out = run(m.group(1), Path(tmp))
        if code != 0:
            raise SystemExit(f"`{m.group(1)}` exited {code}:\n{out}")
        return f"```console\n$ {m.group(1)}\n{out.rstrip()}\n```"
    TUTORIAL.write_text(BLOCK.sub(fresh, text), encoding="utf-8")
    print(f"updated {len(BLOCK.findall(text))} blocks in {TUTORIAL}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        raise SystemExit(__doc__)

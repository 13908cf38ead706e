"""Shared fixtures: the repository root, the shared reference data and a CLI runner."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = ROOT / "examples"

# A 4x4-PE MDC target small enough for exhaustive checks (7 lines: tests count on it).
SMALL_TARGET = """name: small
backends: [mdc]
pe_array: {rows: 4, cols: 4}
l1_bytes_per_pe: 64
l2_bytes: 4096
noc_bw_elems_per_cycle: 8
offchip_bw_elems_per_cycle: 4
"""


@pytest.fixture
def run_cli():
    """Run ``mapc ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from compiler.cli import main

    def run(*args: str):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


@pytest.fixture
def write(tmp_path):
    """Write a text file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write

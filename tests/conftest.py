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
def cp_sat_parameters(monkeypatch):
    """``use(**params)`` sets CP-SAT parameters on every later solve (``stop_after_presolve``
    ends a solve with no solution, as a time limit running out does); it returns the list that
    gets, per solve, the status name and whether every variable of the model had a hint."""
    from ortools.sat.python import cp_model

    solves: list[tuple[str, bool]] = []

    def use(**params) -> list[tuple[str, bool]]:
        class Solver(cp_model.CpSolver):
            def Solve(self, model, *args):  # noqa: N802 (CP-SAT's name)
                for key, value in params.items():
                    setattr(self.parameters, key, value)
                code = super().Solve(model, *args)
                proto = model.Proto()
                every = sorted(proto.solution_hint.vars) == list(range(len(proto.variables)))
                solves.append((self.StatusName(code), every))
                return code

        monkeypatch.setattr(cp_model, "CpSolver", Solver)
        return solves

    return use


@pytest.fixture
def write(tmp_path):
    """Write a text file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write

"""House rules that keep the code base readable: pass docstrings, one public entry per pass, a
line budget per module."""
from __future__ import annotations

import ast
import importlib

from conftest import ROOT

from compiler.pipeline import PIPELINE

MODULE_LINES = 500        # split a module past this (README, "Contributing")


def test_every_pass_module_states_what_it_reads_decides_and_leaves():
    for p in PIPELINE:
        module = importlib.import_module(p.run.__module__)
        doc = module.__doc__ or ""
        assert doc.startswith(f"Pass ``{p.name}``"), (p.name, doc[:40])
        for word in ("Reads:", "Decides:", "Leaves:"):
            assert word in doc, (p.name, word)
        assert p.run.__name__ == "run" and p.run.__doc__, p.name


def test_modules_stay_small_and_public_functions_have_docstrings():
    for folder in ("compiler", "compiler/mdc", "compiler/gemm", "passes", "targets"):
        for path in sorted((ROOT / folder).glob("*.py")):
            text = path.read_text()
            assert len(text.splitlines()) <= MODULE_LINES, f"{path.name}: split it"
            tree = ast.parse(text)
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                    assert ast.get_docstring(node), f"{path.name}: {node.name} has no docstring"

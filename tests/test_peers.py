"""mapc against the valid peer mappings of ``../shared/peer-mappings`` that are quick to compile
(the three edge layers; ``bench/peers.py`` runs all four): mapc's own mapping for the layer takes
at most the peer's cycles under the cost model, which is MAESTRO's to the cycle."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import peers  # noqa: E402

from compiler.mdc.lowering import chiplet_hw  # noqa: E402


@pytest.mark.parametrize("name", [n for n, case in peers.CASES.items() if case[2] == "edge"])
def test_mapc_at_most_the_peers_cycles(name):
    ctx = peers.compile_case(name)
    hw = chiplet_hw(ctx.target, ctx.op.output.element_bytes)
    mine = ctx.lowered.metrics["runtime_cycles"]
    assert mine == ctx.onchip.metrics.runtime_cycles      # one MDC layer, the search's choice
    assert ctx.lowered.metrics["macs"] == ctx.op.macs
    assert mine <= peers.peer_cycles(name, hw), ctx.onchip.choice.describe()

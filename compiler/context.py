"""The compilation context carried through the pass pipeline.

A :class:`Context` is frozen: each pass returns ``dataclasses.replace(ctx, ...)`` with the fields
it decides filled in.  Its ``stage`` records how far compilation has come, so a pass can refuse a
context that is not ready for it (the driver checks ``Pass.requires``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Union

from targets import Target

from .ir import Op, OpMapping

if TYPE_CHECKING:  # the passes import this module; only the annotations name their results
    from passes.gemm_lowering import GemmLowering
    from compiler.mdc.parts import Decomposition
    from passes.gemm_schedule import GemmResult
    from passes.mdc_emit import MdcOutput
    from passes.offchip import OffchipSchedule
    from passes.onchip import NothingFits, OnchipResult
    from passes.replan import Replan


class Stage(IntEnum):
    """How far a context has come; passes require one stage and leave the next."""

    START = 0
    PARSED = 1        # frontend: ctx.op
    CONFORMING = 2    # conformance: ctx.mdc_form
    OFFCHIP = 3       # off-chip subspace solved: ctx.offchip, ctx.mapping (off-chip levels)
    ONCHIP = 4        # on-chip subspace solved: ctx.onchip, ctx.mapping (every level); MDC: the
                      # onchip pass for the off-chip plan as it is, or replan for another
    LOWERED = 5       # a backend wrote its artefacts


@dataclass(frozen=True)
class MdcForm:
    """How an operator is written in MDC: the layer type and which op dim plays each MDC dim.

    ``dim_map`` pairs MDC dim names (``K``, ``C``, ``Y``, ``X``, ``R``, ``S``, ``N``, ``G`` or
    GEMM's ``M``, ``N``, ``K``) with op dims; MDC dims not listed have extent 1.  For ``Y``/``X``
    the op dim is the *output* dim of a sliding window; the input extent is derived.
    ``repeat_dims`` are dims one MDC layer cannot hold (a batch of GEMMs, attention heads): the
    operator is that many identical layers."""

    layer_type: str
    dim_map: tuple[tuple[str, str], ...]
    repeat_dims: tuple[str, ...] = ()
    input: str = "I"
    weight: str = "W"
    output: str = "O"

    def op_dim(self, mdc_dim: str) -> str | None:
        return dict(self.dim_map).get(mdc_dim)

    def mdc_dim(self, op_dim: str) -> str | None:
        return next((m for m, d in self.dim_map if d == op_dim), None)

    def pretty(self) -> str:
        roles = ", ".join(f"{m}={d}" for m, d in self.dim_map)
        rep = f"; repeated over {', '.join(self.repeat_dims)}" if self.repeat_dims else ""
        return (f"MDC form: {self.layer_type} ({roles}){rep}; input {self.input}, "
                f"weight {self.weight}, output {self.output}")


@dataclass(frozen=True)
class OffchipHints:
    """What a backend asks of the off-chip search (set by a backend pass that runs before it).

    ``tile_caps``: the L2 tiles the backend can express, per restricted dim.  ``slack``/``step_model``: the
    backend's simulator refetches each L2 tile per step, so among tilings within ``1 + slack`` of
    the optimal DRAM traffic the one with the fewest estimated cycles is taken."""

    tile_caps: tuple[tuple[str, tuple[int, ...]], ...] = ()
    slack: float = 0.0
    macs_per_cycle: int = 0           # 0: no step model (pure traffic minimisation)
    dram_bw: float = 0.0
    noc_bw: float = 0.0
    spread_dims: tuple[str, ...] = ()   # dims that may go across PEs, when the target restricts them
    why: str = ""

    def pretty(self) -> str:
        caps = ", ".join(f"{d} in {{{', '.join(map(str, v))}}}" for d, v in self.tile_caps) or "none"
        return f"off-chip hints: tile choices {caps}; {self.why}"


@dataclass(frozen=True)
class PassRecord:
    """What one pass reported: wall time, the size of the space it searched, solver status."""

    name: str
    seconds: float
    space_size: int | None = None
    solver_status: str | None = None


@dataclass(frozen=True)
class Options:
    """User choices that passes read (keyword-only in the CLI)."""

    objective: str = "latency"
    offchip_slack: float = 0.5         # MDC: DRAM traffic allowed above the optimum for speed
    backend: str | None = None          # None: the target's first backend
    time_limit_s: float = 10.0
    bandwidth: str = "within"           # MDC: "within" ranks mappings within NoC/off-chip BW first;
                                        # "priced" lets MAESTRO's runtime (which has the stalls) decide


@dataclass(frozen=True)
class Context:
    """Everything a compilation knows; each pass fills in its part.

    ``mapping`` is the backend-neutral record of the decisions so far (:class:`OpMapping`): the
    off-chip pass leaves its levels, the on-chip search or the GEMM scheduler completes it, and
    the emitters lower it."""

    op_path: Path
    target: Target
    options: Options = Options()
    stage: Stage = Stage.START
    op: Op | None = None
    source_op: Op | None = None          # the op as written, when a lowering replaced ctx.op
    mdc_form: MdcForm | None = None
    offchip_hints: OffchipHints | None = None
    decomposition: Decomposition | None = None   # MDC: the plans tried to write the op as MDC layers
    offchip: OffchipSchedule | None = None
    onchip: OnchipResult | NothingFits | None = None
    replan: Replan | None = None                  # MDC: the off-chip plans searched, the one kept
    lowered: Union[MdcOutput, GemmResult, GemmLowering, None] = None
    mapping: OpMapping | None = None
    artifacts: tuple[tuple[str, str], ...] = ()      # (file name, text) written at the end
    records: tuple[PassRecord, ...] = ()
    solver_notes: tuple[tuple[str, int | None, str | None], ...] = field(default=())

    def note_search(self, pass_name: str, space_size: int | None, solver_status: str | None) -> "Context":
        """Return a context that remembers the search size and solver status of ``pass_name``."""
        return replace(self, solver_notes=self.solver_notes + ((pass_name, space_size, solver_status),))

    def search_of(self, pass_name: str) -> tuple[int | None, str | None]:
        for name, size, status in self.solver_notes:
            if name == pass_name:
                return size, status
        return None, None

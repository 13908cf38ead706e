"""The logic behind ``mapc eval`` and ``mapc check`` (the click wrappers live in cli.py).

API::

    load_hw(hw_path=None, target=None, element_bytes=1) -> HwConfig
    eval_mapping(mapping, hw) -> list[Metrics]
    eval_table(metrics) -> rich.table.Table ; eval_json(metrics) -> str
    check_mapping(mapping, hw=None) -> (lines, exit_code)   # 2 if any H/S/C violation
"""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from compiler.mdc.checker import check_file, is_clean
from compiler.mdc.costmodel import Metrics, evaluate_file
from compiler.errors import MappingError
from compiler.mdc.hw import HwConfig, parse_hw_file
from compiler.mdc.parser import parse_mdc_file

#: Metrics shown in the table, with their column titles.
COLUMNS = (("layer", "layer"), ("macs", "MACs"), ("runtime_cycles", "cycles"),
           ("energy_mac_units", "energy (MAC)"), ("l1_elements", "L1 req"),
           ("l2_elements", "L2 req"), ("noc_bw_required", "NoC BW"), ("noc_bw_avg", "avg NoC BW"),
           ("offchip_bw_required", "off-chip BW"), ("avg_util_pes", "avg PEs"),
           ("utilization", "util"))


def hw_from_target(target, element_bytes: int = 1) -> HwConfig:
    """A MAESTRO HW config for a :class:`targets.Target` (capacities converted to elements),
    with the target's MACs per PE per cycle and energy per access."""
    return HwConfig(num_pes=target.num_pes, l1_size=target.l1_elements(element_bytes),
                    l2_size=target.l2_elements(element_bytes), noc_bw=max(1, int(target.noc_bw)),
                    offchip_bw=max(1, int(target.offchip_bw)), noc_hops=int(target.noc_hops),
                    macs_per_pe=max(1, int(target.macs_per_pe)), energy=target.energy)


def load_hw(hw_path: str | Path | None = None, target: str | None = None,
            element_bytes: int = 1) -> HwConfig:
    """HW config from ``--hw`` or ``--target`` (a target also sets MACs per PE and energy)."""
    if hw_path is not None:
        return parse_hw_file(hw_path)
    if target is not None:
        from targets import load_target  # the loader lives outside compiler/

        return hw_from_target(load_target(target), element_bytes)
    raise MappingError("give --hw HW.m or --target NAME")


def eval_mapping(mapping: str | Path, hw: HwConfig) -> list[Metrics]:
    """Metrics for every layer of a mapping file."""
    return evaluate_file(parse_mdc_file(mapping), hw)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.4e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def eval_table(metrics: list[Metrics]) -> Table:
    """One row per layer."""
    table = Table(show_header=True)
    for _, title in COLUMNS:
        table.add_column(title, justify="left" if title == "layer" else "right", no_wrap=True)
    for m in metrics:
        table.add_row(*(_fmt(getattr(m, key)) for key, _ in COLUMNS))
    return table


def eval_json(metrics: list[Metrics]) -> str:
    """``{"layers": [ {metric: value, ...}, ... ]}`` with stable keys."""
    return json.dumps({"layers": [m.as_dict() for m in metrics]}, indent=2)


def check_mapping(mapping: str | Path, hw: HwConfig | None = None) -> tuple[list[str], int]:
    """Violation lines and the exit code: 2 if a hard, soft or capacity rule fails, else 0."""
    violations = check_file(parse_mdc_file(mapping), hw)
    lines = [f"{mapping}:{v.line}: {v}" if v.line else f"{mapping}: {v}" for v in violations]
    return lines, 0 if is_clean(violations) else 2

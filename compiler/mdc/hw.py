"""MAESTRO HW files: the six ``key: value`` entries, parsed with MAESTRO's tokenizer.

:class:`HwConfig` also carries what a mapc target adds to the six keys and MAESTRO fixes:
MACs per PE per cycle (1) and the energy per access (MAESTRO's 18.61 L2, 1.68 L1, 1 MAC).

Re-exported by :mod:`compiler.mdc.syntax` (``HwConfig``, ``parse_hw``, ``parse_hw_file``,
``print_hw``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compiler.errors import MappingError
from compiler.yamlio import read_text
from compiler.mdc.tokens import INT_MAX, check_numbers, tokenize
from targets import Energy


@dataclass(frozen=True)
class HwConfig:
    """The six keys of a MAESTRO HW file, with MAESTRO's defaults, then the target's MACs per
    PE per cycle and energy per access (not in the file; MAESTRO's values by default)."""

    num_pes: int = 1
    l1_size: int = INT_MAX
    l2_size: int = INT_MAX
    noc_bw: int = INT_MAX
    offchip_bw: int = INT_MAX
    noc_hops: int = 1
    macs_per_pe: int = 1
    energy: Energy = Energy()


HW_KEYS = {
    "num_pes": "num_pes", "l1_size_cstr": "l1_size", "l2_size_cstr": "l2_size",
    "noc_bw_cstr": "noc_bw", "offchip_bw_cstr": "offchip_bw", "NoC_NumHops": "noc_hops",
}


def parse_hw(text: str, file: str | None = None) -> HwConfig:
    """Parse a MAESTRO HW file (``key: value`` lines, same tokenizer)."""
    values: dict[str, int] = {}
    toks = tokenize(text)
    check_numbers(toks, file)
    i = 0
    while i < len(toks):
        key = toks[i]
        if key.text not in HW_KEYS:
            hint = " ('=' is not a separator; write 'key: value')" if "=" in key.text else ""
            raise MappingError(f"unknown HW key {key.text!r}{hint}", file, str(key.line))
        if i + 1 >= len(toks):
            raise MappingError(f"HW key {key.text!r} has no value", file, str(key.line))
        val = toks[i + 1]
        if val.text == "=" or key.text.endswith("="):
            raise MappingError(f"'=' after {key.text!r}: write 'key: value'", file, str(val.line))
        if not val.text.isdigit():
            raise MappingError(f"value of {key.text} must be a non-negative integer, got "
                               f"{val.text!r}", file, str(val.line))
        values[HW_KEYS[key.text]] = int(val.text)
        i += 2
    hw = HwConfig(**values)
    for name in ("num_pes", "noc_bw", "offchip_bw"):
        if getattr(hw, name) < 1:
            key = next(k for k, v in HW_KEYS.items() if v == name)
            raise MappingError(f"{key} must be >= 1 (MAESTRO divides by it and crashes)", file,
                               None)
    return hw


def parse_hw_file(path: str | Path) -> HwConfig:
    """Read and parse a HW file."""
    text = read_text(Path(path), "HW", errors="surrogateescape")
    return parse_hw(text, str(path))


def print_hw(hw: HwConfig) -> str:
    """HW file text with all six keys."""
    inv = {v: k for k, v in HW_KEYS.items()}
    return "".join(f"{inv[f]}: {getattr(hw, f)}\n" for f in
                   ("num_pes", "l1_size", "l2_size", "noc_bw", "offchip_bw", "noc_hops"))

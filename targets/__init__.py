"""Accelerator targets: ``targets/<name>.yaml`` files and their loader/validator.

Units are part of every key name: capacities in bytes (``*_bytes``), bandwidths in elements per
cycle (``*_elems_per_cycle``), energies in units of one MAC.  Capacities become element counts
only once an operator's element size is known (:meth:`Target.l1_elements`).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from compiler.errors import InputError, TargetError
from compiler.outputs import check_name
from compiler.schema import MAX_INT, target_schema, validate
from compiler.yamlio import LocDict, check_keys, load_yaml_mapping, read_text

BACKENDS = ("mdc", "gemm")
SYSTOLIC_DATAFLOWS = ("weight_stationary", "output_stationary", "input_stationary")
# Dataflow restrictions name MDC roles of a CONV layer; for GEMM-like ops K plays GEMM's N
# (output columns) and C plays GEMM's K (the reduction), as in NVDLA's atomic-K/atomic-C.
SPATIAL_ROLES = ("N", "K", "C", "Y", "X", "R", "S", "G")


@dataclass(frozen=True)
class Energy:
    """Per-access energies in units of one MAC (MAESTRO's 18.61 / 1.68 by default)."""

    mac: float = 1.0
    l1_access: float = 1.68
    l2_access: float = 18.61
    dram_access: float = 200.0


@dataclass(frozen=True)
class Chiplets:
    """A multi-chiplet package: ``count`` chiplets on a ``mesh`` with links between neighbours."""

    count: int
    mesh: tuple[int, int]
    link_bw_elems_per_cycle: float
    layout: tuple[str, ...] = ()       # kind per mesh position (row by row); () when all alike


@dataclass(frozen=True)
class Target:
    """One accelerator (per chiplet, where it has chiplets)."""

    name: str
    description: str
    backends: tuple[str, ...]
    pe_rows: int
    pe_cols: int
    macs_per_pe: int
    l1_bytes: int
    l2_bytes: int
    noc_bw: float               # L2 -> PE array, elements/cycle
    offchip_bw: float           # DRAM -> L2, elements/cycle (shared by all chiplets)
    noc_hops: int = 1
    energy: Energy = Energy()
    chiplets: Chiplets | None = None
    spatial_roles: tuple[str, ...] | None = None   # None: any dims may go across PEs
    systolic_dataflow: str | None = None
    clock_ghz: float = 1.0
    source: str = ""
    kinds: tuple[tuple[str, "Target"], ...] = ()   # chiplets of several kinds: name -> one chiplet

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def num_chiplets(self) -> int:
        return self.chiplets.count if self.chiplets else 1

    def l1_elements(self, element_bytes: int) -> int:
        return self.l1_bytes // element_bytes

    def l2_elements(self, element_bytes: int) -> int:
        return self.l2_bytes // element_bytes

    def rows(self) -> list[tuple[str, str]]:
        """(property, value) pairs for ``mapc show-target``."""
        out = [("name", self.name), ("description", self.description),
               ("backends", ", ".join(self.backends)),
               ("PE array", f"{self.pe_rows} x {self.pe_cols} = {self.num_pes} PEs"),
               ("MACs/PE/cycle", str(self.macs_per_pe)),
               ("L1 per PE", f"{self.l1_bytes:,} B"), ("L2", f"{self.l2_bytes:,} B"),
               ("NoC BW (L2->PEs)", f"{self.noc_bw:g} elements/cycle"),
               ("off-chip BW", f"{self.offchip_bw:g} elements/cycle"),
               ("NoC hops", str(self.noc_hops)),
               ("energy (MAC units)", f"MAC {self.energy.mac:g}, L1 {self.energy.l1_access:g}, "
                                      f"L2 {self.energy.l2_access:g}, DRAM {self.energy.dram_access:g}"),
               ("spatial dims", ", ".join(self.spatial_roles) if self.spatial_roles else "any"),
               ("clock", f"{self.clock_ghz:g} GHz")]
        if self.chiplets:
            out.append(("chiplets", f"{self.chiplets.count} on a {self.chiplets.mesh[0]}x{self.chiplets.mesh[1]} "
                                    f"mesh, links {self.chiplets.link_bw_elems_per_cycle:g} elements/cycle"))
        for name, kind in self.kinds:
            where = [i for i, k in enumerate(self.chiplets.layout) if k == name]
            out.append((f"chiplet kind {name}", f"{kind.description} (positions {', '.join(map(str, where))}): "
                        f"{kind.pe_rows} x {kind.pe_cols} PEs, L1 {kind.l1_bytes:,} B/PE, L2 {kind.l2_bytes:,} B, "
                        f"NoC {kind.noc_bw:g}, spatial dims "
                        + (", ".join(kind.spatial_roles) if kind.spatial_roles else "any")))
        if self.systolic_dataflow:
            out.append(("systolic dataflow", self.systolic_dataflow))
        out.append(("file", self.source))
        return out


def bundled_names() -> list[str]:
    """Names of the targets shipped with mapc."""
    return sorted(p.name[:-5] for p in resources.files("targets").iterdir() if p.name.endswith(".yaml"))


def load_target(name_or_path: str | Path) -> Target:
    """Load a bundled target by name, or a target file by path; errors name the key."""
    text_path = Path(name_or_path)
    if text_path.suffix in (".yaml", ".yml") or text_path.exists():
        return parse_target(read_text(text_path, "target"), str(text_path))
    if str(name_or_path) not in bundled_names():
        raise TargetError(f"unknown target '{name_or_path}' (bundled: {', '.join(bundled_names())}; "
                          "or give a path to a .yaml file)")
    res = resources.files("targets").joinpath(f"{name_or_path}.yaml")
    return parse_target(res.read_text(encoding="utf-8"), f"targets/{name_or_path}.yaml")


def parse_target(text: str, file: str) -> Target:
    """Validate a target description; the first problem found is reported with its key."""
    try:
        return _parse_target(load_yaml_mapping(text, file), file)
    except InputError as e:  # from the shared YAML helpers: the same problem, named as a target's
        raise TargetError(e.msg, file=e.file or file, place=e.place) from None


KIND_KEYS = ("description", "pe_array", "macs_per_pe_per_cycle", "l1_bytes_per_pe", "l2_bytes",
             "noc_bw_elems_per_cycle", "noc_hops", "energy", "dataflow")


def _kinds(data: LocDict, ch: LocDict, count: int, file: str) -> tuple[tuple[tuple[str, Target], ...], tuple[str, ...]]:
    """``chiplets.kinds`` (name -> the keys in which that chiplet differs from the top level) and
    ``chiplets.layout`` (a kind per mesh position): one Target per kind, without chiplets."""
    if "kinds" not in ch or "layout" not in ch:
        raise TargetError("'chiplets.kinds' and 'chiplets.layout' go together", file=file,
                          place=ch.place("kinds" if "kinds" in ch else "layout"))
    kinds = ch["kinds"]
    layout = ch["layout"]
    if not isinstance(layout, list) or len(layout) != count or any(k not in kinds for k in layout):
        raise TargetError(f"'chiplets.layout' must list {count} kinds from 'chiplets.kinds'", file=file,
                          place=ch.place("layout"))
    out = []
    for name in kinds:
        over = kinds[name]
        if not isinstance(over, LocDict):
            raise TargetError(f"'chiplets.kinds.{name}' must be a mapping", file=file, place=kinds.place(name))
        check_keys(over, KIND_KEYS, file, where=f"chiplets.kinds.{name}.")
        merged = LocDict((k, v) for k, v in data.items() if k not in ("chiplets", "dataflow"))
        merged.lines = getattr(data, "lines", {})
        merged.update(over)
        merged["name"] = f"{data['name']}.{name}"
        out.append((str(name), _parse_target(merged, file)))
    return tuple(out), tuple(str(k) for k in layout)


def _parse_target(data: LocDict, file: str) -> Target:
    validate(data, target_schema(), file)     # every key's type and range; below: meaning only
    backends = data["backends"]
    pe = data["pe_array"]
    if pe["rows"] * pe["cols"] > MAX_INT:
        raise TargetError(f"'pe_array' has {pe['rows'] * pe['cols']:,} PEs; at most {MAX_INT:,} "
                          "(MAESTRO counts PEs in a 32-bit integer)", file=file, place=data.place("pe_array"))
    kw: dict = {}
    if "energy" in data:
        kw["energy"] = Energy(**{k: float(v) for k, v in data["energy"].items()})
    if "chiplets" in data:
        ch = data["chiplets"]
        mesh, count = ch["mesh"], ch["count"]
        if mesh[0] * mesh[1] != count:
            raise TargetError(f"'chiplets.mesh' must be [rows, cols] with rows*cols = count ({count})",
                              file=file, place=ch.place("mesh"))
        layout: tuple[str, ...] = ()
        if "kinds" in ch or "layout" in ch:
            kw["kinds"], layout = _kinds(data, ch, count, file)
        kw["chiplets"] = Chiplets(count, (mesh[0], mesh[1]), float(ch["link_bw_elems_per_cycle"]), layout)
    if "dataflow" in data:
        kw["spatial_roles"] = tuple(data["dataflow"]["spatial_dims"])
    if "systolic" in data:
        kw["systolic_dataflow"] = data["systolic"]["dataflow"]
    if "gemm" in backends and "systolic_dataflow" not in kw and "mdc" not in backends:
        raise TargetError("a GEMM-only target needs 'systolic.dataflow'", file=file)
    check_name(data["name"], file, data.place("name"))  # it names the HW file
    return Target(
        name=data["name"], description=data.get("description", ""), backends=tuple(backends),
        pe_rows=pe["rows"], pe_cols=pe["cols"], macs_per_pe=data.get("macs_per_pe_per_cycle", 1),
        l1_bytes=data["l1_bytes_per_pe"], l2_bytes=data["l2_bytes"],
        noc_bw=float(data["noc_bw_elems_per_cycle"]), offchip_bw=float(data["offchip_bw_elems_per_cycle"]),
        noc_hops=data.get("noc_hops", 1), clock_ghz=float(data.get("clock_ghz", 1.0)), source=file, **kw)

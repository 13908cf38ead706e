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
from compiler.yamlio import LocDict, check_keys, load_yaml_mapping, positive_int, positive_number, read_text

BACKENDS = ("mdc", "gemm")
SYSTOLIC_DATAFLOWS = ("weight_stationary", "output_stationary", "input_stationary")
# Dataflow restrictions name MDC roles of a CONV layer; for GEMM-like ops K plays GEMM's N
# (output columns) and C plays GEMM's K (the reduction), as in NVDLA's atomic-K/atomic-C.
SPATIAL_ROLES = ("N", "K", "C", "Y", "X", "R", "S", "G")

TOP_KEYS = ("name", "description", "backends", "pe_array", "macs_per_pe_per_cycle", "l1_bytes_per_pe",
            "l2_bytes", "noc_bw_elems_per_cycle", "offchip_bw_elems_per_cycle", "noc_hops",
            "energy", "chiplets", "dataflow", "systolic", "clock_ghz")
REQUIRED = ("name", "backends", "pe_array", "l1_bytes_per_pe", "l2_bytes",
            "noc_bw_elems_per_cycle", "offchip_bw_elems_per_cycle")


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


def _sub(data: LocDict, key: str, file: str) -> LocDict:
    value = data[key]
    if not isinstance(value, LocDict):
        raise TargetError(f"'{key}' must be a mapping", file=file, place=data.place(key))
    return value


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
    kinds = _sub(ch, "kinds", file)
    layout = ch["layout"]
    if not isinstance(layout, list) or len(layout) != count or any(k not in kinds for k in layout):
        raise TargetError(f"'chiplets.layout' must list {count} kinds from 'chiplets.kinds'", file=file,
                          place=ch.place("layout"))
    out = []
    for name in kinds:
        over = _sub(kinds, name, file)
        check_keys(over, KIND_KEYS, file, where=f"chiplets.kinds.{name}.")
        merged = LocDict((k, v) for k, v in data.items() if k not in ("chiplets", "dataflow"))
        merged.lines = getattr(data, "lines", {})
        merged.update(over)
        merged["name"] = f"{data['name']}.{name}"
        out.append((str(name), _parse_target(merged, file)))
    return tuple(out), tuple(str(k) for k in layout)


def _parse_target(data: LocDict, file: str) -> Target:
    check_keys(data, TOP_KEYS, file, required=REQUIRED)
    backends = data["backends"]
    if not isinstance(backends, list) or not backends or any(b not in BACKENDS for b in backends):
        raise TargetError(f"'backends' must be a non-empty list of {', '.join(BACKENDS)}", file=file,
                          place=data.place("backends"))
    pe = _sub(data, "pe_array", file)
    check_keys(pe, ("rows", "cols"), file, required=("rows", "cols"), where="pe_array.")
    kw: dict = {}
    if "energy" in data:
        en = _sub(data, "energy", file)
        check_keys(en, ("mac", "l1_access", "l2_access", "dram_access"), file, where="energy.")
        kw["energy"] = Energy(**{k: float(positive_number(en, k, file, "energy.")) for k in en})
    if "chiplets" in data:
        ch = _sub(data, "chiplets", file)
        check_keys(ch, ("count", "mesh", "link_bw_elems_per_cycle", "kinds", "layout"), file,
                   required=("count", "mesh", "link_bw_elems_per_cycle"), where="chiplets.")
        mesh = ch["mesh"]
        count = positive_int(ch, "count", file, "chiplets.")
        if (not isinstance(mesh, list) or len(mesh) != 2 or not all(isinstance(m, int) and m > 0 for m in mesh)
                or mesh[0] * mesh[1] != count):
            raise TargetError(f"'chiplets.mesh' must be [rows, cols] with rows*cols = count ({count})",
                              file=file, place=ch.place("mesh"))
        kw["chiplets"] = Chiplets(count, (mesh[0], mesh[1]),
                                  float(positive_number(ch, "link_bw_elems_per_cycle", file, "chiplets.")))
        if "kinds" in ch or "layout" in ch:
            kw["kinds"], layout = _kinds(data, ch, count, file)
            kw["chiplets"] = Chiplets(count, (mesh[0], mesh[1]), kw["chiplets"].link_bw_elems_per_cycle, layout)
    if "dataflow" in data:
        df = _sub(data, "dataflow", file)
        check_keys(df, ("spatial_dims",), file, required=("spatial_dims",), where="dataflow.")
        roles = df["spatial_dims"]
        if not isinstance(roles, list) or not roles or any(r not in SPATIAL_ROLES for r in roles):
            raise TargetError(f"'dataflow.spatial_dims' must list MDC roles from {', '.join(SPATIAL_ROLES)}",
                              file=file, place=df.place("spatial_dims"))
        kw["spatial_roles"] = tuple(roles)
    if "systolic" in data:
        sy = _sub(data, "systolic", file)
        check_keys(sy, ("dataflow",), file, required=("dataflow",), where="systolic.")
        if sy["dataflow"] not in SYSTOLIC_DATAFLOWS:
            raise TargetError(f"'systolic.dataflow' must be one of {', '.join(SYSTOLIC_DATAFLOWS)}",
                              file=file, place=sy.place("dataflow"))
        kw["systolic_dataflow"] = sy["dataflow"]
    if "gemm" in backends and "systolic_dataflow" not in kw and "mdc" not in backends:
        raise TargetError("a GEMM-only target needs 'systolic.dataflow'", file=file)
    for key in ("macs_per_pe_per_cycle", "noc_hops"):
        if key in data:
            positive_int(data, key, file)
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise TargetError("'name' must be a non-empty string", file=file, place=data.place("name"))
    check_name(name, file, data.place("name"))  # it names the HW file
    return Target(
        name=name, description=str(data.get("description", "")), backends=tuple(backends),
        pe_rows=positive_int(pe, "rows", file, "pe_array."), pe_cols=positive_int(pe, "cols", file, "pe_array."),
        macs_per_pe=data.get("macs_per_pe_per_cycle", 1),
        l1_bytes=positive_int(data, "l1_bytes_per_pe", file), l2_bytes=positive_int(data, "l2_bytes", file),
        noc_bw=float(positive_number(data, "noc_bw_elems_per_cycle", file)),
        offchip_bw=float(positive_number(data, "offchip_bw_elems_per_cycle", file)),
        noc_hops=data.get("noc_hops", 1),
        clock_ghz=float(positive_number(data, "clock_ghz", file)) if "clock_ghz" in data else 1.0,
        source=file, **kw)

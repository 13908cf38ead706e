"""Cluster levels of an MDC layer, as MAESTRO builds them before costing.

This is MAESTRO's level construction (mdc-format.md §3.3-3.5), reproduced so that
the cost model sees the same directives MAESTRO analyses:

* split the dataflow at each ``Cluster``; level 0 gets ``num_pes // prod(clusters)``
  units, the level after ``Cluster(n)`` gets ``n`` units;
* per level: the ``Y'``/``X'`` rewrite (size + R - 1 with the R directive of the
  same level), inherited directives from the level above (pushed to the front),
  ``TemporalMap(extent, extent)`` for unmapped input/weight dims (appended, in
  sorted order), the stride rewrite of Y/X directives;
* per level, the static extents (``min(map size above, extent above)``), the
  number of sub-clusters active at the spatial edge, and the per-dimension tile
  sizes used by the reuse analysis (mapped / unique / edge variants).

Everything here is plain data: :class:`LevelSpec` and :class:`LayerSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.errors import MappingError
from compiler.mdc import ClusterDirective, MdcLayer

CONV_TYPES = ("CONV", "DSCONV", "NGCONV")
#: (reference dim, sliding dim) pairs of the sliding-window layers.
OVERLAP = {"X": "S", "Y": "R"}
SLIDING = {"S": "X", "R": "Y"}


def tdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@dataclass(frozen=True)
class Dir:
    """A directive after MAESTRO's rewrites: ``spatial``, size, offset, dimension."""

    spatial: bool
    size: int
    ofs: int
    var: str


@dataclass(frozen=True)
class Tensor:
    """A tensor: name (input/filter/output), whether it is read (input class), coupled dims."""

    name: str
    is_input: bool
    dims: tuple[str, ...]


@dataclass(frozen=True)
class LevelSpec:
    """One cluster level, after all rewrites.

    ``units`` is the number of sub-clusters, ``dims`` the static extents,
    ``edge_units`` MAESTRO's count of sub-clusters active at the spatial edge, and
    ``mapped``/``unique``/``mapped_edge``/``unique_edge`` the per-dimension tile sizes
    of the reuse analysis (including Y'/X' entries for output tiles).
    """

    units: int
    dataflow: tuple[Dir, ...]
    dims: tuple[tuple[str, int], ...]
    edge_units: int
    mapped: tuple[tuple[str, int], ...]
    unique: tuple[tuple[str, int], ...]
    mapped_edge: tuple[tuple[str, int], ...]
    unique_edge: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class LayerSpec:
    """A layer ready for costing: tensors, full extents, levels (top first)."""

    name: str
    type: str
    tensors: tuple[Tensor, ...]
    full_dims: tuple[tuple[str, int], ...]
    conv: bool
    levels: tuple[LevelSpec, ...]


def layer_tensors(ltype: str, declared: set[str]) -> tuple[Tensor, ...]:
    """Input, filter and output tensors with their coupled dims (MAESTRO's table)."""
    batch = "N" in declared and ltype in CONV_TYPES
    n = ("N",) if batch else ()
    if ltype == "DSCONV":
        i, w, o = n + ("C", "Y", "X"), ("C", "R", "S"), n + ("C", "Y", "X")
    elif ltype == "NGCONV":
        i, w, o = n + ("G", "C", "Y", "X"), ("G", "K", "C", "R", "S"), n + ("G", "K", "C", "Y", "X")
    elif ltype == "GEMM":
        i, w, o = ("M", "K"), ("K", "N"), ("M", "N")
    else:
        i, w, o = n + ("C", "Y", "X"), ("K", "C", "R", "S"), n + ("K", "Y", "X")
    return (Tensor("input", True, i), Tensor("filter", True, w), Tensor("output", False, o))


def _full_dims(layer: MdcLayer, ltype: str) -> tuple[dict[str, int], dict[str, int]]:
    """Full extents and outer strides, with the derived Y'/X' (or Y/X) entries."""
    strides = layer.stride_map()
    dims: dict[str, int] = {}
    st: dict[str, int] = {}
    for name, size in layer.dims:
        if name not in dims:  # MAESTRO's std::map insert keeps the first value
            dims[name] = int(size)
            st[name] = strides.get(name, 1)
    if ltype not in CONV_TYPES:
        return dims, st
    names = [n for n, _ in layer.dims]
    for a, b in (("Y", "Y'"), ("X", "X'")):
        if a in names and b in names:
            raise MappingError("Both input- and output-centric dimension definition is used "
                               f"({a} and {b} declared)")
    last = {n: int(s) for n, s in layer.dims}
    lst = {n: strides.get(n, 1) for n in names}
    for inp, out, slide in (("X", "X'", "S"), ("Y", "Y'", "R")):
        if slide not in last and (inp in last or out in last):
            raise MappingError(f"Dimension {slide} not found")
        if inp in last and out not in dims:
            dims[out] = last[inp] - last[slide] + 1
            st[out] = lst[inp]
        elif out in last and inp not in dims:
            dims[inp] = last[out] + last[slide] - 1
            # MAESTRO takes this stride from the other axis's primed dim (a swap in its code).
            st[inp] = lst.get("Y'" if inp == "X" else "X'", 1)
    return dims, st


def _to_input_centric(df: list[Dir], level: int) -> list[Dir]:
    """The per-level Y'/X' rewrite of ClusterAnalysis (only when Y/X is not mapped too)."""
    sizes: dict[str, int] = {}
    for d in df:
        sizes[d.var] = d.size
    out = list(df)
    for inp, prime, slide in (("X", "X'", "S"), ("Y", "Y'", "R")):
        if inp not in sizes and prime in sizes:
            if slide not in sizes:
                raise MappingError(f"{prime} is mapped at cluster level {level} without an explicit "
                                   f"{slide} directive at the same level (MAESTRO computes garbage)")
            i = next(k for k, d in enumerate(out) if d.var == prime)
            out[i] = Dir(out[i].spatial, sizes[prime] + sizes[slide] - 1, out[i].ofs, inp)
    # ClusterUnit's own pass converts whatever primed maps remain.
    r = next((d.size for d in out if d.var == "R"), None)
    s = next((d.size for d in out if d.var == "S"), None)
    for k, d in enumerate(out):
        if d.var in ("X'", "Y'"):
            slide = s if d.var == "X'" else (r or 0)
            if slide is None:
                raise MappingError(f"{d.var} at cluster level {level} needs an S directive")
            out[k] = Dir(d.spatial, d.size + slide - 1, d.ofs, d.var[0])
    return out


def _edge_units(d: Dir, units: int, extent: int) -> int:
    """MAESTRO's number of sub-clusters active in the spatial edge step."""
    m, o = d.size, d.ofs
    full = o * (units - 1) + m
    if extent > full:
        steady = tdiv(tdiv(extent - m, o) + 1, units) - 1
        rem = extent - (steady + 1) * o * units
        ec = 1 if rem < m else tdiv(rem - m, o) + 1
    elif extent > m:
        ec = tdiv(extent - m, o) + 1
        if o * (ec - 1) + m < extent:
            ec += 1
    else:
        ec = 1
    return 1 if extent <= m else ec


def _tile_sizes(df: tuple[Dir, ...], dims: dict[str, int], conv: bool):
    """Reuse-analysis tile sizes per dimension (later directives on a dim overwrite)."""
    mapped: dict[str, int] = {}
    unique: dict[str, int] = {}
    medge: dict[str, int] = {}
    uedge: dict[str, int] = {}
    for d in df:
        m, o, e = d.size, d.ofs, dims[d.var]
        steady = max(tdiv(e - m, o), 0)
        has_edge = steady * o + m < e or m > e
        mapped[d.var] = m
        unique[d.var] = min(m, o)
        if not d.spatial and e <= m:
            unique[d.var] = 0
        edge = e - (steady + 1) * o
        edge = e if edge < 0 else edge
        medge[d.var] = edge if has_edge else m
        uedge[d.var] = max(o - (m - edge), 0)
    if conv:
        for d in df:
            if d.var in OVERLAP:
                out, slide = d.var + "'", OVERLAP[d.var]
                mapped[out] = mapped[d.var] - mapped.get(slide, 0) + 1
                unique[out] = min(d.ofs, d.size)
                medge[out] = medge[d.var] - medge.get(slide, 0) + 1
                uedge[out] = min(d.ofs, medge[out])
    return mapped, unique, medge, uedge


def layer_setup(layer: MdcLayer):
    """What every analysis of a layer starts from: (type, is a conv, full dims, strides, tensors,
    input-side dims); TRCONV reads as CONV, and a dim a tensor needs must be declared."""
    ltype = "CONV" if layer.type == "TRCONV" else layer.type
    full, strides = _full_dims(layer, ltype)
    tensors = layer_tensors(ltype, set(full))
    input_vars = sorted({v for t in tensors if t.is_input for v in t.dims})
    for v in input_vars:
        if v not in full:
            raise MappingError(f"Dimension {v} not found (a {layer.type} layer needs it)")
    return ltype, ltype in CONV_TYPES, full, strides, tensors, input_vars


def build_layer_spec(layer: MdcLayer, num_pes: int) -> LayerSpec:
    """Run MAESTRO's cluster analysis on a resolved layer (all sizes ints)."""
    if layer.directives is None:
        raise MappingError(f"layer {layer.name!r} has no Dataflow (MAESTRO crashes)")
    ltype, conv, full, strides, tensors, input_vars = layer_setup(layer)
    segments: list[list] = [[]]
    clusters: list[int] = []
    for d in layer.directives:
        if isinstance(d, ClusterDirective):
            clusters.append(int(d.size))
            segments.append([])
        else:
            segments[-1].append(Dir(d.is_spatial, int(d.size), int(d.offset), d.dim))
    prod = 1
    for c in clusters:
        prod *= c
    if prod > num_pes:
        raise MappingError(f"product of cluster sizes {prod} exceeds num_pes {num_pes} "
                           f"(MAESTRO crashes with SIGFPE)")
    unit_counts = [num_pes // prod] + clusters
    levels: list[LevelSpec] = []
    cur = dict(full)
    cur_st = dict(strides)
    prev: tuple[Dir, ...] | None = None
    for li, (seg, units) in enumerate(zip(segments, unit_counts)):
        df = _to_input_centric(seg, li)
        if prev is not None:
            for p in prev:
                if not any(d.var == p.var for d in df):
                    df.insert(0, Dir(False, p.size, p.ofs, p.var))
        for v in input_vars:
            if not any(d.var == v for d in df) and v in cur:
                df.append(Dir(False, cur[v], cur[v], v))
        for d in list(df):
            if d.var not in cur:
                raise MappingError(f"Dimension {d.var} not found" +
                                   (" (DSCONV has no K below the first Cluster)"
                                    if d.var == "K" and ltype == "DSCONV" else ""))
            stv = cur_st.get(d.var, 1)
            if conv and d.var in OVERLAP and stv != 1:
                r = full[OVERLAP[d.var]]
                first = next(k for k, x in enumerate(df) if x.var == d.var)
                tgt = df[first]
                if tgt.size >= r:
                    out = tdiv(tgt.size + stv - r, stv)
                    size = out * min(stv, r) + max(r - stv, 0)
                    ofs = out * stv if (li == 0 or r >= stv) else out * r
                    df[first] = Dir(tgt.spatial, size, ofs, tgt.var)
        df_t = tuple(df)
        sp = [d for d in df_t if d.spatial]
        if not sp:
            raise MappingError(f"No spatial map in cluster level {li}")
        if len(sp) > 2:
            raise MappingError(f"Found too many spatial maps within cluster level {li}")
        if units < 1:
            raise MappingError(f"cluster level {li} has no units (num_pes {num_pes})")
        ec = _edge_units(sp[0], units, cur[sp[0].var])
        mapped, unique, medge, uedge = _tile_sizes(df_t, cur, conv)
        levels.append(LevelSpec(units, df_t, tuple(sorted(cur.items())), ec,
                                tuple(mapped.items()), tuple(unique.items()),
                                tuple(medge.items()), tuple(uedge.items())))
        nxt: dict[str, int] = {}
        for v in input_vars:
            d = next(x for x in df_t if x.var == v)
            nxt[v] = min(d.size, cur[v])
        cur_st = {v: cur_st.get(v, 1) for v in input_vars}
        cur = nxt
        prev = df_t
    return LayerSpec(layer.name, ltype, tensors, tuple(sorted(full.items())), conv, tuple(levels))

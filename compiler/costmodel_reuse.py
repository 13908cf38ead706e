"""MAESTRO's reuse analysis for one case of one cluster level (scalar path).

Per-PE and per-level volumes: what the first sub-cluster loads, what the others add
(multicast counted once), what leaves as outputs, the partial sums per PE, and the
tile extents handed to the level below.  Used by :func:`compiler.costmodel.analyze`;
the numpy twin is in :mod:`compiler.costmodel_vec`.
"""
from __future__ import annotations

from compiler.costmodel_levels import OVERLAP, LevelSpec, Tensor
from compiler.errors import MappingError
from compiler.mdc import HwConfig

INIT, STEADY, EDGE = 0, 1, 2


class Level:
    """Per-level lookups shared by all cases (read-only after construction)."""

    def __init__(self, spec: LevelSpec, tensors: tuple[Tensor, ...]):
        self.spec = spec
        self.df = spec.dataflow
        self.U = spec.units
        self.EC = spec.edge_units
        self.mapped = dict(spec.mapped)
        self.unique = dict(spec.unique)
        self.medge = dict(spec.mapped_edge)
        self.uedge = dict(spec.unique_edge)
        self.dims = dict(spec.dims)
        self.first = {}
        for i, d in enumerate(self.df):
            self.first.setdefault(d.var, i)
        self.tensors = tensors
        self.sp_idx = next(i for i, d in enumerate(self.df) if d.spatial)


def pe_mapped(L: Level, t: Tensor, st: dict, first: bool, ee: bool) -> int:
    """Elements of ``t`` one PE holds in this case (edge sizes where the case is an edge)."""
    ret = 1
    for d in L.df:
        if d.var not in t.dims:
            continue
        s = st[d.var]
        if not d.spatial:
            ret *= L.medge.get(d.var, 0) if s.edge else L.mapped.get(d.var, 0)
        elif s.edge:
            if L.EC == 1 and (first or ee):
                ret *= L.medge.get(d.var, 0)
            elif L.EC > 1:
                ret *= L.medge.get(d.var, 0) if ee else L.mapped.get(d.var, 0)
        else:
            ret *= L.mapped.get(d.var, 0)
    return ret


def pe_ingress(L: Level, t: Tensor, st: dict, first: bool, ee: bool, cidx: int) -> int:
    """New elements of ``t`` one PE receives: the full tile on Init, else only what the innermost
    changing directive (index ``cidx``) brings in."""
    if cidx == -1:
        return pe_mapped(L, t, st, first, ee)
    inited = any(i > cidx and d.var in t.dims and st[d.var].pos == INIT and not st[d.var].unrolled
                 for i, d in enumerate(L.df))
    ret = 1
    changing = False
    for i, d in enumerate(L.df):
        if d.var not in t.dims:
            continue
        s = st[d.var]
        is_chg = i == cidx
        changing |= is_chg
        mp, un = L.mapped.get(d.var, 0), L.unique.get(d.var, 0)
        me, ue = L.medge.get(d.var, 0), L.uedge.get(d.var, 0)
        if not d.spatial:
            if s.pos == INIT:
                ret *= me if s.edge else mp
            elif is_chg and not inited:
                ret *= max(un, 1)
            else:
                ret *= mp
        elif s.pos == INIT:
            if first or i <= cidx:
                ret *= me if ee else mp
            else:
                ret *= ue if ee else un
        else:
            if not first and not inited and is_chg:
                ret *= ue if ee else un
            else:
                ret *= me if ee else mp
    return ret if changing else 0


def pe_egress(L: Level, t: Tensor, st: dict, psum: bool, first: bool = True, ee: bool = False,
               reuse_at_edge: bool = True) -> int:
    """Elements of output ``t`` one PE sends (its partial sums when ``psum``)."""
    ret = 1
    if psum:
        for d in L.df:
            if d.var in t.dims:
                continue
            s = st[d.var]
            mp, un = L.mapped.get(d.var, 0), L.unique.get(d.var, 0)
            me, ue = L.medge.get(d.var, 0), L.uedge.get(d.var, 0)
            if not d.spatial:
                ret *= me if s.edge else mp
            elif s.pos == INIT:
                if s.edge and ee:
                    if L.EC == 1:
                        ret *= me
                    elif L.EC > 1:
                        ret *= me
                else:
                    ret *= mp if first else (un if un else 1)
            elif s.pos == STEADY:
                ret *= mp if first else (un if un else 1)
            else:
                if L.EC == 1 and (first or ee):
                    ret *= me
                elif L.EC > 1:
                    ret *= ue if ee else (mp if first else (un if un else 1))
    for dim in t.dims:
        d = L.df[L.first[dim]]
        s = st[dim]
        act = dim + "'" if dim in OVERLAP else dim
        mp, un = L.mapped.get(act, 0), L.unique.get(act, 0)
        me, ue = L.medge.get(act, 0), L.uedge.get(act, 0)
        if not d.spatial:
            ret *= (me if s.edge else mp) if s.pos == INIT else (mp if s.pos == STEADY else me)
        elif s.pos == INIT:
            if s.edge and ee:
                if L.EC == 1:
                    ret *= me
                elif L.EC > 1:
                    ret *= ue if reuse_at_edge else me
            else:
                ret *= mp if first else (un if un else 1)
        elif s.pos == STEADY:
            ret *= mp if first else (un if un else 1)
        else:
            if L.EC == 1 and (first or ee):
                ret *= L.medge.get(dim, 0)  # MAESTRO uses the input-side name here
            elif L.EC > 1:
                ret *= ue if ee else (mp if first else (un if un else 1))
    return ret


def sp_info(L: Level, dims, st: dict, all_spatial: bool = False):
    """Whether ``dims`` are spatially mapped here, whether the spatial map is at an edge, and its state."""
    mapped, edge, sp_state = False, False, None
    for dim in dims:
        d = L.df[L.first[dim]]
        if d.spatial:
            mapped, sp_state = True, st[dim]
            edge |= st[dim].edge
    if all_spatial:
        for d in L.df:
            if d.spatial:
                mapped, sp_state = True, st[d.var]
                edge |= st[d.var].edge
    return mapped, edge, sp_state


def spread(L: Level, fn, mapped: bool, edge: bool, sp_state, first_scaled: bool,
            last_args: tuple) -> int:
    """Sum a per-PE volume over the sub-clusters of the case (MAESTRO's spatial cases)."""
    if not mapped:
        return (L.U if first_scaled else 1) * fn(True, False)
    if not edge:
        return L.U * fn(True, False) if first_scaled else fn(True, False) + (L.U - 1) * fn(False, False)
    ee = sp_state.sp_edge_edge
    ret = fn(True, L.EC == 1 and ee)
    if L.EC > 1:
        n_ee = 1 if ee else 0
        n_full = max(L.EC - n_ee - 1, 0)
        ret += n_full * fn(*last_args[0]) + n_ee * fn(*last_args[1])
    return ret


def ingress(L, t, st, cidx):
    """Ingress traffic of input/weight ``t`` summed over the sub-clusters (multicast counted once)."""
    m, e, s = sp_info(L, t.dims, st)
    fn = lambda first, ee: pe_ingress(L, t, st, first, ee, cidx)  # noqa: E731
    return spread(L, fn, m, e, s, False, ((False, False), (False, True)))


def egress(L, t, st):
    """Egress traffic of output ``t`` summed over the sub-clusters."""
    m, e, s = sp_info(L, t.dims, st)
    fn = lambda first, ee: pe_egress(L, t, st, False, first, ee)  # noqa: E731
    return spread(L, fn, m, e, s, False, ((False, False), (False, True)))


def psum_map(L, t, st):
    """Partial sums of ``t`` held across all sub-clusters in this case."""
    m, e, s = sp_info(L, t.dims, st, all_spatial=True)
    if m and e:
        ee = s.sp_edge_edge
        ret = pe_egress(L, t, st, True, True, L.EC == 1 and ee)
        if L.EC > 1:
            n_ee = 1 if ee else 0
            ret += max(L.EC - n_ee - 1, 0) * pe_egress(L, t, st, True, True, False)
            ret += n_ee * pe_egress(L, t, st, True, False, True, False)
        return ret
    return L.U * pe_egress(L, t, st, True, True, False)


def critical_psums(L, t, st):
    """Partial sums of ``t`` on the first (critical-path) sub-cluster."""
    m, e, s = sp_info(L, t.dims, st)
    if m and e:
        return pe_egress(L, t, st, True, True, L.EC == 1 and s.sp_edge_edge)
    return pe_egress(L, t, st, True, True, False)


def sub_dims(L: Level, st: dict, ee: bool, conv: bool) -> tuple:
    """Tile extents handed to the level below in this case (plus output Y'/X' for convolutions)."""
    out: dict[str, int] = {}
    for d in L.df:
        s = st[d.var]
        if not d.spatial:
            v = L.medge.get(d.var, 0) if s.edge else L.mapped.get(d.var, 0)
        elif s.pos == INIT:
            v = L.medge.get(d.var, 0) if s.edge and (L.EC == 1 or ee) else L.mapped.get(d.var, 0)
        elif s.pos == STEADY:
            v = L.mapped.get(d.var, 0)
        else:
            v = L.medge.get(d.var, 0) if (L.EC == 1 or ee) else L.mapped.get(d.var, 0)
        out.setdefault(d.var, v)
    if conv:
        for d in L.df:
            if d.var in OVERLAP and d.var + "'" not in out:
                out[d.var + "'"] = out[d.var] - out[OVERLAP[d.var]] + 1
    return tuple(sorted(out.items()))


def tensor_size(t: Tensor, dims: dict, conv: bool) -> int:
    """Elements of ``t`` for dim extents ``dims`` (outputs of convolutions use output Y/X sizes)."""
    size = 1
    for v in t.dims:
        if v not in dims:
            raise MappingError(f"Dimension {v} not found")
        if conv and not t.is_input and v in OVERLAP:
            size *= dims[v] - dims[OVERLAP[v]] + 1
        else:
            size *= dims[v]
    return size


def noc(x: int, hw: HwConfig) -> int:
    """NoC delay of ``x`` elements: ``hops + ceil(x / bw) - 1`` cycles."""
    return hw.noc_hops + (-(-x // hw.noc_bw)) - 1

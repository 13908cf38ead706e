"""An independent walk of the DRAM-level tile loop nest reproduces the DB model's traffic exactly.

The walk knows nothing of footprint formulas: at every step it maps each tile's iteration points
through the tensor subscripts with numpy, takes the box a DMA would move, and counts a transfer
whenever the tile a chiplet holds changes (reads broadcast to chiplets that need the same box at
the same step; outputs written back on eviction, read back on revisits, partial sums of chiplets
sharing an output box sent over the links).

A tile is identified, as in the DB model, by its tile indices along the dims that index the
tensor.  (Two different window tiles can cover the same box -- (q, s) = (0, 1) and (1, 0) when
``t_q*stride == t_s*dilation`` -- and a controller comparing boxes would skip that reload; the DB
model does not, and neither does this walk.)
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import islpy as isl
import numpy as np
import pytest

from compiler import offchip_model as om
from compiler.frontend import build_op

OPS = [
    ("conv", "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", {"n": 1, "k": 4, "c": 3, "p": 5, "q": 4, "r": 3, "s": 2}),
    ("conv_s2", "O[k,p,q] += I[c,2*p+r,2*q+s] * W[k,c,r,s]", {"k": 2, "c": 2, "p": 5, "q": 3, "r": 3, "s": 3}),
    ("conv1x1_s2", "O[k,p,q] += I[c,2*p,2*q] * W[k,c]", {"k": 4, "c": 3, "p": 6, "q": 3}),
    ("dilated", "O[k,p] += I[c,p+2*r] * W[k,c,r]", {"k": 4, "c": 2, "p": 7, "r": 3}),
    ("s3_d2", "O[k,p] += I[c,3*p+2*r] * W[k,c,r]", {"k": 2, "c": 2, "p": 5, "r": 4}),
    ("dwconv", "O[c,p,q] += I[c,p+r,q+s] * W[c,r,s]", {"c": 4, "p": 6, "q": 5, "r": 3, "s": 3}),
    ("gemm", "O[m,n] += I[m,k] * W[k,n]", {"m": 7, "n": 8, "k": 6}),
    ("bmm", "O[b,m,n] += I[b,m,k] * W[b,k,n]", {"b": 2, "m": 5, "n": 4, "k": 6}),
]


def _box(tensor, lo: dict, hi: dict) -> tuple:
    """Bounding box (per axis min, max) of the elements the tile [lo, hi) touches in ``tensor``."""
    dims = tensor.dims
    grids = np.meshgrid(*[np.arange(lo[d], hi[d]) for d in dims], indexing="ij")
    point = dict(zip(dims, grids))
    box = []
    for sub in tensor.index:
        coord = sum((c * point[d] for d, c in sub.terms), start=np.full(grids[0].shape, sub.const))
        box.append((int(coord.min()), int(coord.max())))
    return tuple(box)


def _volume(box: tuple) -> int:
    return math.prod(hi - lo + 1 for lo, hi in box)


def simulate(op, tiles: dict, order: tuple, split: om.Split = om.Split()) -> tuple[dict, int]:
    """Walk the nest; returns (DRAM elements per tensor, inter-chiplet elements)."""
    ext = {d.name: d.extent for d in op.dims}
    cut = dict(split.factors)
    part = {d: e // cut.get(d, 1) for d, e in ext.items()}
    chips = [dict(zip(cut, idx)) for idx in itertools.product(*[range(f) for f in cut.values()])]
    trips = {d: -(-part[d] // tiles[d]) for d in ext}
    held = [{t.name: None for t in op.tensors} for _ in chips]
    visits: Counter = Counter()
    traffic, link = Counter(), 0
    out = op.output.name

    def evict(boxes: list) -> None:
        nonlocal link
        for box, holders in Counter(boxes).items():   # partial sums meet at one chiplet
            traffic[out] += _volume(box)
            link += (holders - 1) * _volume(box)

    for step in itertools.product(*[range(trips[d]) for d in order]):
        pos = dict(zip(order, step))
        wanted = {t.name: [] for t in op.tensors}
        for c, chip in enumerate(chips):
            lo = {d: chip.get(d, 0) * part[d] + pos[d] * tiles[d] for d in ext}
            hi = {d: min(lo[d] + tiles[d], (chip.get(d, 0) + 1) * part[d]) for d in ext}
            for t in op.tensors:
                key, box = tuple(pos[d] for d in t.dims), _box(t, lo, hi)
                if held[c][t.name] is None or key != held[c][t.name][0]:
                    old = held[c][t.name]
                    wanted[t.name].append((old[1] if old else None, box))
                    held[c][t.name] = (key, box)
        for t in op.tensors:
            if t.name == out:
                evict([old for old, _ in wanted[out] if old is not None])
            for box in dict.fromkeys(new for _, new in wanted[t.name]):   # broadcast: once per box
                if t.name != out or visits[box]:
                    traffic[t.name] += _volume(box)
                if t.name == out:
                    visits[box] += 1
    evict([h[out][1] for h in held])
    return dict(traffic), link


def _random_points(op, rng: random.Random, count: int):
    ext = {d.name: d.extent for d in op.dims}
    for _ in range(count):
        tiles = {d: rng.randint(1, e) for d, e in ext.items()}
        order = tuple(rng.sample(list(ext), len(ext)))
        yield tiles, order


@pytest.mark.parametrize("spec", OPS, ids=[o[0] for o in OPS])
def test_walk_reproduces_db_model(spec):
    op = build_op(*spec)
    model, ext = om.model_of(op), {d.name: d.extent for d in op.dims}
    rng = random.Random(spec[0])
    for tiles, order in _random_points(op, rng, 25):
        walked, link = simulate(op, tiles, order)
        modelled, mlink = om.dram_traffic(model, ext, tiles, order)
        assert walked == modelled, (tiles, order)
        assert link == mlink == 0


@pytest.mark.parametrize("spec", OPS[:3] + OPS[6:], ids=lambda o: o[0])
def test_walk_reproduces_chiplet_model(spec):
    op = build_op(*spec)
    model, ext = om.model_of(op), {d.name: d.extent for d in op.dims}
    rng = random.Random("chiplet" + spec[0])
    splits = om.splits(model, ext, 4)
    for tiles, order in _random_points(op, rng, 12):
        split = rng.choice(splits)
        part = split.part_extents(ext)
        tiles = {d: min(t, part[d]) for d, t in tiles.items()}
        walked, link = simulate(op, tiles, order, split)
        assert (walked, link) == om.dram_traffic(model, ext, tiles, order, split), (tiles, order, split)


@pytest.mark.parametrize("spec", OPS, ids=[o[0] for o in OPS])
def test_compulsory_is_what_the_op_touches(spec):
    """Compulsory traffic = elements of the image of the domain (counted by islpy), and no tiling
    moves less."""
    op = build_op(*spec)
    model, ext = om.model_of(op), {d.name: d.extent for d in op.dims}
    for t, tm in zip(op.tensors, model.tensors):
        image = op.domain.apply(t.access)
        points: list = []
        image.foreach_point(points.append)
        assert len(points) == om.distinct_elements(tm, ext)
    rng = random.Random(spec[0] + "lb")
    for tiles, order in _random_points(op, rng, 20):
        moved, _ = om.dram_traffic(model, ext, tiles, order)
        assert all(moved[t.name] >= om.distinct_elements(t, ext) for t in model.tensors)


def test_isl_box_agrees_with_numpy_box():
    """The walk's numpy boxes are the bounding boxes islpy computes for the same tile."""
    op = build_op(*OPS[1])
    t = op.tensor("I")
    lo = {"k": 0, "c": 1, "p": 2, "q": 0, "r": 1, "s": 0}
    hi = {"k": 2, "c": 2, "p": 4, "q": 2, "r": 3, "s": 2}
    bounds = " and ".join(f"{lo[d]} <= {d} < {hi[d]}" for d in op.dim_names)
    tile = isl.Set(f"{{ [{', '.join(op.dim_names)}] : {bounds} }}")
    image = tile.apply(t.access)
    isl_box = tuple((image.dim_min_val(a).to_python(), image.dim_max_val(a).to_python())
                    for a in range(len(t.index)))
    assert isl_box == _box(t, lo, hi)

"""A chiplet package and what a schedule of layers on it costs: the one definition of the figures.

A *schedule* places every layer of one or more layer chains (one per model) on chiplet sets.  Each
chain is cut into *stages*, contiguous layer ranges, and every stage runs on its own set of
chiplets; sets of all stages are disjoint, so stages of one chain form a pipeline and chains run
side by side.  ``lockstep`` is the special schedule in which every layer runs on all chiplets and
the chains take turns.

The cost of one period (one frame of every chain, ``mult`` frames where a model has a weight):

* a stage's compute time is the sum of its layers' cycles on its set, each layer compiled for a
  package of ``|set|`` chiplets that has the whole DRAM interface.  On a set of several kinds,
  each chiplet runs an equal part in lockstep, so the slowest kind sets the time;
* the one DRAM interface is shared: every period it must carry every stage's DRAM traffic, so a
  stage occupies it ``ceil(traffic / bandwidth)`` cycles per period and the interval is at least
  the sum of these occupancies (a DRAM-bound stage overlaps with compute-bound ones, two
  DRAM-bound stages do not gain from running side by side);
* at a cut, the activation goes to the next stage over the inter-chiplet links when it fits twice
  (double-buffered) in the L2 of the receiving set, else through DRAM (as the per-layer compiles
  already price).  On links, every receiving chiplet gets the whole tensor, each sending chiplet
  sends its ``1/|A|`` share along the XY route, so the transfer takes the load of the busiest
  link over its bandwidth; it streams while the producer computes, so the producer's stage lasts
  ``max(compute, transfer)``.  Two cuts never share a directed link (a link is reserved for one
  stream, so streams never wait for each other);
* the interval (cycles per period) is the longest stage or the DRAM occupancy, whichever is
  larger; the latency is, per chain, the sum of its stage durations (frames admitted once per
  interval never wait), the largest over chains, and at least the DRAM occupancy;
* energy counts the compiled per-layer energy, DRAM accesses (``dram_access`` each) and, on the
  links, one L2-class access per element per hop; an activation sent over the links saves its
  write and read through DRAM.

:func:`evaluate` computes these figures from a placement in plain Python; the CP-SAT model
(:mod:`compiler.package_schedule`) encodes the same rules and the brute-force test checks both
agree; the discrete-event simulation (:mod:`compiler.package_sim`) replays a schedule over frames.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

OBJECTIVES = ("throughput", "latency", "energy", "edp")


@dataclass(frozen=True)
class LayerCost:
    """One layer compiled for ``k`` chiplets of one kind: cycles, DRAM elements, energy (MAC units)."""

    cycles: int
    dram: int
    energy: float


@dataclass(frozen=True)
class ChainLayer:
    """One layer execution in a chain: ``key`` names its distinct shape in the cost table."""

    name: str
    key: str
    out_elements: int
    out_bytes: int
    mult: int = 1           # frames of its model per period


@dataclass(frozen=True)
class Chain:
    """The layers of one model (or of several models run one after another), in order."""

    name: str
    layers: tuple[ChainLayer, ...]


@dataclass(frozen=True)
class Package:
    """Chiplets on a mesh (position ``i`` at row ``i // cols``, column ``i % cols``)."""

    name: str
    mesh: tuple[int, int]
    kinds: tuple[str, ...]          # per position
    l2_bytes: tuple[int, ...]       # per position
    link_bw: float                  # elements/cycle per directed link
    dram_bw: float = 64.0           # elements/cycle of the one DRAM interface
    dram_access: float = 200.0      # energy of one DRAM element, MAC units
    link_access: float = 18.61      # energy of one element over one link hop, MAC units

    @property
    def count(self) -> int:
        return len(self.kinds)

    @property
    def everything(self) -> tuple[int, ...]:
        return tuple(range(self.count))

    def sizes(self) -> tuple[int, ...]:
        """Set sizes a stage may have: powers of two and all chiplets.  A layer's split across
        chiplets is a product of dim factors, and 3 divides no dim of most layers (ResNet-50,
        BERT), so a 3-chiplet set would idle one chiplet like a 2-chiplet set."""
        return tuple(k for k in range(1, self.count + 1) if k & (k - 1) == 0 or k == self.count)

    def sets(self) -> list[tuple[int, ...]]:
        """Every chiplet set of an allowed size, smallest first."""
        return [s for k in self.sizes() for s in itertools.combinations(range(self.count), k)]

    def dram_ratio(self) -> tuple[int, int]:
        """The DRAM bandwidth as a fraction ``num / den`` (exact integer arithmetic)."""
        f = Fraction(self.dram_bw).limit_denominator(1000)
        return f.numerator, f.denominator

    def dram_cycles(self, elements: int) -> int:
        """Cycles the DRAM interface is busy moving ``elements``."""
        num, den = self.dram_ratio()
        return -(-max(elements, 0) * den // num)

    def route(self, a: int, b: int) -> list[tuple[int, int]]:
        """Directed links from chiplet ``a`` to ``b``: along the row first, then the column."""
        cols = self.mesh[1]
        (r, c), (r2, c2) = divmod(a, cols), divmod(b, cols)
        links, here = [], a
        while c != c2:
            c += 1 if c2 > c else -1
            links.append((here, r * cols + c))
            here = r * cols + c
        while r != r2:
            r += 1 if r2 > r else -1
            links.append((here, r * cols + c))
            here = r * cols + c
        return links

    @functools.lru_cache(maxsize=None)
    def flow(self, src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[dict[tuple[int, int], int], int]:
        """Routes of one activation from set ``src`` to set ``dst``: pairs per directed link, hops."""
        load: dict[tuple[int, int], int] = {}
        hops = 0
        for a in src:
            for b in dst:
                path = self.route(a, b)
                hops += len(path)
                for link in path:
                    load[link] = load.get(link, 0) + 1
        return load, hops


@dataclass(frozen=True)
class Problem:
    """Chains to place on a package, with every layer's cost per (kind, chiplet count)."""

    package: Package
    chains: tuple[Chain, ...]
    costs: Mapping[tuple[str, str, int], LayerCost]   # (layer key, kind, chiplets) -> cost

    def cost(self, layer: ChainLayer, chiplets: tuple[int, ...]) -> tuple[int, int, int]:
        """(cycles, DRAM elements, energy incl. DRAM) of one period's executions of ``layer`` on a set."""
        k = len(chiplets)
        parts = [self.costs[layer.key, self.package.kinds[p], k] for p in chiplets]
        cycles = max(c.cycles for c in parts)
        dram = sum(c.dram for c in parts) // k
        energy = sum(c.energy for c in parts) / k + dram * self.package.dram_access
        return cycles * layer.mult, dram * layer.mult, round(energy * layer.mult)

    def cut(self, layer: ChainLayer, src: tuple[int, ...], dst: tuple[int, ...]) -> "Cut":
        """What sending ``layer``'s output from ``src`` to ``dst`` costs (links or DRAM)."""
        pkg = self.package
        load, hops = pkg.flow(src, dst)
        elements, nbytes = layer.out_elements * layer.mult, layer.out_bytes * layer.mult
        if 2 * nbytes > sum(pkg.l2_bytes[p] for p in dst):
            return Cut(False, 0, 0, 0, 0, tuple(sorted(load)))
        cycles = math.ceil(elements * max(load.values()) / (len(src) * pkg.link_bw))
        element_hops = elements * hops // len(src)
        saving = round(2 * elements * pkg.dram_access - element_hops * pkg.link_access)
        return Cut(True, cycles, element_hops, 2 * elements, saving, tuple(sorted(load)))


@dataclass(frozen=True)
class Cut:
    """A stage boundary: over the links or not, transfer cycles, element-hops, energy saved."""

    links: bool
    cycles: int
    element_hops: int
    dram_saved: int                          # elements: the write and the read through DRAM
    saving: int                              # energy, MAC units
    reserved: tuple[tuple[int, int], ...]    # directed links the stream may use


@dataclass(frozen=True)
class Placement:
    """One stage of a placement: layers ``first..last`` of chain ``chain`` on ``chiplets``."""

    chain: int
    first: int
    last: int
    chiplets: tuple[int, ...]


@dataclass(frozen=True)
class StageFigures:
    """A stage with its costs for one period."""

    placement: Placement
    compute_cycles: int
    layer_cycles: tuple[int, ...]
    transfer_cycles: int            # streaming the output to the next stage (0: last, or via DRAM)
    via_links: bool
    links: tuple[tuple[int, int], ...]
    dram_elements: int = 0          # per period, less what its output saves by going over links
    dram_cycles: int = 0            # the interface's busy time for them

    @property
    def cycles(self) -> int:
        return max(self.compute_cycles, self.transfer_cycles)


@dataclass(frozen=True)
class Figures:
    """What a placement costs per period (see the module docstring)."""

    kind: str
    stages: tuple[StageFigures, ...]
    cycles_per_frame: int
    latency_cycles: int
    dram_elements: int
    link_element_hops: int
    energy: int
    feasible: bool = True

    def key(self, objective: str) -> tuple[int, ...]:
        """The objective as a tuple to minimise (ties broken by the interval or the latency)."""
        t, lat = self.cycles_per_frame, self.latency_cycles
        return {"throughput": (t, lat), "latency": (lat, t), "energy": (self.energy, t),
                "edp": (self.energy * t, t)}[objective]


def lockstep(problem: Problem) -> Figures:
    """Every layer on all chiplets; the chains take turns, so the period is their sum."""
    everything = problem.package.everything
    stages = tuple(evaluate_stage(problem, Placement(i, 0, len(c.layers) - 1, everything), None)
                   for i, c in enumerate(problem.chains))
    period = max(sum(s.compute_cycles for s in stages), sum(s.dram_cycles for s in stages))
    energy = sum(problem.cost(l, everything)[2] for c in problem.chains for l in c.layers)
    return Figures("lockstep", stages, period, period, sum(s.dram_elements for s in stages), 0, energy)


def evaluate_stage(problem: Problem, p: Placement, nxt: Placement | None) -> StageFigures:
    """Costs of stage ``p``, whose output goes to stage ``nxt`` of the same chain (None: last)."""
    layers = problem.chains[p.chain].layers[p.first:p.last + 1]
    costs = [problem.cost(l, p.chiplets) for l in layers]
    cycles = tuple(c[0] for c in costs)
    cut = problem.cut(layers[-1], p.chiplets, nxt.chiplets) if nxt else None
    dram = max(0, sum(c[1] for c in costs) - (cut.dram_saved if cut and cut.links else 0))
    return StageFigures(p, sum(cycles), cycles, cut.cycles if cut else 0, bool(cut and cut.links),
                        cut.reserved if cut else (), dram, problem.package.dram_cycles(dram))


def evaluate(problem: Problem, kind: str, placements: tuple[Placement, ...]) -> Figures:
    """The figures of a placement of stages on disjoint sets (``feasible`` False if sets overlap,
    a chain is not covered in order, or two cuts need the same link)."""
    ok = True
    used: set[int] = set()
    for p in placements:
        ok &= not used & set(p.chiplets)
        used |= set(p.chiplets)
    stages, lat, hops, energy = [], 0, 0, 0
    for ci, chain in enumerate(problem.chains):
        mine = sorted((p for p in placements if p.chain == ci), key=lambda p: p.first)
        ok &= bool(mine) and mine[0].first == 0 and mine[-1].last == len(chain.layers) - 1
        ok &= all(a.last + 1 == b.first for a, b in zip(mine, mine[1:]))
        if not ok:
            break
        chain_lat = 0
        for p, nxt in zip(mine, mine[1:] + [None]):
            st = evaluate_stage(problem, p, nxt)
            stages.append(st)
            chain_lat += st.cycles
            energy += sum(problem.cost(layer, p.chiplets)[2] for layer in chain.layers[p.first:p.last + 1])
            if nxt is not None:
                cut = problem.cut(chain.layers[p.last], p.chiplets, nxt.chiplets)
                if cut.links:
                    hops, energy = hops + cut.element_hops, energy - cut.saving
        lat = max(lat, chain_lat)
    reserved = [link for s in stages for link in s.links]
    ok &= len(reserved) == len(set(reserved))
    occupancy = sum(s.dram_cycles for s in stages)
    period = max(max((s.cycles for s in stages), default=0), occupancy)
    return Figures(kind, tuple(stages), period, max(lat, occupancy), max(sum(s.dram_elements for s in stages), 0),
                   hops, energy, feasible=ok)

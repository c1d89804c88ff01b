"""Communication topologies of the decentralized-learning baselines.

A topology is over *positions* 0..n-1: position i is the i-th id of the membership's sorted id list, so every
node that knows the same membership and the experiment seed derives the same graph on its own, with no
coordination (the same principle as Plexus's sampling). Kinds (``--topology``):

- ``ring``: i is linked to i-1 and i+1 (mod n).
- ``regular:K``: a simple, connected, random K-regular graph drawn from the experiment seed (a stub-pairing
  construction that re-pairs only the clashing stubs, in the spirit of Steger and Wormald, restarted when it
  dead-ends or the graph is disconnected; K = 2 is a random Hamiltonian cycle, the only connected 2-regular
  graphs; K > (n-1)/2 is the complement of a random (n-1-K)-regular graph, which is always connected).
- ``full``: everyone is linked to everyone.
- ``one-peer-exp``: the one-peer exponential graph (Ying et al., 2021): with tau = ceil(log2 n), in round r
  (1-based) node i sends to (i + 2^((r-1) mod tau)) mod n and receives from (i - 2^((r-1) mod tau)) mod n.

The first three are undirected (out- and in-neighbours coincide) and static; the exponential graph is directed
and changes every round. :func:`random_regular_digraph` gives Epidemic Learning's per-round random graphs.
Graphs are cached: in a simulation every node asks for the same one, and building it once is what keeps a
1000-node run cheap.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from plexus.errors import ConfigError

KINDS = ("ring", "regular:K", "full", "one-peer-exp")
_TOPOLOGY_STREAM = 0x746F706F  # "topo": the stream of --topology regular:K
_EPIDEMIC_STREAM = 0x65706964  # "epid": Epidemic Learning's per-round graphs
_MAX_ATTEMPTS = 200

Adjacency = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class TopologySpec:
    """A parsed ``--topology`` value."""

    kind: str  # ring | regular | full | one-peer-exp
    degree: int | None = None  # K of regular:K

    def __str__(self) -> str:
        return f"regular:{self.degree}" if self.kind == "regular" else self.kind


def parse_topology(text: str) -> TopologySpec:
    """Parse ``ring | regular:K | full | one-peer-exp``; raises ConfigError naming the bad value."""
    value = text.strip().lower()
    if value in ("ring", "full", "one-peer-exp"):
        return TopologySpec(value)
    if value.startswith("regular:"):
        degree_text = value.split(":", 1)[1]
        try:
            degree = int(degree_text)
        except ValueError:
            raise ConfigError(f"topology = {text!r}: the degree of regular:K must be an integer") from None
        if degree < 1:
            raise ConfigError(f"topology = {text!r}: the degree of regular:K must be >= 1")
        return TopologySpec("regular", degree)
    raise ConfigError(f"topology = {text!r}: choose one of {', '.join(KINDS)}")


class Topology(ABC):
    """Who a node sends to and hears from in a round; positions index the sorted membership ids."""

    def __init__(self, n: int) -> None:
        self.n = n

    @abstractmethod
    def out_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        """The positions ``node`` sends its model to in ``round``."""

    @abstractmethod
    def in_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        """The positions ``node`` waits for in ``round``."""


class StaticTopology(Topology):
    """An undirected graph that does not change between rounds."""

    def __init__(self, adjacency: Adjacency, name: str) -> None:
        super().__init__(len(adjacency))
        self.adjacency = adjacency
        self.name = name

    def out_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        return self.adjacency[node]

    def in_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        return self.adjacency[node]

    def degree(self, node: int) -> int:
        return len(self.adjacency[node])


class OnePeerExponential(Topology):
    """Each round one out-peer and one in-peer, at distance 2^((r-1) mod tau), tau = ceil(log2 n)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.tau = math.ceil(math.log2(n)) if n > 1 else 0

    def distance(self, round: int) -> int:
        """The hop length of ``round`` (1-based): 1, 2, 4, ..., 2^(tau-1), 1, 2, ..."""
        return 1 << ((round - 1) % self.tau)

    def out_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        if self.tau == 0:
            return ()
        return ((node + self.distance(round)) % self.n,)

    def in_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        if self.tau == 0:
            return ()
        return ((node - self.distance(round)) % self.n,)


class RoundGraph(Topology):
    """A directed graph that is only valid for one round (Epidemic Learning's oracle graphs)."""

    def __init__(self, out: Adjacency, into: Adjacency) -> None:
        super().__init__(len(out))
        self.out = out
        self.into = into

    def out_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        return self.out[node]

    def in_neighbours(self, node: int, round: int) -> tuple[int, ...]:
        return self.into[node]


# ---------------------------------------------------------------------------------------------- construction
def build_topology(topology: str | TopologySpec, n: int, seed: int) -> Topology:
    """The topology every node derives from (``topology``, ``n`` nodes, experiment ``seed``); cached."""
    spec = parse_topology(topology) if isinstance(topology, str) else topology
    return _build(spec, n, seed)


@functools.lru_cache(maxsize=16)
def _build(spec: TopologySpec, n: int, seed: int) -> Topology:
    if n < 1:
        raise ConfigError(f"a topology needs at least one node, got {n}")
    if spec.kind == "ring":
        return StaticTopology(ring_graph(n), "ring")
    if spec.kind == "full":
        return StaticTopology(full_graph(n), "full")
    if spec.kind == "one-peer-exp":
        return OnePeerExponential(n)
    assert spec.degree is not None
    return StaticTopology(random_regular_graph(n, spec.degree, seed), str(spec))


def ring_graph(n: int) -> Adjacency:
    """Each position linked to its two ring neighbours (one neighbour when n = 2, none when n = 1)."""
    return tuple(tuple(sorted({(i - 1) % n, (i + 1) % n} - {i})) for i in range(n))


def full_graph(n: int) -> Adjacency:
    return tuple(tuple(j for j in range(n) if j != i) for i in range(n))


def check_regular(n: int, k: int, what: str = "regular") -> None:
    """Raise ConfigError unless a simple, connected k-regular graph on n nodes exists."""
    if k < 1:
        raise ConfigError(f"topology = {what}:{k}: the degree must be >= 1")
    if k >= n:
        raise ConfigError(f"topology = {what}:{k}: the degree must be below the number of nodes ({n})")
    if (n * k) % 2:
        raise ConfigError(f"topology = {what}:{k}: no {k}-regular graph on {n} nodes exists (n x K must be even)")
    if k == 1 and n > 2:
        raise ConfigError(f"topology = {what}:1 on {n} nodes is a set of disjoint pairs, never connected; use K >= 2")


def random_regular_graph(n: int, k: int, seed: int) -> Adjacency:
    """A simple, connected, random k-regular graph on positions 0..n-1, a pure function of (n, k, seed)."""
    check_regular(n, k)
    if k == n - 1:
        return full_graph(n)
    rng = np.random.default_rng([int(seed), _TOPOLOGY_STREAM, n, k])
    if k == 2:
        order = rng.permutation(n).tolist()
        neighbours: list[set[int]] = [set() for _ in range(n)]
        for a, b in zip(order, order[1:] + order[:1], strict=True):
            neighbours[a].add(b)
            neighbours[b].add(a)
        return tuple(tuple(sorted(s)) for s in neighbours)
    if k > (n - 1) / 2:
        # dense: the complement of a sparse random regular graph, always connected (see the module docstring)
        sparse = [set(row) for row in _sparse_random_regular(n, n - 1 - k, rng, need_connected=False)]
        return tuple(tuple(j for j in range(n) if j != i and j not in sparse[i]) for i in range(n))
    return _sparse_random_regular(n, k, rng, need_connected=True)


def _sparse_random_regular(n: int, k: int, rng: np.random.Generator, need_connected: bool) -> Adjacency:
    if k == 0:
        return tuple(() for _ in range(n))
    for _ in range(_MAX_ATTEMPTS):
        edges = _pair_undirected(n, k, rng)
        if edges is None:
            continue
        neighbours: list[list[int]] = [[] for _ in range(n)]
        for a, b in edges:
            neighbours[a].append(b)
            neighbours[b].append(a)
        adjacency = tuple(tuple(sorted(s)) for s in neighbours)
        if not need_connected or is_connected(adjacency):
            return adjacency
    raise ConfigError(f"could not draw a connected {k}-regular graph on {n} nodes in {_MAX_ATTEMPTS} attempts")


def _pair_undirected(n: int, k: int, rng: np.random.Generator) -> set[tuple[int, int]] | None:
    """Pair k stubs per node at random; clashing pairs (loops, repeated edges) are re-paired among themselves.

    Returns None when the leftover stubs cannot form any valid pair (a dead end: the caller restarts).
    """
    edges: set[tuple[int, int]] = set()
    pending = np.repeat(np.arange(n), k)
    stalls = 0
    while pending.size:
        shuffled = rng.permutation(pending).tolist()
        leftover: list[int] = []
        for u, v in zip(shuffled[0::2], shuffled[1::2], strict=True):
            edge = (u, v) if u < v else (v, u)
            if u != v and edge not in edges:
                edges.add(edge)
            else:
                leftover += (u, v)
        if not leftover:
            return edges
        if len(leftover) == pending.size:
            stalls += 1
            if stalls > 20 or not _any_valid_pair(leftover, leftover, edges, directed=False):
                return None
        else:
            stalls = 0
        pending = np.asarray(leftover)
    return edges


def _any_valid_pair(left: list[int], right: list[int], edges: set[tuple[int, int]], directed: bool) -> bool:
    for u in set(left):
        for v in set(right):
            if u == v:
                continue
            edge = (u, v) if directed or u < v else (v, u)
            if edge not in edges:
                return True
    return False


def random_regular_digraph(n: int, k: int, seed: int, round: int) -> RoundGraph:
    """Epidemic Learning's oracle graph of ``round``: each node sends to k distinct others and hears from k.

    A pure function of (n, k, seed, round), so every node derives it identically; cached because every node
    of a simulation asks for the same round. Out-stubs are matched to shuffled in-stubs; loops and repeated
    arcs are re-matched among themselves (restarting on a dead end). Connectivity is not required per round:
    the graphs change every round.
    """
    if not 1 <= k < n:
        raise ConfigError(f"fanout = {k}: must be between 1 and the number of nodes minus one ({n - 1})")
    return _round_digraph(n, k, int(seed), int(round))


@functools.lru_cache(maxsize=32)  # synchronous nodes are within a few rounds of each other
def _round_digraph(n: int, k: int, seed: int, round: int) -> RoundGraph:
    rng = np.random.default_rng([seed, _EPIDEMIC_STREAM, n, k, round])
    # stub matching dead-ends easily when more than half of the possible arcs are wanted: then draw the
    # (sparse) complement, whose nodes send to and hear from n - 1 - k others, and keep every other arc
    dense = 2 * k > n - 1
    for _ in range(_MAX_ATTEMPTS):
        arcs = _pair_directed(n, n - 1 - k if dense else k, rng)
        if arcs is None:
            continue
        if dense:
            arcs = {(u, v) for u in range(n) for v in range(n) if u != v and (u, v) not in arcs}
        out: list[list[int]] = [[] for _ in range(n)]
        into: list[list[int]] = [[] for _ in range(n)]
        for u, v in sorted(arcs):
            out[u].append(v)
            into[v].append(u)
        return RoundGraph(tuple(map(tuple, out)), tuple(map(tuple, into)))
    raise ConfigError(f"fanout = {k}: could not draw a {k}-in, {k}-out random graph on {n} nodes")


def _pair_directed(n: int, k: int, rng: np.random.Generator) -> set[tuple[int, int]] | None:
    arcs: set[tuple[int, int]] = set()
    sources = np.repeat(np.arange(n), k)
    targets = sources.copy()
    stalls = 0
    while sources.size:
        shuffled = rng.permutation(targets).tolist()
        left_src: list[int] = []
        left_dst: list[int] = []
        for u, v in zip(sources.tolist(), shuffled, strict=True):
            if u != v and (u, v) not in arcs:
                arcs.add((u, v))
            else:
                left_src.append(u)
                left_dst.append(v)
        if not left_src:
            return arcs
        if len(left_src) == sources.size:
            stalls += 1
            if stalls > 20 or not _any_valid_pair(left_src, left_dst, arcs, directed=True):
                return None
        else:
            stalls = 0
        sources, targets = np.asarray(left_src), np.asarray(left_dst)
    return arcs


def is_connected(adjacency: Adjacency) -> bool:
    """Whether an undirected graph given by adjacency lists is connected (breadth-first search)."""
    n = len(adjacency)
    if n == 0:
        return True
    seen = [False] * n
    seen[0] = True
    frontier = [0]
    reached = 1
    while frontier:
        nxt = []
        for u in frontier:
            for v in adjacency[u]:
                if not seen[v]:
                    seen[v] = True
                    reached += 1
                    nxt.append(v)
        frontier = nxt
    return reached == n

"""Topologies of the decentralized-learning baselines: shapes, determinism, and clear errors."""

from __future__ import annotations

import pytest

from plexus.config import config_from_mapping, resolve
from plexus.errors import ConfigError
from plexus.protocol.topologies import (
    OnePeerExponential,
    StaticTopology,
    TopologySpec,
    build_topology,
    full_graph,
    is_connected,
    parse_topology,
    random_regular_digraph,
    random_regular_graph,
    ring_graph,
)


def assert_simple_undirected(adjacency: tuple[tuple[int, ...], ...]) -> None:
    n = len(adjacency)
    for i, neighbours in enumerate(adjacency):
        assert i not in neighbours, "self-loop"
        assert len(set(neighbours)) == len(neighbours), "repeated edge"
        assert all(0 <= j < n for j in neighbours)
        for j in neighbours:
            assert i in adjacency[j], "edge is not symmetric"


@pytest.mark.parametrize("text, spec", [
    ("ring", TopologySpec("ring")),
    ("full", TopologySpec("full")),
    ("one-peer-exp", TopologySpec("one-peer-exp")),
    ("regular:10", TopologySpec("regular", 10)),
    (" Regular:4 ", TopologySpec("regular", 4)),
])
def test_parse_accepts_the_documented_kinds(text: str, spec: TopologySpec) -> None:
    assert parse_topology(text) == spec


@pytest.mark.parametrize("text", ["star", "regular", "regular:", "regular:x", "regular:0", "regular:-2", ""])
def test_parse_rejects_bad_values_naming_them(text: str) -> None:
    with pytest.raises(ConfigError, match="topology"):
        parse_topology(text)


def test_ring() -> None:
    assert ring_graph(5) == ((1, 4), (0, 2), (1, 3), (2, 4), (0, 3))
    assert ring_graph(2) == ((1,), (0,))
    assert ring_graph(1) == ((),)
    assert is_connected(ring_graph(7))


def test_full() -> None:
    adjacency = full_graph(6)
    assert_simple_undirected(adjacency)
    assert all(len(row) == 5 for row in adjacency)


@pytest.mark.parametrize("n, k", [(10, 3), (20, 4), (50, 2), (100, 10), (1000, 10), (30, 20), (11, 10), (12, 7)])
def test_random_regular_is_simple_regular_and_connected(n: int, k: int) -> None:
    adjacency = random_regular_graph(n, k, seed=3)
    assert len(adjacency) == n
    assert all(len(row) == k for row in adjacency)
    assert_simple_undirected(adjacency)
    assert is_connected(adjacency)


def test_random_regular_is_a_function_of_the_seed() -> None:
    assert random_regular_graph(40, 4, seed=1) == random_regular_graph(40, 4, seed=1)
    assert random_regular_graph(40, 4, seed=1) != random_regular_graph(40, 4, seed=2)


@pytest.mark.parametrize("n, k, fragment", [
    (5, 3, "must be even"),
    (10, 10, "below the number of nodes"),
    (10, 12, "below the number of nodes"),
    (10, 1, "never connected"),
])
def test_impossible_regular_graphs_are_config_errors(n: int, k: int, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        random_regular_graph(n, k, seed=0)


def test_build_topology_caches_and_serves_every_node_the_same_graph() -> None:
    first = build_topology("regular:6", 200, 5)
    assert build_topology("regular:6", 200, 5) is first
    assert isinstance(first, StaticTopology)
    for node in range(200):
        assert first.out_neighbours(node, 1) == first.in_neighbours(node, 7) == first.adjacency[node]


def test_one_peer_exponential_schedule() -> None:
    topology = build_topology("one-peer-exp", 8, 0)
    assert isinstance(topology, OnePeerExponential)
    assert topology.tau == 3
    # round r (1-based) uses distance 2^((r-1) mod tau): 1, 2, 4, 1, 2, 4, ...
    assert [topology.distance(r) for r in range(1, 8)] == [1, 2, 4, 1, 2, 4, 1]
    assert topology.out_neighbours(3, 1) == (4,)
    assert topology.in_neighbours(3, 1) == (2,)
    assert topology.out_neighbours(7, 3) == (3,)
    assert topology.in_neighbours(1, 3) == (5,)


@pytest.mark.parametrize("n", [2, 3, 6, 10, 33])
def test_one_peer_exponential_is_a_permutation_each_round(n: int) -> None:
    topology = OnePeerExponential(n)
    tau = topology.tau
    assert 2 ** (tau - 1) < n <= 2**tau
    for r in range(1, 2 * tau + 2):
        targets = [topology.out_neighbours(i, r)[0] for i in range(n)]
        assert sorted(targets) == list(range(n))  # everyone receives exactly one model
        assert all(t != i for i, t in enumerate(targets))
        for i, t in enumerate(targets):
            assert topology.in_neighbours(t, r) == (i,)


def test_one_peer_exponential_single_node_has_no_peers() -> None:
    topology = OnePeerExponential(1)
    assert topology.out_neighbours(0, 1) == () and topology.in_neighbours(0, 1) == ()


@pytest.mark.parametrize("n, s", [(10, 3), (14, 13), (355, 13), (1000, 13), (3, 2)])
def test_epidemic_oracle_graph_is_s_in_s_out(n: int, s: int) -> None:
    graph = random_regular_digraph(n, s, seed=0, round=4)
    for i in range(n):
        out = graph.out_neighbours(i, 4)
        assert len(out) == len(set(out)) == s and i not in out
        assert len(graph.in_neighbours(i, 4)) == s
        for j in out:
            assert i in graph.in_neighbours(j, 4)


def test_epidemic_oracle_graph_changes_per_round_and_is_reproducible() -> None:
    a = random_regular_digraph(50, 5, seed=0, round=1)
    assert a is random_regular_digraph(50, 5, seed=0, round=1)
    assert a.out != random_regular_digraph(50, 5, seed=0, round=2).out
    assert a.out != random_regular_digraph(50, 5, seed=1, round=1).out


def check(**values: object) -> object:
    return resolve(config_from_mapping(values))


def test_config_validation_of_the_baselines_options(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="'star'"):
        check(algorithm="dpsgd", topology="star")
    with pytest.raises(ConfigError, match="must be even"):
        check(algorithm="dpsgd", nodes=11, topology="regular:3")
    with pytest.raises(ConfigError, match="mixing = 'max-degree': must be one of 'uniform', 'metropolis-hastings'"):
        check(algorithm="dpsgd", mixing="max-degree")
    with pytest.raises(ConfigError, match="round_timeout = 0: must be > 0"):
        check(algorithm="gossip", round_timeout=0.0)
    with pytest.raises(ConfigError, match="round_timeout = inf: must be finite"):
        check(algorithm="gossip", round_timeout="inf")
    with pytest.raises(ConfigError, match="eval_interval"):
        check(eval_interval=-1.0)
    with pytest.raises(ConfigError, match="eval_nodes"):
        check(eval_nodes=0)
    with pytest.raises(ConfigError, match="fanout = 10: must be at most nodes - 1 = 9"):
        check(algorithm="el-local", nodes=10, fanout=10)
    with pytest.raises(ConfigError, match=r"fanout \(default: sample_size\) = 13: must be at most nodes - 1 = 9"):
        check(algorithm="el-oracle", nodes=10)
    # the graph is only checked for the algorithm that uses it; s does not matter to D-PSGD
    check(algorithm="plexus", nodes=20, topology="regular:3", sample_size=5)
    check(algorithm="dpsgd", nodes=6, topology="regular:2")
    # an option of another algorithm is not checked either: it is dropped (with a note)
    assert "round_timeout" not in check(algorithm="plexus", round_timeout=0.0).protocol  # type: ignore[attr-defined]


@pytest.mark.parametrize("n, k", [(16, 13), (16, 14), (20, 17), (25, 23), (50, 40), (12, 11)])
def test_dense_oracle_graphs_are_drawn_every_round(n: int, k: int) -> None:
    from plexus.protocol.topologies import random_regular_digraph

    for round_ in range(1, 41):
        graph = random_regular_digraph(n, k, seed=3, round=round_)
        for node in range(n):
            out = graph.out_neighbours(node, round_)
            assert len(out) == len(set(out)) == k and node not in out
            assert len(graph.in_neighbours(node, round_)) == k

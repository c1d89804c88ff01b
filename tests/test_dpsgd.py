"""D-PSGD: waits for every in-neighbour, buffers early models, averages exactly, refuses models from anyone but an
in-neighbour of their round (counted by reason); end-to-end in the simulator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import config_from_mapping
from plexus.protocol.decentralized import NeighbourModel
from plexus.protocol.dpsgd import DPSGDNode, DPSGDOptions, metropolis_hastings_weights
from plexus.protocol.epidemic import NotSending
from plexus.protocol.gossip import GossipModel
from plexus.protocol.topologies import StaticTopology, Topology, build_topology
from plexus.sim.observer import evaluated_nodes
from plexus.sim.simulation import run_simulation


def dpsgd_world(n: int, topology: str, **kwargs: object) -> FakeWorld:
    options = DPSGDOptions(local_steps=1, seed=7, nodes=n, topology=topology)
    return FakeWorld(n, lambda runtime: DPSGDNode(runtime, options), seed=7, **kwargs)  # type: ignore[arg-type]


def expected_models(topology: Topology, n: int, rounds: int, increment: list[float]) -> np.ndarray:
    """Synchronous D-PSGD by hand: x_i <- mean over {i} and in-neighbours j of (x_j + increment_j)."""
    x = np.zeros(n)
    for r in range(1, rounds + 1):
        trained = x + np.asarray(increment)
        x = np.array([np.mean([trained[i], *(trained[j] for j in topology.in_neighbours(i, r))]) for i in range(n)])
    return x


@pytest.mark.parametrize("topology", ["ring", "regular:4", "full", "one-peer-exp"])
def test_models_are_exact_synchronous_averages_despite_a_straggler(topology: str) -> None:
    n = 10
    graph = build_topology(topology, n, 7)
    increments = [float(i + 1) for i in range(n)]
    for rounds in (1, 2, 3):
        # node 0 trains ten times slower, so nodes far from it run ahead and send later rounds' models early
        fresh = dpsgd_world(n, topology, train_time=lambda i: 10.0 if i == 0 else 1.0)
        snapshots: dict[int, np.ndarray] = {}
        for index, node in enumerate(fresh.nodes):
            original = node._begin  # type: ignore[attr-defined]

            def spy(round: int, params: np.ndarray, index: int = index, original=original, rounds: int = rounds,
                    snapshots: dict[int, np.ndarray] = snapshots) -> None:
                if round == rounds + 1:
                    snapshots[index] = np.array(params)
                    return  # freeze the node after `rounds` rounds
                original(round, params)

            node._begin = spy  # type: ignore[attr-defined]
        fresh.run(until=1000.0)
        expected = expected_models(graph, n, rounds, increments)
        assert sorted(snapshots) == list(range(n))
        for index in range(n):
            np.testing.assert_allclose(snapshots[index], np.full(3, expected[index]), rtol=1e-6)


def test_a_slow_node_delays_its_neighbours_next_round() -> None:
    n = 8
    world = dpsgd_world(n, "ring", train_time=lambda i: 10.0 if i == 0 else 1.0, delay=0.5)
    world.run(until=200.0)
    ids_position = {node_id: p for p, node_id in enumerate(sorted(world.ids))}
    slow = ids_position[world.ids[0]]
    neighbours = [world.index_of[sorted(world.ids)[p]] for p in ((slow - 1) % n, (slow + 1) % n)]
    far = world.index_of[sorted(world.ids)[(slow + 4) % n]]
    for neighbour in neighbours:
        first = world.rounds_of(neighbour)[0]
        # its round 1 cannot end before the slow node's model (trained at t=10) has arrived at t=10.5
        assert first[0] == 1 and first[1] >= 10.5 - 1e-9
    # a node four hops away finishes round 1 on time (its in-neighbours are fast) ...
    assert world.rounds_of(far)[0][1] == pytest.approx(1.5)
    # ... but the straggler's delay reaches it within a few rounds: no node runs more than a few rounds ahead
    rounds_done = [len(world.rounds_of(i)) for i in range(n)]
    assert max(rounds_done) - min(rounds_done) <= n // 2


def test_a_node_never_averages_before_holding_every_in_neighbours_model() -> None:
    n = 12
    world = dpsgd_world(n, "regular:4", train_time=lambda i: 10.0 if i == 0 else 1.0 + (i % 3))
    world.run(until=100.0)
    graph = build_topology("regular:4", n, 7)
    positions = {node_id: p for p, node_id in enumerate(sorted(world.ids))}
    arrivals: dict[tuple[int, int, int], float] = {}
    for time, src, dst, message in world.delivered:
        arrivals[(message.round, positions[world.ids[src]], positions[world.ids[dst]])] = time
    early = 0
    for index in range(n):
        me = positions[world.ids[index]]
        ends = {round: end for round, end, _ in world.rounds_of(index)}
        for round, end in ends.items():
            for sender in graph.in_neighbours(me, round):
                assert arrivals[(round, sender, me)] <= end + 1e-12
                early += round > 1 and arrivals[(round, sender, me)] < ends[round - 1]
    assert early > 0  # some models arrived while their receiver was still in an earlier round (buffered)


def test_each_node_sends_to_its_out_neighbours_once_per_round() -> None:
    n = 16
    world = dpsgd_world(n, "one-peer-exp")
    world.run(until=30.5)
    per_round: dict[int, list[int]] = {}
    for _, src, _, message in world.sent:
        per_round.setdefault(message.round, []).append(src)
    complete = [r for r in per_round if all(len(world.rounds_of(i)) >= r for i in range(n))]
    assert complete
    for r in complete:
        assert sorted(per_round[r]) == list(range(n))


def test_metropolis_hastings_weights() -> None:
    # a path 0 - 1 - 2 plus a leaf 3 on node 1: degrees 1, 3, 1, 1
    topology = StaticTopology(((1,), (0, 2, 3), (1,), (1,)), "test")
    weights = metropolis_hastings_weights(topology, 1, [0, 2, 3], round=1)
    assert weights == pytest.approx([0.25, 0.25, 0.25, 0.25])
    leaf = metropolis_hastings_weights(topology, 0, [1], round=1)
    assert leaf == pytest.approx([0.75, 0.25])  # w_01 = 1 / (1 + max(1, 3)), symmetric with w_10
    ring = build_topology("ring", 5, 0)
    assert metropolis_hastings_weights(ring, 2, [1, 3], 1) == pytest.approx([1 / 3] * 3)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_end_to_end_dpsgd_run_writes_node_evaluations(tmp_path: Path) -> None:
    config = config_from_mapping({"algorithm": "dpsgd", "nodes": 20, "rounds": 4, "eval_every": 2,
                                  "topology": "regular:4", "out": str(tmp_path)})
    results = run_simulation(config)
    assert results.summary["rounds_completed"] == 4
    assert results.summary["evaluated_nodes"] == 20
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(row["round"]) for row in rows] == [2, 4]
    assert all(float(row["accuracy_std"]) >= 0 for row in rows)
    assert float(rows[-1]["accuracy_std"]) > 0  # node models differ
    durations = read_csv(tmp_path / "rounds.csv")
    assert {row["node"] for row in durations} == {str(i) for i in range(20)}
    assert all(float(row["duration_s"]) > 0 for row in durations)
    # 20 nodes x 4 neighbours per round; the stop lands mid-way through some nodes' later rounds
    assert results.summary["messages_total"] >= 20 * 4 * 4
    assert results.summary["rejections"] == {} and results.summary["stalled"] is False
    assert results.summary["traits"]["decentralized"] and results.summary["traits"]["uses_topology"]


def test_end_to_end_dpsgd_with_time_based_evaluation(tmp_path: Path) -> None:
    config = config_from_mapping({"algorithm": "dpsgd", "nodes": 12, "duration": 50.0, "eval_interval": 20.0,
                                  "topology": "ring", "mixing": "metropolis-hastings", "out": str(tmp_path)})
    results = run_simulation(config)
    times = [row["time_s"] for row in results.metrics]
    assert times == pytest.approx([20.0, 40.0, 50.0])
    assert results.summary["virtual_seconds"] == pytest.approx(50.0)


def test_which_nodes_a_decentralized_run_evaluates() -> None:
    # by default: every node up to 100 nodes, else a seeded sample of 20
    assert evaluated_nodes(50, None, seed=0) == list(range(50))
    assert evaluated_nodes(100, None, seed=0) == list(range(100))
    assert len(evaluated_nodes(101, None, seed=0)) == 20
    # --eval-nodes is honoured whatever the population
    small = evaluated_nodes(100, 5, seed=0)
    assert len(small) == 5 and small == sorted(small) and set(small) <= set(range(100))
    assert evaluated_nodes(50, 20, seed=0) != list(range(50)) and len(evaluated_nodes(50, 20, seed=0)) == 20
    # unset: every node up to 100, else 20 of them
    assert evaluated_nodes(50, None, seed=0) == list(range(50))
    assert evaluated_nodes(100, None, seed=0) == list(range(100))
    assert evaluated_nodes(1000, None, seed=0) == evaluated_nodes(1000, 20, seed=0)
    # given: that many, whatever the number of nodes
    few = evaluated_nodes(60, 12, seed=0)
    assert len(few) == len(set(few)) == 12 and few == sorted(few) and few != list(range(12))
    sample = evaluated_nodes(1000, 20, seed=0)
    assert len(sample) == len(set(sample)) == 20 and sample == sorted(sample)
    assert sample == evaluated_nodes(1000, 20, seed=0) != evaluated_nodes(1000, 20, seed=1)
    assert evaluated_nodes(150, 200, seed=0) == list(range(150))


# ------------------------------------------------------------------------------------------------ checked senders
def ones(value: float = 1.0, n: int = 3) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def started_ring_node() -> tuple[FakeWorld, DPSGDNode]:
    """Node 0 of a 6-node ring (in-neighbours 1 and 5), started alone: training its round 1."""
    world = dpsgd_world(6, "ring")
    node = world.nodes[0]
    assert isinstance(node, DPSGDNode)
    node.start()
    assert sorted(node.topology(1).in_neighbours(0, 1)) == [1, 5]
    return world, node


def snapshot(node: DPSGDNode) -> tuple[object, ...]:
    return node.round, {r: sorted(bucket) for r, bucket in node._inbox.items()}, node.model.tolist()


def test_a_model_from_an_unknown_sender_is_refused() -> None:
    world, node = started_ring_node()
    before = snapshot(node)
    node.deliver(b"stranger", NeighbourModel(1, 10, ones()))
    assert world.sink.rejections == {"unknown_sender": 1} and snapshot(node) == before


def test_a_model_from_a_node_that_is_not_an_in_neighbour_is_refused() -> None:
    world, node = started_ring_node()
    before = snapshot(node)
    for far in (2, 3, 4):
        node.deliver(world.ids[far], NeighbourModel(1, 10, ones()))
    node.deliver(world.ids[0], NeighbourModel(1, 10, ones()))  # not even itself
    assert world.sink.rejections == {"not_an_in_neighbour": 4} and snapshot(node) == before


def test_a_model_with_the_wrong_parameter_count_is_refused() -> None:
    world, node = started_ring_node()
    before = snapshot(node)
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(n=4)))
    assert world.sink.rejections == {"wrong_parameter_count": 1} and snapshot(node) == before


def test_a_second_model_of_a_round_from_the_same_neighbour_is_refused() -> None:
    world, node = started_ring_node()
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(4.0)))
    before = snapshot(node)
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(40.0)))
    assert world.sink.rejections == {"duplicate_model": 1} and snapshot(node) == before
    node.deliver(world.ids[5], NeighbourModel(1, 10, ones(1.0)))
    world.loop.run(until=1.0)  # node 0's training ends: model 0 + 1
    # the duplicate was not averaged in: (1 + 4 + 1) / 3
    assert node.round == 2 and node.model.tolist() == [2.0] * 3


def test_a_model_of_a_round_already_finished_is_refused() -> None:
    world, node = started_ring_node()
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones()))
    node.deliver(world.ids[5], NeighbourModel(1, 10, ones()))
    world.loop.run(until=1.0)
    assert node.round == 2
    before = snapshot(node)
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones()))
    assert world.sink.rejections == {"stale_round": 1} and snapshot(node) == before


def test_models_of_later_rounds_from_in_neighbours_are_kept_for_their_round() -> None:
    world, node = started_ring_node()
    node.deliver(world.ids[1], NeighbourModel(3, 10, ones(7.0)))
    assert not world.sink.rejections and sorted(node._inbox[3]) == [1]


def test_dpsgd_refuses_message_types_it_does_not_take() -> None:
    world, node = started_ring_node()
    before = snapshot(node)
    node.deliver(world.ids[1], NotSending(1))
    node.deliver(world.ids[1], GossipModel(1, ones()))
    assert world.sink.rejections == {"unexpected_message_type": 2} and snapshot(node) == before
    assert DPSGDNode.message_types() == [NeighbourModel]


def test_a_normal_fake_world_run_refuses_nothing() -> None:
    world = dpsgd_world(10, "one-peer-exp", train_time=lambda i: 1.0 + 0.3 * i)
    world.run(until=50.0)
    assert not world.sink.rejections and all(len(world.rounds_of(i)) >= 5 for i in range(10))

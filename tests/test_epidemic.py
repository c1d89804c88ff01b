"""Epidemic Learning. EL-Oracle averages its s in-peers of a fresh random graph per round. EL-Local is synchronous:
every round a node sends its model to s random peers and a NotSending notice to every other node, waits to hear
from every other node for the round, and averages its own model with the models received, uniformly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import config_from_mapping
from plexus.protocol.decentralized import NeighbourModel
from plexus.protocol.epidemic import ELLocalNode, ELOracleNode, EpidemicOptions, NotSending
from plexus.protocol.gossip import GossipModel
from plexus.protocol.messages import HEADER_BYTES
from plexus.protocol.topologies import random_regular_digraph
from plexus.sim.simulation import run_simulation

DIGITS_PARAMETERS = 4810


def el_world(kind: str, n: int, s: int, **kwargs: object) -> FakeWorld:
    options = EpidemicOptions(local_steps=1, seed=3, nodes=n, fanout=s)
    cls = ELLocalNode if kind == "el-local" else ELOracleNode
    return FakeWorld(n, lambda runtime: cls(runtime, options), seed=3, **kwargs)  # type: ignore[arg-type]


def ones(value: float = 1.0, n: int = 3) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ EL-Local
def test_el_local_sends_exactly_s_models_and_n_minus_1_minus_s_notices_per_node_per_round() -> None:
    n, s = 12, 4
    world = el_world("el-local", n, s, train_time=lambda i: 1.0 + 0.1 * i)
    world.run(until=40.0)
    for index in range(n):
        by_round: dict[int, list[tuple[int, object]]] = {}
        for _, src, dst, message in world.sent:
            if src == index:
                by_round.setdefault(message.round, []).append((dst, message))  # type: ignore[attr-defined]
        trainings = world.runtimes[index].trainings
        assert sorted(by_round) == list(range(1, trainings + 1))  # one batch of sends per trained round
        for sent in by_round.values():
            destinations = [dst for dst, _ in sent]
            models = [dst for dst, m in sent if type(m) is NeighbourModel]
            notices = [dst for dst, m in sent if type(m) is NotSending]
            assert sorted(destinations) == [i for i in range(n) if i != index]  # everyone else, once
            assert len(models) == s and len(notices) == n - 1 - s
        assert len(world.rounds_of(index)) >= 3
    assert not world.sink.rejections


def test_el_local_peers_are_drawn_afresh_each_round() -> None:
    world = el_world("el-local", 12, 3)
    world.run(until=20.0)
    chosen = {}
    for _, src, dst, message in world.sent:
        if src == 0 and type(message) is NeighbourModel:
            chosen.setdefault(message.round, set()).add(dst)
    assert len({frozenset(peers) for peers in chosen.values()}) > 1


def test_nobody_starts_round_r_plus_1_before_hearing_from_every_other_node_for_round_r() -> None:
    n, s = 8, 2
    # node 5 trains ten times slower: everyone waits for its round-r messages
    world = el_world("el-local", n, s, train_time=lambda i: 10.0 if i == 5 else 1.0, upload_bps=2000.0,
                     parameters=50)
    world.run(until=80.0)
    heard: dict[tuple[int, int], list[float]] = {}  # (receiver, round) -> arrival times
    for time, _, dst, message in world.delivered:
        heard.setdefault((dst, message.round), []).append(time)  # type: ignore[attr-defined]
    rounds_checked = 0
    for index in range(n):
        ends = {round_: end for round_, end, _ in world.rounds_of(index)}
        for round_, end in ends.items():
            arrivals = heard[(index, round_)]
            assert len(arrivals) == n - 1 and max(arrivals) <= end + 1e-12
            rounds_checked += 1
        # a fast node's round ends when the last other node was heard from (its own training ended before)
        if index != 5:
            for round_, end in ends.items():
                assert end == pytest.approx(max(heard[(index, round_)]))
        # and the next round's messages leave only after that
        for time, src, _, message in world.sent:
            if src == index and message.round > 1:  # type: ignore[attr-defined]
                assert time >= ends[message.round - 1]  # type: ignore[attr-defined]
    assert rounds_checked >= n * 5
    # the slow node paces everyone: nobody is more than one round ahead of it
    done = [len(world.rounds_of(i)) for i in range(n)]
    assert max(done) - done[5] <= 1


def test_el_local_averages_its_own_model_with_the_models_received_uniformly() -> None:
    n = 4
    world = el_world("el-local", n, 2, increment=lambda i: 1.0, train_time=lambda i: 1.0)
    node = world.nodes[0]
    assert isinstance(node, ELLocalNode)
    node.start()  # only node 0 runs; its round 1 needs a word from nodes 1, 2 and 3
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(4.0)))
    node.deliver(world.ids[2], NotSending(1))
    world.loop.run(until=1.5)
    assert node.round == 1  # trained at t=1 (model 1), but node 3 has not been heard from
    now = world.loop.now
    assert now >= 1.0
    node.deliver(world.ids[3], NeighbourModel(1, 10, ones(10.0)))
    assert node.round == 2 and node.model.tolist() == [(1.0 + 4.0 + 10.0) / 3] * 3
    assert world.rounds_of(0) == [(1, now, now)]


def test_a_round_of_notices_only_keeps_the_nodes_own_model() -> None:
    world = el_world("el-local", 3, 1, increment=lambda i: 2.0)
    node = world.nodes[0]
    assert isinstance(node, ELLocalNode)
    node.start()
    node.deliver(world.ids[1], NotSending(1))
    node.deliver(world.ids[2], NotSending(1))
    world.loop.run(until=1.0)
    assert node.round == 2 and node.model.tolist() == [2.0] * 3


def test_el_local_messages_of_later_rounds_are_kept_for_their_round() -> None:
    world = el_world("el-local", 3, 1, increment=lambda i: 1.0)
    node = world.nodes[0]
    assert isinstance(node, ELLocalNode)
    node.start()
    node.deliver(world.ids[1], NeighbourModel(2, 10, ones(5.0)))  # early: round 2
    node.deliver(world.ids[1], NotSending(1))
    node.deliver(world.ids[2], NotSending(1))
    world.loop.run(until=1.0)
    assert node.round == 2
    node.deliver(world.ids[2], NotSending(2))
    world.loop.run(until=2.0)  # round 2's training: model 1 + 1 = 2, averaged with the early 5
    assert node.round == 3 and node.model.tolist() == [3.5] * 3 and not world.sink.rejections


def test_el_local_round_lasts_until_the_last_other_node_was_heard_from() -> None:
    n, s = 5, 2
    world = el_world("el-local", n, s, upload_bps=1000.0, parameters=100)
    world.run(until=10.0)
    model_bytes = HEADER_BYTES + 16 + 4 + 400
    assert {m.wire_size for _, _, _, m in world.sent if type(m) is NeighbourModel} == {model_bytes}
    assert {m.wire_size for _, _, _, m in world.sent if type(m) is NotSending} == {HEADER_BYTES + 8}
    last = n - 1  # every node sends in id order, so the last node's message is the last in each sender's queue
    last_heard = max(t for t, _, dst, m in world.delivered if dst == last and m.round == 1)  # type: ignore[attr-defined]
    _, end, duration = world.rounds_of(last)[0]
    assert end == duration == pytest.approx(last_heard)
    # training (1 s), then each sender's s models and n - 1 - s notices across its 1000 B/s uplink, then 0.25 s
    assert end == pytest.approx(1.0 + (s * model_bytes + (n - 1 - s) * (HEADER_BYTES + 8)) / 1000.0 + 0.25)


# ------------------------------------------------------------------------------------------------ EL-Local checks
def started_local_node() -> tuple[FakeWorld, ELLocalNode]:
    world = el_world("el-local", 5, 2)
    node = world.nodes[0]
    assert isinstance(node, ELLocalNode)
    node.start()
    return world, node


def local_state(node: ELLocalNode) -> tuple[object, ...]:
    return node.round, {r: sorted(bucket) for r, bucket in node._inbox.items()}, node.model.tolist()


def test_el_local_refuses_unknown_senders_and_itself() -> None:
    world, node = started_local_node()
    before = local_state(node)
    node.deliver(b"stranger", NeighbourModel(1, 10, ones()))
    node.deliver(b"stranger", NotSending(1))
    node.deliver(world.ids[0], NotSending(1))
    assert world.sink.rejections == {"unknown_sender": 3} and local_state(node) == before


def test_el_local_refuses_stale_rounds() -> None:
    world, node = started_local_node()
    before = local_state(node)
    node.deliver(world.ids[1], NotSending(0))
    node.deliver(world.ids[1], NeighbourModel(-1, 10, ones()))
    assert world.sink.rejections == {"stale_round": 2} and local_state(node) == before
    for sender in world.ids[1:]:
        node.deliver(sender, NotSending(1))
    world.loop.run(until=1.0)
    assert node.round == 2
    before = local_state(node)
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones()))
    assert world.sink.rejections == {"stale_round": 3} and local_state(node) == before


def test_el_local_refuses_a_second_message_of_a_round_from_the_same_sender() -> None:
    world, node = started_local_node()
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(4.0)))
    before = local_state(node)
    node.deliver(world.ids[1], NotSending(1))
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(40.0)))
    assert world.sink.rejections == {"duplicate_model": 2} and local_state(node) == before
    assert node._inbox[1][world.ids[1]].tolist() == [4.0] * 3  # type: ignore[union-attr]


def test_el_local_refuses_a_model_with_the_wrong_parameter_count() -> None:
    world, node = started_local_node()
    before = local_state(node)
    node.deliver(world.ids[1], NeighbourModel(1, 10, ones(n=2)))
    assert world.sink.rejections == {"wrong_parameter_count": 1} and local_state(node) == before


def test_el_local_refuses_message_types_it_does_not_take() -> None:
    world, node = started_local_node()
    before = local_state(node)
    node.deliver(world.ids[1], GossipModel(0, ones()))
    assert world.sink.rejections == {"unexpected_message_type": 1} and local_state(node) == before
    assert set(ELLocalNode.message_types()) == {NeighbourModel, NotSending}


# ------------------------------------------------------------------------------------------------ EL-Oracle
def test_el_oracle_waits_for_its_s_in_neighbours_and_averages_them_exactly() -> None:
    n, s = 10, 3
    snapshots: dict[int, np.ndarray] = {}
    world = el_world("el-oracle", n, s, train_time=lambda i: 5.0 if i == 2 else 1.0)
    for index, node in enumerate(world.nodes):
        original = node._begin  # type: ignore[attr-defined]

        def spy(round: int, params: np.ndarray, index: int = index, original=original) -> None:
            if round == 3:
                snapshots[index] = np.array(params)
                return
            original(round, params)

        node._begin = spy  # type: ignore[attr-defined]
    world.run(until=100.0)
    x = np.zeros(n)
    increments = np.arange(1, n + 1, dtype=float)
    for r in (1, 2):
        graph = random_regular_digraph(n, s, 3, r)
        trained = x + increments
        x = np.array([np.mean([trained[i], *(trained[j] for j in graph.in_neighbours(i, r))]) for i in range(n)])
    for index in range(n):
        np.testing.assert_allclose(snapshots[index], np.full(3, x[index]), rtol=1e-6)
    received = [sum(1 for _, _, dst, m in world.delivered if dst == i and m.round == 1) for i in range(n)]
    assert received == [s] * n
    assert not world.sink.rejections


def test_el_oracle_refuses_a_model_from_a_node_that_is_not_an_in_neighbour_of_that_round() -> None:
    world = el_world("el-oracle", 10, 3)
    node = world.nodes[0]
    assert isinstance(node, ELOracleNode)
    node.start()
    in_round_1 = set(random_regular_digraph(10, 3, 3, 1).in_neighbours(0, 1))
    outsiders = [i for i in range(1, 10) if i not in in_round_1]
    assert outsiders
    for sender in outsiders:
        node.deliver(world.ids[sender], NeighbourModel(1, 10, ones()))
    assert world.sink.rejections == {"not_an_in_neighbour": len(outsiders)}
    assert node._inbox == {}
    insider = sorted(in_round_1)[0]
    node.deliver(world.ids[insider], NeighbourModel(1, 10, ones(n=5)))
    node.deliver(b"stranger", NeighbourModel(1, 10, ones()))
    node.deliver(world.ids[insider], NotSending(1))
    assert world.sink.rejections == {"not_an_in_neighbour": len(outsiders), "wrong_parameter_count": 1,
                                     "unknown_sender": 1, "unexpected_message_type": 1}
    node.deliver(world.ids[insider], NeighbourModel(1, 10, ones()))
    node.deliver(world.ids[insider], NeighbourModel(1, 10, ones()))
    assert world.sink.rejections["duplicate_model"] == 1 and list(node._inbox[1]) == [insider]


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("algorithm", ["el-local", "el-oracle"])
def test_end_to_end_epidemic_runs(tmp_path: Path, algorithm: str) -> None:
    n, s = 20, 3
    config = config_from_mapping({"algorithm": algorithm, "nodes": n, "rounds": 4, "eval_every": 2, "fanout": s,
                                  "out": str(tmp_path)})
    results = run_simulation(config)
    summary = results.summary
    assert summary["rounds_completed"] == 4
    assert [row["round"] for row in results.metrics] == [2, 4]
    assert "accuracy_std" in results.metrics[-1]
    assert summary["rejections"] == {} and summary["messages_lost"] == {} and summary["stalled"] is False
    # one batch of sends per node and round (all sent at once): s models for EL-Oracle; s models and
    # n - 1 - s notices for EL-Local. The mean round is 4, so at least 4 x n batches were sent.
    per_batch = s if algorithm == "el-oracle" else n - 1
    batches, rest = divmod(summary["messages_total"], per_batch)
    assert rest == 0 and batches >= 4 * n
    model_bytes = HEADER_BYTES + 16 + 4 + 4 * DIGITS_PARAMETERS
    notice_bytes = HEADER_BYTES + 8
    notices = 0 if algorithm == "el-oracle" else n - 1 - s
    # every notice's bytes are counted in bytes_total
    assert summary["bytes_total"] == batches * (s * model_bytes + notices * notice_bytes)

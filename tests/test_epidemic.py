"""Epidemic Learning: EL-Local sends exactly s models per node per round; EL-Oracle averages its s in-peers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import Config
from plexus.protocol.epidemic import ELLocalNode, ELOracleNode
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.protocol.topologies import random_regular_digraph
from plexus.sim.simulation import run_simulation


def el_world(kind: str, n: int, s: int, **kwargs: object) -> FakeWorld:
    config = Config(algorithm=kind, nodes=n, fanout=s, local_steps=1, seed=3)
    cls = ELLocalNode if kind == "el-local" else ELOracleNode
    return FakeWorld(n, lambda runtime: cls(runtime, config), seed=3, **kwargs)  # type: ignore[arg-type]


def test_el_local_sends_exactly_s_distinct_models_per_node_per_round() -> None:
    n, s = 12, 4
    world = el_world("el-local", n, s, train_time=lambda i: 1.0 + 0.1 * i)
    world.run(until=40.0)
    for index in range(n):
        sent = [(time, dst, m) for time, src, dst, m in world.sent if src == index]
        trainings = world.runtimes[index].trainings
        assert len(sent) == s * trainings  # exactly s per completed training (i.e. per round)
        by_round: dict[int, list[int]] = {}
        for _, dst, message in sent:
            assert message.kind == ModelKind.NEIGHBOUR
            by_round.setdefault(message.round, []).append(dst)
        for destinations in by_round.values():
            assert len(destinations) == len(set(destinations)) == s and index not in destinations
        assert len(world.rounds_of(index)) in (trainings, trainings - 1)
    # nodes run at their own pace: the fastest has done more rounds than the slowest
    assert len(world.rounds_of(0)) > len(world.rounds_of(n - 1))


def test_el_local_averages_its_model_with_everything_received_since_the_last_round() -> None:
    world = el_world("el-local", 3, 1, increment=lambda i: 1.0)
    node = world.nodes[0]
    assert isinstance(node, ELLocalNode)
    world.run(until=0.5, stop=False)  # training of round 1 under way
    a = ModelMessage(ModelKind.NEIGHBOUR, 1, np.full(3, 4.0, dtype=np.float32))
    b = ModelMessage(ModelKind.NEIGHBOUR, 1, np.full(3, 10.0, dtype=np.float32))
    node.on_message(world.ids[1], a)
    node.on_message(world.ids[1], b)  # supersedes a
    node.on_message(world.ids[2], a)
    assert world.sink.counters["superseded_models"] == 1
    world.loop.run(until=1.0 + 1e-9)  # training ends at 1.0 (model 1.0); infinite uplink: the round ends then
    np.testing.assert_allclose(node.model, np.full(3, (1.0 + 10.0 + 4.0) / 3))
    assert world.rounds_of(0)[0][0] == 1


def test_el_local_round_lasts_until_its_uplink_has_carried_the_s_models() -> None:
    n, s = 5, 2
    world = el_world("el-local", n, s, upload_bps=1000.0, parameters=100)
    world.run(until=10.0)
    size = world.sent[0][3].wire_size
    first = world.rounds_of(0)[0]
    assert first[2] == pytest.approx(1.0 + s * size / 1000.0)


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


@pytest.mark.parametrize("algorithm", ["el-local", "el-oracle"])
def test_end_to_end_epidemic_runs(tmp_path: Path, algorithm: str) -> None:
    config = Config(algorithm=algorithm, nodes=20, rounds=4, eval_every=2, fanout=3, out=str(tmp_path))
    results = run_simulation(config)
    assert results.summary["rounds_completed"] == 4
    assert [row["round"] for row in results.metrics] == [2, 4]
    assert "accuracy_std" in results.metrics[-1]
    # s = 3 models per node per round: at least 4 rounds' worth were sent by the time the mean round is 4
    assert results.summary["messages_total"] >= 3 * 20 * 4
    assert results.summary["messages_total"] % 3 == 0

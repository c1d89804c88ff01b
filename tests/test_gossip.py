"""Gossip Learning: the age-weighted merge, the send schedule, busy nodes dropping models, an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import Config
from plexus.protocol.gossip import GossipNode, age_weighted_merge
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.sim.simulation import run_simulation


def test_age_weighted_merge() -> None:
    own = np.array([0.0, 4.0], dtype=np.float32)
    other = np.array([8.0, 0.0], dtype=np.float32)
    merged, age = age_weighted_merge(own, 3, other, 1)
    np.testing.assert_allclose(merged, [2.0, 3.0])  # (3 * own + 1 * other) / 4
    assert age == 3
    merged, age = age_weighted_merge(own, 1, other, 7)
    np.testing.assert_allclose(merged, [7.0, 0.5])
    assert age == 7
    merged, age = age_weighted_merge(own, 0, other, 0)
    np.testing.assert_allclose(merged, [4.0, 2.0])  # never-trained models: a plain average
    assert age == 0 and merged.dtype == np.float32


def gossip_world(n: int, timeout: float, **kwargs: object) -> FakeWorld:
    config = Config(algorithm="gossip", nodes=n, round_timeout=timeout, local_steps=1)
    return FakeWorld(n, lambda runtime: GossipNode(runtime, config), **kwargs)  # type: ignore[arg-type]


def test_each_node_sends_one_model_per_timeout_to_a_random_other_node() -> None:
    n = 10
    world = gossip_world(n, 5.0, train_time=lambda i: 1.0)
    world.run(until=52.0)  # sends at 5, 10, ..., 50
    per_sender = [sum(1 for _, src, _, _ in world.sent if src == i) for i in range(n)]
    assert per_sender == [10] * n
    assert all(src != dst for _, src, dst, _ in world.sent)
    assert all(m.kind == ModelKind.GOSSIP and m.age >= 1 for _, _, _, m in world.sent)
    assert len({dst for _, _, dst, _ in world.sent}) > 1


def test_nothing_is_sent_before_the_first_training_finishes() -> None:
    world = gossip_world(4, 5.0, train_time=lambda i: 12.0)
    world.run(until=11.0)
    assert world.sent == []


def test_receiver_merges_by_age_and_trains_then_age_grows() -> None:
    world = gossip_world(2, 100.0, train_time=lambda i: 1.0, increment=lambda i: 1.0)
    node = world.nodes[0]
    assert isinstance(node, GossipNode)
    world.run(until=2.0, stop=False)  # both trained once: model 1, age 1
    assert node.age == 1
    incoming = ModelMessage(ModelKind.GOSSIP, 1, np.full(3, 7.0, dtype=np.float32), age=3)
    node.on_message(world.ids[1], incoming)
    np.testing.assert_allclose(node.model, np.full(3, (1 * 1.0 + 3 * 7.0) / 4))
    assert node.age == 3 and node.busy
    # a model arriving during that training is dropped and counted
    node.on_message(world.ids[1], incoming)
    assert world.sink.counters["gossip_models_dropped_busy"] == 1
    world.loop.run(until=10.0)
    assert not node.busy and node.age == 4
    np.testing.assert_allclose(node.model, np.full(3, 5.5 + 1.0))


def test_end_to_end_gossip_counts_rounds_in_timeouts(tmp_path: Path) -> None:
    config = Config(algorithm="gossip", nodes=20, rounds=6, eval_every=2, round_timeout=10.0, out=str(tmp_path))
    results = run_simulation(config)
    assert results.summary["virtual_seconds"] == pytest.approx(60.0)
    assert results.summary["rounds_completed"] == 6
    assert [row["round"] for row in results.metrics] == [2, 4, 6]
    assert [row["time_s"] for row in results.metrics] == pytest.approx([20.0, 40.0, 60.0])
    assert all(row["accuracy_std"] >= 0 for row in results.metrics)
    # at most one send per node per timeout (none before a node's first training ends)
    assert 0 < results.summary["messages_total"] <= 20 * 6

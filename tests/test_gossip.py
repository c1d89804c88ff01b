"""Gossip Learning as the authors run it: the age-weighted merge; a seeded first send in (T, 2T), then one send per
period of T plus the transfer; models sent even untrained; every received model merged (arrivals during training
queued and merged after it); training only on receipt; checked senders; an end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import config_from_mapping
from plexus.protocol.epidemic import NotSending
from plexus.protocol.gossip import GossipModel, GossipNode, GossipOptions, age_weighted_merge
from plexus.protocol.messages import HEADER_BYTES
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
    options = GossipOptions(local_steps=1, round_timeout=timeout)
    return FakeWorld(n, lambda runtime: GossipNode(runtime, options), **kwargs)  # type: ignore[arg-type]


def sends_of(world: FakeWorld, index: int) -> list[tuple[float, int, GossipModel]]:
    return [(time, dst, m) for time, src, dst, m in world.sent if src == index]  # type: ignore[misc]


def ones(value: float = 1.0, n: int = 3) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ sending
def test_first_sends_are_spread_over_one_to_two_periods() -> None:
    n, period = 30, 10.0
    world = gossip_world(n, period)
    world.run(until=2 * period)
    first = [sends_of(world, i)[0][0] for i in range(n)]
    assert all(period <= t < 2 * period for t in first)
    assert len(set(first)) == n  # not all at one instant
    assert max(first) - min(first) > period / 2
    # the phases are seeded: the same world sends at the same instants
    again = gossip_world(n, period)
    again.run(until=2 * period)
    assert [sends_of(again, i)[0][0] for i in range(n)] == first


def test_each_send_waits_for_the_previous_transfer_then_one_period() -> None:
    period, upload, delay, parameters = 5.0, 100.0, 0.25, 10
    world = gossip_world(4, period, upload_bps=upload, delay=delay, parameters=parameters,
                         train_time=lambda i: 1000.0)  # nobody finishes training: every model stays the same size
    world.run(until=60.0)
    transfer = (HEADER_BYTES + 8 + 4 + 4 * parameters) / upload + delay  # on the uplink, then the delay
    for index in range(4):
        times = [t for t, _, _ in sends_of(world, index)]
        assert len(times) >= 3
        gaps = np.diff(times)
        np.testing.assert_allclose(gaps, period + transfer)


def test_a_failed_transfer_does_not_stop_the_sender() -> None:
    world = gossip_world(3, 5.0)
    world.offline = {1, 2}  # node 0's every send fails: its peers are unreachable
    world.run(until=40.0)
    times = [t for t, _, _ in sends_of(world, 0)]
    assert len(times) >= 5
    np.testing.assert_allclose(np.diff(times), 5.0 + 0.25)  # the failure is known at the would-be arrival


def test_each_node_sends_one_model_per_period_to_a_random_other_node() -> None:
    n = 10
    world = gossip_world(n, 5.0, train_time=lambda i: 1.0, delay=0.0)
    world.run(until=52.0)
    for index in range(n):
        times = [t for t, _, _ in sends_of(world, index)]
        # first send in [5, 10), then every 5 s (zero transfer time): 9 or 10 sends by t=52
        assert len(times) in (9, 10)
        np.testing.assert_allclose(np.diff(times), 5.0)
    assert all(src != dst for _, src, dst, _ in world.sent)
    assert all(type(m) is GossipModel for _, _, _, m in world.sent)
    assert len({dst for _, src, dst, _ in world.sent if src == 0}) > 1


def test_models_are_sent_even_before_any_training() -> None:
    world = gossip_world(4, 5.0, train_time=lambda i: 1000.0)
    world.run(until=10.0)
    assert len(world.sent) == 4  # each node's first send, all in [5, 10)
    assert all(m.age == 0 and np.array_equal(m.params, world.initial) for _, _, _, m in world.sent)


def test_nodes_train_only_on_receipt() -> None:
    world = gossip_world(5, 5.0)
    world.offline = set(range(5))  # nobody ever receives anything
    world.run(until=100.0)
    assert len(world.sent) >= 5 * 10
    assert all(runtime.trainings == 0 for runtime in world.runtimes)
    assert all(node.age == 0 for node in world.nodes)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ merging
def test_every_received_model_is_merged_and_arrivals_during_training_are_queued() -> None:
    world = gossip_world(4, 1000.0, train_time=lambda i: 1.0, increment=lambda i: 1.0)
    node = world.nodes[0]
    assert isinstance(node, GossipNode)
    node.deliver(world.ids[1], GossipModel(3, ones(7.0)))
    # merged with the untrained model (age 0, all zeros): (0 x 0 + 3 x 7) / 3 = 7, age 3, then training starts
    np.testing.assert_allclose(node.model, ones(7.0))
    assert node.age == 3 and node.busy
    node.deliver(world.ids[2], GossipModel(1, ones(1.0)))
    node.deliver(world.ids[3], GossipModel(5, ones(3.0)))
    assert world.sink.counters["gossip_models_queued"] == 2
    np.testing.assert_allclose(node.model, ones(7.0))  # nothing merged into a model being trained
    world.loop.run(until=1.0)
    # trained: 8, age 4; then the queue in arrival order: (4 x 8 + 1 x 1) / 5 = 6.6, age 4;
    # (4 x 6.6 + 5 x 3) / 9 = 4.6, age 5; and that merge is trained again
    assert node.busy and node.age == 5
    np.testing.assert_allclose(node.model, ones((4 * 6.6 + 5 * 3.0) / 9), rtol=1e-6)
    world.loop.run(until=2.0)
    assert not node.busy and node.age == 6
    np.testing.assert_allclose(node.model, ones((4 * 6.6 + 5 * 3.0) / 9 + 1.0), rtol=1e-6)
    assert world.runtimes[0].trainings == 2 and not world.sink.rejections


def test_no_received_model_is_lost_in_a_busy_world(monkeypatch: pytest.MonkeyPatch) -> None:
    import plexus.protocol.gossip as gossip

    merges: list[int] = []

    def counting_merge(*args: object) -> tuple[np.ndarray, int]:
        merges.append(1)
        return age_weighted_merge(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(gossip, "age_weighted_merge", counting_merge)
    n = 8
    world = gossip_world(n, 2.0, train_time=lambda i: 3.0 + i, increment=lambda i: 0.5)
    world.run(until=200.0, stop=False)
    queued = world.sink.counters["gossip_models_queued"]
    assert queued > 0  # training is slower than the period, so arrivals queue up
    still_queued = sum(len(node._queued) for node in world.nodes)  # type: ignore[attr-defined]
    # every delivered model was merged, or waits in a queue for its node's training to end
    assert len(merges) == len(world.delivered) - still_queued
    assert not world.sink.rejections


# ------------------------------------------------------------------------------------------------ checked senders
def test_gossip_refuses_unknown_senders_wrong_sizes_negative_ages_and_other_types() -> None:
    world = gossip_world(3, 1000.0)
    node = world.nodes[0]
    assert isinstance(node, GossipNode)
    node.deliver(b"stranger", GossipModel(1, ones(9.0)))
    node.deliver(world.ids[1], GossipModel(1, ones(9.0, n=4)))
    node.deliver(world.ids[1], GossipModel(-1, ones(9.0)))
    node.deliver(world.ids[1], NotSending(1))
    assert world.sink.rejections == {"unknown_sender": 1, "wrong_parameter_count": 1, "negative_age": 1,
                                     "unexpected_message_type": 1}
    assert node.age == 0 and not node.busy and node.model.tolist() == [0.0] * 3
    assert GossipNode.message_types() == [GossipModel]


# ------------------------------------------------------------------------------------------------ end to end
def test_end_to_end_gossip_counts_rounds_in_timeouts(tmp_path: Path) -> None:
    config = config_from_mapping({"algorithm": "gossip", "nodes": 20, "rounds": 6, "eval_every": 2,
                                  "round_timeout": 10.0, "out": str(tmp_path)})
    results = run_simulation(config)
    summary = results.summary
    assert summary["virtual_seconds"] == pytest.approx(60.0)
    assert summary["rounds_completed"] == 6
    assert [row["round"] for row in results.metrics] == [2, 4, 6]
    assert [row["time_s"] for row in results.metrics] == pytest.approx([20.0, 40.0, 60.0])
    assert all(row["accuracy_std"] >= 0 for row in results.metrics)
    # first sends in (10, 20), then at most one per 10 s plus transfer: at most 5 per node in 60 s, at least 1
    assert 20 <= summary["messages_total"] <= 20 * 5
    assert summary["rejections"] == {} and summary["stalled"] is False
    assert summary["traits"]["clock"] == "periods"

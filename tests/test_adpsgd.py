"""AD-PSGD as Lian et al. define it: bipartite roles, active nodes averaging with random passive nodes, atomic
averaging that preserves the sum of the models, updates from stale reads applied to the current model, no
deadlock, checked senders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dl_harness import FakeWorld
from plexus.config import config_from_mapping
from plexus.errors import ConfigError
from plexus.protocol.adpsgd import ADPSGDNode, ADPSGDOptions, AveragingReply, AveragingRequest, is_active
from plexus.protocol.view import PeerInfo
from plexus.sim.simulation import run_simulation
from protocol_stub import StubRuntime


def peers(n: int) -> list[PeerInfo]:
    return [PeerInfo(f"n{i:02d}".encode()) for i in range(n)]


def stub_node(position: int, n: int = 6, timeout: float = 600.0) -> tuple[StubRuntime, ADPSGDNode]:
    runtime = StubRuntime(f"n{position:02d}".encode(), peers(n), parameters=2)
    node = ADPSGDNode(runtime, ADPSGDOptions(local_steps=1, nodes=n, averaging_timeout=timeout))
    node.start()
    return runtime, node


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ roles
def test_odd_positions_are_active_and_average_only_with_passive_nodes() -> None:
    runtime, node = stub_node(1)
    assert node.active and is_active(3) and not is_active(0)
    assert node.passives == [b"n00", b"n02", b"n04"]
    for _ in range(60):
        runtime.finish_training(add=1.0)
        if runtime.sent:
            peer, request, _ = runtime.sent[-1]
            assert isinstance(request, AveragingRequest)
            node.on_reply(peer, AveragingReply(request.exchange, request.params))  # type: ignore[arg-type]
    targets = {peer for peer, _, _ in runtime.sent}
    assert targets == {b"n00", b"n02", b"n04"}  # every passive node, drawn at random, and nothing else


def test_a_passive_node_never_starts_an_averaging() -> None:
    runtime, node = stub_node(2)
    for _ in range(10):
        runtime.finish_training(add=1.0)
    assert not node.active and runtime.sent == [] and node.iteration == 10


# ------------------------------------------------------------------------------------------------ atomic averaging
def test_the_passive_node_averages_and_replies_in_one_step() -> None:
    runtime, node = stub_node(0)
    runtime.finish_training(add=3.0)  # x_P = (3, 3)
    node.on_request(b"n01", AveragingRequest(7, vec(1.0, 5.0)))
    np.testing.assert_array_equal(node.model, [2.0, 4.0])
    peer, reply, _ = runtime.sent[-1]
    assert peer == b"n01" and isinstance(reply, AveragingReply) and reply.exchange == 7
    np.testing.assert_array_equal(reply.params, [2.0, 4.0])


def test_the_active_node_takes_the_average_and_keeps_updates_made_meanwhile() -> None:
    runtime, node = stub_node(1)
    runtime.finish_training(add=2.0)  # x_A = (2, 2); the averaging request carries it
    peer, request, _ = runtime.sent[-1]
    np.testing.assert_array_equal(request.params, [2.0, 2.0])  # type: ignore[attr-defined]
    # while the request travels, the next training (started from (2, 2)) ends: x_A = (2, 2) + 1
    runtime.finish_training(add=1.0)
    np.testing.assert_array_equal(node.model, [3.0, 3.0])
    assert len(runtime.sent) == 1  # one averaging at a time
    # the passive node held (6, 0): average (4, 1); the active node ends at the average plus its update
    node.on_reply(peer, AveragingReply(request.exchange, vec(4.0, 1.0)))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(node.model, [5.0, 2.0])
    assert node.exchanges == 1
    assert len(runtime.sent) == 2  # the iteration that ended meanwhile asked for the next averaging


def test_an_update_computed_on_a_stale_read_is_added_to_the_averaged_model() -> None:
    runtime, node = stub_node(0)
    # training reads (0, 0); meanwhile an averaging request makes the model (1, 2)
    node.on_request(b"n01", AveragingRequest(1, vec(2.0, 4.0)))
    np.testing.assert_array_equal(node.model, [1.0, 2.0])
    runtime.finish_training(add=0.5)  # update +0.5 computed from the stale read, applied to the current model
    np.testing.assert_array_equal(node.model, [1.5, 2.5])
    np.testing.assert_array_equal(runtime.trainings[-1][0], [1.5, 2.5])  # the next training reads it


# ------------------------------------------------------------------------------------------------ checked senders
def test_bad_requests_and_replies_are_refused_and_counted() -> None:
    runtime, passive = stub_node(0)
    passive.on_request(b"n02", AveragingRequest(1, vec(1.0, 1.0)))  # from a passive node
    passive.on_request(b"zz", AveragingRequest(1, vec(1.0, 1.0)))  # a stranger
    passive.on_request(b"n01", AveragingRequest(1, vec(1.0, 1.0, 1.0)))  # wrong size
    assert dict(runtime.sink.rejections) == {"not_an_active_node": 2, "wrong_parameter_count": 1}
    np.testing.assert_array_equal(passive.model, [0.0, 0.0]) and runtime.sent == []

    runtime, active = stub_node(3)
    active.on_request(b"n01", AveragingRequest(1, vec(1.0, 1.0)))  # an active node asked to average
    active.on_reply(b"n00", AveragingReply(1, vec(1.0, 1.0)))  # no averaging under way
    runtime.finish_training(add=1.0)
    peer, request, _ = runtime.sent[-1]
    other = b"n02" if peer != b"n02" else b"n04"
    active.on_reply(other, AveragingReply(request.exchange, vec(1.0, 1.0)))  # type: ignore[attr-defined]
    active.on_reply(peer, AveragingReply(request.exchange + 1, vec(1.0, 1.0)))  # type: ignore[attr-defined]
    active.on_reply(peer, AveragingReply(request.exchange, vec(1.0)))  # type: ignore[attr-defined]
    assert dict(runtime.sink.rejections) == {"receiver_not_passive": 1, "unexpected_reply": 3,
                                             "wrong_parameter_count": 1}
    np.testing.assert_array_equal(active.model, [1.0, 1.0])


def test_a_failed_request_or_a_silent_passive_node_does_not_block_the_active_node() -> None:
    from plexus.protocol.runtime import PeerUnreachable

    runtime, node = stub_node(1, timeout=30.0)
    runtime.finish_training(add=1.0)
    peer, _, transmission = runtime.sent[-1]
    transmission.mark_failed(PeerUnreachable(peer, "offline at arrival"))
    assert runtime.sink.counters["averaging_failed"] == 1 and node._exchange is None
    runtime.finish_training(add=1.0)
    assert len(runtime.sent) == 2
    runtime.loop.run(until=31.0)  # no reply within the timeout: given up, the next iteration averages again
    assert runtime.sink.counters["averaging_timed_out"] == 1 and node._exchange is None
    late_peer, late, _ = runtime.sent[-1]
    node.on_reply(late_peer, AveragingReply(late.exchange, vec(9.0, 9.0)))  # type: ignore[attr-defined]
    assert runtime.sink.rejections["unexpected_reply"] == 1


# ---------------------------------------------------------------------------------------------- the artifact's variant
def test_the_divshare_artifacts_variant_pings_with_replacement_and_answers_pings() -> None:
    from plexus.protocol.adpsgd_divshare import ADPSGDDivShareNode, PingPongModel
    from plexus.protocol.swift import SwiftOptions

    runtime = StubRuntime(b"n00", peers(4), parameters=2)
    node = ADPSGDDivShareNode(runtime, SwiftOptions(local_steps=1, nodes=4, degree=6, send_concurrency=100))
    node.start()
    for _ in range(30):
        runtime.finish_training(add=1.0)
    pings = [(peer, m) for peer, m, _ in runtime.sent]
    assert len(pings) == 30 * 3 and all(isinstance(m, PingPongModel) and m.ping for _, m in pings)
    per_iteration = [{peer for peer, _ in pings[i:i + 3]} for i in range(0, 90, 3)]
    assert any(len(chosen) < 3 for chosen in per_iteration)  # drawn with replacement
    node.on_model(b"n02", PingPongModel(True, vec(4.0, 4.0)))  # a ping: kept and answered with the own model
    peer, pong, _ = runtime.sent[-1]
    assert peer == b"n02" and isinstance(pong, PingPongModel) and not pong.ping
    np.testing.assert_array_equal(pong.params, node.model)
    node.on_model(b"n03", PingPongModel(False, vec(1.0, 1.0)))  # a pong: kept, not answered
    assert len(runtime.sent) == 91
    runtime.finish_training(add=1.0)  # the trained model (31, 31) averaged with (4, 4) and (1, 1)
    np.testing.assert_allclose(node.model, [12.0, 12.0])


# ------------------------------------------------------------------------------------------------ whole runs
def adpsgd_world(n: int, **kwargs: object) -> FakeWorld:
    options = ADPSGDOptions(local_steps=1, nodes=n)
    return FakeWorld(n, lambda runtime: ADPSGDNode(runtime, options), **kwargs)  # type: ignore[arg-type]


def test_averaging_preserves_the_sum_of_the_models_and_never_deadlocks() -> None:
    n = 9
    # uneven speeds (training 1-3 s), slow links (5 floats take 0.4 s) and long delays: plenty of overlap
    world = adpsgd_world(n, train_time=lambda i: 1.0 + (i % 3), increment=lambda i: float(i + 1), delay=0.6,
                         parameters=5, upload_bps=50.0)
    world.run(until=300.0, stop=False)
    nodes: list[ADPSGDNode] = world.nodes  # type: ignore[assignment]
    # every update applied, and nothing else: the sum of all models is the sum of all updates, except for
    # averagings caught half done (the passive node has averaged, the active node not yet)
    total = sum(node.model.astype(np.float64) for node in nodes)
    updates = sum(runtime.trainings * (i + 1) for i, runtime in enumerate(world.runtimes))
    half_done = np.zeros(5)
    caught = 0
    for node in nodes:
        if node._exchange is None:
            continue
        exchange, peer, sent, _ = node._exchange
        replies = [m for _, src, dst, m in world.sent if isinstance(m, AveragingReply) and m.exchange == exchange
                   and world.ids[src] == peer and world.ids[dst] == node.runtime.node_id]
        if replies:
            half_done += replies[-1].params.astype(np.float64) - sent
            caught += 1
    np.testing.assert_allclose(total + half_done, np.full(5, float(updates)), rtol=1e-5)
    # no deadlock: every active node kept averaging to the end, every node kept training
    actives = [node for node in nodes if node.active]
    assert len(actives) == 4 and all(node.exchanges >= 40 for node in actives)
    served = sum(node.exchanges for node in nodes if not node.active)
    assert served == sum(node.exchanges for node in actives) + caught
    assert all(node.iteration >= 99 for node in nodes)
    assert world.sink.rejections == {}


def test_models_converge_towards_each_other() -> None:
    n = 8
    world = adpsgd_world(n, increment=lambda i: float(i), delay=0.1, parameters=3)
    world.run(until=200.0)
    models = np.array([node.model[0] for node in world.nodes])  # type: ignore[attr-defined]
    # each node adds i per second; averaging keeps them together: spread far below the 7 x 200 apart they would
    # drift without it
    assert models.max() - models.min() < 0.1 * models.mean()


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="AD-PSGD needs at least one active and one passive node"):
        run_simulation(config_from_mapping({"algorithm": "adpsgd", "nodes": 1, "rounds": 1}))
    with pytest.raises(ConfigError, match="averaging_timeout = 0"):
        run_simulation(config_from_mapping({"algorithm": "adpsgd", "nodes": 4, "averaging_timeout": 0}))


def test_end_to_end_adpsgd(tmp_path: Path) -> None:
    config = config_from_mapping({"algorithm": "adpsgd", "nodes": 10, "duration": 12.0, "eval_interval": 4.0,
                                  "out": str(tmp_path), "sample_seconds": 0.01, "local_steps": 2, "link_mbps": 60,
                                  "stragglers": 3})
    results = run_simulation(config)
    assert [row["time_s"] for row in results.metrics] == pytest.approx([4.0, 8.0, 12.0])
    assert results.summary["counters"]["adpsgd_averagings"] > 100
    assert results.summary["rejections"] == {} and results.metrics[-1]["accuracy"] > results.metrics[0]["accuracy"]

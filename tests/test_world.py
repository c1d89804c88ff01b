"""The simulated world's half of the Runtime contract: transmissions that resolve on delivery and fail with
UnknownPeer / PeerUnreachable (counted in messages_lost), aborts that take unsent bytes off the count, self-sends
after zero delay, the simulated runtime's timers and training charged by the compute model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from plexus.protocol.epidemic import NotSending
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.node import Node
from plexus.protocol.plexus import TrainedModel
from plexus.protocol.runtime import MetricsSink, PeerUnreachable, Runtime, SendError, TrainResult, UnknownPeer
from plexus.protocol.view import PeerInfo, View, roster_of
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.world import World, node_id_of

UPLOAD = 1000.0  # bytes per second
LATENCY = 0.5


class Sink(MetricsSink):
    def __init__(self) -> None:
        self.rejections: list[tuple[str, bytes]] = []

    def global_model(self, round: int, params: np.ndarray) -> None:
        pass

    def count(self, name: str, amount: int = 1) -> None:
        pass

    def rejected(self, reason: str, sender: bytes) -> None:
        self.rejections.append((reason, sender))

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        pass


class Inbox(Node):
    """Records what reaches it (and when); declares no handlers, so deliver is overridden."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.received: list[tuple[float, bytes, Message]] = []

    def deliver(self, sender: bytes, message: Message) -> None:
        self.received.append((self.runtime.now(), sender, message))


class StubTrainer:
    """Just what World needs of a LocalTrainer: the nodes' sample indices and a deterministic run()."""

    def __init__(self, nodes: int) -> None:
        self.node_indices = [np.arange(10 + i) for i in range(nodes)]

    def run(self, job: Any) -> TrainResult:
        return TrainResult(np.asarray(job.params, dtype=np.float32) + 1, 0.0, job.steps)


def make_world(
    nodes: int = 3, upload: float = UPLOAD, seconds_per_sample: float = 0.01, batch_size: int = 4,
    per_step: bool = False, factor: float = 1.0,
) -> tuple[World, list[Inbox]]:
    loop = EventLoop()
    network = Network(loop, np.full(nodes, upload), np.full(nodes, math.inf), lambda u, v: LATENCY)
    compute = ComputeModel(np.full(nodes, seconds_per_sample), batch_size, factor, per_step=per_step)
    ids = [node_id_of(i) for i in range(nodes)]
    world = World(0, loop, network, compute, StubTrainer(nodes), ids, nodes,  # type: ignore[arg-type]
                  np.zeros(3, dtype=np.float32))
    roster = roster_of(PeerInfo(node_id, upload) for node_id in ids)
    sink = Sink()
    inboxes: list[Inbox] = []
    for _ in range(nodes):
        world.attach(lambda runtime: inboxes.append(Inbox(runtime)) or inboxes[-1], sink, View(roster))
    return world, inboxes


def big(n: int = 1000) -> TrainedModel:
    """A model message well above the 1500-byte small-message threshold: 5 + 16 + 4 + 4n bytes."""
    return TrainedModel(1, 1, np.ones(n, dtype=np.float32))


def outcome(future: Future[Any]) -> Any:
    return future.exception() if future.failed() else ("ok" if future.done() else "pending")


def test_a_delivered_message_resolves_sent_then_the_transmission() -> None:
    world, inboxes = make_world()
    message = big()
    times: dict[str, float] = {}
    transmission = world.runtimes[0].send(b"1", message)
    transmission.sent.add_done_callback(lambda _: times.setdefault("sent", world.loop.now))
    transmission.add_done_callback(lambda _: times.setdefault("delivered", world.loop.now))
    world.loop.run()
    seconds = message.wire_size / UPLOAD
    assert times == {"sent": pytest.approx(seconds), "delivered": pytest.approx(seconds + LATENCY)}
    assert transmission.result() is None and transmission.sent.result() is None
    assert [(sender, m) for _, sender, m in inboxes[1].received] == [(b"0", message)]
    assert world.network.bytes_total == message.wire_size == 4025
    assert not world.messages_lost


def test_sending_to_an_unknown_peer_fails_at_once_and_is_counted() -> None:
    world, inboxes = make_world()
    transmission = world.runtimes[0].send(b"stranger", big())
    assert transmission.failed()  # before any event runs
    error = transmission.exception()
    assert isinstance(error, UnknownPeer) and isinstance(error, SendError) and error.peer == b"stranger"
    assert transmission.sent.failed() and isinstance(transmission.sent.exception(), UnknownPeer)
    world.loop.run()
    assert world.messages_lost == {"unknown_peer": 1}
    assert world.network.bytes_total == 0 and world.network.messages_sent == 0
    assert all(not inbox.received for inbox in inboxes)


def test_a_destination_offline_at_arrival_fails_with_peer_unreachable_and_is_counted() -> None:
    world, inboxes = make_world()
    world.online[2] = False
    message = big()
    transmission = world.runtimes[0].send(b"2", message)
    world.loop.run()
    assert transmission.sent.result() is None  # the bytes did leave the uplink
    error = transmission.exception()
    assert isinstance(error, PeerUnreachable) and error.peer == b"2" and error.reason == "offline at arrival"
    assert world.messages_lost == {"offline_at_arrival": 1}
    assert world.network.bytes_total == message.wire_size  # sent bytes stay counted
    assert not inboxes[2].received


def test_a_node_back_online_before_arrival_gets_the_message() -> None:
    world, inboxes = make_world()
    world.online[1] = False
    transmission = world.runtimes[0].send(b"1", big())
    world.loop.call_at(1.0, world.online.__setitem__, 1, True)
    world.loop.run()
    assert transmission.result() is None and len(inboxes[1].received) == 1 and not world.messages_lost


def test_a_small_message_to_an_offline_node_is_lost_too() -> None:
    world, inboxes = make_world()
    world.online[1] = False
    transmission = world.runtimes[0].send(b"1", NotSending(3))
    world.loop.run()
    assert isinstance(transmission.exception(), PeerUnreachable)
    assert world.messages_lost == {"offline_at_arrival": 1} and not inboxes[1].received


def test_aborting_an_endpoint_fails_its_transfers_and_takes_unsent_bytes_off_the_count() -> None:
    world, inboxes = make_world()
    message = big()  # 4025 bytes at 1000 B/s: 4.025 s on the uplink
    to_one = world.runtimes[0].send(b"1", message)
    to_two = world.runtimes[0].send(b"2", message)  # shares the uplink: 500 B/s each
    aborted: list[int] = []
    world.loop.call_at(2.0, lambda: aborted.append(world.network.abort_endpoint(1, "crashed")))
    world.loop.run()
    assert aborted == [1]
    error = to_one.exception()
    assert isinstance(error, PeerUnreachable) and error.reason == "crashed" and error.peer == b"1"
    assert isinstance(to_one.sent.exception(), PeerUnreachable)  # its last byte never left
    assert world.messages_lost == {"crashed": 1}
    # 1000 bytes of the aborted message had left by t=2; the other message is carried in full
    assert world.network.bytes_total == 1000 + message.wire_size
    assert to_two.result() is None and len(inboxes[2].received) == 1 and not inboxes[1].received
    # the survivor had 3025 bytes left at t=2 and then got the whole uplink: done at 5.025 s, arrives 0.5 s later
    assert inboxes[2].received[0][0] == pytest.approx(2.0 + 3025 / UPLOAD + LATENCY)


def test_cancelling_a_transmission_in_flight_stops_charging_its_bytes() -> None:
    world, inboxes = make_world()
    message = big()
    transmission = world.runtimes[0].send(b"1", message)
    world.loop.call_at(1.0, transmission.cancel)
    world.loop.run()
    assert transmission.cancelled() and not inboxes[1].received
    assert world.network.bytes_total == 1000
    assert world.network.active_transfers == 0


def test_cancelling_after_the_last_byte_left_only_detaches_the_caller() -> None:
    world, inboxes = make_world()
    transmission = world.runtimes[0].send(b"1", big())
    transmission.sent.add_done_callback(lambda _: transmission.cancel())
    world.loop.run()
    assert transmission.cancelled()
    assert len(inboxes[1].received) == 1


def test_a_self_send_is_delivered_after_zero_delay_as_a_separate_callback() -> None:
    world, inboxes = make_world()
    message = big()
    seen: list[str] = []

    def at_three() -> None:
        transmission = world.runtimes[1].send(b"1", message)
        transmission.sent.add_done_callback(lambda _: seen.append("sent"))
        transmission.add_done_callback(lambda _: seen.append("delivered"))
        seen.append(f"returned {len(inboxes[1].received)}")  # nothing delivered re-entrantly

    world.loop.call_at(3.0, at_three)
    world.loop.run()
    assert seen == ["returned 0", "sent", "delivered"]
    assert inboxes[1].received == [(3.0, b"1", message)]
    assert world.network.bytes_total == 0 and world.network.messages_sent == 0  # no bandwidth


def test_there_is_no_ordering_promise_a_small_message_overtakes_a_large_one() -> None:
    """The contract says so: concurrent transfers share bandwidth, so order is not kept (protocols tag rounds)."""
    world, inboxes = make_world()
    sent = [big(500), NotSending(1)]
    for message in sent:
        world.runtimes[0].send(b"1", message)
    world.loop.run()
    assert [m for _, _, m in inboxes[1].received] == sent[::-1]


# ------------------------------------------------------------------------------------------------ timers
def test_the_simulated_runtime_has_asyncio_timer_semantics() -> None:
    world, _ = make_world()
    runtime = world.runtimes[0]
    fired: list[tuple[str, float]] = []
    world.loop.call_at(2.0, lambda: fired.append(("start", runtime.now())))
    timers = []

    def schedule() -> None:
        timers.append(runtime.call_later(-1.0, lambda: fired.append(("negative", runtime.now()))))
        timers.append(runtime.call_later(1.0, lambda: fired.append(("cancelled", runtime.now()))))
        timers.append(runtime.call_later(0.5, lambda: fired.append(("half", runtime.now()))))
        timers[1].cancel()
        timers[1].cancel()

    world.loop.call_at(2.0, schedule)
    world.loop.run()
    assert fired == [("start", 2.0), ("negative", 2.0), ("half", 2.5)]
    assert [t.when() for t in timers] == [2.0, 3.0, 2.5]
    assert [t.cancelled() for t in timers] == [False, True, False]
    timers[0].cancel()  # after it ran: no effect


def test_cancelling_a_sleep_cancels_its_timer() -> None:
    world, _ = make_world()
    runtime = world.runtimes[0]
    nap = runtime.sleep(5.0)
    woke: list[float] = []
    nap.add_done_callback(lambda f: woke.append(runtime.now()))
    world.loop.call_at(1.0, nap.cancel)
    world.loop.run()
    assert nap.cancelled() and woke == [1.0] and world.loop.now == 1.0


# ------------------------------------------------------------------------------------------------ compute
@pytest.mark.parametrize("per_step, expected", [(False, 5 * 4 * 0.01 * 3), (True, 5 * 0.01 * 3)])
def test_training_takes_the_compute_models_time(per_step: bool, expected: float) -> None:
    world, _ = make_world(seconds_per_sample=0.01, batch_size=4, per_step=per_step, factor=3.0)
    runtime = world.runtimes[0]
    done: list[float] = []
    future = runtime.train(runtime.initial_model(), 5)
    future.add_done_callback(lambda f: done.append(runtime.now()))
    world.loop.run()
    assert done == [pytest.approx(expected)]
    assert future.result().params.tolist() == [1.0, 1.0, 1.0]
    assert world.train_seconds_total == pytest.approx(expected)


def test_abandoned_training_is_charged_until_it_was_abandoned_and_frees_the_node() -> None:
    world, _ = make_world(seconds_per_sample=1.0, batch_size=1)
    runtime = world.runtimes[0]
    first = runtime.train(runtime.initial_model(), 10)  # would end at 10
    world.loop.call_at(4.0, first.cancel)
    ends: list[float] = []
    world.loop.call_at(4.0, lambda: runtime.train(runtime.initial_model(), 2).add_done_callback(
        lambda f: ends.append(runtime.now())))
    world.loop.run()
    assert first.cancelled() and ends == [pytest.approx(6.0)]
    assert world.train_seconds_total == pytest.approx(4.0 + 2.0)

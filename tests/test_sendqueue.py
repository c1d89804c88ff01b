"""The send queue: messages leave one after another at link speed (or ``concurrency`` at a time), a flush drops
what has not started (and can abort what is leaving), failures free the place and are reported.

The queue runs on a real :class:`~plexus.sim.network.Network` through a runtime that implements only sending, the
way the simulated world does (a cancelled transmission aborts its transfer)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from plexus.protocol.messages import Message, Params, message
from plexus.protocol.runtime import PeerUnreachable, Runtime, Transmission, UnknownPeer
from plexus.protocol.sendqueue import SendQueue
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network

MB = 10**6


@message(kind=64980)
class Blob(Message):
    """A test message of a chosen size (a plug-in kind no test or example uses)."""

    tag: int
    params: Params


def blob(tag: int, nbytes: int) -> Blob:
    """A message of ``nbytes`` on the wire, give or take 3 bytes (times below are checked to 1e-5)."""
    return Blob(tag, np.zeros((nbytes - Blob(0, np.zeros(0)).wire_size) // 4, dtype=np.float32))


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-5)


class NetRuntime(Runtime):
    """Just enough of a runtime to send through a Network (ids b"0", b"1", ...)."""

    def __init__(self, loop: EventLoop, network: Network, index: int, arrivals: list[tuple[float, int, int]],
                 offline: set[int] | None = None) -> None:
        self.loop, self.network, self.index, self.arrivals = loop, network, index, arrivals
        self.offline = offline or set()
        self.node_id = str(index).encode()

    def send(self, peer: bytes, msg: Message) -> Transmission:
        transmission = Transmission()
        try:
            dst = int(peer)
        except ValueError:
            transmission.mark_failed(UnknownPeer(peer, "unknown node"))
            return transmission

        def arrive() -> None:
            if dst in self.offline:
                transmission.mark_failed(PeerUnreachable(peer, "offline at arrival"))
                return
            self.arrivals.append((self.loop.now, dst, msg.tag))  # type: ignore[attr-defined]
            transmission.mark_delivered()

        handle = self.network.transfer(self.index, dst, msg.wire_size, arrive, transmission.mark_sent,
                                       lambda reason: None)
        transmission.on_cancel(lambda: self.network.abort(handle))
        return transmission

    def now(self) -> float:
        return self.loop.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        return self.loop.call_later(delay, callback, *args)

    rng = metrics = view = None  # type: ignore[assignment]

    def train(self, params: Any, steps: int) -> Any:
        raise NotImplementedError

    def initial_model(self) -> Any:
        raise NotImplementedError

    local_samples = 0  # type: ignore[assignment]


def setup(upload: float = MB, nodes: int = 4, offline: set[int] | None = None
          ) -> tuple[EventLoop, Network, NetRuntime, list[tuple[float, int, int]]]:
    loop = EventLoop()
    network = Network(loop, np.array([upload] + [math.inf] * (nodes - 1)), np.full(nodes, math.inf),
                      lambda u, v: 0.0)
    arrivals: list[tuple[float, int, int]] = []
    return loop, network, NetRuntime(loop, network, 0, arrivals, offline), arrivals


def test_messages_leave_one_after_another_at_link_speed() -> None:
    # three 1 MB messages on a 1 MB/s uplink: one after another they arrive at 1, 2 and 3 s
    loop, _, runtime, arrivals = setup()
    queue = SendQueue(runtime)
    queue.extend([(b"1", blob(1, MB)), (b"2", blob(2, MB)), (b"3", blob(3, MB))])
    assert (queue.in_flight, queue.pending) == (1, 2)
    loop.run()
    assert arrivals == [(approx(1.0), 1, 1), (approx(2.0), 2, 2), (approx(3.0), 3, 3)]
    assert (queue.started, queue.left, queue.dropped, len(queue)) == (3, 3, 0, 0)


def test_with_concurrency_the_uplink_is_shared() -> None:
    # all three at once share the 1 MB/s uplink: each arrives at 3 s
    loop, _, runtime, arrivals = setup()
    queue = SendQueue(runtime, concurrency=3)
    queue.extend([(b"1", blob(1, MB)), (b"2", blob(2, MB)), (b"3", blob(3, MB))])
    loop.run()
    assert [time for time, _, _ in arrivals] == [approx(3.0)] * 3


def test_a_flush_drops_what_has_not_started_and_keeps_what_is_leaving() -> None:
    # at 1.5 s the first has arrived, the second is half sent (it still arrives at 2 s), the third is dropped
    loop, network, runtime, arrivals = setup()
    queue = SendQueue(runtime)
    queue.extend([(b"1", blob(1, MB)), (b"2", blob(2, MB)), (b"3", blob(3, MB))])
    counts: list[tuple[int, int]] = []
    loop.call_at(1.5, lambda: counts.append(queue.flush()))
    loop.run()
    assert counts == [(1, 0)] and [tag for _, _, tag in arrivals] == [1, 2]
    assert arrivals[1][0] == approx(2.0) and network.bytes_total == approx(2 * MB)
    assert (queue.dropped, queue.aborted) == (1, 0)


def test_a_flush_can_abort_the_message_still_leaving() -> None:
    # aborted at 1.5 s: only half of the second message went out, and it never arrives
    loop, network, runtime, arrivals = setup()
    queue = SendQueue(runtime)
    queue.extend([(b"1", blob(1, MB)), (b"2", blob(2, MB)), (b"3", blob(3, MB))])
    loop.call_at(1.5, lambda: queue.flush(abort_in_flight=True))
    loop.call_at(1.5, lambda: queue.put(b"3", blob(4, MB)))  # the next iteration's message starts at once
    loop.run()
    assert [tag for _, _, tag in arrivals] == [1, 4] and arrivals[1][0] == approx(2.5)
    assert network.bytes_total == approx(MB + MB // 2 + MB)
    assert (queue.dropped, queue.aborted, queue.left) == (1, 1, 2)


def test_a_failed_send_frees_its_place_and_is_reported() -> None:
    loop, _, runtime, arrivals = setup(offline={2})
    failures: list[tuple[bytes, int, str]] = []
    queue = SendQueue(runtime, on_failure=lambda peer, m, error: failures.append((peer, m.tag,  # type: ignore
                                                                                   type(error).__name__)))
    queue.extend([(b"nobody", blob(1, MB)), (b"2", blob(2, MB)), (b"3", blob(3, MB))])
    loop.run()
    # the unknown peer fails at once, the offline one after its bytes left (1 s); the third follows at 2 s
    assert failures == [(b"nobody", 1, "UnknownPeer"), (b"2", 2, "PeerUnreachable")]
    assert arrivals == [(approx(2.0), 3, 3)]
    assert (queue.failed, queue.left, len(queue)) == (2, 2, 0)


def test_a_closed_queue_takes_nothing_more_and_bad_concurrency_is_refused() -> None:
    loop, _, runtime, arrivals = setup()
    queue = SendQueue(runtime)
    queue.put(b"1", blob(1, MB))
    queue.close()
    with pytest.raises(RuntimeError, match="closed"):
        queue.put(b"1", blob(2, MB))
    loop.run()
    assert arrivals == [] and queue.aborted == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="concurrency"):
            SendQueue(runtime, concurrency=bad)  # type: ignore[arg-type]


def test_queued_bytes_counts_what_has_not_started() -> None:
    _, _, runtime, _ = setup()
    queue = SendQueue(runtime)
    messages = [blob(i, 10_000) for i in range(3)]
    queue.extend((b"1", m) for m in messages)
    assert queue.queued_bytes() == messages[1].wire_size + messages[2].wire_size

"""The node base class and the contract's small objects: handlers declared with @handles and dispatched by
Node.deliver on the message's exact type, refusals of undeclared types, and Transmission's two futures."""

from __future__ import annotations

import numpy as np
import pytest

from plexus.protocol.messages import Message, message
from plexus.protocol.node import Node, handles
from plexus.protocol.runtime import PeerUnreachable, SendError, Transmission, UnknownPeer, call_soon
from plexus.protocol.view import PeerInfo
from protocol_stub import StubRuntime


@message(kind=65011)
class Ping(Message):
    nonce: int


@message(kind=65012)
class Pong(Message):
    nonce: int


@message(kind=65013)
class Other(Message):
    nonce: int


class PingNode(Node):
    def __init__(self, runtime: StubRuntime) -> None:
        super().__init__(runtime)
        self.seen: list[tuple[str, bytes, int]] = []

    @handles(Ping)
    def on_ping(self, sender: bytes, msg: Ping) -> None:
        self.seen.append(("ping", sender, msg.nonce))

    @handles(Pong, Other)
    def on_pong_or_other(self, sender: bytes, msg: Pong | Other) -> None:
        self.seen.append((type(msg).__name__.lower(), sender, msg.nonce))


class LoudPingNode(PingNode):
    def on_ping(self, sender: bytes, msg: Ping) -> None:  # overrides by name, keeps the declaration
        self.seen.append(("loud ping", sender, msg.nonce))


def runtime() -> StubRuntime:
    return StubRuntime(b"me", [PeerInfo(b"me"), PeerInfo(b"you")])


def test_deliver_dispatches_to_the_declared_handler() -> None:
    node = PingNode(runtime())
    node.deliver(b"you", Ping(1))
    node.deliver(b"you", Pong(2))
    node.deliver(b"you", Other(3))
    assert node.seen == [("ping", b"you", 1), ("pong", b"you", 2), ("other", b"you", 3)]
    assert set(PingNode.message_types()) == {Ping, Pong, Other}


def test_handlers_are_inherited_and_overridden_by_name() -> None:
    node = LoudPingNode(runtime())
    node.deliver(b"you", Ping(1))
    node.deliver(b"you", Pong(2))
    assert node.seen == [("loud ping", b"you", 1), ("pong", b"you", 2)]


def test_a_message_of_an_undeclared_type_is_refused_and_counted() -> None:
    stub = runtime()

    class PingOnly(Node):
        @handles(Ping)
        def on_ping(self, sender: bytes, msg: Ping) -> None:
            raise AssertionError("not for pongs")

    node = PingOnly(stub)
    node.deliver(b"you", Pong(1))
    node.deliver(b"stranger", Other(2))
    assert stub.sink.rejections == {"unexpected_message_type": 2}
    assert Node(stub).message_types() == []  # the base class takes nothing
    Node(stub).deliver(b"you", Ping(3))
    assert stub.sink.rejections["unexpected_message_type"] == 3


def test_handles_takes_message_classes_only() -> None:
    with pytest.raises(TypeError, match="@handles takes message classes"):
        handles(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="@handles takes message classes"):
        handles(Ping(1))  # type: ignore[arg-type]


def test_a_node_without_a_model_reports_none() -> None:
    assert PingNode(runtime()).current_model() is None


# ------------------------------------------------------------------------------------------------ Transmission
def test_a_delivered_transmission_resolves_both_futures() -> None:
    transmission = Transmission()
    order: list[str] = []
    transmission.sent.add_done_callback(lambda _: order.append("sent"))
    transmission.add_done_callback(lambda _: order.append("delivered"))
    transmission.mark_sent()
    assert order == ["sent"] and not transmission.done()
    transmission.mark_delivered()
    assert order == ["sent", "delivered"] and transmission.result() is None


def test_delivery_implies_sent_even_when_sent_is_asked_for_afterwards() -> None:
    transmission = Transmission()
    transmission.mark_delivered()
    assert transmission.sent.done() and transmission.sent.result() is None


def test_a_failed_transmission_fails_sent_unless_the_bytes_had_left() -> None:
    early = Transmission()
    early.mark_failed(UnknownPeer(b"x", "unknown node"))
    assert early.failed() and isinstance(early.sent.exception(), UnknownPeer)  # sent asked for after the failure
    late = Transmission()
    sent = late.sent
    late.mark_sent()
    late.mark_failed(PeerUnreachable(b"y", "offline at arrival"))
    assert sent.result() is None and isinstance(late.exception(), PeerUnreachable)
    error = late.exception()
    assert isinstance(error, SendError) and error.peer == b"y" and error.reason == "offline at arrival"
    assert "offline at arrival" in str(error)


def test_call_soon_runs_after_zero_delay_not_synchronously() -> None:
    stub = runtime()
    seen: list[str] = []
    stub.loop.call_at(1.0, lambda: (call_soon(stub, seen.append, "soon"), seen.append("now")))
    stub.loop.run()
    assert seen == ["now", "soon"] and stub.loop.now == 1.0


def test_sleep_and_spawn_drive_a_coroutine_in_the_runtimes_time() -> None:
    stub = runtime()
    log: list[float] = []

    async def routine() -> str:
        for _ in range(3):
            await stub.sleep(2.0)
            log.append(stub.now())
        return "done"

    task = stub.spawn(routine())
    stub.loop.run()
    assert task.result() == "done" and log == [2.0, 4.0, 6.0]
    assert np.isclose(stub.loop.now, 6.0)

"""The live transport on loopback: authenticated handshakes, signed frames, acknowledged delivery, and what it does
with garbage, replays, forged frames, slow peers and unreachable ones."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from live_harness import RawPeer, oversized_header
from plexus.live import wire
from plexus.live.keys import Identity
from plexus.live.transport import Limits, Transport

HOST = "127.0.0.1"


class Endpoint:
    """A transport plus what it received and refused."""

    def __init__(self, network: str = "test", limits: Limits | None = None,
                 verdict: Callable[[bytes, bytes], str | None] | None = None) -> None:
        self.identity = Identity.generate()
        self.received: list[tuple[bytes, bytes]] = []
        self.rejections: Counter[str] = Counter()
        self.verdict = verdict
        self.transport = Transport(self.identity, network, self._deliver, self._reject, limits)
        self.address: tuple[str, int] = ("", 0)

    def _deliver(self, sender: bytes, payload: bytes | bytearray) -> str | None:
        self.received.append((sender, bytes(payload)))
        return self.verdict(sender, bytes(payload)) if self.verdict else None

    def _reject(self, reason: str, peer: bytes) -> None:
        self.rejections[reason] += 1

    async def start(self) -> Endpoint:
        self.address = await self.transport.start(HOST, 0)
        return self

    def knows(self, other: Endpoint) -> None:
        self.transport.set_address(other.identity.node_id, *other.address)


def run(coroutine: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine(), 30))


async def send(sender: Endpoint, receiver: Endpoint, payload: bytes) -> tuple[list[str], str | None]:
    """Send and wait: the events in order ('sent', 'done') and the failure reason (None when delivered)."""
    events: list[str] = []
    outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def done(error: str | None) -> None:
        events.append("done")
        outcome.set_result(error)

    sender.transport.send(receiver.identity.node_id, payload, lambda: events.append("sent"), done)
    return events, await outcome


def test_a_message_is_delivered_signed_and_acknowledged_after_it_was_sent() -> None:
    async def scenario() -> None:
        a, b = await Endpoint().start(), await Endpoint().start()
        a.knows(b)
        events, error = await send(a, b, b"hello")
        assert error is None and events == ["sent", "done"]
        assert b.received == [(a.identity.node_id, b"hello")]
        big = os.urandom(3_000_000)
        _, error = await send(a, b, big)
        assert error is None and b.received[-1][1] == big
        assert a.transport.messages_sent == 2 and b.transport.messages_delivered == 2
        assert not a.rejections and not b.rejections
        await a.transport.close()
        await b.transport.close()

    run(scenario)


def test_a_message_cancelled_while_its_link_connects_leaves_the_link_working(
        caplog: pytest.LogCaptureFixture) -> None:
    """DivShare abandons stale fragments: cancelling every queued message while the connection is being set up
    must not break the send loop, and the next message still arrives."""
    async def scenario() -> None:
        a, b = await Endpoint().start(), await Endpoint().start()
        a.knows(b)
        cancelled = a.transport.send(b.identity.node_id, b"stale", lambda: None, lambda error: None)
        await asyncio.sleep(0)  # the send loop starts and is now awaiting the connection
        assert a.transport.cancel(cancelled)
        await asyncio.sleep(0.3)  # the connection is made with nothing left to send
        events, error = await send(a, b, b"fresh")
        assert error is None and events == ["sent", "done"]
        assert b.received == [(a.identity.node_id, b"fresh")]
        await a.transport.close()
        await b.transport.close()

    run(scenario)
    assert "send loop" not in caplog.text


def test_a_refusal_by_the_receiving_node_fails_the_send_with_its_reason() -> None:
    async def scenario() -> None:
        a = await Endpoint().start()
        b = await Endpoint(verdict=lambda sender, payload: "not for me").start()
        a.knows(b)
        _, error = await send(a, b, b"x")
        assert error is not None and "not for me" in error
        await a.transport.close()
        await b.transport.close()

    run(scenario)


def test_sending_to_an_address_where_nothing_listens_fails_quickly() -> None:
    async def scenario() -> None:
        a = await Endpoint().start()
        ghost = Identity.generate()
        a.transport.set_address(ghost.node_id, HOST, 1)
        started = time.monotonic()
        a_peer = Endpoint()
        a_peer.identity = ghost
        _, error = await send(a, a_peer, b"x")
        assert error is not None and "cannot connect" in error
        assert time.monotonic() - started < 3
        await a.transport.close()

    run(scenario)


def test_a_node_that_answers_with_another_key_is_not_the_peer_we_wanted() -> None:
    async def scenario() -> None:
        a, b = await Endpoint().start(), await Endpoint().start()
        impostor = Identity.generate()
        a.transport.set_address(impostor.node_id, *b.address)  # the impostor's id, b's address
        target = Endpoint()
        target.identity = impostor
        _, error = await send(a, target, b"secret")
        assert error is not None and "handshake failed" in error
        assert b.received == []
        await a.transport.close()
        await b.transport.close()

    run(scenario)


def test_nodes_of_another_network_are_refused_at_the_handshake() -> None:
    async def scenario() -> None:
        a, b = await Endpoint("run-1").start(), await Endpoint("run-2").start()
        a.knows(b)
        _, error = await send(a, b, b"x")
        assert error is not None and "wrong network" in error
        assert b.rejections["wrong_network"] == 1 and b.received == []
        await a.transport.close()
        await b.transport.close()

    run(scenario)


def test_an_oversized_frame_is_refused_from_its_length_before_anything_is_read() -> None:
    async def scenario() -> None:
        b = await Endpoint(limits=Limits(max_message_bytes=1000)).start()
        raw = RawPeer(Identity.generate())
        await raw.connect(*b.address)
        await raw.send_raw(oversized_header(2_000_000_000))  # announces 2 GB, sends nothing more
        assert await raw.closed()
        assert b.rejections["oversized_frame"] == 1 and b.received == []
        raw.close()
        # an unauthenticated connection may not even announce more than 1 KiB
        reader, writer = await asyncio.open_connection(*b.address)
        writer.write(wire.LENGTH.pack(1 << 30))
        await writer.drain()
        assert await reader.read() == b""
        assert b.rejections["oversized_frame"] == 2
        writer.close()
        await b.transport.close()

    run(scenario)


def test_forged_replayed_and_tampered_frames_are_refused_and_counted() -> None:
    async def scenario() -> None:
        b = await Endpoint().start()
        raw = RawPeer(Identity.generate())
        await raw.connect(*b.address)
        good = raw.message_frame(b"genuine")
        await raw.send_raw(good)
        assert await raw.ack() == (1, wire.STATUS_DELIVERED, "")
        await raw.send(b"forged", forge=True)  # a bad signature: refused, the connection survives
        acked, status, reason = await raw.ack()
        assert (acked, status) == (2, wire.STATUS_REFUSED) and "signature" in reason
        await raw.send(b"tampered", digest=wire.digest_of(b"something else"))  # payload != signed digest
        acked, status, reason = await raw.ack()
        assert (acked, status) == (3, wire.STATUS_REFUSED) and "digest" in reason
        await raw.send_raw(good)  # the very same bytes again: a replay
        assert await raw.closed()
        raw.close()
        # the recorded frame on a fresh connection: bound to another nonce, so its signature fails
        again = RawPeer(raw.identity)
        await again.connect(*b.address)
        await again.send_raw(good)
        acked, status, reason = await again.ack()
        assert status == wire.STATUS_REFUSED and "signature" in reason
        again.close()
        assert [payload for _, payload in b.received] == [b"genuine"]
        assert b.rejections == Counter({"bad_signature": 2, "bad_digest": 1, "replayed_frame": 1})
        await b.transport.close()

    run(scenario)


def test_a_peer_that_keeps_sending_garbage_is_banned_for_a_while() -> None:
    async def scenario() -> None:
        b = await Endpoint(limits=Limits(strikes=5, ban_seconds=0.5)).start()
        raw = RawPeer(Identity.generate())
        await raw.connect(*b.address)
        for _ in range(5):
            await raw.send(b"x", forge=True)
        assert await raw.closed()
        assert b.rejections["peer_banned"] == 1
        refused = RawPeer(raw.identity)
        with pytest.raises(wire.FrameError, match="banned"):
            await refused.connect(*b.address)
        assert b.rejections["banned_peer"] == 1
        others = RawPeer(Identity.generate())  # another identity is not affected
        await others.connect(*b.address)
        await others.send(b"fine")
        assert (await others.ack())[1] == wire.STATUS_DELIVERED
        await asyncio.sleep(0.6)
        back = RawPeer(raw.identity)
        await back.connect(*b.address)  # the ban is over
        await back.send(b"sorry")
        assert (await back.ack())[1] == wire.STATUS_DELIVERED
        for peer in (raw, refused, others, back):
            peer.close()
        await b.transport.close()

    run(scenario)


def test_a_peer_that_stops_reading_cannot_make_its_sender_hoard_messages() -> None:
    async def scenario() -> None:
        stalled = Identity.generate()
        accepted: list[asyncio.StreamWriter] = []

        async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # completes the handshake, then never reads again
            (length,) = wire.LENGTH.unpack(await reader.readexactly(4))
            hello = wire.decode_hello(await reader.readexactly(length))
            nonce = os.urandom(32)
            signature = stalled.sign(wire.welcome_statement(hello.network, hello.node_id, hello.nonce,
                                                            stalled.node_id, nonce))
            writer.write(wire.encode_welcome(stalled.node_id, nonce, signature))
            accepted.append(writer)
            await asyncio.sleep(60)

        server = await asyncio.start_server(never_reads, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        a = await Endpoint(limits=Limits(max_queue_bytes=8_000_000)).start()
        a.transport.set_address(stalled.node_id, HOST, port)
        failures: list[str] = []
        payload = bytes(2_000_000)
        for _ in range(40):  # 80 MB offered to a peer that takes nothing
            a.transport.send(stalled.node_id, payload, lambda: None,
                             lambda error: failures.append(error) if error else None)
        await asyncio.sleep(0.5)
        link = a.transport._links[stalled.node_id]
        assert link.queued_bytes <= 8_000_000
        assert len(failures) >= 25 and all("queue" in failure for failure in failures)
        await a.transport.close()
        server.close()
        for writer in accepted:
            writer.close()

    run(scenario)


def test_messages_in_flight_fail_when_the_peer_dies_and_a_restarted_peer_is_reached_again() -> None:
    async def scenario() -> None:
        a = await Endpoint().start()
        b = await Endpoint(verdict=lambda s, p: None).start()
        a.knows(b)
        _, error = await send(a, b, b"before")
        assert error is None
        port = b.address[1]
        await b.transport.close()
        _, error = await send(a, b, b"while down")
        assert error is not None
        reborn = Endpoint()
        reborn.identity = b.identity
        reborn.transport = Transport(b.identity, "test", reborn._deliver, reborn._reject)
        reborn.address = await reborn.transport.start(HOST, port)
        _, error = await send(a, reborn, b"after")
        assert error is None and reborn.received[-1][1] == b"after"
        await a.transport.close()
        await reborn.transport.close()

    run(scenario)


def test_addresses_and_frames_parse_strictly() -> None:
    assert wire.parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert wire.parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("localhost", ":80", "host:99999", "[::1]9000", "host:x"):
        with pytest.raises(ValueError):
            wire.parse_address(bad)
    with pytest.raises(wire.FrameError, match="bad_hello"):
        wire.decode_hello(b"\x01short")
    hello = wire.encode_hello(wire.Hello(b"n" * 32, b"i" * 32, b"o" * 32, "127.0.0.1:1"))[4:]
    assert wire.decode_hello(hello).address == "127.0.0.1:1"
    with pytest.raises(wire.FrameError, match="bad_version"):
        wire.decode_hello(hello[:5] + b"\x07" + hello[6:])


def test_ipv6_loopback_works_like_ipv4() -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")

    async def scenario() -> None:
        a, b = Endpoint(), Endpoint()
        for endpoint in (a, b):
            endpoint.address = await endpoint.transport.start("::1", 0)
        a.knows(b)
        _, error = await send(a, b, b"over ::1")
        assert error is None and b.received == [(a.identity.node_id, b"over ::1")]
        assert b.transport.listen_address.startswith("[::1]:")
        await a.transport.close()
        await b.transport.close()

    run(scenario)

"""The live transport: authenticated, signed, acknowledged messages between nodes over asyncio TCP.

What it guarantees (the wire format is in :mod:`plexus.live.wire`):

- **Identity.** A node's id is its Ed25519 public key. A connection is opened only after both ends proved they
  hold the key of the id they claim (a signed handshake on fresh nonces), and the connecting side checks it reached
  the id it wanted. Nodes of another network (another run) are refused. No bootstrap server is ever contacted:
  a node connects only to the addresses of its peers file and to those its peers announce in their handshakes.
- **Every message signed and verified**, bound to one connection and one position on it, so recorded frames
  cannot be replayed, reordered or moved to another connection.
- **Delivery is acknowledged by the application**: the receiver sends a signed ACK once its node has handled the
  message (or a refusal naming why), and only then does the sender's transmission resolve. A connection that breaks
  before the ACK fails every message it still carried (:class:`~plexus.protocol.runtime.PeerUnreachable`); messages
  never written are carried by a new connection. Sends to an address that refuses connections fail after
  ``connect_attempts`` tries.
- **Bounded memory.** Per destination at most ``max_queue_bytes`` wait to be written (beyond that a send fails:
  a slow peer cannot make its senders hoard models); a written message keeps no payload while it awaits its ACK.
  On the receiving side a frame's length is checked before anything is allocated, each connection holds at most
  one frame, and all connections together hold at most ``receive_budget_bytes`` of frames (a connection waits
  for budget, which stops it reading and lets TCP push back on its sender). Connections and pending handshakes
  are capped, and every read has a deadline (a peer trickling bytes is dropped).
- **Garbage is counted and punished.** Every refused frame or message is reported with a snake_case reason
  (counted by the runtime, logged once per peer and reason). A peer collecting ``strikes`` refusals within
  ``strike_window`` seconds is disconnected and its handshakes refused for ``ban_seconds``.

Backpressure: a connection writes one message at a time and awaits the socket's drain, so a slow receiver slows
its sender's queue for that peer only; ``sent`` (the contract's ``transmission.sent``) fires when the last byte has
been handed to the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plexus.live import wire
from plexus.live.keys import Identity, Verifier, short_id

log = logging.getLogger("plexus.live")

MiB = 1 << 20
CHUNK = 1 * MiB  # payloads are written and read in pieces of this size
HASH_IN_THREAD = 1 * MiB  # payloads at least this large are hashed off the event loop


@dataclass(frozen=True)
class Limits:
    """What one node accepts and holds; defaults suit models up to a few hundred MB on a LAN or the internet."""

    max_message_bytes: int = 64 * MiB  # the largest message (its encoding) this node accepts
    max_queue_bytes: int = 256 * MiB  # per destination: bytes waiting to be written
    receive_budget_bytes: int = 0  # frames held at once over all connections (0: 4 x max message, >= 64 MiB)
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    ack_timeout: float = 30.0  # after the last byte left, plus the transfer time at min_rate_bps
    min_rate_bps: float = 250_000.0  # the slowest transfer rate tolerated when computing deadlines
    idle_close: float = 60.0  # an outbound connection with nothing to carry closes after this
    idle_timeout: float = 900.0  # an inbound connection that sends nothing for this long is dropped
    max_connections: int = 1024
    max_pending_handshakes: int = 64
    connect_attempts: int = 3
    strikes: int = 20
    strike_window: float = 60.0
    ban_seconds: float = 60.0

    @property
    def budget(self) -> int:
        return self.receive_budget_bytes or max(64 * MiB, 4 * (self.max_message_bytes + wire.MSG_HEADER.size))

    def transfer_deadline(self, size: int) -> float:
        return self.ack_timeout + size / self.min_rate_bps


class SendFailed(Exception):
    """Why an outgoing message was not delivered (the runtime turns it into PeerUnreachable)."""


class Outgoing:
    """One message on its way to one peer. ``on_sent()`` when its last byte left; ``on_done(error or None)``
    once: None when the peer acknowledged delivery, else the reason it failed."""

    __slots__ = ("peer", "payload", "digest", "size", "on_sent", "on_done", "state", "timer")

    def __init__(self, peer: bytes, payload: bytes, digest: bytes, on_sent: Callable[[], None],
                 on_done: Callable[[str | None], None]) -> None:
        self.peer = peer
        self.payload: bytes | None = payload
        self.digest = digest
        self.size = len(payload)
        self.on_sent = on_sent
        self.on_done = on_done
        self.state = "queued"  # queued -> writing -> written -> done
        self.timer: asyncio.TimerHandle | None = None

    def finish(self, error: str | None) -> None:
        if self.state == "done":
            return
        self.state = "done"
        self.payload = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.on_done(error)


class _Budget:
    """Bytes of incoming frames held at once; waiters are served in order."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, amount: int) -> None:
        if amount > self.total:
            raise ValueError(f"{amount} bytes exceed the receive budget of {self.total}")
        if not self._waiters and self.free >= amount:
            self.free -= amount
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(amount)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove((amount, future))
            raise

    def release(self, amount: int) -> None:
        self.free += amount
        while self._waiters and self._waiters[0][0] <= self.free:
            need, future = self._waiters.popleft()
            if future.done():
                continue
            self.free -= need
            future.set_result(None)


class _Connection:
    """An authenticated TCP connection (either direction)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: bytes,
                 verifier: Verifier, my_nonce: bytes, peer_nonce: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.verifier = verifier
        self.my_nonce = my_nonce  # the peer signs with it (frames *to* us)
        self.peer_nonce = peer_nonce  # we sign with it (frames *to* the peer)
        self.next_out = 1
        self.next_in = 1
        self.closed = False
        self.reader_task: asyncio.Task[None] | None = None
        self.unacked: dict[int, Outgoing] = {}  # outbound connections: written messages awaiting their ACK

    def fail_unacked(self, reason: str) -> None:
        unacked, self.unacked = self.unacked, {}
        for out in unacked.values():
            out.finish(reason)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()


class _Link:
    """Everything this node sends to one peer: a queue, one outbound connection, the messages awaiting ACKs."""

    def __init__(self, transport: Transport, peer: bytes) -> None:
        self.transport = transport
        self.peer = peer
        self.queue: deque[Outgoing] = deque()
        self.queued_bytes = 0
        self.conn: _Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    def push(self, out: Outgoing) -> None:
        self.queue.append(out)
        self.queued_bytes += out.size
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def fail_queued(self, reason: str) -> None:
        queued, self.queue = self.queue, deque()
        self.queued_bytes = 0
        for out in queued:
            out.finish(reason)

    @property
    def unacked(self) -> int:
        return 0 if self.conn is None else len(self.conn.unacked)

    async def _run(self) -> None:
        transport = self.transport
        limits = transport.limits
        failures = 0
        try:
            while not transport.closing:
                if not self.queue:
                    self.wake.clear()
                    if self.conn is None or self.conn.closed:
                        return
                    try:
                        await asyncio.wait_for(self.wake.wait(), limits.idle_close)
                    except TimeoutError:
                        if not self.unacked and not self.queue:
                            await transport._say_bye(self.conn)
                            self.conn.close()
                            return
                    continue
                if self.conn is None or self.conn.closed:
                    try:
                        self.conn = await transport._connect(self.peer, self)
                        failures = 0
                    except SendFailed as error:
                        failures += 1
                        if failures >= limits.connect_attempts or str(error).startswith("refused"):
                            self.fail_queued(str(error))
                            return
                        await asyncio.sleep(0.1 * 3 ** (failures - 1))
                        continue
                    # the queue may have been emptied while connecting (its messages cancelled): look again
                    continue
                out = self.queue.popleft()
                self.queued_bytes -= out.size
                if out.state == "done":  # cancelled while queued
                    continue
                try:
                    await transport._write_message(self.conn, out, self)
                except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
                    self.conn.close()
                    out.finish(f"connection lost while sending: {error or type(error).__name__}")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave senders waiting forever
            log.exception("send loop to %s failed", short_id(self.peer))
            self.fail_queued("internal error of the send loop")
            if self.conn is not None:
                self.conn.fail_unacked("internal error of the send loop")


class Transport:
    """One node's endpoint (see the module docstring).

    ``deliver(sender, payload)`` is called on the event loop for every authenticated, verified message and
    returns None once the node has it, or a reason to refuse it (sent back to the sender). ``reject(reason,
    peer)`` reports every refusal (``peer`` is b"" before a handshake completed). ``on_address(peer, host,
    port)`` reports the listen address a peer announced in its handshake.
    """

    def __init__(
        self,
        identity: Identity,
        network: str,
        deliver: Callable[[bytes, bytes | bytearray], str | None],
        reject: Callable[[str, bytes], None],
        limits: Limits | None = None,
        addresses: dict[bytes, tuple[str, int]] | None = None,
        on_address: Callable[[bytes, str, int], None] | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.network = wire.network_id(network)
        self.limits = limits or Limits()
        self.deliver = deliver
        self.reject = reject
        self.on_address = on_address
        self.addresses: dict[bytes, tuple[str, int]] = dict(addresses or {})
        self.listen_address = ""
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        self._links: dict[bytes, _Link] = {}
        self._inbound: dict[bytes, set[_Connection]] = {}
        self._connections = 0
        self._handshakes = 0
        self._budget = _Budget(self.limits.budget)
        self._verifiers: dict[bytes, Verifier] = {}
        self._strikes: dict[bytes, tuple[int, float]] = {}
        self._banned: dict[bytes, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_delivered = 0

    # ---------------------------------------------------------------------------------------------- life
    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks a free one); returns the bound address."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=CHUNK, backlog=256)
        sockname = self._server.sockets[0].getsockname()
        bound = (host, int(sockname[1]))
        self.listen_address = wire.format_address(*bound)
        return bound

    async def close(self, grace: float = 0.0) -> None:
        """Stop: wait up to ``grace`` seconds for queued and unacknowledged messages, then close everything and
        fail what is left."""
        if grace > 0:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(link.queue or link.unacked for link in self._links.values()):
                await asyncio.sleep(0.02)
        self.closing = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            if link.task is not None:
                link.task.cancel()
            if link.conn is not None and not link.conn.closed:
                await self._say_bye(link.conn)
                link.conn.close()
            link.fail_queued("this node is shutting down")
            if link.conn is not None:
                link.conn.fail_unacked("this node is shutting down")
        for connections in list(self._inbound.values()):
            for conn in list(connections):
                conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def knows(self, peer: bytes) -> bool:
        return peer in self.addresses

    def set_address(self, peer: bytes, host: str, port: int) -> None:
        self.addresses[peer] = (host, port)

    def pending(self, peer: bytes) -> int:
        """Messages to ``peer`` queued or awaiting acknowledgement."""
        link = self._links.get(peer)
        return 0 if link is None else len(link.queue) + link.unacked

    # ---------------------------------------------------------------------------------------------- sending
    def send(self, peer: bytes, payload: bytes, on_sent: Callable[[], None],
             on_done: Callable[[str | None], None], digest: bytes | None = None) -> Outgoing:
        """Queue ``payload`` for ``peer`` (its address must be known); the callbacks report what happened."""
        if digest is None:
            digest = hashlib.sha256(payload).digest()
        out = Outgoing(peer, payload, digest, on_sent, on_done)
        if self.closing:
            out.finish("this node is shutting down")
            return out
        if out.size > self.limits.max_message_bytes:
            out.finish(f"message of {out.size} bytes exceeds the limit of {self.limits.max_message_bytes}")
            return out
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = _Link(self, peer)
        if link.queued_bytes + out.size > self.limits.max_queue_bytes:
            out.finish(f"send queue to this peer is full ({link.queued_bytes} bytes not yet written): slow peer")
            return out
        link.push(out)
        return out

    def cancel(self, out: Outgoing) -> bool:
        """Abandon a message not yet being written (True); one being written is finished and delivered."""
        if out.state != "queued":
            return False
        link = self._links.get(out.peer)
        if link is not None:
            with contextlib.suppress(ValueError):
                link.queue.remove(out)
                link.queued_bytes -= out.size
        out.state = "done"
        out.payload = None
        return True

    async def _connect(self, peer: bytes, link: _Link) -> _Connection:
        address = self.addresses.get(peer)
        if address is None:
            raise SendFailed("no known address for this peer")
        limits = self.limits
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address, limit=CHUNK),
                                                    limits.connect_timeout)
        except (OSError, TimeoutError) as error:
            raise SendFailed(f"cannot connect to {wire.format_address(*address)}: "
                             f"{getattr(error, 'strerror', None) or type(error).__name__}") from None
        try:
            conn = await asyncio.wait_for(self._client_handshake(reader, writer, peer), limits.handshake_timeout)
        except wire.FrameError as error:
            writer.close()
            raise SendFailed(f"{'refused' if error.reason == 'refused' else 'handshake failed'}: {error}") from None
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            writer.close()
            raise SendFailed(f"handshake with {wire.format_address(*address)} failed: "
                             f"{type(error).__name__}") from None
        conn.reader_task = self._spawn(self._read_acks(conn))
        return conn

    async def _client_handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                peer: bytes) -> _Connection:
        nonce = os.urandom(wire.NONCE_BYTES)
        writer.write(wire.encode_hello(wire.Hello(self.network, self.node_id, nonce, self.listen_address)))
        await writer.drain()
        body = await _read_frame(reader, wire.MAX_HANDSHAKE_FRAME)
        server, server_nonce, signature = wire.decode_welcome(body)
        if server != peer:
            raise wire.FrameError("wrong_peer", f"reached {short_id(server)} instead of {short_id(peer)}")
        verifier = self._verifier(server)
        if not verifier.verify(signature, wire.welcome_statement(self.network, self.node_id, nonce, server,
                                                                 server_nonce)):
            raise wire.FrameError("bad_handshake_signature", "the peer's WELCOME is not signed by its key")
        auth = self.identity.sign(wire.auth_statement(self.network, server, server_nonce, self.node_id, nonce))
        writer.write(wire.encode_auth(auth))
        await writer.drain()
        transport = writer.transport
        transport.set_write_buffer_limits(high=CHUNK, low=0)
        return _Connection(reader, writer, peer, verifier, nonce, server_nonce)

    async def _write_message(self, conn: _Connection, out: Outgoing, link: _Link) -> None:
        payload = out.payload
        assert payload is not None
        out.state = "writing"
        seq = conn.next_out
        conn.next_out += 1
        signature = self.identity.sign(wire.msg_statement(conn.peer_nonce, seq, out.digest, out.size))
        writer = conn.writer
        writer.write(wire.msg_header(seq, out.digest, signature, out.size))
        view = memoryview(payload)
        for start in range(0, out.size, CHUNK):
            writer.write(view[start:start + CHUNK])
            await writer.drain()
        await writer.drain()
        self.bytes_sent += wire.LENGTH.size + wire.MSG_HEADER.size + out.size
        self.messages_sent += 1
        out.payload = None
        if out.state == "done":  # cancelled or failed meanwhile
            return
        out.state = "written"
        conn.unacked[seq] = out
        out.timer = asyncio.get_running_loop().call_later(
            self.limits.transfer_deadline(out.size), self._ack_timeout, conn, seq)
        out.on_sent()

    def _ack_timeout(self, conn: _Connection, seq: int) -> None:
        out = conn.unacked.pop(seq, None)
        if out is not None:
            out.timer = None
            out.finish(f"no acknowledgement within {self.limits.transfer_deadline(out.size):.0f}s")
            conn.close()  # the peer is stuck or hostile: do not keep feeding it

    async def _read_acks(self, conn: _Connection) -> None:
        reason = "the connection closed before the peer acknowledged the message"
        try:
            while not conn.closed:
                body = await _read_frame(conn.reader, 1024)
                self.bytes_received += wire.LENGTH.size + len(body)
                kind = body[0] if body else 0
                if kind == wire.ACK:
                    seq, acked, status, text, signature = wire.decode_ack(body)
                    if seq != conn.next_in or not conn.verifier.verify(
                            signature, wire.ack_statement(conn.my_nonce, seq, acked, status)):
                        raise wire.FrameError("bad_ack", "out of order or badly signed")
                    conn.next_in += 1
                    out = conn.unacked.pop(acked, None)
                    if out is not None:
                        out.finish(None if status == wire.STATUS_DELIVERED else f"refused by the peer: {text}")
                elif kind == wire.BYE:
                    seq, signature = wire.decode_bye(body)
                    if seq == conn.next_in and conn.verifier.verify(signature,
                                                                    wire.bye_statement(conn.my_nonce, seq)):
                        reason = "the peer closed the connection before acknowledging the message"
                        break
                    raise wire.FrameError("bad_bye", "out of order or badly signed")
                else:
                    raise wire.FrameError("unknown_frame_type", f"type {kind} on an outbound connection")
        except wire.FrameError as error:
            self._report(error.reason, conn.peer)
            self.strike(conn.peer, error.reason)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            conn.close()
            conn.fail_unacked(reason)

    async def _say_bye(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            seq = conn.next_out
            conn.next_out += 1
            conn.writer.write(wire.encode_bye(seq, self.identity.sign(wire.bye_statement(conn.peer_nonce, seq))))
            await asyncio.wait_for(conn.writer.drain(), 1.0)

    # ---------------------------------------------------------------------------------------------- receiving
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        limits = self.limits
        if self.closing or self._connections >= limits.max_connections or \
                self._handshakes >= limits.max_pending_handshakes:
            self._report("too_many_connections", b"")
            writer.close()
            if task is not None:
                self._tasks.discard(task)
            return
        self._connections += 1
        conn: _Connection | None = None
        try:
            self._handshakes += 1
            try:
                conn = await asyncio.wait_for(self._server_handshake(reader, writer), limits.handshake_timeout)
            except wire.FrameError as error:
                self._report(error.reason, b"")
                return
            except TimeoutError:
                self._report("handshake_timeout", b"")
                return
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            finally:
                self._handshakes -= 1
            self._inbound.setdefault(conn.peer, set()).add(conn)
            await self._receive(conn)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections -= 1
            if conn is not None:
                conn.close()
                peers = self._inbound.get(conn.peer)
                if peers is not None:
                    peers.discard(conn)
                    if not peers:
                        del self._inbound[conn.peer]
            else:
                with contextlib.suppress(Exception):
                    writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _server_handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Connection:
        body = await _read_frame(reader, wire.MAX_HANDSHAKE_FRAME)
        hello = wire.decode_hello(body)
        if hello.network != self.network:
            writer.write(wire.encode_refuse("wrong network (another run)"))
            raise wire.FrameError("wrong_network")
        peer = hello.node_id
        if peer == self.node_id:
            raise wire.FrameError("bad_hello", "a connection from this node's own id")
        if self.banned(peer):
            writer.write(wire.encode_refuse("banned for sending garbage"))
            raise wire.FrameError("banned_peer")
        try:
            verifier = self._verifier(peer)
        except ValueError:
            raise wire.FrameError("bad_hello", "the id is not an Ed25519 public key") from None
        nonce = os.urandom(wire.NONCE_BYTES)
        signature = self.identity.sign(wire.welcome_statement(self.network, peer, hello.nonce, self.node_id, nonce))
        writer.write(wire.encode_welcome(self.node_id, nonce, signature))
        await writer.drain()
        auth = wire.decode_auth(await _read_frame(reader, wire.MAX_HANDSHAKE_FRAME))
        if not verifier.verify(auth, wire.auth_statement(self.network, self.node_id, nonce, peer, hello.nonce)):
            raise wire.FrameError("bad_handshake_signature", "AUTH is not signed by the claimed id")
        if hello.address:
            try:
                host, port = wire.parse_address(hello.address)
            except ValueError:
                pass
            else:
                if self.on_address is not None:
                    self.on_address(peer, host, port)
        return _Connection(reader, writer, peer, verifier, nonce, hello.nonce)

    async def _receive(self, conn: _Connection) -> None:
        limits = self.limits
        reader = conn.reader
        peer = conn.peer
        while not conn.closed and not self.closing:
            try:
                head = await asyncio.wait_for(reader.readexactly(wire.LENGTH.size), limits.idle_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            (length,) = wire.LENGTH.unpack(head)
            try:
                if length < 1:
                    raise wire.FrameError("bad_frame", "empty frame")
                kind = (await asyncio.wait_for(reader.readexactly(1), limits.ack_timeout))[0]
                if kind == wire.MSG:
                    await self._receive_message(conn, length)
                elif kind == wire.BYE:
                    if length != 1 + 8 + 64:
                        raise wire.FrameError("bad_frame", f"BYE of {length} bytes")
                    rest = await asyncio.wait_for(reader.readexactly(length - 1), limits.ack_timeout)
                    seq, signature = wire.decode_bye(bytes([kind]) + rest)
                    if seq != conn.next_in or not conn.verifier.verify(signature,
                                                                       wire.bye_statement(conn.my_nonce, seq)):
                        raise wire.FrameError("bad_signature", "BYE")
                    return
                else:
                    raise wire.FrameError("unknown_frame_type", f"type {kind}")
            except wire.FrameError as error:
                self._report(error.reason, peer)
                self.strike(peer, error.reason)
                if error.reason in ("bad_frame", "unknown_frame_type", "oversized_frame", "replayed_frame"):
                    return  # the stream cannot be trusted past this point
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
                return

    async def _receive_message(self, conn: _Connection, length: int) -> None:
        limits = self.limits
        reader = conn.reader
        peer = conn.peer
        if length < wire.MSG_HEADER.size:
            raise wire.FrameError("bad_frame", f"MSG frame of {length} bytes")
        size = length - wire.MSG_HEADER.size
        if size > limits.max_message_bytes:
            raise wire.FrameError("oversized_frame", f"{size} bytes, limit {limits.max_message_bytes}")
        rest = await asyncio.wait_for(reader.readexactly(wire.MSG_HEADER.size - 1), limits.ack_timeout)
        _, seq, digest, signature = wire.MSG_HEADER.unpack(bytes([wire.MSG]) + rest)
        if seq != conn.next_in:
            raise wire.FrameError("replayed_frame", f"sequence number {seq}, expected {conn.next_in}")
        conn.next_in += 1
        deadline = limits.transfer_deadline(size)
        if not conn.verifier.verify(signature, wire.msg_statement(conn.my_nonce, seq, digest, size)):
            await _discard(reader, size, deadline)
            self.bytes_received += wire.LENGTH.size + length
            await self._ack(conn, seq, wire.STATUS_REFUSED, "bad signature")
            raise wire.FrameError("bad_signature")
        await self._budget.acquire(size)
        try:
            payload = await asyncio.wait_for(_read_payload(reader, size), deadline)
            self.bytes_received += wire.LENGTH.size + length
            if size >= HASH_IN_THREAD:
                actual = await asyncio.to_thread(_sha256, payload)
            else:
                actual = hashlib.sha256(payload).digest()
            if actual != digest:
                await self._ack(conn, seq, wire.STATUS_REFUSED, "payload does not match its signed digest")
                raise wire.FrameError("bad_digest")
            verdict = self.deliver(peer, payload)
            del payload
        finally:
            self._budget.release(size)
        if verdict is None:
            self.messages_delivered += 1
            await self._ack(conn, seq, wire.STATUS_DELIVERED, "")
        else:
            await self._ack(conn, seq, wire.STATUS_REFUSED, verdict)

    async def _ack(self, conn: _Connection, acked: int, status: int, reason: str) -> None:
        if conn.closed:
            return
        seq = conn.next_out
        conn.next_out += 1
        signature = self.identity.sign(wire.ack_statement(conn.peer_nonce, seq, acked, status))
        conn.writer.write(wire.encode_ack(seq, acked, status, reason, signature))
        await conn.writer.drain()

    # ---------------------------------------------------------------------------------------------- garbage
    def _report(self, reason: str, peer: bytes) -> None:
        try:
            self.reject(reason, peer)
        except Exception:
            log.exception("the rejection callback failed")

    def strike(self, peer: bytes, reason: str) -> None:
        """Record one refusal against ``peer``; enough of them within the window ban it for a while."""
        if not peer:
            return
        now = time.monotonic()
        limits = self.limits
        count, since = self._strikes.get(peer, (0, now))
        if now - since > limits.strike_window:
            count, since = 0, now
        count += 1
        if count < limits.strikes:
            if len(self._strikes) > 100_000:
                self._strikes.clear()
            self._strikes[peer] = (count, since)
            return
        self._strikes.pop(peer, None)
        self._banned[peer] = now + limits.ban_seconds
        log.warning("banned %s for %.0fs: %d refused frames or messages in %.0fs (last: %s)", short_id(peer),
                    limits.ban_seconds, count, limits.strike_window, reason)
        self._report("peer_banned", peer)
        for conn in list(self._inbound.get(peer, ())):
            conn.close()

    def banned(self, peer: bytes) -> bool:
        until = self._banned.get(peer)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._banned[peer]
            return False
        return True

    def _verifier(self, peer: bytes) -> Verifier:
        verifier = self._verifiers.get(peer)
        if verifier is None:
            verifier = Verifier(peer)
            if len(self._verifiers) > 100_000:
                self._verifiers.clear()
            self._verifiers[peer] = verifier
        return verifier

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _sha256(data: bytes | bytearray) -> bytes:
    return hashlib.sha256(data).digest()


async def _read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    (length,) = wire.LENGTH.unpack(await reader.readexactly(wire.LENGTH.size))
    if length < 1 or length > limit:
        raise wire.FrameError("oversized_frame" if length > limit else "bad_frame", f"{length} bytes")
    return await reader.readexactly(length)


async def _read_payload(reader: asyncio.StreamReader, size: int) -> bytearray:
    """Read ``size`` bytes into one buffer, piece by piece (the stream never holds more than a piece)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    offset = 0
    while offset < size:
        piece = await reader.read(min(CHUNK, size - offset))
        if not piece:
            raise asyncio.IncompleteReadError(bytes(view[:offset]), size)
        view[offset:offset + len(piece)] = piece
        offset += len(piece)
    view.release()
    return buffer


async def _discard(reader: asyncio.StreamReader, size: int, deadline: float) -> None:
    async def skip() -> None:
        left = size
        while left > 0:
            piece = await reader.read(min(CHUNK, left))
            if not piece:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(piece)

    await asyncio.wait_for(skip(), deadline)

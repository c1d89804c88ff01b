"""Helpers for tests of the live transport and runtime: a raw peer that speaks the wire format by hand (so a test
can send exactly the frames it wants, hostile ones included), and a small node class with its own messages."""

from __future__ import annotations

import asyncio
import os
import struct

from plexus.live import wire
from plexus.live.keys import Identity, Verifier


class RawPeer:
    """A hand-driven client connection: handshake, then arbitrary frames; reads the server's ACKs."""

    def __init__(self, identity: Identity, network: str = "test") -> None:
        self.identity = identity
        self.network = wire.network_id(network)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.seq = 0
        self.server_nonce = b""
        self.nonce = b""
        self.server = b""

    async def connect(self, host: str, port: int, expect: bytes | None = None, address: str = "") -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.nonce = os.urandom(32)
        self.writer.write(wire.encode_hello(wire.Hello(self.network, self.identity.node_id, self.nonce, address)))
        await self.writer.drain()
        body = await self.read_frame()
        server, server_nonce, signature = wire.decode_welcome(body)
        assert Verifier(server).verify(signature, wire.welcome_statement(self.network, self.identity.node_id,
                                                                         self.nonce, server, server_nonce))
        if expect is not None:
            assert server == expect
        self.server, self.server_nonce = server, server_nonce
        auth = self.identity.sign(wire.auth_statement(self.network, server, server_nonce, self.identity.node_id,
                                                      self.nonce))
        self.writer.write(wire.encode_auth(auth))
        await self.writer.drain()
        self.seq = 0

    async def read_frame(self, limit: int = 1 << 20) -> bytes:
        assert self.reader is not None
        (length,) = wire.LENGTH.unpack(await self.reader.readexactly(4))
        assert length <= limit
        return await self.reader.readexactly(length)

    def message_frame(self, payload: bytes, *, seq: int | None = None, forge: bool = False,
                      digest: bytes | None = None) -> bytes:
        """A MSG frame for ``payload``: by default the next one, correctly signed."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        actual = wire.digest_of(payload) if digest is None else digest
        signature = self.identity.sign(wire.msg_statement(self.server_nonce, seq, actual, len(payload)))
        if forge:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        return wire.msg_header(seq, actual, signature, len(payload)) + payload

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, payload: bytes, **kwargs: object) -> None:
        await self.send_raw(self.message_frame(payload, **kwargs))  # type: ignore[arg-type]

    async def ack(self, timeout: float = 5.0) -> tuple[int, int, str]:
        """The next ACK: (acknowledged seq, status, reason)."""
        body = await asyncio.wait_for(self.read_frame(), timeout)
        _, acked, status, reason, _ = wire.decode_ack(body)
        return acked, status, reason

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closed the connection (EOF) within ``timeout``."""
        assert self.reader is not None
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (TimeoutError, ConnectionError):
            return False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def oversized_header(length: int) -> bytes:
    """The first bytes of a MSG frame announcing ``length`` bytes."""
    return wire.LENGTH.pack(length) + struct.pack(">B", wire.MSG)


# ------------------------------------------------------------------------------------------------ fuzzing
class Fuzzer:
    """Hostile traffic against one Plexus node whose id is ``target``, from peers ``members`` (identities in the
    target's view) and from strangers (fresh identities, rotated before they collect enough strikes for a ban).

    Each case is (name, sender, frame builder, expected rejection reason); ``run`` sends them and returns how many
    of each reason the target should have counted. Nothing it sends is acceptable: every valid-looking protocol
    message comes from the wrong sender, for the wrong round, with the wrong shape or with NaN values.
    """

    STRANGER_BUDGET = 12  # refusals that strike, per stranger identity (the node bans at 20)

    def __init__(self, host: str, port: int, target: bytes, members: list[Identity], view_ids: list[bytes],
                 parameters: int, sample_size: int, network: str, seed: int = 0) -> None:
        import numpy as np

        from plexus.protocol.view import PeerInfo, View

        self.host, self.port, self.target = host, port, target
        self.members = members
        self.parameters = parameters
        self.sample_size = sample_size
        self.network = network
        self.rng = np.random.default_rng(seed)
        self.view = View([PeerInfo(node_id) for node_id in view_ids])
        self.expected: dict[str, int] = {}
        self.sent = 0
        self._stranger: RawPeer | None = None
        self._strikes = 0
        self._connections: dict[bytes, RawPeer] = {}

    # rounds where the target aggregates / is sampled, computed as every node does (ties: infinite bandwidths)
    def aggregator(self, round: int) -> bytes:
        return self.view.sample(round + 1, self.sample_size)[0]

    def rounds_where(self, predicate: object, count: int) -> list[int]:
        found = [r for r in range(2, 5000) if predicate(r)]  # type: ignore[operator]
        assert len(found) >= count, "no such rounds"
        return found[:count]

    async def _member(self, identity: Identity) -> RawPeer:
        peer = self._connections.get(identity.node_id)
        if peer is None:
            peer = RawPeer(identity, self.network)
            await peer.connect(self.host, self.port, expect=self.target)
            self._connections[identity.node_id] = peer
        return peer

    async def _stranger_peer(self, strikes: int) -> RawPeer:
        if self._stranger is None or self._strikes + strikes > self.STRANGER_BUDGET:
            if self._stranger is not None:
                self._stranger.close()
            self._stranger = RawPeer(Identity.generate(), self.network)
            await self._stranger.connect(self.host, self.port, expect=self.target)
            self._strikes = 0
        self._strikes += strikes
        return self._stranger

    def _count(self, reason: str) -> None:
        self.expected[reason] = self.expected.get(reason, 0) + 1
        self.sent += 1

    async def protocol(self, identity: Identity, payload: bytes, reason: str) -> None:
        """A well-formed, signed message that the protocol must refuse (no strike)."""
        peer = await self._member(identity)
        await peer.send(payload)
        acked, status, _ = await peer.ack()
        assert status == 0, f"the transport refused a well-formed message expected to fail as {reason}"
        self._count(reason)

    async def decoding(self, payload: bytes, reason: str) -> None:
        """A signed frame the runtime must refuse (it fails decoding, or is a control notice from a stranger):
        a strike."""
        peer = await self._stranger_peer(1)
        await peer.send(payload)
        _, status, _ = await peer.ack()
        assert status == 1, f"a payload expected to fail as {reason} was accepted"
        self._count(reason)

    async def framing(self, kind: str) -> None:
        """A frame the transport must refuse: forged, tampered, replayed or oversized."""
        peer = await self._stranger_peer(1 if kind in ("forged", "tampered") else self.STRANGER_BUDGET + 1)
        payload = bytes(self.rng.integers(0, 256, 64, dtype="uint8"))
        if kind == "forged":
            await peer.send(payload, forge=True)
            assert (await peer.ack())[1] == 1
            self._count("bad_signature")
        elif kind == "tampered":
            await peer.send(payload, digest=bytes(32))
            assert (await peer.ack())[1] == 1
            self._count("bad_digest")
        elif kind == "replayed":
            frame = peer.message_frame(payload)
            await peer.send_raw(frame)
            assert (await peer.ack())[1] == 1  # refused by decoding (random bytes): one count
            self._count("malformed_message")
            await peer.send_raw(frame)
            assert await peer.closed()
            self._count("replayed_frame")
            self._stranger = None
        else:  # oversized: announces a gigabyte, sends the header only
            await peer.send_raw(oversized_header(1 << 30))
            assert await peer.closed()
            self._count("oversized_frame")
            self._stranger = None

    async def run(self, total: int) -> dict[str, int]:
        import math

        import numpy as np

        from plexus.live.control import StopRun
        from plexus.protocol.gossip import GossipModel
        from plexus.protocol.messages import encode
        from plexus.protocol.plexus import AggregatedModel, TrainedModel

        p = self.parameters
        me = self.target
        others = [m for m in self.members]
        mine = self.rounds_where(lambda r: self.aggregator(r) == me, 8)
        not_mine = self.rounds_where(lambda r: self.aggregator(r) != me, 8)

        def model(size: int = p, value: float = 0.0) -> np.ndarray:
            return np.full(size, value, dtype=np.float32)

        def noise(size: int) -> bytes:
            return bytes(self.rng.integers(0, 256, size, dtype="uint8"))

        cases = [
            # decoding failures (strangers)
            lambda: self.decoding(noise(int(self.rng.integers(0, 200))), "malformed_message"),
            lambda: self.decoding(b"PX\x02" + int(self.rng.integers(1000, 65000)).to_bytes(2, "big") + noise(8),
                                  "unknown_message_kind"),
            lambda: self.decoding(encode(TrainedModel(mine[0], 1, model()))[:-int(self.rng.integers(1, 50))],
                                  "malformed_message"),
            lambda: self.decoding(encode(TrainedModel(mine[0], 1, model(p + 1 + int(self.rng.integers(100))))),
                                  "oversized_message"),
            lambda: self.decoding(encode(TrainedModel(mine[0], 1, model(value=math.nan))), "non_finite_values"),
            lambda: self.decoding(encode(AggregatedModel(3, model(value=math.inf))), "non_finite_values"),
            lambda: self.decoding(encode(StopRun("x"))[:3] + b"\x03\x87" + b"\x7f\xf8" + bytes(6),
                                  "non_finite_values"),  # StartRun(origin = NaN)
            lambda: self.decoding(encode(StopRun("the end")), "not_the_observer"),  # only the observer's counts
            # framing failures
            lambda: self.framing("forged"),
            lambda: self.framing("tampered"),
            lambda: self.framing("replayed"),
            lambda: self.framing("oversized"),
        ]
        member = others[0]

        def in_sample(r: int, who: bytes) -> bool:
            return who in self.view.sample(r, self.sample_size)

        theirs = self.rounds_where(lambda r: self.aggregator(r) == me and not in_sample(r, member.node_id), 3)
        outside = self.rounds_where(lambda r: not in_sample(r, me), 3)
        protocol_cases = [
            # wrong sender / wrong round / wrong receiver / wrong shape / replayed round / wrong type
            (lambda: encode(TrainedModel(int(self.rng.choice(not_mine)), 1, model())), "not_the_aggregator"),
            (lambda: encode(TrainedModel(int(self.rng.choice(theirs)), 1, model())), "sender_not_in_sample"),
            (lambda: encode(AggregatedModel(1, model())), "not_the_aggregator"),  # a replay of round 0's push
            (lambda: encode(AggregatedModel(int(self.rng.integers(-5, 1)), model())), "not_the_aggregator"),
            (lambda: encode(GossipModel(3, model())), "unexpected_message_type"),
        ]
        wrong_shape = self.rounds_where(lambda r: self.aggregator(r) == me and in_sample(r, member.node_id), 1)
        protocol_cases.append(
            (lambda: encode(TrainedModel(wrong_shape[0], 1, model(p - 1 - int(self.rng.integers(0, 3))))),
             "wrong_parameter_count"))
        if outside:
            sender = self.aggregator(outside[0] - 1)
            if sender != me and sender in {m.node_id for m in others}:
                who = next(m for m in others if m.node_id == sender)
                protocol_cases.append(
                    (lambda: encode(AggregatedModel(outside[0], model())), ("receiver_not_in_sample", who)))
        while self.sent < total:
            pick = int(self.rng.integers(len(cases) + len(protocol_cases)))
            if pick < len(cases):
                await cases[pick]()
            else:
                build, reason = protocol_cases[pick - len(cases)]
                identity = member
                if isinstance(reason, tuple):
                    reason, identity = reason
                await self.protocol(identity, build(), reason)
        for peer in [*self._connections.values(), *([self._stranger] if self._stranger else [])]:
            peer.close()
        self._connections, self._stranger = {}, None
        return dict(self.expected)

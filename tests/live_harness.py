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

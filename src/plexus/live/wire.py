"""The live transport's frames: how bytes on a TCP connection become authenticated, ordered plexus messages.

Every frame is a 32-bit big-endian length followed by that many bytes, the first of which is the frame type.
The length is checked against the limit of the connection's state *before* anything is allocated: 1 KiB until
the handshake is done, then the largest message this node accepts plus the fixed header.

**Handshake** (the connecting side is the *client*; a connection carries the client's messages one way and the
server's acknowledgements the other way)::

    client -> HELLO    magic "PXL1", version, network id (32), client id (32), client nonce (32), listen address
    server -> WELCOME  server id (32), server nonce (32), signature of ("welcome", network, client id,
                       client nonce, server id, server nonce) by the server's key
    client -> AUTH     signature of ("auth", network, server id, server nonce, client id, client nonce)
                       by the client's key
    server -> REFUSE   instead of WELCOME: a short reason (banned, wrong network, full); unsigned, informative only

Both sides prove they hold the private key of the id they claim, on fresh random nonces; the client also checks
that the server's id is the one it meant to reach. Node ids are Ed25519 public keys.

**After the handshake** each frame is ``type, seq (u64), body..., signature (64)``. ``seq`` counts the frames of
one direction of one connection from 1 and must grow by exactly one (TCP neither loses nor reorders, so anything
else is a replay or an injection). The signature covers the frame's context byte, the *receiver's* nonce of this
connection, the seq and the body, so a frame is valid on exactly one connection at exactly one position: a
recorded frame replayed on the same or any other connection is refused.

- ``MSG``: ``seq, sha256(payload) (32), signature (64), payload``. The signature covers the digest and the
  payload's length instead of the payload itself: a model sent to 13 peers is hashed once, not signed 13 times,
  and the receiver checks the signed header before it reads (or allocates) the payload.
- ``ACK``: ``seq, acknowledged seq, status (0 delivered, 1 refused), reason``: sent once the receiving node has
  handled the message (``Transmission`` resolves on it) or refused it (the transmission fails, naming why).
- ``BYE``: an orderly close.

No pickle, no self-describing formats: the payload is one message in :mod:`plexus.protocol.messages`' encoding,
decoded with its hostile checks by the runtime.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from plexus.live.keys import ID_BYTES, SIGNATURE_BYTES

MAGIC = b"PXL1"
VERSION = 1
NONCE_BYTES = 32
DIGEST_BYTES = 32
LENGTH = struct.Struct(">I")
MAX_HANDSHAKE_FRAME = 1024
MAX_ADDRESS_BYTES = 255
MAX_REASON_BYTES = 200

HELLO, WELCOME, AUTH, MSG, ACK, BYE, REFUSE = 1, 2, 3, 4, 5, 6, 9

_HELLO = struct.Struct(f">B4sB{ID_BYTES}s{ID_BYTES}s{NONCE_BYTES}sB")  # type .. address length
_WELCOME = struct.Struct(f">B{ID_BYTES}s{NONCE_BYTES}s{SIGNATURE_BYTES}s")
_AUTH = struct.Struct(f">B{SIGNATURE_BYTES}s")
MSG_HEADER = struct.Struct(f">BQ{DIGEST_BYTES}s{SIGNATURE_BYTES}s")  # type, seq, digest, signature
_ACK = struct.Struct(">BQQBB")  # type, seq, acknowledged seq, status, reason length
_BYE = struct.Struct(">BQ")
_SIGNED_MSG = struct.Struct(f">c{NONCE_BYTES}sQ{DIGEST_BYTES}sQ")
_SIGNED_ACK = struct.Struct(f">c{NONCE_BYTES}sQQB")
_SIGNED_BYE = struct.Struct(f">c{NONCE_BYTES}sQ")

STATUS_DELIVERED, STATUS_REFUSED = 0, 1


class FrameError(ValueError):
    """A frame that breaks the wire format; ``reason`` is the snake_case name counted in the rejections."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def network_id(name: str) -> bytes:
    """The 32-byte id of a network (a run): nodes of different networks refuse each other's handshakes."""
    return hashlib.sha256(b"plexus-network\x00" + name.encode("utf-8")).digest()


def frame(body: bytes) -> bytes:
    return LENGTH.pack(len(body)) + body


# ------------------------------------------------------------------------------------------------ handshake
@dataclass(frozen=True)
class Hello:
    network: bytes
    node_id: bytes
    nonce: bytes
    address: str


def encode_hello(hello: Hello) -> bytes:
    address = hello.address.encode("utf-8")
    if len(address) > MAX_ADDRESS_BYTES:
        raise ValueError(f"listen address {hello.address!r} is longer than {MAX_ADDRESS_BYTES} bytes")
    return frame(_HELLO.pack(HELLO, MAGIC, VERSION, hello.network, hello.node_id, hello.nonce, len(address))
                 + address)


def decode_hello(body: bytes) -> Hello:
    if len(body) < _HELLO.size:
        raise FrameError("bad_hello", f"{len(body)} bytes")
    kind, magic, version, network, node_id, nonce, length = _HELLO.unpack_from(body)
    if kind != HELLO or magic != MAGIC:
        raise FrameError("bad_hello", "not a plexus live HELLO")
    if version != VERSION:
        raise FrameError("bad_version", f"version {version}, this node speaks {VERSION}")
    if len(body) != _HELLO.size + length:
        raise FrameError("bad_hello", "address length does not match the frame")
    try:
        address = body[_HELLO.size:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("bad_hello", "address is not UTF-8") from None
    return Hello(network, node_id, nonce, address)


def welcome_statement(network: bytes, client: bytes, client_nonce: bytes, server: bytes, server_nonce: bytes) -> bytes:
    return b"plexus-welcome\x00" + network + client + client_nonce + server + server_nonce


def auth_statement(network: bytes, server: bytes, server_nonce: bytes, client: bytes, client_nonce: bytes) -> bytes:
    return b"plexus-auth\x00" + network + server + server_nonce + client + client_nonce


def encode_welcome(node_id: bytes, nonce: bytes, signature: bytes) -> bytes:
    return frame(_WELCOME.pack(WELCOME, node_id, nonce, signature))


def decode_welcome(body: bytes) -> tuple[bytes, bytes, bytes]:
    if len(body) >= 1 and body[0] == REFUSE:
        raise FrameError("refused", body[1:1 + MAX_REASON_BYTES].decode("utf-8", "replace"))
    if len(body) != _WELCOME.size or body[0] != WELCOME:
        raise FrameError("bad_welcome", f"{len(body)} bytes")
    _, node_id, nonce, signature = _WELCOME.unpack(body)
    return node_id, nonce, signature


def encode_auth(signature: bytes) -> bytes:
    return frame(_AUTH.pack(AUTH, signature))


def decode_auth(body: bytes) -> bytes:
    if len(body) != _AUTH.size or body[0] != AUTH:
        raise FrameError("bad_auth", f"{len(body)} bytes")
    return _AUTH.unpack(body)[1]


def encode_refuse(reason: str) -> bytes:
    return frame(bytes([REFUSE]) + reason.encode("utf-8")[:MAX_REASON_BYTES])


# ------------------------------------------------------------------------------------------------ messages
def msg_statement(receiver_nonce: bytes, seq: int, digest: bytes, length: int) -> bytes:
    return _SIGNED_MSG.pack(b"M", receiver_nonce, seq, digest, length)


def digest_of(payload: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(payload).digest()


def msg_header(seq: int, digest: bytes, signature: bytes, payload_length: int) -> bytes:
    """The length prefix and fixed header of a MSG frame; the payload follows."""
    return LENGTH.pack(MSG_HEADER.size + payload_length) + MSG_HEADER.pack(MSG, seq, digest, signature)


def ack_statement(receiver_nonce: bytes, seq: int, acked: int, status: int) -> bytes:
    return _SIGNED_ACK.pack(b"A", receiver_nonce, seq, acked, status)


def encode_ack(seq: int, acked: int, status: int, reason: str, signature: bytes) -> bytes:
    text = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return frame(_ACK.pack(ACK, seq, acked, status, len(text)) + text + signature)


def decode_ack(body: bytes) -> tuple[int, int, int, str, bytes]:
    if len(body) < _ACK.size + SIGNATURE_BYTES or body[0] != ACK:
        raise FrameError("bad_ack", f"{len(body)} bytes")
    _, seq, acked, status, length = _ACK.unpack_from(body)
    if len(body) != _ACK.size + length + SIGNATURE_BYTES or status not in (STATUS_DELIVERED, STATUS_REFUSED):
        raise FrameError("bad_ack", "inconsistent lengths or status")
    reason = body[_ACK.size:_ACK.size + length].decode("utf-8", "replace")
    return seq, acked, status, reason, body[-SIGNATURE_BYTES:]


def bye_statement(receiver_nonce: bytes, seq: int) -> bytes:
    return _SIGNED_BYE.pack(b"B", receiver_nonce, seq)


def encode_bye(seq: int, signature: bytes) -> bytes:
    return frame(_BYE.pack(BYE, seq) + signature)


def decode_bye(body: bytes) -> tuple[int, bytes]:
    if len(body) != _BYE.size + SIGNATURE_BYTES or body[0] != BYE:
        raise FrameError("bad_bye", f"{len(body)} bytes")
    return _BYE.unpack_from(body)[1], body[-SIGNATURE_BYTES:]


def parse_address(text: str, source: str = "address") -> tuple[str, int]:
    """``host:port`` or ``[v6 address]:port`` -> (host, port); raises ValueError naming the source."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{source}: {text!r} is not HOST:PORT (IPv6 as [ADDRESS]:PORT)")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

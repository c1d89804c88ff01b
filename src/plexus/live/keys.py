"""A node's identity in the live world: an Ed25519 key pair. The node id is the 32-byte raw public key.

Key files are text, so that a person can look at them and back them up::

    plexus-ed25519-private-key
    <64 hex digits: the 32-byte private seed>

written with mode 0600; ``plexus keygen`` also writes ``FILE.pub`` holding the id (64 hex digits), which is what
goes into peers files. Signing and verifying use the ``cryptography`` package (OpenSSL's Ed25519).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from plexus.errors import ConfigError

KEY_HEADER = "plexus-ed25519-private-key"
ID_BYTES = 32
SIGNATURE_BYTES = 64


class Identity:
    """A private key and the node id (public key) it proves."""

    __slots__ = ("_private", "node_id")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.node_id: bytes = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                                serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed has 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    @property
    def hex(self) -> str:
        return self.node_id.hex()

    def __repr__(self) -> str:
        return f"Identity({short_id(self.node_id)})"


class Verifier:
    """Verifies signatures of one node id; the parsed public key is kept (parsing costs as much as verifying)."""

    __slots__ = ("_key", "node_id")

    def __init__(self, node_id: bytes) -> None:
        if len(node_id) != ID_BYTES:
            raise ValueError(f"a node id has {ID_BYTES} bytes, got {len(node_id)}")
        self.node_id = node_id
        self._key = Ed25519PublicKey.from_public_bytes(node_id)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def short_id(node_id: bytes) -> str:
    """The first 8 hex digits of an id, for logs."""
    return node_id[:4].hex()


def parse_node_id(text: str, source: str) -> bytes:
    """A node id from its 64 hex digits; errors name the source."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{source}: node id {text[:80]!r} is not hexadecimal") from None
    if len(raw) != ID_BYTES:
        raise ConfigError(f"{source}: node id has {len(raw)} bytes, expected {ID_BYTES} (64 hex digits)")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigError(f"{source}: {text[:16]}... is not a valid Ed25519 public key") from None
    return raw


def write_key(path: str | Path, identity: Identity, force: bool = False) -> Path:
    """Write a private key file (mode 0600) and ``path.pub``; refuses to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"key file {path} already exists (pass --force to replace it)")
    if path.parent and not path.parent.exists():
        raise ConfigError(f"key file {path}: folder {path.parent} does not exist")
    text = f"{KEY_HEADER}\n{identity.seed().hex()}\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(path, flags, 0o600)
    try:
        os.write(descriptor, text.encode("ascii"))
    finally:
        os.close(descriptor)
    os.chmod(path, 0o600)
    Path(f"{path}.pub").write_text(identity.hex + "\n", encoding="ascii")
    return path


def read_key(path: str | Path) -> Identity:
    """Load a private key file; every problem is one ConfigError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"key file {path} does not exist (create one with: plexus keygen --out {path})")
    try:
        lines = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"key file {path} cannot be read: {error}") from None
    if len(lines) != 2 or lines[0] != KEY_HEADER:
        raise ConfigError(f"key file {path} is not a plexus key (expected '{KEY_HEADER}' and 64 hex digits)")
    try:
        seed = bytes.fromhex(lines[1])
    except ValueError:
        raise ConfigError(f"key file {path}: the key is not hexadecimal") from None
    if len(seed) != 32:
        raise ConfigError(f"key file {path}: the key has {len(seed)} bytes, expected 32")
    return Identity.from_seed(seed)

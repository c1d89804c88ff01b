"""Messages and their wire encoding.

The simulator charges a message the length of the bytes :func:`encode` would produce, so communication volumes
are those of the real protocol. A model travels as its flat float32 vector behind a fixed 32-byte header.
Decoding treats its input as hostile: sizes are checked before anything is allocated and values must be finite.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import numpy as np

MAGIC = b"PX"
VERSION = 1
# magic, version, message type, round, samples, age, parameter count
_HEADER = struct.Struct(">2sBBqqqI")
HEADER_BYTES = _HEADER.size
MAX_PARAMETERS = 1 << 30


class ModelKind(IntEnum):
    """What a model message means to its receiver."""

    TRAINED = 1  # a participant's locally trained model, sent to the round's aggregator
    AGGREGATE = 2  # an aggregated model, pushed to the participants of the next round
    GLOBAL = 3  # a server's global model (FedAvg)
    NEIGHBOUR = 4  # a decentralized-learning node's model, sent to its neighbours
    GOSSIP = 5  # a gossip-learning model with its age


class ModelMessage:
    """A model on the wire. Immutable, and ``params`` is read-only: receivers copy before they modify.

    A plain slotted class rather than a frozen dataclass: millions are created in a large simulation.
    """

    __slots__ = ("kind", "round", "params", "samples", "age", "wire_size")
    kind: ModelKind
    round: int
    params: np.ndarray
    samples: int
    age: int
    wire_size: int  # bytes of :func:`encode`, computed without encoding

    def __init__(self, kind: ModelKind, round: int, params: np.ndarray, samples: int = 0, age: int = 0) -> None:
        if params.dtype != np.float32 or params.ndim != 1:
            params = np.ascontiguousarray(params, dtype=np.float32).reshape(-1)
        if params.flags.writeable:
            params = params.view()
            params.flags.writeable = False
        setattr_ = object.__setattr__
        setattr_(self, "kind", kind)
        setattr_(self, "round", round)
        setattr_(self, "params", params)
        setattr_(self, "samples", samples)
        setattr_(self, "age", age)
        setattr_(self, "wire_size", HEADER_BYTES + 4 * params.size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ModelMessage is immutable (tried to set {name})")

    def __repr__(self) -> str:
        return (f"ModelMessage(kind={self.kind!r}, round={self.round}, params=<{self.params.size} floats>, "
                f"samples={self.samples}, age={self.age})")


def encode(message: ModelMessage) -> bytes:
    header = _HEADER.pack(
        MAGIC, VERSION, int(message.kind), message.round, message.samples, message.age, message.params.size
    )
    return header + message.params.astype("<f4", copy=False).tobytes()


def decode(data: bytes, max_parameters: int = MAX_PARAMETERS, expected_size: int | None = None) -> ModelMessage:
    """Parse and validate one message; raises ValueError naming what is wrong."""
    if len(data) < HEADER_BYTES:
        raise ValueError(f"message of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, kind, round_, samples, age, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ValueError(f"unsupported message version {version}")
    try:
        kind = ModelKind(kind)
    except ValueError:
        raise ValueError(f"unknown model message kind {kind}") from None
    if count > max_parameters:
        raise ValueError(f"message announces {count} parameters, more than the limit {max_parameters}")
    if expected_size is not None and count != expected_size:
        raise ValueError(f"message carries {count} parameters, expected {expected_size}")
    if len(data) != HEADER_BYTES + 4 * count:
        raise ValueError(f"message is {len(data)} bytes, header announces {HEADER_BYTES + 4 * count}")
    if round_ < 0 or samples < 0 or age < 0:
        raise ValueError("negative round, sample count or age")
    params = np.frombuffer(data, dtype="<f4", count=count, offset=HEADER_BYTES).astype(np.float32)
    if not np.isfinite(params).all():
        raise ValueError("model contains NaN or infinite values")
    return ModelMessage(kind, round_, params, samples=samples, age=age)

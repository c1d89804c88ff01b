"""Typed messages: the registry of kinds, the wire encoding (the simulator charges exactly the bytes the
encoding produces) and hostile decoding (every problem is a MalformedMessage naming it)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from plexus.protocol import messages
from plexus.protocol.decentralized import NeighbourModel
from plexus.protocol.epidemic import NotSending
from plexus.protocol.fedavg import ClientUpdate, GlobalModel
from plexus.protocol.gossip import GossipModel
from plexus.protocol.messages import (
    BUILTIN_KINDS,
    HEADER_BYTES,
    MAGIC,
    PLUGIN_KINDS,
    VERSION,
    MalformedMessage,
    Message,
    Params,
    decode,
    encode,
    message,
    registered,
)
from plexus.protocol.plexus import AggregatedModel, TrainedModel


# Message types of these tests take kinds from the top of the plug-in range, far from anything real.
@message(kind=65001)
class Everything(Message):
    """One field of every supported type."""

    number: int
    ratio: float
    flag: bool
    name: str
    blob: bytes
    params: Params


@message(kind=65002)
class Notice(Message):
    round: int


@message(kind=65003)
class Labelled(Message):
    label: str


@message(kind=65004)
class Blob(Message):
    blob: bytes


def model(n: int = 4, value: float = 1.0) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


BUILTIN = {
    1: TrainedModel,
    2: AggregatedModel,
    3: GlobalModel,
    4: ClientUpdate,
    5: NeighbourModel,
    6: GossipModel,
    7: NotSending,
}

PARAMS = np.random.default_rng(0).normal(size=257).astype(np.float32)
EXAMPLES = [
    TrainedModel(12, 5, PARAMS),
    AggregatedModel(13, PARAMS),
    GlobalModel(2, PARAMS),
    ClientUpdate(2, 40, PARAMS),
    NeighbourModel(9, 17, PARAMS),
    GossipModel(3, PARAMS),
    NotSending(21),
]


# ------------------------------------------------------------------------------------------------ registry
def test_builtin_kinds_are_registered_in_the_reserved_range() -> None:
    table = registered()
    for kind, cls in BUILTIN.items():
        assert table[kind] is cls and cls.kind == kind
        assert kind in BUILTIN_KINDS
    assert set(BUILTIN_KINDS).isdisjoint(PLUGIN_KINDS)
    assert (min(PLUGIN_KINDS), max(PLUGIN_KINDS)) == (1000, 65535)


def test_registered_returns_a_copy() -> None:
    table = registered()
    table[1] = Notice
    assert registered()[1] is TrainedModel


def test_a_duplicate_kind_is_refused_naming_both_types() -> None:
    with pytest.raises(ValueError, match="kind 1 is reserved for plexus's own messages; plug-ins use 1000-65535"):
        @message(kind=1)
        class Impostor(Message):
            round: int

    assert registered()[1] is TrainedModel
    with pytest.raises(ValueError, match="already taken"):
        @message(kind=65002)
        class AnotherNotice(Message):
            round: int

    assert registered()[65002] is Notice


def test_a_plugin_message_in_the_plugin_range_registers_and_round_trips() -> None:
    @message(kind=64999)
    class PluginPing(Message):
        nonce: int

    assert 64999 in PLUGIN_KINDS and registered()[64999] is PluginPing
    back = decode(encode(PluginPing(77)))
    assert type(back) is PluginPing and back.nonce == 77


@pytest.mark.parametrize("kind", [0, -1, 65536, True, 3.0, "7"])
def test_kinds_outside_1_to_65535_are_refused(kind: object) -> None:
    with pytest.raises(ValueError, match=r"\[1, 65535\]"):
        message(kind=kind)  # type: ignore[arg-type]


def test_bad_message_declarations_are_refused() -> None:
    with pytest.raises(TypeError, match="must subclass"):
        @message(kind=64990)
        class NotAMessage:
            round: int

    with pytest.raises(TypeError, match="unsupported field type"):
        @message(kind=64991)
        class Listy(Message):
            items: list

    with pytest.raises(TypeError, match="must be named 'params'"):
        @message(kind=64992)
        class Misnamed(Message):
            weights: Params

    assert not {64990, 64991, 64992} & set(registered())


# ------------------------------------------------------------------------------------------------ encoding
def test_trained_model_is_a_five_byte_header_two_integers_a_count_and_the_floats() -> None:
    assert HEADER_BYTES == 5
    message_ = TrainedModel(7, 42, np.arange(1000, dtype=np.float32))
    data = encode(message_)
    assert len(data) == message_.wire_size == 5 + 16 + 4 + 4 * 1000
    assert data[:5] == MAGIC + bytes([VERSION]) + struct.pack(">H", 1)
    assert struct.unpack_from(">qqI", data, 5) == (7, 42, 1000)
    assert np.array_equal(np.frombuffer(data, dtype="<f4", offset=25), np.arange(1000, dtype=np.float32))


def test_a_notice_without_a_model_is_header_plus_one_integer() -> None:
    assert NotSending(3).wire_size == len(encode(NotSending(3))) == 5 + 8


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_builtin_message_round_trips(example: Message) -> None:
    data = encode(example)
    assert len(data) == example.wire_size
    back = decode(data)
    assert type(back) is type(example)
    for name in example._scalar_names:
        assert getattr(back, name) == getattr(example, name)
    if example._params_name is not None:
        assert back.params.dtype == np.float32  # type: ignore[attr-defined]
        assert np.array_equal(back.params, example.params)  # type: ignore[attr-defined]
    assert encode(back) == data


def test_every_field_type_round_trips_and_wire_size_counts_utf8_bytes() -> None:
    original = Everything(-(2**63), -2.5e300, True, "ünïcødé ✓", b"\x00\xffbytes", np.arange(3, dtype=np.float32))
    data = encode(original)
    assert original.wire_size == len(data) == 5 + 8 + 8 + 1 + 4 + len("ünïcødé ✓".encode()) + 4 + 7 + 4 + 12
    back = decode(data)
    assert (back.number, back.ratio, back.flag, back.name, back.blob) == (
        -(2**63), -2.5e300, True, "ünïcødé ✓", b"\x00\xffbytes")
    assert back.params.tolist() == [0.0, 1.0, 2.0]


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode(GossipModel(4, model(3, 2.0)))
    for view in (bytearray(data), memoryview(data)):
        back = decode(view)
        assert isinstance(back, GossipModel) and back.age == 4 and back.params.tolist() == [2.0] * 3


def test_message_params_are_read_only_float32_vectors() -> None:
    message_ = TrainedModel(1, 1, np.zeros((2, 2), dtype=np.float64))
    assert message_.params.dtype == np.float32 and message_.params.shape == (4,)
    assert message_.wire_size == 5 + 16 + 4 + 16
    with pytest.raises(ValueError):
        message_.params[0] = 1.0
    decoded = decode(encode(message_))
    with pytest.raises(ValueError):
        decoded.params[0] = 1.0  # type: ignore[attr-defined]


def test_messages_are_immutable() -> None:
    message_ = NotSending(3)
    with pytest.raises(AttributeError):
        message_.round = 4  # type: ignore[misc]


def test_a_variable_field_of_the_wrong_type_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="Labelled.label must be str, got bytes"):
        Labelled(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Blob.blob must be bytes, got str"):
        Blob("abc")  # type: ignore[arg-type]


def test_a_scalar_field_of_the_wrong_type_is_refused_at_construction() -> None:
    with pytest.raises(TypeError):
        TrainedModel(1.5, 7, model())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ hostile input
def trained_bytes(n: int = 4) -> bytes:
    return encode(TrainedModel(1, 10, model(n)))


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda d: b"", "shorter than the 5-byte header"),
        (lambda d: d[:4], "shorter than the 5-byte header"),
        (lambda d: d[:5], "TrainedModel: truncated fields"),
        (lambda d: d[:20], "TrainedModel: truncated fields"),
        (lambda d: d[:22], "truncated parameter count"),
        (lambda d: d[:-4], "header announces"),
        (lambda d: d[:-1], "header announces"),
        (lambda d: d + b"\0\0\0\0", "header announces"),
        (lambda d: b"XX" + d[2:], "bad magic b'XX'"),
        (lambda d: d[:2] + bytes([VERSION + 1]) + d[3:], f"unsupported message version {VERSION + 1}"),
        (lambda d: d[:2] + bytes([1]) + d[3:], "unsupported message version 1"),
        (lambda d: d[:3] + struct.pack(">H", 999) + d[5:], "unknown message kind 999"),
        (lambda d: d[:3] + struct.pack(">H", 0) + d[5:], "unknown message kind 0"),
    ],
    ids=["empty", "short-header", "no-fields", "half-fields", "no-count", "short-model", "one-byte-short",
         "trailing-model-bytes", "magic", "newer-version", "older-version", "unknown-kind", "kind-zero"],
)
def test_malformed_messages_are_refused_naming_the_problem(mutate, error: str) -> None:
    with pytest.raises(MalformedMessage, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode(mutate(trained_bytes()))


def test_malformed_message_is_a_value_error() -> None:
    assert issubclass(MalformedMessage, ValueError)


def test_trailing_bytes_after_a_message_without_a_model_are_refused() -> None:
    with pytest.raises(MalformedMessage, match="NotSending: 1 unexpected trailing bytes"):
        decode(encode(NotSending(1)) + b"\0")


def test_non_finite_models_are_refused() -> None:
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(MalformedMessage, match="NaN or infinite"):
            decode(encode(TrainedModel(1, 1, np.array([1.0, bad], dtype=np.float32))))


def test_an_oversized_parameter_announcement_is_refused_before_allocating() -> None:
    # a 29-byte message that claims 2**31 parameters (8 GiB): refused by the limit, not by a failed allocation
    hostile = trained_bytes(0)[:-4] + struct.pack(">I", 2**31)
    with pytest.raises(MalformedMessage, match=f"announces {2**31} parameters, more than the limit"):
        decode(hostile)
    with pytest.raises(MalformedMessage, match="announces 10 parameters, more than the limit 5"):
        decode(trained_bytes(10), max_parameters=5)
    assert decode(trained_bytes(5), max_parameters=5).params.size == 5  # type: ignore[attr-defined]


def test_the_expected_parameter_count_is_enforced() -> None:
    with pytest.raises(MalformedMessage, match="carries 10 parameters, expected 11"):
        decode(trained_bytes(10), expected_size=11)
    assert decode(trained_bytes(10), expected_size=10).params.size == 10  # type: ignore[attr-defined]


def test_bad_utf8_in_a_string_field_is_refused() -> None:
    data = bytearray(encode(Labelled("abc")))
    data[-1] = 0xFF
    with pytest.raises(MalformedMessage, match="Labelled.label: not UTF-8"):
        decode(bytes(data))


def test_oversized_and_truncated_variable_fields_are_refused() -> None:
    data = encode(Blob(b"x" * 100))
    with pytest.raises(MalformedMessage, match="Blob.blob: 100 bytes, more than the limit 99"):
        decode(data, max_field_bytes=99)
    assert decode(data, max_field_bytes=100).blob == b"x" * 100  # type: ignore[attr-defined]
    # a length announcing more than the default limit is refused before anything is read
    hostile = data[:5] + struct.pack(">I", messages.MAX_FIELD_BYTES + 1)
    with pytest.raises(MalformedMessage, match="more than the limit"):
        decode(hostile)
    with pytest.raises(MalformedMessage, match="Blob.blob: announces 100 bytes, 50 left"):
        decode(data[:-50])
    with pytest.raises(MalformedMessage, match="Blob.blob: truncated length"):
        decode(data[:7])
    with pytest.raises(MalformedMessage, match="trailing"):
        decode(data + b"!")


def test_a_bool_byte_other_than_0_or_1_is_refused() -> None:
    data = bytearray(encode(Everything(1, 1.0, True, "", b"", model(1))))
    data[5 + 16] = 2  # the bool byte, after the header, the int and the float
    with pytest.raises(MalformedMessage):
        decode(bytes(data))

"""Wire encoding: the simulator charges exactly the bytes the encoding produces; decoding is defensive."""

from __future__ import annotations

import numpy as np
import pytest

from plexus.protocol.messages import HEADER_BYTES, ModelKind, ModelMessage, decode, encode


def test_wire_size_equals_encoded_length() -> None:
    params = np.arange(1000, dtype=np.float32)
    message = ModelMessage(ModelKind.TRAINED, 7, params, samples=42, age=3)
    data = encode(message)
    assert len(data) == message.wire_size == HEADER_BYTES + 4 * 1000


def test_round_trip_preserves_every_field() -> None:
    params = np.random.default_rng(0).normal(size=257).astype(np.float32)
    back = decode(encode(ModelMessage(ModelKind.AGGREGATE, 12, params, samples=5, age=9)))
    assert (back.kind, back.round, back.samples, back.age) == (ModelKind.AGGREGATE, 12, 5, 9)
    assert np.array_equal(back.params, params)


def test_message_params_are_read_only() -> None:
    message = ModelMessage(ModelKind.TRAINED, 1, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        message.params[0] = 1.0


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda d: d[:10], "shorter than"),
        (lambda d: b"XX" + d[2:], "magic"),
        (lambda d: d[:-4], "header announces"),
        (lambda d: d + b"\0\0\0\0", "header announces"),
    ],
)
def test_malformed_messages_are_rejected(mutate, error) -> None:
    data = encode(ModelMessage(ModelKind.TRAINED, 1, np.ones(4, dtype=np.float32)))
    with pytest.raises(ValueError, match=error):
        decode(mutate(data))


def test_non_finite_values_and_oversized_announcements_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        decode(encode(ModelMessage(ModelKind.TRAINED, 1, np.array([1.0, np.nan], dtype=np.float32))))
    with pytest.raises(ValueError, match="limit"):
        decode(encode(ModelMessage(ModelKind.TRAINED, 1, np.ones(10, dtype=np.float32))), max_parameters=5)
    with pytest.raises(ValueError, match="expected"):
        decode(encode(ModelMessage(ModelKind.TRAINED, 1, np.ones(10, dtype=np.float32))), expected_size=11)

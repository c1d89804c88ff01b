"""Algorithm 1: the sample of round k is the first s ids sorted by MD5(id + b"-" + str(k))."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexus.protocol.sampling import derive_sample
from plexus.protocol.view import PeerInfo, View

# Vectors computed outside the project (Python's hashlib, sorting hex digests), pinned here.
DECIMAL_IDS = [str(i).encode() for i in range(20)]
VECTORS = {
    1: [b"6", b"10", b"5", b"16", b"17"],
    2: [b"6", b"8", b"12", b"4", b"2"],
    7: [b"19", b"9", b"18", b"8", b"10"],
}


@pytest.mark.parametrize("round_", sorted(VECTORS))
def test_sample_matches_pinned_vectors(round_: int) -> None:
    assert derive_sample(DECIMAL_IDS, round_, 5) == VECTORS[round_]


def test_sample_of_binary_ids_matches_pinned_order() -> None:
    ids = [bytes.fromhex(h) for h in ["00", "ff", "a1b2", "deadbeef", "0102030405"]]
    assert derive_sample(ids, 3, 5) == [
        b"\xa1\xb2", b"\x01\x02\x03\x04\x05", b"\xde\xad\xbe\xef", b"\xff", b"\x00"
    ]


@given(
    ids=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=60, unique=True),
    round_=st.integers(min_value=0, max_value=10**9),
    data=st.data(),
)
def test_sample_equals_reference_sort(ids: list[bytes], round_: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=0, max_value=len(ids)))
    reference = sorted(ids, key=lambda i: hashlib.md5(i + b"-" + str(round_).encode()).hexdigest())[:size]
    assert derive_sample(ids, round_, size) == reference


def test_sample_does_not_depend_on_the_order_nodes_are_known_in() -> None:
    assert derive_sample(DECIMAL_IDS[::-1], 4, 7) == derive_sample(DECIMAL_IDS, 4, 7)


def test_sample_changes_between_rounds_and_covers_nodes() -> None:
    seen = set()
    for round_ in range(1, 200):
        seen.update(derive_sample(DECIMAL_IDS, round_, 3))
    assert seen == set(DECIMAL_IDS)


def test_sample_size_larger_than_membership_is_an_error() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        derive_sample(DECIMAL_IDS, 1, 21)


def test_view_sample_is_cached_and_identical() -> None:
    view = View(PeerInfo(i) for i in DECIMAL_IDS)
    first = view.sample(5, 4)
    assert first == derive_sample(DECIMAL_IDS, 5, 4)
    assert view.sample(5, 4) is first

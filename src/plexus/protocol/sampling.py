"""Algorithm 1 of the Plexus paper: every node derives the same sample of round k on its own.

The sample of round k is the first ``size`` node ids after sorting all ids by the raw MD5 digest of
``id + b"-" + str(k).encode()``. No coordination is needed: any two nodes with the same membership agree.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence

try:  # CPython's built-in MD5 is about twice as fast as OpenSSL's for inputs this short; same digests
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - other Python implementations
    _md5 = hashlib.md5


def sample_key(node_id: bytes, round: int) -> bytes:
    """The MD5 digest that orders ``node_id`` in round ``round``."""
    return hashlib.md5(node_id + b"-" + str(round).encode()).digest()


def derive_sample(node_ids: Sequence[bytes], round: int, size: int) -> list[bytes]:
    """The ``size`` node ids chosen for ``round``, in hash order (the first is the smallest digest).

    Ties between equal digests (impossible for distinct ids in practice) fall back to the id itself so the
    order is total.
    """
    if size < 0:
        raise ValueError(f"sample size must be >= 0, got {size}")
    if size > len(node_ids):
        raise ValueError(f"sample size {size} exceeds the {len(node_ids)} known nodes")
    suffix = b"-" + str(round).encode()
    md5 = _md5
    digests = [md5(node_id + suffix).digest() for node_id in node_ids]
    return [node_id for _, node_id in heapq.nsmallest(size, zip(digests, node_ids, strict=True))]

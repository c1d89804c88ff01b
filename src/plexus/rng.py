"""Named random streams derived from the experiment seed.

Every random choice in a run draws from a stream named by its purpose and keys (node index, round, ...),
never from a shared global generator, so results do not depend on the order in which nodes happen to run
or on which executor trained them.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _word(key: object) -> int:
    if isinstance(key, (int, np.integer)):
        value = int(key)
        if value < 0:
            raise ValueError(f"stream keys must be non-negative, got {value}")
        return value
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seed_sequence(seed: int, purpose: str, *keys: object) -> np.random.SeedSequence:
    """The seed sequence of stream (seed, purpose, keys...)."""
    return np.random.SeedSequence([int(seed), _word(purpose), *(_word(k) for k in keys)])


def stream(seed: int, purpose: str, *keys: object) -> np.random.Generator:
    """A generator for one purpose; the same arguments always give the same sequence."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, purpose, *keys)))


def stream_seed(seed: int, purpose: str, *keys: object) -> int:
    """A 63-bit integer seed for libraries that want one (torch.Generator.manual_seed)."""
    return int(seed_sequence(seed, purpose, *keys).generate_state(2, np.uint64)[0] >> np.uint64(1))

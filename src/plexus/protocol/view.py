"""What a node believes about the membership: its own :class:`View`.

A view holds, per known node, the capacities it advertises (:class:`PeerInfo`) and when this node last heard
of it. Sampling (Algorithm 1) is a pure function of the view's ids, so everything derived from the ids (the
sorted list, positions, samples, a round's aggregator) is computed once per distinct *roster* and cached on it.

A :class:`Roster` is immutable. A view points at one; changing who is known gives the view a new roster and
bumps :attr:`View.version`, so caches can never serve a result computed from an older membership. Rosters are
interned by their set of ids: in a run without churn every node's view shares one roster (and its caches), and
nodes whose views converge to the same membership share again.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plexus.protocol.sampling import derive_sample

CACHE_LIMIT = 4096


@dataclass(frozen=True)
class PeerInfo:
    """What a node advertises about itself: its id and its link capacities in bytes per second."""

    node_id: bytes
    upload_bps: float = math.inf
    download_bps: float = math.inf


class Roster:
    """An immutable set of peers with everything derived from it cached (shared by the views that hold it)."""

    __slots__ = ("_peers", "_ids", "_samples", "_memo", "_positions", "__weakref__")

    def __init__(self, peers: Iterable[PeerInfo]) -> None:
        self._peers: dict[bytes, PeerInfo] = {peer.node_id: peer for peer in peers}
        self._ids: list[bytes] = sorted(self._peers)
        self._samples: dict[tuple[int, int], list[bytes]] = {}
        self._memo: dict[Hashable, Any] = {}
        self._positions: dict[bytes, int] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def ids(self) -> Sequence[bytes]:
        return self._ids

    def info(self, node_id: bytes) -> PeerInfo:
        return self._peers[node_id]

    def peers(self) -> Iterable[PeerInfo]:
        return self._peers.values()

    def positions(self) -> dict[bytes, int]:
        if self._positions is None:
            self._positions = {node_id: i for i, node_id in enumerate(self._ids)}
        return self._positions

    def sample(self, round: int, size: int) -> list[bytes]:
        key = (round, size)
        cached = self._samples.get(key)
        if cached is None:
            cached = derive_sample(self._ids, round, size)
            if len(self._samples) >= CACHE_LIMIT:
                self._samples.clear()
            self._samples[key] = cached
        return cached

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) >= CACHE_LIMIT:
                self._memo.clear()
            value = self._memo[key] = compute()
            return value


class _Interned:
    """Rosters by their frozen set of peers, so converging views share one roster and its caches."""

    def __init__(self) -> None:
        self._rosters: weakref.WeakValueDictionary[frozenset[PeerInfo], Roster] = weakref.WeakValueDictionary()

    def get(self, peers: Iterable[PeerInfo]) -> Roster:
        key = frozenset(peers)
        if len({peer.node_id for peer in key}) != len(key):
            ids = sorted(peer.node_id for peer in key)
            twice = next(a for a, b in zip(ids, ids[1:], strict=False) if a == b)
            raise ValueError(f"a roster lists node {twice!r} twice with different capacities")
        roster = self._rosters.get(key)
        if roster is None:
            roster = Roster(key)
            self._rosters[key] = roster
        return roster


_INTERNED = _Interned()


def roster_of(peers: Iterable[PeerInfo]) -> Roster:
    """The (interned) roster of these peers."""
    return _INTERNED.get(peers)


class View:
    """One node's view of the membership. Not shared: each node owns one (their rosters may be shared).

    Reading: :meth:`ids` (sorted), ``in``, ``len``, :meth:`info`, :meth:`positions`, :meth:`other`,
    :meth:`sample` (Algorithm 1 over the view's ids) and :meth:`memo` (cache a value derived from the ids only).
    Changing: :meth:`add`, :meth:`remove`, :meth:`replace`; each bumps :attr:`version` when it changes the ids.
    :meth:`saw` records when a peer was last heard of (any clock the caller likes: a round or a time).
    """

    __slots__ = ("_roster", "version", "_last_seen")

    def __init__(self, peers: Roster | Iterable[PeerInfo]) -> None:
        self._roster = peers if isinstance(peers, Roster) else roster_of(peers)
        self.version = 0
        self._last_seen: dict[bytes, float] | None = None

    # ----------------------------------------------------------------- reading
    @property
    def roster(self) -> Roster:
        return self._roster

    def __len__(self) -> int:
        return len(self._roster)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._roster

    def ids(self) -> Sequence[bytes]:
        """Known node ids, sorted (shared: do not modify)."""
        return self._roster.ids()

    def info(self, node_id: bytes) -> PeerInfo:
        return self._roster.info(node_id)

    def positions(self) -> dict[bytes, int]:
        """Each known id's index in :meth:`ids` (shared: do not modify)."""
        return self._roster.positions()

    def other(self, me: int, index: int) -> bytes:
        """The ``index``-th known node other than the one at position ``me`` (0 <= index < len - 1): lets a
        node draw a random peer without building its own list of everyone else."""
        return self._roster.ids()[index + 1 if index >= me else index]

    def sample(self, round: int, size: int) -> list[bytes]:
        """:func:`~plexus.protocol.sampling.derive_sample` over this view's ids (cached per roster)."""
        return self._roster.sample(round, size)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Cache a value derived only from the view's ids (e.g. a round's aggregator) on its roster."""
        return self._roster.memo(key, compute)

    def last_seen(self, node_id: bytes) -> float | None:
        return None if self._last_seen is None else self._last_seen.get(node_id)

    # ----------------------------------------------------------------- changing
    def saw(self, node_id: bytes, when: float) -> None:
        """Record that ``node_id`` was heard of at ``when`` (keeps the latest)."""
        seen = self._last_seen
        if seen is None:
            seen = self._last_seen = {}
        if when > seen.get(node_id, -math.inf):
            seen[node_id] = when

    def add(self, peer: PeerInfo) -> bool:
        """Know ``peer`` (or update what it advertises); returns whether the view changed."""
        roster = self._roster
        if peer.node_id in roster and roster.info(peer.node_id) == peer:
            return False
        others = [p for p in roster.peers() if p.node_id != peer.node_id]
        self._set(roster_of([*others, peer]))
        return True

    def remove(self, node_id: bytes) -> bool:
        """Forget ``node_id``; returns whether it was known."""
        if node_id not in self._roster:
            return False
        self._set(roster_of(p for p in self._roster.peers() if p.node_id != node_id))
        return True

    def replace(self, peers: Iterable[PeerInfo]) -> bool:
        """Know exactly ``peers``; returns whether the view changed."""
        roster = peers if isinstance(peers, Roster) else roster_of(peers)
        if roster is self._roster:
            return False
        self._set(roster)
        return True

    def _set(self, roster: Roster) -> None:
        self._roster = roster
        self.version += 1

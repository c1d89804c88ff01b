"""The only interface an algorithm may use.

A node class receives a :class:`Runtime` and talks to the world through it: clocks and timers, sending
messages to node ids, training its model on its local data, the membership it knows, a seeded RNG and a
metrics recorder. The simulator implements it in virtual time, the live runtime on sockets and the wall
clock; protocol code must not import either.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from plexus.protocol.futures import Future, Task
from plexus.protocol.messages import ModelMessage


@dataclass(frozen=True)
class PeerInfo:
    """What a node advertises about itself: its id and its link capacities in bytes per second."""

    node_id: bytes
    upload_bps: float = math.inf
    download_bps: float = math.inf


class Membership:
    """The set of nodes a node knows about, with their advertised capacities.

    It is a node's own belief (its *view*). In a run without churn every node's view holds everyone, and the
    simulator shares one immutable instance between nodes; sampling results are cached on it because they are
    a pure function of (membership, round, size).
    """

    def __init__(self, peers: Iterable[PeerInfo]) -> None:
        self._peers = {peer.node_id: peer for peer in peers}
        self._ids = sorted(self._peers)
        self._sample_cache: dict[tuple[int, int], list[bytes]] = {}
        self._memo: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._peers

    def ids(self) -> Sequence[bytes]:
        """All known node ids, sorted."""
        return self._ids

    def info(self, node_id: bytes) -> PeerInfo:
        return self._peers[node_id]

    def positions(self) -> dict[bytes, int]:
        """Each known id's index in :meth:`ids`; built once and shared (do not modify)."""
        return self.memo("positions", lambda: {node_id: i for i, node_id in enumerate(self._ids)})

    def other(self, me: int, index: int) -> bytes:
        """The ``index``-th known node other than the one at position ``me`` (0 <= index < len - 1): lets a
        node draw a random peer without keeping its own list of everyone else."""
        return self._ids[index + 1 if index >= me else index]

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Cache a value derived only from this membership (e.g. a round's aggregator); nodes sharing one
        view then compute it once. Bounded: the cache is emptied when it grows large."""
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) > 4096:
                self._memo.clear()
            value = self._memo[key] = compute()
            return value

    def sample(self, round: int, size: int) -> list[bytes]:
        """:func:`plexus.protocol.sampling.derive_sample` over this membership, cached."""
        key = (round, size)
        cached = self._sample_cache.get(key)
        if cached is None:
            from plexus.protocol.sampling import derive_sample

            cached = derive_sample(self._ids, round, size)
            if len(self._sample_cache) > 4096:
                self._sample_cache.clear()
            self._sample_cache[key] = cached
        return cached


class Timer(Protocol):
    """A scheduled callback that can be cancelled before it fires."""

    def cancel(self) -> None: ...

    @property
    def cancelled(self) -> bool: ...


class TrainResult(NamedTuple):
    """A trained model: the new parameters, the mean training loss and the samples it was trained on."""

    params: np.ndarray
    loss: float
    samples: int


class MetricsSink(ABC):
    """What a node reports to whoever observes the run (an observer in simulation, a log when live)."""

    @abstractmethod
    def global_model(self, round: int, params: np.ndarray) -> None:
        """A round's aggregated (global) model exists; the observer may evaluate it."""

    @abstractmethod
    def count(self, name: str, amount: int = 1) -> None:
        """Increment a named counter (late models dropped, rounds skipped, ...)."""

    @abstractmethod
    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        """How long a round took, as its aggregator or server saw it.

        Decentralized-learning nodes pass their own id as ``node``: every node has its own rounds there, and
        the observer also learns from these calls how far each node has got (its round clock).
        """


class Runtime(ABC):
    """What an algorithm may use. All times are in seconds of the runtime's clock."""

    node_id: bytes
    rng: np.random.Generator
    metrics: MetricsSink

    @abstractmethod
    def now(self) -> float:
        """Current time: virtual in simulation, wall-clock in the live world."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay`` seconds unless the returned timer is cancelled."""

    def sleep(self, delay: float) -> Future[None]:
        """A future resolved after ``delay`` seconds; ``await runtime.sleep(d)`` in coroutine-style nodes."""
        future: Future[None] = Future()
        timer = self.call_later(delay, future.set_result, None)
        future._on_cancel = timer.cancel
        return future

    def spawn(self, coroutine: Coroutine[Any, None, Any]) -> Future[Any]:
        """Run a coroutine-style protocol routine; it starts immediately and stops at its first await."""
        return Task(coroutine)

    @abstractmethod
    def send(self, peer: bytes, message: ModelMessage) -> Future[None]:
        """Send ``message`` to node ``peer``; delivery is asynchronous and may fail silently if it is down.

        The returned future resolves once the message has left this node (its last byte is on the wire), which
        is when a node that paces itself by its uplink may send more; it says nothing about delivery.
        """

    @abstractmethod
    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        """Train ``params`` for ``steps`` local SGD steps on this node's data; cancel the future to abandon it."""

    @property
    @abstractmethod
    def membership(self) -> Membership:
        """The nodes this node knows, with their advertised bandwidth."""

    @abstractmethod
    def initial_model(self) -> np.ndarray:
        """The experiment's seeded initial model, the same on every node (read-only)."""

    @property
    @abstractmethod
    def local_samples(self) -> int:
        """How many training samples this node holds (used for sample-count weighting)."""


class Node(ABC):
    """An algorithm's per-node logic. The runtime calls ``start`` once and ``on_message`` per delivery."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @abstractmethod
    def start(self) -> None:
        """Begin participating (schedule timers, start training, ...)."""

    @abstractmethod
    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        """Handle a message delivered to this node."""

    def current_model(self) -> np.ndarray | None:
        """This node's current model, for an observer that evaluates node models (decentralized learning)."""
        return None

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release timers and pending work; the node will receive nothing more."""

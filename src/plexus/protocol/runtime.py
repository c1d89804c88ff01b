"""The contract between an algorithm and the world it runs in: the only interface an algorithm may use.

A node class (:class:`plexus.protocol.node.Node`) receives a :class:`Runtime` and its options, and talks to the
world through the runtime alone. The simulator implements it in virtual time (``plexus.sim``), the live runtime
on sockets and the wall clock (``plexus.live``). This docstring is the specification: a third runtime can be
written from it.

**Time.** :meth:`Runtime.now` is the runtime's clock in seconds (virtual or wall). :meth:`Runtime.call_later`
follows asyncio's ``loop.call_later``: the callback runs once, ``delay`` seconds from now (a negative delay
counts as 0; NaN is refused), never synchronously inside ``call_later``; callbacks due at the same time run in
the order they were scheduled; the returned :class:`Timer` has ``cancel()`` (idempotent; a cancelled callback
never runs; cancelling after it ran does nothing), ``cancelled()`` and ``when()``. :meth:`Runtime.sleep` and
:meth:`Runtime.spawn` let a node be written as coroutines over :class:`~plexus.protocol.futures.Future`.
Callbacks run one at a time (no two callbacks of a runtime ever run concurrently), so node code needs no locks.
Unlike asyncio, an exception escaping a callback is a protocol bug: the simulator stops the run with it, the
live runtime logs it with its traceback and stops the node.

**Sending.** :meth:`Runtime.send` hands a :class:`~plexus.protocol.messages.Message` to the network and returns
a :class:`Transmission`, a future that

- resolves (to ``None``) when the message has been delivered to the destination node;
- fails with :class:`UnknownPeer` at once when the destination is not a node this runtime can address;
- fails with :class:`PeerUnreachable` when the message cannot be delivered: the destination is offline when
  the message would arrive, either end crashes or leaves during the transfer, or (live) the connection cannot
  be made or breaks before the peer acknowledged the message;
- is never cancelled by the runtime. Cancelling it abandons the transfer while its bytes are still leaving
  (the simulator stops charging bandwidth for it, and ``sent`` is cancelled too); once the last byte has left
  it only detaches the caller and the message is still delivered. A cancellation is not a loss.

``transmission.sent`` is a second future that resolves when the message's last byte has left this node's
uplink (the moment a node that paces itself by its uplink may send more), and fails like the transmission if
the transfer is aborted before that. There is no ordering guarantee between messages, even between the same two
nodes: the simulator shares bandwidth between concurrent transfers, so a small message sent after a large one may
arrive first, and protocols tag what they send (a round, an age) rather than rely on order. Sending to oneself is
allowed: the message is delivered as a separate callback after zero delay (never re-entrantly), costs no
bandwidth, and both futures resolve then. A message is shared, not copied: it is
immutable and its model is a read-only array, so receivers copy before they modify.

Receiving is the node's business: the runtime calls ``node.deliver(sender, message)`` once per message, where
``sender`` is the authenticated id of the node that sent it (in the live world, the key that signed it).

**Training.** :meth:`Runtime.train` trains a copy of ``params`` for ``steps`` local SGD steps on this node's
own data and returns a future of :class:`TrainResult`. A node trains one job at a time; later jobs queue behind
earlier ones. Cancelling the future abandons the job (its compute is released). Training never changes its
input array.

**Membership.** :attr:`Runtime.view` is this node's own :class:`~plexus.protocol.view.View`: the nodes it knows,
with their advertised capacities. It is the node's to change (churn algorithms do); the runtime only seeds it.

**Churn.** A runtime may take a node down (a crash, or a graceful leave after :meth:`Node.leave`) and bring it
back (:meth:`Node.rejoin` with its state, or a fresh object and :meth:`Node.join`); see
:mod:`plexus.protocol.node`. While a node is down nothing it started runs: its timers, training jobs and
transmissions never complete, and messages to it are lost (their senders' transmissions fail).

**The rest.** :meth:`Runtime.initial_model` is the experiment's seeded initial model, identical on every node
and read-only; :meth:`Runtime.parameter_layout` the sizes of the model's parameter tensors in the order they lie in
that flat vector (for algorithms that treat layers separately; by default one tensor holding everything);
:attr:`Runtime.local_samples` the size of the node's training set; :attr:`Runtime.rng` a generator seeded for
this node alone; :attr:`Runtime.metrics` the :class:`MetricsSink` through which a node
reports to whoever observes the run (never to other nodes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from plexus.protocol.futures import Future, Task
from plexus.protocol.messages import Message
from plexus.protocol.view import PeerInfo, View

__all__ = [
    "MetricsSink",
    "PeerInfo",
    "PeerUnreachable",
    "Runtime",
    "SendError",
    "Timer",
    "TrainResult",
    "Transmission",
    "UnknownPeer",
    "View",
]


class SendError(Exception):
    """Why a :class:`Transmission` failed. ``peer`` is the destination."""

    def __init__(self, peer: bytes, reason: str) -> None:
        super().__init__(f"{reason} ({peer[:16]!r})")
        self.peer = peer
        self.reason = reason


class UnknownPeer(SendError):
    """The destination is not a node this runtime can address."""


class PeerUnreachable(SendError):
    """The message could not be delivered: destination offline or crashed, or the connection failed."""


class Transmission(Future[None]):
    """A sent message: resolves on delivery, fails with :class:`SendError`; ``sent`` resolves when the message
    has left this node's uplink. See the module docstring for the exact rules."""

    __slots__ = ("_sent", "_left")

    def __init__(self) -> None:
        # Future.__init__ written out: a simulation makes one transmission per message
        self._callbacks = None
        self._done = False
        self._result = None
        self._exception = None
        self._cancelled = False
        self._on_cancel = None
        self._sent: Future[None] | None = None
        self._left = False

    @property
    def sent(self) -> Future[None]:
        """Resolved when the last byte has left this node's uplink (created on first use)."""
        future = self._sent
        if future is None:
            future = self._sent = Future()
            if self._left:
                future.set_result(None)
            elif self._done and self._exception is not None:
                future.set_exception(self._exception)
        return future

    # ----------------------------------------------------------- for runtimes
    def mark_sent(self) -> None:
        """Runtime side: the last byte has left the sender."""
        self._left = True
        if self._sent is not None:
            self._sent.set_result(None)

    def mark_delivered(self) -> None:
        """Runtime side: the destination node has the message."""
        if not self._left:
            self.mark_sent()
        if not self._done:  # set_result(None), one call fewer per message
            self._finish()

    def cancel(self) -> bool:
        if self._sent is not None and not self._left:
            self._sent.cancel()
        return super().cancel()

    def mark_failed(self, error: SendError) -> None:
        """Runtime side: the message will never be delivered."""
        if self._sent is not None and not self._left:
            self._sent.set_exception(error)
        self.set_exception(error)


class Timer(Protocol):
    """A scheduled callback (asyncio's ``TimerHandle`` satisfies this)."""

    def cancel(self) -> None: ...

    def cancelled(self) -> bool: ...

    def when(self) -> float: ...


class TrainResult(NamedTuple):
    """A trained model: the new parameters, the mean training loss and the samples it was trained on."""

    params: np.ndarray
    loss: float
    samples: int


class MetricsSink(ABC):
    """What a node reports to whoever observes the run (an observer in simulation, a log and an optional
    observer process when live). Reports never influence the protocol."""

    @abstractmethod
    def global_model(self, round: int, params: np.ndarray) -> None:
        """A round's aggregated (global) model exists; the observer may evaluate it."""

    @abstractmethod
    def count(self, name: str, amount: int = 1) -> None:
        """Increment a named counter (late models dropped, stale training abandoned, ...)."""

    @abstractmethod
    def rejected(self, reason: str, sender: bytes) -> None:
        """A message from ``sender`` was refused for ``reason`` (a short snake_case phrase, e.g.
        ``not_in_sample``); counted per reason (``summary.json``'s ``rejections``), logged once per peer and
        reason in the live world."""

    @abstractmethod
    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        """How long a round took, as its aggregator or server saw it.

        Decentralized-learning nodes pass their own id as ``node``: every node has its own rounds there, and the
        observer also learns from these calls how far each node has got (its round clock).
        """

    # Not abstract, so that sinks written before churn existed keep working: they simply ignore these reports.
    def aggregated(self, round: int, node: bytes, models: int, participants: Sequence[bytes]) -> None:
        """``node`` averaged ``models`` models of ``round`` and handed the result to ``participants`` (the sample
        of the next round it actually reached: under churn, fewer than s when candidates did not answer)."""
        return None

    def event(self, node: bytes, name: str) -> None:
        """Something a run's reader should see on a timeline happened at ``node`` (e.g. ``recovery``: a hand-off
        to a node that had gone was redone with another one)."""
        return None


class Runtime(ABC):
    """What an algorithm may use. All times are in seconds of the runtime's clock; see the module docstring."""

    node_id: bytes

    @property
    @abstractmethod
    def rng(self) -> np.random.Generator:
        """A generator seeded for this node alone (the same sequence on every run of the same experiment)."""

    @property
    @abstractmethod
    def metrics(self) -> MetricsSink:
        """Where this node reports counters, rejections, global models and round durations."""

    @abstractmethod
    def now(self) -> float:
        """Current time: virtual in simulation, wall-clock in the live world."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay`` seconds unless the returned timer is cancelled."""

    def sleep(self, delay: float) -> Future[None]:
        """A future resolved after ``delay`` seconds; ``await runtime.sleep(d)`` in coroutine-style nodes.
        Cancelling it cancels the timer."""
        future: Future[None] = Future()
        timer = self.call_later(delay, future.set_result, None)
        future.on_cancel(timer.cancel)
        return future

    def spawn(self, coroutine: Coroutine[Any, None, Any]) -> Future[Any]:
        """Run a coroutine-style protocol routine; it starts immediately and stops at its first await."""
        return Task(coroutine)

    @abstractmethod
    def send(self, peer: bytes, message: Message) -> Transmission:
        """Send ``message`` to node ``peer``; see the module docstring for what the returned future means."""

    @abstractmethod
    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        """Train ``params`` for ``steps`` local SGD steps on this node's data; cancel the future to abandon it."""

    @property
    @abstractmethod
    def view(self) -> View:
        """This node's own view of the membership."""

    @abstractmethod
    def initial_model(self) -> np.ndarray:
        """The experiment's seeded initial model, the same on every node (read-only)."""

    def parameter_layout(self) -> tuple[int, ...]:
        """The sizes of the model's parameter tensors, in flat-vector order (they sum to the vector's length).
        A runtime that knows the model's layers overrides this; the default is one tensor holding everything."""
        return (int(self.initial_model().size),)

    @property
    @abstractmethod
    def local_samples(self) -> int:
        """How many training samples this node holds (used for sample-count weighting)."""


def call_soon(runtime: Runtime, callback: Callable[..., Any], *args: Any) -> Timer:
    """Run ``callback(*args)`` as a separate callback as soon as possible (after zero delay)."""
    return runtime.call_later(0.0, callback, *args)

"""The live :class:`~plexus.protocol.runtime.Runtime`: the contract on asyncio, the wall clock and the signed TCP
transport of :mod:`plexus.live.transport`. The node classes are the simulator's, unchanged.

**How each part of the contract is met.**

- *Time*: ``now()`` is seconds since the run's origin (the observer's ``StartRun`` gives every node the same
  origin; without an observer, the node's own start). ``call_later`` is asyncio's ``loop.call_later`` (callbacks
  run one at a time on the event loop, never inside ``call_later``, same-time callbacks in scheduling order,
  negative delays as 0, NaN refused); the returned timer's ``when()`` is on the runtime's clock.
- *Sending*: ``send`` encodes the message once (a model sent to 13 peers is encoded and hashed once), queues it
  on the transport, and returns a :class:`~plexus.protocol.runtime.Transmission` that resolves when the receiving
  node acknowledged it. It fails at once with ``UnknownPeer`` when no address is known for the destination, and
  with ``PeerUnreachable`` when the connection cannot be made, breaks before the acknowledgement, the peer refuses
  the message, or the per-peer queue is full. ``sent`` resolves when the last byte went to the kernel. Cancelling
  drops a message still queued; one being written is finished (TCP cannot take half a frame back) and delivered.
  Sending to oneself is a separate callback after zero delay that costs no bandwidth.
- *Training* runs on a worker thread (one job at a time, later jobs queued), so the event loop keeps receiving,
  acknowledging and answering while a node trains; the result comes back to the loop. Cancelling a job not yet
  started drops it; a job already running finishes in the background and its result is discarded.
- *Receiving*: every message is decoded with the wire format's hostile checks (kind registered, lengths, at most
  the run's parameter count, finite values), then handed to ``node.deliver`` with the authenticated sender. A
  decoding failure is refused, counted by reason and counts as a strike against the sender (see the transport).
- *Metrics*: counters and rejections are kept per node (rejections logged once per peer and reason, also in
  ``events.csv``), round durations and global models are logged, and reported to the observer when there is one.
- An exception escaping a callback is a protocol bug: it is logged with its traceback and the node stops
  (status ``failed``).

**Stopping.** A node stops when its local stop condition holds: ``duration`` seconds after the origin; for
algorithms with rounds, once its own round clock passes ``rounds`` (it produced or finished round R, or received
a message tagged with a later round, which exists only once round R is over); for algorithms with periods (gossip)
at ``rounds x period`` seconds. The observer's ``StopRun`` stops nodes that cannot see the end themselves (a
Plexus node outside the last samples). SIGINT/SIGTERM stop a node too, announcing its leave first when its
algorithm has a ``leave()`` method. A stopping node saves its state, sends its final report, and waits briefly for
its last messages to be acknowledged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plexus.learning.trainer import TrainJob
from plexus.live.control import REPORT_TYPES, ModelReport, RoundReport, StartRun, StatusReport, StopRun, Totals
from plexus.live.events import EventLog
from plexus.live.keys import Identity, short_id
from plexus.live.state import NodeState, load_state, save_state
from plexus.live.transport import Limits, Transport
from plexus.protocol.futures import Future
from plexus.protocol.messages import MalformedMessage, Message, decode, encode
from plexus.protocol.node import Node
from plexus.protocol.registry import Algorithm
from plexus.protocol.runtime import (
    MetricsSink,
    PeerUnreachable,
    Runtime,
    TrainResult,
    Transmission,
    UnknownPeer,
)
from plexus.protocol.view import View

log = logging.getLogger("plexus.live")

LOGGED_PAIRS_LIMIT = 10_000  # (peer, reason) pairs logged individually; later ones are only counted
EARLY_MESSAGES_LIMIT = 256  # protocol messages kept while waiting for the start


def rejection_reason(error: MalformedMessage) -> str:
    """The counted reason of a message that failed to decode."""
    text = str(error)
    if text.startswith("unknown message kind"):
        return "unknown_message_kind"
    if "NaN or infinite" in text or text.endswith(": NaN"):
        return "non_finite_values"
    if "more than the limit" in text:
        return "oversized_message"
    if "expected" in text and "parameters" in text:
        return "wrong_parameter_count"
    return "malformed_message"


def loss_reason(error: str) -> str:
    """A failed send's reason, reduced to a counter name (``summary.json``'s ``messages_lost``)."""
    for needle, name in (("cannot connect", "unreachable"), ("handshake", "unreachable"),
                         ("refused", "refused_by_peer"), ("queue", "queue_full"),
                         ("acknowledgement within", "ack_timeout"), ("shutting down", "shutdown"),
                         ("closed", "connection_lost"), ("lost", "connection_lost")):
        if needle in error:
            return name
    return "other"


class _Timer:
    """asyncio's timer handle, with ``when()`` on the runtime's clock."""

    __slots__ = ("_handle", "_origin")

    def __init__(self, handle: asyncio.TimerHandle, origin: float) -> None:
        self._handle = handle
        self._origin = origin

    def cancel(self) -> None:
        self._handle.cancel()

    def cancelled(self) -> bool:
        return self._handle.cancelled()

    def when(self) -> float:
        return self._handle.when() - self._origin


class LiveMetrics(MetricsSink):
    """A node's own reports: counters, rejections (logged once per peer and reason), rounds, global models."""

    def __init__(self, runtime: LiveRuntime) -> None:
        self.runtime = runtime
        self.counters: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self._logged: set[tuple[bytes, str]] = set()
        self.rounds: list[tuple[int, str, float, float]] = []
        self.global_rounds = 0

    def global_model(self, round: int, params: np.ndarray) -> None:
        self.runtime._global_model(round, params)

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def rejected(self, reason: str, sender: bytes) -> None:
        self.rejections[reason] += 1
        pair = (sender, reason)
        if pair in self._logged:
            return
        if len(self._logged) >= LOGGED_PAIRS_LIMIT:
            if len(self._logged) == LOGGED_PAIRS_LIMIT:
                self._logged.add((b"", "\x00limit"))
                log.warning("%s: more than %d peers and reasons rejected; further ones are only counted",
                            self.runtime.label, LOGGED_PAIRS_LIMIT)
            return
        self._logged.add(pair)
        who = short_id(sender) if sender else "an unauthenticated connection"
        log.warning("%s: refused a message from %s: %s (further ones from it for this reason are only counted)",
                    self.runtime.label, who, reason)
        self.runtime.events.add("rejected", None, f"{reason} from {who}")

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        self.runtime._round_done(round, seconds, node)


class LiveRuntime(Runtime):
    """One node's runtime (see the module docstring). Build it, ``await open(host, port)``, ``attach`` the node,
    then ``begin(origin)``; ``finished`` is set once the node has stopped; ``await shutdown()`` ends it."""

    def __init__(
        self,
        *,
        identity: Identity,
        index: int,
        view: View,
        network: str,
        addresses: dict[bytes, tuple[str, int]],
        spec: Algorithm,
        options: Any,
        initial: np.ndarray,
        local_samples: int,
        rng: np.random.Generator,
        trainer: Any,
        executor: concurrent.futures.Executor,
        limits: Limits | None = None,
        observer: bytes | None = None,
        rounds: int | None = None,
        duration: float | None = None,
        eval_every: int = 1,
        reports_models: bool = False,
        state_dir: str | Path | None = None,
        events_path: str | Path | None = None,
        save_interval: float = 2.0,
        leave_grace: float = 2.0,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.index = index
        self.label = f"node {index} ({short_id(self.node_id)})"
        self._view = view
        self.spec = spec
        self.options = options
        self._initial = initial
        self._local_samples = local_samples
        self._rng = rng
        self.trainer = trainer
        self.executor = executor
        self.observer = observer
        self.rounds = rounds
        self.duration = duration
        self.eval_every = max(1, int(eval_every))
        self.reports_models = reports_models
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.save_interval = save_interval
        self.leave_grace = leave_grace
        self.network = network
        self.parameters = int(initial.size)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0  # loop.time() at the run's time 0
        limits = limits or Limits(max_message_bytes=_message_limit(self.parameters))
        self.transport = Transport(identity, network, self._on_payload, self._on_reject, limits, addresses,
                                   on_address=self._on_address)
        self._metrics = LiveMetrics(self)
        self.events = EventLog(events_path, str(index), self.now)
        self.node: Node | None = None
        self.status = "created"  # created -> waiting -> running -> stopping -> stopped | failed
        self.stop_reason = ""
        self.error: BaseException | None = None
        self.finished = asyncio.Event()
        self.started = asyncio.Event()
        self.clock_round = 0
        self.last_model: np.ndarray | None = None
        self.bytes_sent = 0
        self.messages_sent = 0
        self.train_seconds = 0.0
        self.training_jobs = 0
        self.messages_lost: Counter[str] = Counter()
        self._logged_losses: set[tuple[bytes, str]] = set()
        self._jobs = 0
        self._encoded: OrderedDict[int, tuple[Message, bytes, bytes]] = OrderedDict()
        self._early: list[tuple[bytes, Message]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._last_global_time = 0.0
        self._save_due = False
        self._last_save = -math.inf
        self.resumed_from: NodeState | None = None

    # --------------------------------------------------------------------------------------------- contract
    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    @property
    def metrics(self) -> LiveMetrics:
        return self._metrics

    @property
    def view(self) -> View:
        return self._view

    def initial_model(self) -> np.ndarray:
        return self._initial

    @property
    def local_samples(self) -> int:
        return self._local_samples

    def now(self) -> float:
        loop = self.loop
        return 0.0 if loop is None else loop.time() - self._origin

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        if delay != delay:
            raise ValueError("call_later: the delay is NaN")
        assert self.loop is not None, "the runtime is not open"
        handle = self.loop.call_later(max(0.0, float(delay)), self._guard, callback, *args)
        return _Timer(handle, self._origin)

    def send(self, peer: bytes, message: Message) -> Transmission:
        transmission = Transmission()
        if peer == self.node_id:
            assert self.loop is not None
            self.loop.call_soon(self._deliver_to_self, message, transmission)
            return transmission
        if not self.transport.knows(peer):
            self.messages_lost["unknown_peer"] += 1
            transmission.mark_failed(UnknownPeer(peer, "no address is known for this node"))
            return transmission
        payload, digest = self._encode(message)
        self.bytes_sent += message.wire_size
        self.messages_sent += 1

        def sent() -> None:
            self._guard(transmission.mark_sent)

        def done(error: str | None) -> None:
            if error is None:
                self._guard(transmission.mark_delivered)
            else:
                self._send_failed(peer, error)
                self._guard(transmission.mark_failed, PeerUnreachable(peer, error))

        out = self.transport.send(peer, payload, sent, done, digest)
        transmission.on_cancel(lambda: self.transport.cancel(out))
        return transmission

    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        assert self.loop is not None
        loop = self.loop
        future: Future[TrainResult] = Future()
        job = TrainJob(self.index, self._jobs, params, int(steps))
        self._jobs += 1
        self.last_model = params
        work = self.executor.submit(self._run_job, job)

        def finished(work: concurrent.futures.Future[tuple[TrainResult, float]]) -> None:
            try:
                loop.call_soon_threadsafe(self._trained, future, work)
            except RuntimeError:
                pass  # the loop is closed: the node is gone

        work.add_done_callback(finished)
        future.on_cancel(lambda: work.cancel())
        return future

    # --------------------------------------------------------------------------------------------- life
    async def open(self, host: str, port: int) -> tuple[str, int]:
        """Listen for peers; returns the bound address."""
        self.loop = asyncio.get_running_loop()
        self._origin = self.loop.time()
        return await self.transport.start(host, port)

    def attach(self, node: Node) -> None:
        self.node = node
        self.status = "waiting"

    def set_origin(self, origin_unix: float) -> None:
        """Put time 0 of this node's clock at UNIX time ``origin_unix`` (shared by the run's nodes)."""
        assert self.loop is not None
        self._origin = self.loop.time() - (time.time() - origin_unix)

    def begin(self, origin_unix: float | None = None, state: NodeState | None = None) -> None:
        """Start the node (or resume it from ``state``) and arm the local stop conditions."""
        assert self.loop is not None and self.node is not None
        if self.status != "waiting":
            return
        if origin_unix is not None:
            self.set_origin(origin_unix)
        self.status = "running"
        self.started.set()
        if state is not None:
            self._resume(state)
        else:
            self.events.add("started", None, f"id {self.node_id.hex()}")
            self._guard(self.node.start)
        if self.duration is not None:
            self._arm(self.duration, self.request_stop, f"duration of {self.duration:g}s reached")
        period = self._period()
        if period is not None:
            if self.rounds is not None:
                self._arm(self.rounds * period, self._period_end)
            if self.reports_models:
                self._arm(self.eval_every * period, self._period_report, 1)
        early, self._early = self._early, []
        for sender, message in early:
            self._deliver(sender, message)

    def _arm(self, at: float, callback: Callable[..., Any], *args: Any) -> None:
        assert self.loop is not None
        self._timers.append(self.loop.call_later(max(0.0, at - self.now()), self._guard, callback, *args))

    def _period(self) -> float | None:
        spec = self.spec
        if spec.traits.clock == "periods" and spec.period is not None:
            return float(spec.period(self.options))
        return None

    def _resume(self, state: NodeState) -> None:
        """Restore a saved state into a fresh node. A node class may define ``resume(state)`` (it then decides
        everything); otherwise the runtime restores the view, the model (``model`` attribute of decentralized
        nodes), and the ``round``/``age`` counters, then starts the node, except for algorithms evaluated by
        global models whose nodes already took part (they wait for the next global model that samples them)."""
        node = self.node
        assert node is not None
        self.resumed_from = state
        if state.view:
            self._view.replace(state.view)
        self.clock_round = max(self.clock_round, state.round)
        self.last_model = state.model
        self.events.add("resumed", state.round, f"saved state of t={state.saved_at:.1f}s")
        log.info("%s: resuming from saved state (round %d)", self.label, state.round)
        resume = getattr(node, "resume", None)
        if callable(resume):
            self._guard(resume, state)
            return
        if state.model is not None and isinstance(getattr(node, "model", None), np.ndarray) \
                and node.model.size == state.model.size:  # type: ignore[attr-defined]
            node.model = state.model  # type: ignore[attr-defined]
        for name in ("round", "age"):
            if isinstance(getattr(node, name, None), int) and not isinstance(getattr(node, name), bool):
                setattr(node, name, int(state.extra.get(name, state.round) if state.extra else state.round))
        if self.spec.traits.evaluation == "global" and state.round >= 1:
            return
        self._guard(node.start)

    def request_stop(self, reason: str, leave: bool = False) -> None:
        """Stop the node (deferred to its own callback, so the one in progress completes first)."""
        if self.status in ("stopping", "stopped", "failed"):
            return
        if self.status in ("created", "waiting"):
            self.stop_reason = reason
            self.status = "stopped"
            self.events.add("stopping", None, reason)
            self.finished.set()
            return
        assert self.loop is not None
        self.status = "stopping"
        self.stop_reason = reason
        self.events.add("stopping", None, reason)
        log.info("%s: stopping: %s", self.label, reason)
        node = self.node
        leave_hook = getattr(node, "leave", None) if leave else None
        if callable(leave_hook):
            self.events.add("left", self.clock_round)
            self._guard(leave_hook)
            self.loop.call_later(self.leave_grace, self._stop_node)
        else:
            self.loop.call_soon(self._stop_node)

    def _stop_node(self) -> None:
        if self.status == "stopping":
            for timer in self._timers:
                timer.cancel()
            if self.node is not None:
                self._guard(self.node.stop)
            if self.status == "stopping":
                self.status = "stopped"
        self.finished.set()

    def _fail(self, error: BaseException) -> None:
        if self.status in ("stopped", "failed"):
            return
        self.error = error
        self.status = "failed"
        self.stop_reason = f"protocol error: {type(error).__name__}: {error}"
        self.events.add("failed", None, self.stop_reason[:200])
        for timer in self._timers:
            timer.cancel()
        if self.node is not None:
            try:
                self.node.stop()
            except Exception:
                log.exception("%s: stop() failed too", self.label)
        self.finished.set()

    async def shutdown(self, grace: float = 2.0) -> None:
        """After ``finished``: save the state, send the final report, flush, close."""
        self.save_state()
        if self.observer is not None:
            await self.report_and_wait(StatusReport(self.now(), "failed" if self.status == "failed" else "final",
                                                    json.dumps(self.summary())), timeout=5.0)
        await self.transport.close(grace)
        self.events.add("stopped", self.clock_round, self.stop_reason)
        self.events.close()

    def summary(self) -> dict[str, Any]:
        """This node's totals (the ``final`` report and ``node-summary.json``)."""
        transport = self.transport
        return {
            "index": self.index,
            "id": self.node_id.hex(),
            "status": self.status,
            "stop_reason": self.stop_reason,
            "round": self.progress_round(),
            "time_s": self.now(),
            "bytes_sent": self.bytes_sent,
            "messages_sent": self.messages_sent,
            "train_seconds": self.train_seconds,
            "training_jobs": self.training_jobs,
            "transport_bytes_sent": transport.bytes_sent,
            "transport_bytes_received": transport.bytes_received,
            "messages_delivered": transport.messages_delivered,
            "counters": dict(sorted(self._metrics.counters.items())),
            "rejections": dict(sorted(self._metrics.rejections.items())),
            "messages_lost": dict(sorted(self.messages_lost.items())),
            "resumed": self.resumed_from is not None,
        }

    def progress_round(self) -> int:
        """The latest round this node knows of: its round clock, or its node's own ``round`` counter when that is
        further (a Plexus participant that never aggregates sees no global model but trains in rounds)."""
        own = getattr(self.node, "round", None)
        if isinstance(own, int) and not isinstance(own, bool):
            return max(self.clock_round, own)
        return self.clock_round

    # --------------------------------------------------------------------------------------------- state
    def save_state(self) -> None:
        if self.state_dir is None or self.node is None:
            return
        node = self.node
        model = None
        try:
            model = node.current_model()
        except Exception:
            log.exception("%s: current_model() failed", self.label)
        if model is None:
            model = self.last_model
        extra = {name: int(getattr(node, name)) for name in ("round", "age")
                 if isinstance(getattr(node, name, None), int) and not isinstance(getattr(node, name), bool)}
        try:
            save_state(self.state_dir, NodeState(self.node_id, self.network, self.spec.name, self.progress_round(),
                                                 list(self._view.roster.peers()), self.now(), model, extra))
        except OSError as error:
            log.warning("%s: cannot save state to %s: %s", self.label, self.state_dir, error)
            return
        self._last_save = time.monotonic()

    def _maybe_save(self) -> None:
        if self.state_dir is None or self._save_due:
            return
        wait = self.save_interval - (time.monotonic() - self._last_save)
        if wait <= 0:
            self.save_state()
            return
        self._save_due = True
        assert self.loop is not None

        def later() -> None:
            self._save_due = False
            if self.status == "running":
                self.save_state()

        self.loop.call_later(wait, later)

    def load_saved_state(self) -> NodeState | None:
        if self.state_dir is None:
            return None
        state = load_state(self.state_dir, self.parameters)
        if state is not None and (state.node_id != self.node_id or state.network != self.network
                                  or state.algorithm != self.spec.name):
            log.warning("%s: the state in %s belongs to another node, run or algorithm; starting afresh",
                        self.label, self.state_dir)
            return None
        return state

    # --------------------------------------------------------------------------------------------- internals
    def _guard(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run node code; an exception escaping it is a protocol bug that stops this node."""
        if self.status == "failed":
            return None
        try:
            return callback(*args)
        except Exception as error:
            log.exception("%s: protocol error in %s; the node stops", self.label,
                          getattr(callback, "__qualname__", callback))
            self._fail(error)
            return None

    def _encode(self, message: Message) -> tuple[bytes, bytes]:
        key = id(message)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] is message:
            self._encoded.move_to_end(key)
            return cached[1], cached[2]
        payload = encode(message)
        digest = hashlib.sha256(payload).digest()
        self._encoded[key] = (message, payload, digest)
        while len(self._encoded) > 2:
            self._encoded.popitem(last=False)
        return payload, digest

    def _deliver_to_self(self, message: Message, transmission: Transmission) -> None:
        if self.status != "running" or self.node is None:
            transmission.mark_failed(PeerUnreachable(self.node_id, "this node has stopped"))
            return
        self._guard(self.node.deliver, self.node_id, message)
        self._guard(transmission.mark_delivered)

    def _send_failed(self, peer: bytes, error: str) -> None:
        reason = loss_reason(error)
        self.messages_lost[reason] += 1
        if (peer, reason) not in self._logged_losses and len(self._logged_losses) < LOGGED_PAIRS_LIMIT:
            self._logged_losses.add((peer, reason))
            self.events.add("send_failed", None, f"to {short_id(peer)}: {error}"[:200])

    def _run_job(self, job: TrainJob) -> tuple[TrainResult, float]:
        started = time.perf_counter()
        result = self.trainer.run(job)
        return result, time.perf_counter() - started

    def _trained(self, future: Future[TrainResult],
                 work: concurrent.futures.Future[tuple[TrainResult, float]]) -> None:
        if future.done() or work.cancelled():
            return
        error = work.exception()
        if error is not None:
            self._guard(future.set_exception, error)
            return
        result, seconds = work.result()
        self.train_seconds += seconds
        self.training_jobs += 1
        if self.status != "running":
            return
        self.report(Totals(self.now(), self.bytes_sent, self.messages_sent, self.train_seconds))
        self._guard(future.set_result, result)
        self._maybe_save()

    def _on_reject(self, reason: str, peer: bytes) -> None:
        self._metrics.rejected(reason, peer)
        if reason == "peer_banned":
            self.events.add("banned", None, short_id(peer))

    def _on_address(self, peer: bytes, host: str, port: int) -> None:
        if peer in self._view or peer not in self.transport.addresses:
            self.transport.set_address(peer, host, port)

    def _on_payload(self, sender: bytes, payload: bytes | bytearray) -> str | None:
        """The transport's delivery: decode with the hostile checks, then hand over (None = delivered)."""
        try:
            message = decode(payload, max_parameters=self.parameters,
                             max_field_bytes=self.transport.limits.max_message_bytes)
        except MalformedMessage as error:
            reason = rejection_reason(error)
            self._metrics.rejected(reason, sender)
            self.transport.strike(sender, reason)
            return str(error)[:200]
        if isinstance(message, (StartRun, StopRun)):
            return self._control(sender, message)
        if isinstance(message, REPORT_TYPES):
            self._metrics.rejected("unexpected_message_type", sender)
            self.transport.strike(sender, "unexpected_message_type")
            return "this is a node, not an observer"
        if self.status in ("created", "waiting"):
            if len(self._early) >= EARLY_MESSAGES_LIMIT:
                return "the node has not started yet"
            self._early.append((sender, message))
            return None
        if self.status != "running":
            return "the node has stopped"
        self._deliver(sender, message)
        return None

    def _deliver(self, sender: bytes, message: Message) -> None:
        if self.status != "running" or self.node is None:
            return
        round = getattr(message, "round", None)
        if self.rounds is not None and type(round) is int and round > self.rounds \
                and self.spec.traits.clock == "rounds":
            # only a round after the last exists once round R is over: this node's run is complete
            self._note_round(self.rounds)
            self.request_stop(f"round {self.rounds} is over (received a message of round {round})")
            return
        self._guard(self.node.deliver, sender, message)

    def _control(self, sender: bytes, message: Message) -> str | None:
        if sender != self.observer:
            self._metrics.rejected("not_the_observer", sender)
            self.transport.strike(sender, "not_the_observer")
            return "only the observer may start or stop the run"
        if isinstance(message, StartRun):
            if not math.isfinite(message.origin):
                self._metrics.rejected("malformed_message", sender)
                return "bad origin"
            if self.status == "waiting":
                assert self.loop is not None
                # every node starts at the same instant, the origin, whenever the notice reached it
                self.loop.call_later(max(0.0, message.origin - time.time()), self._start_from_observer,
                                     message.origin)
        elif isinstance(message, StopRun):
            assert self.loop is not None
            self.loop.call_soon(self.request_stop, f"the observer stopped the run: {message.reason}"[:200])
        return None

    def _start_from_observer(self, origin: float) -> None:
        if self.status == "waiting":
            self.begin(origin, self.load_saved_state())

    def _note_round(self, round: int) -> None:
        if round > self.clock_round:
            self.clock_round = round

    def _global_model(self, round: int, params: np.ndarray) -> None:
        self._note_round(round)
        self.last_model = params
        now = self.now()
        digest = hashlib.sha256(np.ascontiguousarray(params, dtype=np.float32).tobytes()).hexdigest()[:16]
        self.events.add("global_model", round, digest)
        self._metrics.global_rounds += 1
        self.report(RoundReport(round, now, now - self._last_global_time, self.bytes_sent, self.messages_sent,
                                self.train_seconds))
        self._last_global_time = now
        if round % self.eval_every == 0 or (self.rounds is not None and round >= self.rounds):
            self.report(ModelReport(round, now, "global", params))
        self._maybe_save()
        if self.rounds is not None and round >= self.rounds and self.spec.traits.clock == "rounds":
            self.request_stop(f"round {self.rounds} reached (this node aggregated it)")

    def _round_done(self, round: int, seconds: float, node: bytes | None) -> None:
        now = self.now()
        self._note_round(round)
        self._metrics.rounds.append((round, str(self.index), now, seconds))
        self.events.add("round", round, f"{seconds:.4f}s")
        self.report(RoundReport(round, now, seconds, self.bytes_sent, self.messages_sent, self.train_seconds))
        final = self.rounds is not None and round >= self.rounds and self.spec.traits.clock == "rounds"
        if self.reports_models and (round % self.eval_every == 0 or final) and self.node is not None:
            model = self.node.current_model()
            if model is not None:
                self.report(ModelReport(round, now, "node", model))
        self._maybe_save()
        if final:
            self.request_stop(f"round {self.rounds} reached")

    def _period_report(self, count: int) -> None:
        period = self._period()
        if period is None or self.status != "running" or self.node is None:
            return
        round = count * self.eval_every
        if self.rounds is not None and round >= self.rounds:
            return  # the final report comes with the end of the last period
        self._note_round(round)
        model = self.node.current_model()
        if model is not None:
            self.report(ModelReport(round, self.now(), "node", model))
        self._arm((count + 1) * self.eval_every * period, self._period_report, count + 1)

    def _period_end(self) -> None:
        assert self.rounds is not None
        self._note_round(self.rounds)
        if self.node is not None:
            model = self.node.current_model()
            self.report(RoundReport(self.rounds, self.now(), 0.0, self.bytes_sent, self.messages_sent,
                                    self.train_seconds))
            if self.reports_models and model is not None:
                self.report(ModelReport(self.rounds, self.now(), "node", model))
        self.request_stop(f"{self.rounds} periods elapsed")

    # --------------------------------------------------------------------------------------------- observer
    def report(self, message: Message) -> None:
        """Send a report to the observer, if there is one (losses are counted, never fatal)."""
        if self.observer is None:
            return
        payload, digest = self._encode(message)

        def done(error: str | None) -> None:
            if error is not None:
                self.messages_lost["report_" + loss_reason(error)] += 1

        self.transport.send(self.observer, payload, _nothing, done, digest)

    async def report_and_wait(self, message: Message, timeout: float) -> bool:
        """Send a report and wait (at most ``timeout`` s) for the observer's acknowledgement."""
        if self.observer is None:
            return False
        assert self.loop is not None
        outcome: asyncio.Future[str | None] = self.loop.create_future()

        def done(error: str | None) -> None:
            if not outcome.done():
                outcome.set_result(error)

        self.transport.send(self.observer, encode(message), _nothing, done)
        try:
            error = await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            return False
        return error is None


def _nothing() -> None:
    pass


def _message_limit(parameters: int) -> int:
    """The largest message a run needs: a model plus generous room for other fields (views, ids)."""
    return 4 * parameters + (1 << 20)

"""Observation of a live run without a server: the observer.

A live run has no central party that the protocol needs. What an experiment needs, though, is someone who holds
the test set, evaluates models, writes ``metrics.csv``, and tells everyone when the run is over. That is the
**observer**: an optional process with its own key, named in the peers file, that is *not* a node (it holds no
training data, is in no node's view, is never sampled, and no protocol message ever goes to it). Its design:

- **What it learns.** Nodes push signed reports to it (:mod:`plexus.live.control`): a ``RoundReport`` when an
  aggregator produced a round's global model (Plexus, FedAvg) or when a decentralized node finished one of its own
  rounds; a ``ModelReport`` with the global model every ``eval_every`` rounds (and the last round), or, for
  decentralized algorithms, each evaluated node's own model every ``eval_every`` of its rounds (gossip: every
  ``eval_every x round_timeout`` seconds of the shared clock); ``Totals`` after each training job; a ``ready``
  status when a node listens, and a ``final`` one with its counters, rejections and totals when it stops.
  Evaluated nodes are the simulator's: all nodes up to 100, else a fixed seeded sample of ``eval_nodes``.
- **What it computes.** Global models are evaluated on the test set as they arrive (on a worker thread, so
  reports keep flowing). Node models are evaluated as they arrive and summarised per round once every evaluated
  node has reported that round (mean, standard deviation, mean loss), so a row describes the nodes *at the same
  round* (the simulator samples them at the same instant; in a live run nodes reach a round at different times).
  Cost columns (``bytes_total``, ``messages_total``, ``train_seconds_total``) sum the nodes' latest totals, so a
  row's costs can lag by one training job per node; the summary's totals come from the final reports and are
  exact. ``time_s`` is the wall clock since the run's origin.
- **Start and stop.** With ``start = "observer"`` in the peers file, nodes wait until the observer has heard
  ``ready`` from all of them, then it sends ``StartRun`` with a shared origin (a node that restarts later gets the
  same origin). Every node also evaluates its own stop condition (round or time, see
  :mod:`plexus.live.runtime`); the observer stops the rest with ``StopRun`` once it has evaluated round
  ``rounds`` (or ``duration`` passed), and reports a **stall** when nothing progressed for ``stall_timeout``
  seconds. Nodes accept ``StartRun``/``StopRun`` only from the observer's key.

Without an observer a run still works: nodes train, log their events and state, and stop on their local
condition (a time limit is then the dependable one, since a Plexus node outside the last samples cannot see the
last round). The observer's trust is limited to the experiment: it can stop and start a run, never change a
model or the membership.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from plexus.live.control import ModelReport, RoundReport, StartRun, StatusReport, StopRun, Totals
from plexus.live.events import EventLog
from plexus.live.keys import Identity, short_id
from plexus.live.peers import PeersFile
from plexus.live.transport import Limits, Transport
from plexus.protocol.messages import MalformedMessage, Message, decode, encode

log = logging.getLogger("plexus.live")


class ObserverService:
    """The observer of one live run (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        peers: PeersFile,
        evaluate: Callable[[np.ndarray], Any],
        metric: str,
        evaluation: str,
        parameters: int,
        rounds: int | None,
        duration: float | None,
        eval_every: int,
        evaluated: list[int],
        stall_timeout: float = math.inf,
        limits: Limits | None = None,
        events_path: str | None = None,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        extra_ids: dict[bytes, str] | None = None,
    ) -> None:
        self.identity = identity
        self.peers = peers
        self._evaluate = evaluate
        self.metric = metric
        self.evaluation = evaluation
        self.parameters = parameters
        self.rounds = rounds
        self.duration = duration
        self.eval_every = max(1, eval_every)
        self.evaluated = set(evaluated)
        self.stall_timeout = stall_timeout
        self.on_row = on_row
        self.members: dict[bytes, str] = {peer.node_id: str(i) for i, peer in enumerate(peers.nodes)}
        self.members.update(extra_ids or {})
        limits = limits or Limits(max_message_bytes=4 * parameters + (1 << 20))
        self.transport = Transport(identity, peers.network, self._on_payload, self._on_reject, limits,
                                   peers.addresses())
        self.loop: asyncio.AbstractEventLoop | None = None
        self._origin_loop = 0.0
        self.origin: float | None = None  # UNIX time of the run's time 0
        self.events = EventLog(events_path, "observer", self.now)
        self.rows: list[dict[str, Any]] = []
        self.round_rows: list[tuple[int, str, float, float]] = []
        self.ready: set[str] = set()
        self.finals: dict[str, dict[str, Any]] = {}
        self.totals: dict[str, tuple[int, int, float]] = {}
        self.node_rounds: dict[str, int] = {}
        self.rejections: Counter[str] = Counter()
        self._logged: set[tuple[bytes, str]] = set()
        self.rounds_completed = 0
        self._last_global_time = 0.0
        self._evaluated_rounds: set[int] = set()
        self._pending: dict[int, dict[str, tuple[float, float, float]]] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plexus-eval")
        self._evaluations: set[asyncio.Future[Any]] = set()
        self.last_progress = time.monotonic()
        self.stop_reason = ""
        self.stop_time: float | None = None
        self.stalled_at: dict[str, Any] | None = None
        self.stop_reached = False
        self.stopping = asyncio.Event()
        self.everyone_final = asyncio.Event()
        self.started = asyncio.Event()
        self.eval_wall_seconds = 0.0

    # ------------------------------------------------------------------------------------------- life
    async def open(self, host: str, port: int) -> tuple[str, int]:
        self.loop = asyncio.get_running_loop()
        self._origin_loop = self.loop.time()
        return await self.transport.start(host, port)

    def now(self) -> float:
        return 0.0 if self.loop is None else self.loop.time() - self._origin_loop

    def start_run(self, delay: float = 0.2) -> None:
        """Give every node the run's origin (``delay`` seconds from now) and start the watchdogs."""
        assert self.loop is not None
        if self.origin is not None:
            return
        self.origin = time.time() + delay
        self._origin_loop = self.loop.time() + delay
        self.last_progress = time.monotonic()
        self.events.add("start_sent", None, f"{len(self.members)} participants")
        for member in self.members:
            self._send(member, StartRun(self.origin))
        self.started.set()
        if self.duration is not None:
            self.loop.call_later(delay + self.duration, self.stop, f"duration of {self.duration:g}s reached")
        if math.isfinite(self.stall_timeout):
            self.loop.call_later(self.stall_timeout, self._watch)

    def stop(self, reason: str, stalled: bool = False) -> None:
        """End the run: tell every node that has not stopped yet."""
        if self.stopping.is_set():
            return
        self.stop_reason = reason
        self.stop_time = self.now()
        if stalled:
            self.stalled_at = {"time_s": self.now(), "round": self.current_round(), "reason": reason}
        log.info("observer: stopping the run: %s", reason)
        self.events.add("stop_sent", self.current_round(), reason)
        for member, label in self.members.items():
            if label not in self.finals:
                self._send(member, StopRun(reason[:200]))
        self.stopping.set()

    async def drain(self) -> None:
        """Wait for the evaluations still running."""
        if self._evaluations:
            await asyncio.gather(*self._evaluations, return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        await self.transport.close(1.0)
        self._executor.shutdown(wait=True)
        self.events.close()

    def _watch(self) -> None:
        if self.stopping.is_set() or self.loop is None:
            return
        idle = time.monotonic() - self.last_progress
        if idle >= self.stall_timeout:
            self.stop(f"no global model, node round or training for {idle:.0f}s", stalled=True)
        else:
            self.loop.call_later(self.stall_timeout - idle, self._watch)

    def current_round(self) -> int:
        if self.evaluation == "global" or not self.node_rounds:
            return self.rounds_completed
        return sum(self.node_rounds.values()) // max(1, len(self.peers.nodes))

    def _send(self, member: bytes, message: Message) -> None:
        self.transport.send(member, encode(message), lambda: None, lambda error: None)

    # ------------------------------------------------------------------------------------------- receiving
    def _on_reject(self, reason: str, peer: bytes) -> None:
        self.rejections[reason] += 1
        if (peer, reason) not in self._logged and len(self._logged) < 10_000:
            self._logged.add((peer, reason))
            who = short_id(peer) if peer else "an unauthenticated connection"
            log.warning("observer: refused a message from %s: %s", who, reason)

    def _on_payload(self, sender: bytes, payload: bytes | bytearray) -> str | None:
        label = self.members.get(sender)
        if label is None:
            self._on_reject("unknown_sender", sender)
            self.transport.strike(sender, "unknown_sender")
            return "not a participant of this run"
        try:
            message = decode(payload, max_parameters=self.parameters, expected_size=self.parameters)
        except MalformedMessage as error:
            self._on_reject("malformed_message", sender)
            self.transport.strike(sender, "malformed_message")
            return str(error)[:200]
        if isinstance(message, StatusReport):
            self._status(label, sender, message)
        elif isinstance(message, RoundReport):
            self._round(label, message)
        elif isinstance(message, Totals):
            self.last_progress = time.monotonic()
            self.totals[label] = (message.bytes_sent, message.messages_sent, message.train_seconds)
        elif isinstance(message, ModelReport):
            self._model(label, message)
        else:
            self._on_reject("unexpected_message_type", sender)
            return "the observer takes reports only"
        return None

    def _status(self, label: str, sender: bytes, report: StatusReport) -> None:
        if report.state == "ready":
            self.ready.add(label)
            if self.origin is not None:  # a node (re)started after the start: same origin for it
                self._send(sender, StopRun(self.stop_reason or "the run is over") if self.stopping.is_set()
                           else StartRun(self.origin))
        elif report.state in ("final", "failed"):
            try:
                body = json.loads(report.body) if len(report.body) < (1 << 20) else {}
            except json.JSONDecodeError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            body["state"] = report.state
            self.finals[label] = body
            self.events.add("node_final", None, f"node {label}: {report.state}")
            if len(self.finals) >= len(self.members):
                self.everyone_final.set()

    def _round(self, label: str, report: RoundReport) -> None:
        self.last_progress = time.monotonic()
        self.totals[label] = (report.bytes_sent, report.messages_sent, report.train_seconds)
        if self.evaluation == "global":
            if report.round > self.rounds_completed:
                self.round_rows.append((report.round, "", report.time, report.time - self._last_global_time))
                self._last_global_time = report.time
                self.rounds_completed = report.round
        else:
            self.round_rows.append((report.round, label, report.time, report.seconds))
            if report.round > self.node_rounds.get(label, 0):
                self.node_rounds[label] = report.round
            self.rounds_completed = max(self.rounds_completed, self.current_round())

    def _model(self, label: str, report: ModelReport) -> None:
        self.last_progress = time.monotonic()
        assert self.loop is not None
        if report.role == "global":
            if report.round in self._evaluated_rounds:
                return
            self._evaluated_rounds.add(report.round)
            self._submit(report.params, lambda result: self._global_row(report, result))
        elif report.role == "node" and label.isdigit() and int(label) in self.evaluated:
            self._submit(report.params, lambda result: self._node_result(label, report, result))

    def _submit(self, params: np.ndarray, then: Callable[[Any], None]) -> None:
        assert self.loop is not None
        started = time.perf_counter()
        future = self.loop.run_in_executor(self._executor, self._evaluate, params)
        self._evaluations.add(future)

        def done(future: asyncio.Future[Any]) -> None:
            self._evaluations.discard(future)
            self.eval_wall_seconds += time.perf_counter() - started
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                log.error("observer: evaluation failed: %s", error)
                return
            then(future.result())

        future.add_done_callback(done)

    def _costs(self) -> tuple[int, int, float]:
        values = list(self.totals.values())
        return (sum(v[0] for v in values), sum(v[1] for v in values), sum(v[2] for v in values))

    def _row(self, time_s: float, round: int, value: float, std: float, loss: float) -> None:
        bytes_total, messages_total, train_seconds = self._costs()
        row = {
            "time_s": time_s, "round": round, self.metric: value, f"{self.metric}_std": std, "loss": loss,
            "bytes_total": bytes_total, "messages_total": messages_total, "train_seconds_total": train_seconds,
        }
        self.rows.append(row)
        self.events.add("evaluated", round, f"{self.metric}={value:.4f}")
        log.info("observer: t=%.2fs round %d %s=%.4f loss=%.4f", time_s, round, self.metric, value, loss)
        if self.on_row is not None:
            self.on_row(row)

    def _global_row(self, report: ModelReport, result: Any) -> None:
        self._row(report.time, report.round, float(result.metric), 0.0, float(result.loss))
        if self.rounds is not None and report.round >= self.rounds:
            self.stop_reached = True
            self.stop(f"round {self.rounds} reached and evaluated")

    def _node_result(self, label: str, report: ModelReport, result: Any) -> None:
        pending = self._pending.setdefault(report.round, {})
        pending[label] = (float(result.metric), float(result.loss), report.time)
        if len(pending) >= len(self.evaluated):
            self._node_row(report.round)

    def _node_row(self, round: int) -> None:
        pending = self._pending.pop(round, {})
        if not pending:
            return
        values = np.array([v[0] for v in pending.values()], dtype=np.float64)
        losses = [v[1] for v in pending.values()]
        self._row(max(v[2] for v in pending.values()), round, float(values.mean()), float(values.std()),
                  float(np.mean(losses)))
        if self.rounds is not None and round >= self.rounds:
            self.stop_reached = True
            self.stop(f"round {self.rounds} reached and evaluated")

    def flush(self) -> None:
        """Summarise rounds that not every evaluated node reported (nodes that crashed or stopped early)."""
        for round in sorted(self._pending):
            if round not in {row["round"] for row in self.rows}:
                self._node_row(round)
        self.rows.sort(key=lambda row: (row["round"], row["time_s"]))

"""The observer: the only party that sees global state. It evaluates models and decides when to stop.

It is not a node and costs nodes nothing: evaluation happens outside virtual time. For algorithms that report
global models (Plexus, FedAvg), :class:`Observer` evaluates every ``eval_every`` rounds and stops the run after
``rounds``. Decentralized learning has no global model: :class:`NodesObserver` evaluates node models instead
(see its docstring for when, which nodes, and what "round" means there).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from plexus.learning.trainer import Evaluator
from plexus.protocol.runtime import MetricsSink
from plexus.rng import stream
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network

log = logging.getLogger("plexus.run")


class Observer(MetricsSink):
    def __init__(
        self,
        loop: EventLoop,
        network: Network,
        evaluator: Evaluator,
        metric: str,
        eval_every: int,
        rounds: int | None,
        train_seconds: Callable[[], float],
        on_evaluation: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.loop = loop
        self.network = network
        self.evaluator = evaluator
        self.metric = metric
        self.eval_every = eval_every
        self.rounds = rounds
        self._train_seconds = train_seconds
        self._on_evaluation = on_evaluation
        self.counters: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.stalled_at: float | None = None  # virtual time the watchdog saw the last progress
        self.last_progress = 0.0
        self.stop_reached = False  # the run's own stop condition (rounds) was met
        self.rows: list[dict[str, Any]] = []
        # (round, node, end_time_s, duration_s) tuples: one per node and round in DL runs, so kept compact
        self.round_rows: list[tuple[int, str, float, float]] = []
        self.rounds_completed = 0
        # churn and liveness: (time_s, node, event) rows of events.csv, and one row per aggregation of samples.csv:
        # (round, time_s, aggregator, models, sampled, participants)
        self.events: list[tuple[float, str, str]] = []
        self.samples: list[tuple[int, float, str, int, int, str]] = []
        self.world_idle: Callable[[], bool] | None = None  # set by churn: no node is online to make progress
        self._last_global: tuple[int, np.ndarray] | None = None
        self._last_evaluated_round = -1
        self._last_round_time = 0.0
        # how the run ends (summary.json's status): "completed" unless report_stall() says otherwise
        self.status = "completed"
        self.status_reason = ""
        # (models evaluated, models to evaluate) while an evaluation is in progress, for progress displays
        self.evaluating: tuple[int, int] | None = None

    def report_stall(self, reason: str) -> None:
        """The protocol can no longer progress: record it (summary.json gets ``status: "stalled"`` and
        ``status_reason``), log it as a warning, and stop the run. For stall detectors."""
        if self.status == "stalled":
            return
        self.status = "stalled"
        self.status_reason = reason
        log.warning("run stalled at t=%.3fs: %s", self.loop.now, reason)
        self.loop.stop()

    def progress_round(self) -> int:
        """The run's round clock now (for progress displays; cheap, and safe to read from another thread)."""
        return self.rounds_completed

    # ------------------------------------------------------------- MetricsSink
    def global_model(self, round: int, params: np.ndarray) -> None:
        now = self.loop.now
        self.last_progress = now
        if round > self.rounds_completed:
            self.round_rows.append((round, "", now, now - self._last_round_time))
            self._last_round_time = now
            self.rounds_completed = round
        self._last_global = (round, params)
        if round % self.eval_every == 0 or (self.rounds is not None and round >= self.rounds):
            self.evaluate_global()
        if self.rounds is not None and round >= self.rounds:
            self.stop_reached = True
            self.loop.stop()

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def rejected(self, reason: str, sender: bytes) -> None:
        self.rejections[reason] += 1

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        self.last_progress = self.loop.now
        self.round_rows.append((round, node_label(node), self.loop.now, seconds))

    def aggregated(self, round: int, node: bytes, models: int, participants: Sequence[bytes]) -> None:
        self.samples.append((round, self.loop.now, node_label(node), models, len(participants),
                             " ".join(node_label(p) for p in participants)))

    def event(self, node: bytes, name: str) -> None:
        self.events.append((self.loop.now, node_label(node), name))

    def note_progress(self) -> None:
        """A training job finished (progress for algorithms that have no rounds, e.g. gossip)."""
        self.last_progress = self.loop.now

    def start(self) -> None:
        """Called once before the nodes start (a hook for observers that schedule their own evaluations)."""

    # ------------------------------------------------------------- stalls
    def watch_stalls(self, timeout: float) -> None:
        """Stop the run when nothing progresses for ``timeout`` virtual seconds (a daemon timer: it never keeps
        an otherwise empty event queue alive; an empty queue is a stall the simulation detects itself)."""
        if math.isfinite(timeout):
            self.loop.call_daemon(self.last_progress + timeout, self._check_stall, timeout)

    def _check_stall(self, timeout: float) -> None:
        if self.world_idle is not None and self.world_idle():
            self.last_progress = self.loop.now  # nobody is online: waiting for someone is not a stall
        if self.loop.now - self.last_progress >= timeout:
            self.stalled_at = self.last_progress
            log.warning("no progress since t=%.1fs (stall_timeout %.0fs): the run has stalled",
                        self.last_progress, timeout)
            self.loop.stop()
        else:
            self.loop.call_daemon(self.last_progress + timeout, self._check_stall, timeout)

    # ------------------------------------------------------------- evaluation
    def evaluate_global(self) -> None:
        if self._last_global is None:
            return
        round, params = self._last_global
        if round == self._last_evaluated_round:
            return
        self._last_evaluated_round = round
        self.evaluating = (0, 1)
        try:
            result = self.evaluator.evaluate(params)
        finally:
            self.evaluating = None
        self.record(round, result.metric, 0.0, result.loss)

    def record(self, round: int, metric: float, metric_std: float, loss: float) -> None:
        row = {
            "time_s": self.loop.now,
            "round": round,
            self.metric: metric,
            f"{self.metric}_std": metric_std,
            "loss": loss,
            "bytes_total": self.network.bytes_total,
            "messages_total": self.network.messages_sent,
            "train_seconds_total": self._train_seconds(),
        }
        self.rows.append(row)
        log.info("t=%.3fs round %d %s=%.4f loss=%.4f bytes=%d", row["time_s"], round, self.metric, metric,
                 loss, row["bytes_total"])
        if self._on_evaluation is not None:
            self._on_evaluation(row)

    def finish(self) -> None:
        """Evaluate the latest global model if the run stopped between evaluations."""
        self.evaluate_global()

    def best(self, higher_is_better: bool) -> float:
        values = [row[self.metric] for row in self.rows if not math.isnan(row[self.metric])]
        if not values:
            return math.nan
        return max(values) if higher_is_better else min(values)


def node_label(node: bytes | None) -> str:
    """A node id as rounds.csv writes it: its text when printable ASCII (simulated ids), else hex."""
    if node is None:
        return ""
    try:
        text = node.decode("ascii")
    except UnicodeDecodeError:
        return node.hex()
    return text if text.isprintable() else node.hex()


DEFAULT_EVAL_NODES = 20
ALL_NODES_UP_TO = 100


def evaluated_nodes(nodes: int, eval_nodes: int | None, seed: int) -> list[int]:
    """Which nodes a decentralized run evaluates: ``eval_nodes`` of them when given (all if it is at least
    ``nodes``); by default all when there are at most 100, else 20. A sample is fixed and seeded, drawn once so
    successive evaluations follow the same nodes (a smoother curve than a fresh sample each time, and as
    representative on average)."""
    if eval_nodes is None:
        eval_nodes = nodes if nodes <= ALL_NODES_UP_TO else DEFAULT_EVAL_NODES
    if eval_nodes >= nodes:
        return list(range(nodes))
    return sorted(stream(seed, "eval-nodes").choice(nodes, size=eval_nodes, replace=False).tolist())


class NodesObserver(Observer):
    """Evaluation of decentralized-learning runs, where there is no global model.

    **What**: at each evaluation the observer evaluates the current model (``Node.current_model()``) of the
    nodes :func:`evaluated_nodes` picks (``--eval-nodes``; by default every node up to 100, else a fixed seeded
    sample of 20), with the same
    model template and :class:`~plexus.learning.trainer.Evaluator` as for global models, outside virtual time.
    A metrics.csv row holds the mean metric, its (population) standard deviation across the evaluated nodes in
    ``<metric>_std``, and the mean loss.

    **Round clock**: synchronous algorithms (D-PSGD, EL) report ``round_duration(r, s, node)`` when a node
    finishes its round r; the run's round is the *mean* number of rounds completed per node, floored (for
    D-PSGD, whose nodes stay within a few rounds of each other, it is within the graph diameter of the
    minimum; for EL-Local, whose nodes run at their own pace, the mean is the fair clock). For Gossip Learning
    (``timed_rounds``) a round is one ``round_timeout`` of virtual time: round = floor(time / round_timeout).

    **When**: every ``eval_interval`` virtual seconds when given; otherwise each time the round clock reaches
    a multiple of ``eval_every`` (gossip: every ``eval_every x round_timeout`` seconds). The run stops once
    the round clock reaches ``rounds`` (gossip: at ``rounds x round_timeout`` seconds) or at ``duration``, and
    is evaluated then.
    """

    def __init__(
        self,
        loop: EventLoop,
        network: Network,
        evaluator: Evaluator,
        metric: str,
        eval_every: int,
        rounds: int | None,
        train_seconds: Callable[[], float],
        on_evaluation: Callable[[dict[str, Any]], None] | None = None,
        *,
        node_ids: Sequence[bytes],
        model_of: Callable[[int], np.ndarray | None],
        evaluated: Sequence[int],
        eval_interval: float | None = None,
        round_timeout: float | None = None,
    ) -> None:
        super().__init__(loop, network, evaluator, metric, eval_every, rounds, train_seconds, on_evaluation)
        self.nodes = len(node_ids)
        self.index_of = {node_id: i for i, node_id in enumerate(node_ids)}
        self.model_of = model_of
        self.evaluated = list(evaluated)
        self.eval_interval = eval_interval
        self.round_timeout = round_timeout  # set for timed rounds (gossip)
        self.node_rounds = np.zeros(self.nodes, dtype=np.int64)
        self._completed_total = 0  # sum of node_rounds (over online nodes once churn is tracked)
        self._online: list[bool] | None = None  # None: every node counts (no churn)
        self._online_count = self.nodes
        self._last_evaluation_time = -math.inf

    # ------------------------------------------------------------- clock
    def current_round(self) -> int:
        if self.round_timeout is not None:
            return int(math.floor(self.loop.now / self.round_timeout + 1e-9))
        return self._completed_total // max(1, self._online_count)

    def track_online(self, online: Sequence[bool]) -> None:
        """Under churn the round clock is the mean over the nodes online (a node that is gone stops counting)."""
        self._online = list(online)
        self._online_count = sum(self._online)
        self._completed_total = int(sum(int(r) for r, up in zip(self.node_rounds, self._online, strict=True) if up))

    def set_online(self, index: int, up: bool) -> None:
        if self._online is None or self._online[index] == up:
            return
        self._online[index] = up
        self._online_count += 1 if up else -1
        self._completed_total += int(self.node_rounds[index]) * (1 if up else -1)

    def progress_round(self) -> int:
        return self.current_round()

    def start(self) -> None:
        interval = self.eval_interval
        if self.round_timeout is not None:
            if interval is None:
                interval = self.eval_every * self.round_timeout
            if self.rounds is not None:
                self.loop.call_daemon(self.rounds * self.round_timeout, self._stop)
        if interval is not None:
            self.loop.call_daemon(interval, self._tick, interval, 1)

    def _tick(self, interval: float, count: int) -> None:
        self.evaluate_nodes()
        # k x interval rather than repeated additions, so evaluation times do not drift
        self.loop.call_daemon((count + 1) * interval, self._tick, interval, count + 1)

    def _stop(self) -> None:
        self.rounds_completed = self.current_round()
        self.evaluate_nodes()
        self.stop_reached = True
        self.loop.stop()

    # ------------------------------------------------------------- MetricsSink
    def global_model(self, round: int, params: np.ndarray) -> None:
        self.counters["global_models_ignored"] += 1

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        super().round_duration(round, seconds, node)  # also notes the progress
        index = self.index_of.get(node) if node is not None else None
        if index is None or round <= self.node_rounds[index]:
            return
        if self._online is None or self._online[index]:
            self._completed_total += int(round - self.node_rounds[index])
        self.node_rounds[index] = round
        if self.round_timeout is not None:
            return
        clock = self.current_round()
        if clock <= self.rounds_completed:
            return
        self.rounds_completed = clock
        if self.rounds is not None and clock >= self.rounds:
            self._stop()
        elif self.eval_interval is None and clock % self.eval_every == 0:
            self.evaluate_nodes()

    # ------------------------------------------------------------- evaluation
    def evaluate_nodes(self) -> None:
        now = self.loop.now
        if now == self._last_evaluation_time:
            return
        metrics, losses = [], []
        if getattr(self.evaluator, "spreads", False):
            # a pool or Ray executor spreads the models over its workers (same results, in order)
            models = [params for params in map(self.model_of, self.evaluated) if params is not None]
            self.evaluating = (0, len(models))  # progress displays say an evaluation is under way
            try:
                for result in self.evaluator.evaluate_many(models):
                    metrics.append(result.metric)
                    losses.append(result.loss)
            finally:
                self.evaluating = None
        else:
            total = len(self.evaluated)
            try:
                with self.evaluator.parallel():  # switch torch's thread count once for all the models
                    for done, index in enumerate(self.evaluated):
                        self.evaluating = (done, total)
                        params = self.model_of(index)
                        if params is None:
                            continue
                        result = self.evaluator.evaluate(params)
                        metrics.append(result.metric)
                        losses.append(result.loss)
            finally:
                self.evaluating = None
        if not metrics:
            return
        self._last_evaluation_time = now
        values = np.asarray(metrics, dtype=np.float64)
        self.record(self.current_round(), float(values.mean()), float(values.std()), float(np.mean(losses)))

    def finish(self) -> None:
        """Evaluate the nodes' final models, unless that was just done."""
        if self.round_timeout is not None:
            self.rounds_completed = self.current_round()
        self.evaluate_nodes()

"""The observer: the only party that sees global state. It evaluates models and decides when to stop.

It is not a node and costs nodes nothing: evaluation happens outside virtual time. For algorithms that report
global models (Plexus, FedAvg) it evaluates every ``eval_every`` rounds and stops the run after ``rounds``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from plexus.learning.trainer import Evaluator
from plexus.protocol.runtime import MetricsSink
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
        self.rows: list[dict[str, Any]] = []
        self.round_rows: list[dict[str, Any]] = []
        self.rounds_completed = 0
        self._last_global: tuple[int, np.ndarray] | None = None
        self._last_evaluated_round = -1
        self._last_round_time = 0.0

    # ------------------------------------------------------------- MetricsSink
    def global_model(self, round: int, params: np.ndarray) -> None:
        now = self.loop.now
        if round > self.rounds_completed:
            self.round_rows.append({"round": round, "node": "", "end_time_s": now,
                                    "duration_s": now - self._last_round_time})
            self._last_round_time = now
            self.rounds_completed = round
        self._last_global = (round, params)
        if round % self.eval_every == 0 or (self.rounds is not None and round >= self.rounds):
            self.evaluate_global()
        if self.rounds is not None and round >= self.rounds:
            self.loop.stop()

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def round_duration(self, round: int, seconds: float) -> None:
        self.round_rows.append({"round": round, "node": "", "end_time_s": self.loop.now, "duration_s": seconds})

    # ------------------------------------------------------------- evaluation
    def evaluate_global(self) -> None:
        if self._last_global is None:
            return
        round, params = self._last_global
        if round == self._last_evaluated_round:
            return
        self._last_evaluated_round = round
        result = self.evaluator.evaluate(params)
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

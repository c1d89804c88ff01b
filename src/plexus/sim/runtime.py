"""The simulated :class:`~plexus.protocol.runtime.Runtime`: one per node, all sharing one virtual world.

Training is charged by the compute model and its result delivered at the virtual completion time. The real
computation runs lazily when that time comes (so abandoned work costs no wall time); because every job's
minibatches come from a stream seeded by (node, job number), when or where it runs never changes its result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from plexus.learning.trainer import TrainJob
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.runtime import MetricsSink, Runtime, Timer, TrainResult, Transmission
from plexus.protocol.view import View
from plexus.rng import stream

if TYPE_CHECKING:
    from plexus.sim.world import World


class SimRuntime(Runtime):
    def __init__(self, world: World, index: int, node_id: bytes, metrics: MetricsSink, view: View) -> None:
        self.world = world
        self._view = view
        self.index = index
        self.node_id = node_id
        self._metrics = metrics
        self._rng: np.random.Generator | None = None
        self._jobs = 0

    @property
    def rng(self) -> np.random.Generator:
        """This node's own seeded stream, created on first use (most nodes of a large run never need one)."""
        if self._rng is None:
            self._rng = stream(self.world.seed, "node-rng", self.index)
        return self._rng

    @property
    def metrics(self) -> MetricsSink:
        return self._metrics

    def now(self) -> float:
        return self.world.loop.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.world.loop.call_later(delay, callback, *args)

    def send(self, peer: bytes, message: Message) -> Transmission:
        return self.world.send(self.index, peer, message)

    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        world = self.world
        if self.index >= world.data_nodes:
            raise RuntimeError("a participant without data (a server) cannot train")
        now = world.loop.now
        start, end = world.compute.reserve(self.index, now, steps)
        job = TrainJob(self.index, self._jobs, params, steps)
        self._jobs += 1
        future: Future[TrainResult] = Future()

        def complete() -> None:
            world.train_seconds_total += end - start
            world.progress()
            future.set_result(world.trainer.run(job))

        timer = world.loop.call_at(end, complete)

        def abandon() -> None:
            timer.cancel()
            current = world.loop.now
            world.train_seconds_total += max(0.0, min(current, end) - start)
            world.compute.release(self.index, current, end)

        future.on_cancel(abandon)
        return future

    @property
    def view(self) -> View:
        return self._view

    def initial_model(self) -> np.ndarray:
        return self.world.initial_params

    def parameter_layout(self) -> tuple[int, ...]:
        return self.world.layout

    @property
    def local_samples(self) -> int:
        return self.world.local_samples(self.index)

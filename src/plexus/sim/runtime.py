"""The simulated :class:`~plexus.protocol.runtime.Runtime`: one per node, all sharing one virtual world.

Training is charged by the compute model and its result delivered at the virtual completion time. The real
computation is handed to the world's executor (:mod:`plexus.learning.executors`) when the node asks for it, and
its result taken when the virtual completion time comes; because every job's minibatches come from a stream
seeded by (node, job number), when or where it runs never changes its result. The inline executor runs it only
then (so abandoned work costs no wall time); the others start it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from plexus.learning.executors import Ticket
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
        training = Training(world, self.index, start, end, world.executor.submit(job, end))
        training.timer = world.loop.call_at(end, training.complete)
        training.future.on_cancel(training.abandon)
        return training.future

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


class Training:
    """One training job in virtual time: its completion event and its abandonment (bound methods, not closures,
    so that a checkpoint can hold them; see :mod:`plexus.sim.checkpoint`)."""

    __slots__ = ("world", "index", "start", "end", "ticket", "future", "timer")

    def __init__(self, world: World, index: int, start: float, end: float, ticket: Ticket) -> None:
        self.world = world
        self.index = index
        self.start = start
        self.end = end
        self.ticket = ticket
        self.future: Future[TrainResult] = Future()
        self.timer: Any = None

    def complete(self) -> None:
        self.timer = None  # it fired; holding it would keep a cycle (timer -> this method -> self -> timer)
        world = self.world
        world.train_seconds_total += self.end - self.start
        world.progress()
        self.future.set_result(world.executor.result(self.ticket))

    def abandon(self) -> None:
        world = self.world
        self.timer.cancel()
        self.timer = None
        world.executor.cancel(self.ticket)
        current = world.loop.now
        world.train_seconds_total += max(0.0, min(current, self.end) - self.start)
        world.compute.release(self.index, current, self.end)

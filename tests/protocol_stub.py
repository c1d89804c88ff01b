"""A hand-driven Runtime for unit tests of one node's protocol logic.

Nothing happens by itself: sends and training requests are recorded, and the test resolves them (or not). A
test builds one node on a :class:`StubRuntime`, delivers (forged) messages with ``node.deliver(sender, message)``
and checks what the node sent, trained, reported and refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from dl_harness import RecordingSink
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.runtime import MetricsSink, Runtime, Timer, TrainResult, Transmission
from plexus.protocol.view import PeerInfo, View
from plexus.sim.engine import EventLoop


class StubRuntime(Runtime):
    def __init__(
        self,
        node_id: bytes,
        peers: Iterable[PeerInfo],
        parameters: int = 3,
        seed: int = 0,
        local_samples: int = 10,
    ) -> None:
        self.node_id = node_id
        self.loop = EventLoop()
        self.sink = RecordingSink(self.loop)
        self._view = View(peers)
        self._rng = np.random.default_rng(seed)
        initial = np.zeros(parameters, dtype=np.float32)
        initial.flags.writeable = False
        self._initial = initial
        self._local_samples = local_samples
        self.sent: list[tuple[bytes, Message, Transmission]] = []
        self.trainings: list[tuple[np.ndarray, int, Future[TrainResult]]] = []

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    @property
    def metrics(self) -> MetricsSink:
        return self.sink

    def now(self) -> float:
        return self.loop.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.loop.call_later(delay, callback, *args)

    def send(self, peer: bytes, message: Message) -> Transmission:
        transmission = Transmission()
        self.sent.append((peer, message, transmission))
        return transmission

    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        future: Future[TrainResult] = Future()
        self.trainings.append((np.array(params), steps, future))
        return future

    def finish_training(self, index: int = -1, add: float = 1.0) -> None:
        """Resolve a recorded training job with its input plus ``add``."""
        params, steps, future = self.trainings[index]
        future.set_result(TrainResult((params + np.float32(add)).astype(np.float32), 0.0, steps))

    @property
    def view(self) -> View:
        return self._view

    def initial_model(self) -> np.ndarray:
        return self._initial

    @property
    def local_samples(self) -> int:
        return self._local_samples


def sent_to(runtime: StubRuntime) -> list[bytes]:
    return [peer for peer, _, _ in runtime.sent]

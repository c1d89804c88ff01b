"""A tiny fake world for unit tests of decentralized-learning protocol logic.

Training takes a fixed (per-node) virtual time and adds ``increment(node)`` to every parameter, so a test can
predict every model exactly; messages arrive after a fixed delay. It runs on the simulator's event loop but
uses none of its network, compute or learning code, so a test isolates the protocol.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.node import Node
from plexus.protocol.runtime import MetricsSink, Runtime, Timer, TrainResult, Transmission, UnknownPeer
from plexus.protocol.view import PeerInfo, View, roster_of
from plexus.sim.engine import EventLoop


class RecordingSink(MetricsSink):
    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.counters: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.globals: list[tuple[int, np.ndarray]] = []
        self.rounds: list[tuple[int, bytes | None, float, float]] = []  # (round, node, end time, duration)
        self.aggregations: list[tuple[int, bytes, int, list[bytes]]] = []  # (round, node, models, participants)
        self.events: list[tuple[float, bytes, str]] = []

    def global_model(self, round: int, params: np.ndarray) -> None:
        self.globals.append((round, params))

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def rejected(self, reason: str, sender: bytes) -> None:
        self.rejections[reason] += 1

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        self.rounds.append((round, node, self.loop.now, seconds))

    def aggregated(self, round: int, node: bytes, models: int, participants: Sequence[bytes]) -> None:
        self.aggregations.append((round, node, models, list(participants)))

    def event(self, node: bytes, name: str) -> None:
        self.events.append((self.loop.now, node, name))


class FakeRuntime(Runtime):
    def __init__(self, world: FakeWorld, index: int) -> None:
        self.world = world
        self.index = index
        self.node_id = world.ids[index]
        self._rng = np.random.default_rng([world.seed, index])
        self._view = View(world.roster)
        self.trainings = 0

    @property
    def rng(self) -> np.random.Generator:
        return self._rng

    @property
    def metrics(self) -> MetricsSink:
        return self.world.sink

    def now(self) -> float:
        return self.world.loop.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.world.loop.call_later(delay, callback, *args)

    def send(self, peer: bytes, message: Message) -> Transmission:
        """Messages leave one after another at the node's upload bandwidth, then take ``delay`` to arrive;
        a message to a node marked offline (``world.offline``) is lost and its transmission fails."""
        world = self.world
        transmission = Transmission()
        dst = world.index_of.get(peer)
        if dst is None:
            transmission.mark_failed(UnknownPeer(peer, "unknown node"))
            return transmission
        now = world.loop.now
        world.sent.append((now, self.index, dst, message))
        upload = world.roster.info(self.node_id).upload_bps
        left = max(now, world.uplink_free[self.index]) + message.wire_size / upload
        world.uplink_free[self.index] = left
        world.loop.call_at(left, transmission.mark_sent)
        world.loop.call_at(left + world.delay, world.deliver, self.index, dst, message, transmission)
        return transmission

    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        world = self.world
        future: Future[TrainResult] = Future()
        result = np.asarray(params, dtype=np.float32) + np.float32(world.increment(self.index))

        def complete() -> None:
            self.trainings += 1
            future.set_result(TrainResult(result, 0.0, steps))

        timer = world.loop.call_later(world.train_time(self.index), complete)
        future.on_cancel(timer.cancel)
        return future

    @property
    def view(self) -> View:
        return self._view

    def initial_model(self) -> np.ndarray:
        return self.world.initial

    @property
    def local_samples(self) -> int:
        return 10


class FakeWorld:
    """``n`` nodes with ids sorted in index order; ``make_node(runtime)`` builds each node."""

    def __init__(
        self,
        n: int,
        make_node: Callable[[Runtime], Node],
        *,
        train_time: Callable[[int], float] = lambda i: 1.0,
        increment: Callable[[int], float] = lambda i: float(i + 1),
        delay: float = 0.25,
        parameters: int = 3,
        seed: int = 0,
        upload_bps: float = float("inf"),
    ) -> None:
        self.loop = EventLoop()
        self.seed = seed
        self.ids = [f"node-{i:04d}".encode() for i in range(n)]
        self.index_of = {node_id: i for i, node_id in enumerate(self.ids)}
        self.roster = roster_of(PeerInfo(node_id, upload_bps, upload_bps) for node_id in self.ids)
        self.offline: set[int] = set()
        self.train_time = train_time
        self.increment = increment
        self.delay = delay
        initial = np.zeros(parameters, dtype=np.float32)
        initial.flags.writeable = False
        self.initial = initial
        self.sink = RecordingSink(self.loop)
        self.sent: list[tuple[float, int, int, Message]] = []
        self.delivered: list[tuple[float, int, int, Message]] = []
        self.uplink_free = [0.0] * n
        self.runtimes = [FakeRuntime(self, i) for i in range(n)]
        self.nodes = [make_node(runtime) for runtime in self.runtimes]

    def deliver(self, src: int, dst: int, message: Message, transmission: Transmission | None = None) -> None:
        if dst in self.offline:
            if transmission is not None:
                from plexus.protocol.runtime import PeerUnreachable

                transmission.mark_failed(PeerUnreachable(self.ids[dst], "offline at arrival"))
            return
        self.delivered.append((self.loop.now, src, dst, message))
        self.nodes[dst].deliver(self.ids[src], message)
        if transmission is not None:
            transmission.mark_delivered()

    def run(self, until: float, stop: bool = True) -> None:
        """Start every node, run to ``until``, then stop them (unless ``stop`` is False)."""
        for node in self.nodes:
            node.start()
        self.loop.run(until=until)
        if stop:
            for node in self.nodes:
                node.stop()

    def rounds_of(self, index: int) -> list[tuple[int, float, float]]:
        """(round, end time, duration) of every round node ``index`` completed."""
        node_id = self.ids[index]
        return [(r, end, duration) for r, node, end, duration in self.sink.rounds if node == node_id]

"""FedAvg with a server (McMahan et al., 2017), the baseline Plexus is measured against.

The server is not a node: it holds no data, has its own (by default infinite) bandwidth, and each round samples
s nodes uniformly at random with its seeded RNG, sends them the global model, and averages the first
ceil(s x sf) trained models that come back; later ones are dropped and counted.
"""

from __future__ import annotations

import math

import numpy as np

from plexus.config import Config
from plexus.protocol.aggregation import average
from plexus.protocol.futures import Future
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.protocol.runtime import Node, Runtime, TrainResult

SERVER_ID = b"server"


class FedAvgServer(Node):
    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime)
        assert config.sample_size is not None and config.success_fraction is not None
        self.sample_size = config.sample_size
        self.quorum = math.ceil(config.sample_size * config.success_fraction - 1e-9)
        self.weighted = config.weighting == "samples"
        self.round = 0
        self._collected: list[ModelMessage] = []
        self._clients = [node for node in runtime.membership.ids() if node != runtime.node_id]

    def start(self) -> None:
        self._begin(1, self.runtime.initial_model())

    def _begin(self, round: int, params: np.ndarray) -> None:
        self.round = round
        self._collected = []
        chosen = self.runtime.rng.choice(len(self._clients), size=self.sample_size, replace=False)
        message = ModelMessage(ModelKind.GLOBAL, round, params)
        for index in sorted(chosen.tolist()):
            self.runtime.send(self._clients[index], message)

    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        if message.kind != ModelKind.TRAINED:
            return
        if message.round != self.round or len(self._collected) >= self.quorum:
            self.runtime.metrics.count("late_models_dropped")
            return
        self._collected.append(message)
        if len(self._collected) == self.quorum:
            weights = [m.samples for m in self._collected] if self.weighted else None
            global_model = average([m.params for m in self._collected], weights)
            self.runtime.metrics.global_model(self.round, global_model)
            self._begin(self.round + 1, global_model)


class FedAvgClient(Node):
    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime)
        self.local_steps = int(config.local_steps or 1)
        self._training: Future[TrainResult] | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        if self._training is not None:
            self._training.cancel()

    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        if message.kind != ModelKind.GLOBAL:
            return
        if self._training is not None and not self._training.done():
            self._training.cancel()
            self.runtime.metrics.count("stale_training_abandoned")
        round = message.round
        future = self.runtime.train(message.params, self.local_steps)
        self._training = future

        def reply(done: Future[TrainResult]) -> None:
            if not done.cancelled():
                result = done.result()
                trained = ModelMessage(ModelKind.TRAINED, round, result.params, samples=self.runtime.local_samples)
                self.runtime.send(sender, trained)

        future.add_done_callback(reply)

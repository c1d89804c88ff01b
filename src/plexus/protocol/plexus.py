"""Plexus (Dhasade et al., EuroMLSys 2025): federated learning without a server.

Round k's participants are the sample S_k every node derives on its own (Algorithm 1, see
:mod:`plexus.protocol.sampling`). Algorithm 2, push-based:

1. The members of S_1 start from the same seeded initial model.
2. A participant of round k trains ``local_steps`` SGD steps and sends its model to the round's aggregator.
3. The aggregator of round k is, by default, the member of S_{k+1} with the highest advertised upload
   bandwidth (ties broken by hash order), as in the paper's section 4.1 and the authors' code: it will train
   in round k+1 itself, which saves one transfer. ``aggregator_sample = "current"`` takes it from S_k instead,
   the literal reading of Algorithm 2.
4. The aggregator averages as soon as it holds ceil(s x sf) models of round k (later ones are dropped and
   counted), reports the result as round k's global model, and pushes it to every member of S_{k+1}.
5. A member of S_{k+1} receiving it abandons any older training still running and trains round k+1.
"""

from __future__ import annotations

import math

import numpy as np

from plexus.config import Config
from plexus.protocol.aggregation import average
from plexus.protocol.futures import Future
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.protocol.runtime import Node, Runtime, TrainResult


class PlexusNode(Node):
    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime)
        assert config.sample_size is not None and config.success_fraction is not None
        self.sample_size = config.sample_size
        self.quorum = math.ceil(config.sample_size * config.success_fraction - 1e-9)
        self.local_steps = int(config.local_steps or 1)
        self.aggregate_from_next = config.aggregator_sample == "next"
        self.weighted = config.weighting == "samples"
        self.round = 0  # the latest round this node trained (or is training) in
        self._training: dict[int, Future[TrainResult]] = {}
        self._collected: dict[int, list[ModelMessage]] = {}
        self._aggregated_up_to = 0  # rounds <= this one were aggregated here (or are stale)

    # ----------------------------------------------------------- sampling
    def sample(self, round: int) -> list[bytes]:
        return self.runtime.membership.sample(round, self.sample_size)

    def aggregator(self, round: int) -> bytes:
        """Who aggregates the models trained in ``round``."""
        source = round + 1 if self.aggregate_from_next else round
        membership = self.runtime.membership
        return membership.memo(("plexus-aggregator", source, self.sample_size),
                               lambda: self._fastest_uploader(self.sample(source)))

    def _fastest_uploader(self, candidates: list[bytes]) -> bytes:
        membership = self.runtime.membership
        best = candidates[0]
        best_bandwidth = membership.info(best).upload_bps
        for candidate in candidates[1:]:
            bandwidth = membership.info(candidate).upload_bps
            if bandwidth > best_bandwidth:  # strict: ties keep the earlier one in hash order
                best, best_bandwidth = candidate, bandwidth
        return best

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.runtime.node_id in self.sample(1):
            self._train(1, self.runtime.initial_model())

    def stop(self) -> None:
        for future in list(self._training.values()):
            future.cancel()
        self._training.clear()

    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        if message.kind == ModelKind.TRAINED:
            self._collect(message)
        elif message.kind == ModelKind.AGGREGATE:
            if message.round > self.round:
                self._train(message.round, message.params)
            else:
                self.runtime.metrics.count("duplicate_aggregates_ignored")

    # ----------------------------------------------------------- participant
    def _train(self, round: int, params: np.ndarray) -> None:
        for old_round in [r for r in self._training if r < round]:
            self._training.pop(old_round).cancel()
            self.runtime.metrics.count("stale_training_abandoned")
        self.round = round
        future = self.runtime.train(params, self.local_steps)
        self._training[round] = future
        future.add_done_callback(lambda done: self._trained(round, done))

    def _trained(self, round: int, future: Future[TrainResult]) -> None:
        if future.cancelled():
            return
        self._training.pop(round, None)
        result = future.result()
        message = ModelMessage(ModelKind.TRAINED, round, result.params, samples=self.runtime.local_samples)
        self.runtime.send(self.aggregator(round), message)

    # ----------------------------------------------------------- aggregator
    def _collect(self, message: ModelMessage) -> None:
        round = message.round
        if round <= self._aggregated_up_to and round not in self._collected:
            self.runtime.metrics.count("late_models_dropped")
            return
        bucket = self._collected.setdefault(round, [])
        bucket.append(message)
        if len(bucket) >= self.quorum:
            del self._collected[round]
            self._aggregated_up_to = max(self._aggregated_up_to, round)
            for stale in [r for r in self._collected if r < round]:
                # an older round that never reached its quorum here can no longer matter
                self.runtime.metrics.count("late_models_dropped", len(self._collected.pop(stale)))
            self._aggregate(round, bucket)

    def _aggregate(self, round: int, models: list[ModelMessage]) -> None:
        weights = [m.samples for m in models] if self.weighted else None
        global_model = average([m.params for m in models], weights)
        self.runtime.metrics.global_model(round, global_model)
        message = ModelMessage(ModelKind.AGGREGATE, round + 1, global_model)
        for member in self.sample(round + 1):
            self.runtime.send(member, message)

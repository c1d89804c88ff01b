"""Gossip Learning (Ormándi, Hegedűs and Jelasity, 2013; Hegedűs et al., 2019), as the Plexus authors simulate it.

Each node holds one model and its *age*, the number of local training sessions behind it:

- At start a node trains the seeded initial model (``local_steps`` SGD steps); when training finishes its
  model is the trained one and its age grows by 1. Counting sessions rather than SGD steps changes nothing:
  every session has the same ``local_steps``, so the merge weights below are the same ratios either way.
- Every ``round_timeout`` seconds (60 s in the paper; ``--round-timeout``) a node that has trained at least
  once sends its model and age to one peer drawn uniformly from the others with its own seeded RNG.
- A node receiving a model while it is idle merges it with its own by age-weighted averaging,
  (a1 x m1 + a2 x m2) / (a1 + a2), takes age max(a1, a2), and trains the merged model (age + 1 when done).
- A model that arrives while the node is training is **dropped** (counted as ``gossip_models_dropped_busy``):
  the authors' simulator does this, and it keeps one training job per node at a time rather than letting a
  backlog of merges build up behind a slow device. What a node sends while it trains is its latest model,
  which is the merged one it is training on (as the authors' simulator does).

There are no synchronous rounds: a gossip "round" is one ``round_timeout`` of virtual time, and the observer
counts rounds that way (``--rounds R`` stops after R x round_timeout seconds).
"""

from __future__ import annotations

import numpy as np

from plexus.config import Config
from plexus.protocol.decentralized import DecentralizedNode
from plexus.protocol.futures import Future
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.protocol.runtime import Runtime, Timer, TrainResult


def age_weighted_merge(own: np.ndarray, own_age: int, other: np.ndarray, other_age: int) -> tuple[np.ndarray, int]:
    """Merge two models by their ages: (a1 m1 + a2 m2) / (a1 + a2) and age max(a1, a2).

    Two age-0 models (never trained) are averaged uniformly.
    """
    total = own_age + other_age
    if total <= 0:
        merged = (own.astype(np.float64) + other.astype(np.float64)) / 2.0
    else:
        merged = (own_age * own.astype(np.float64) + other_age * other.astype(np.float64)) / total
    return merged.astype(np.float32), max(own_age, other_age)


class GossipNode(DecentralizedNode):
    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime, config)
        self.period = float(config.round_timeout)
        self.age = 0
        self.sends = 0
        self._others = len(runtime.membership) - 1
        self._me = runtime.membership.positions()[runtime.node_id]
        self._timer: Timer | None = None

    def start(self) -> None:
        self._train(self.model)
        self._timer = self.runtime.call_later(self.period, self._gossip)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().stop()

    @property
    def busy(self) -> bool:
        return self._training is not None

    def _gossip(self) -> None:
        if self._stopped:
            return
        self.sends += 1
        if self.age > 0 and self._others:
            peer = self.runtime.membership.other(self._me, int(self.runtime.rng.integers(self._others)))
            self.runtime.send(peer, ModelMessage(ModelKind.GOSSIP, self.sends, self.model, age=self.age))
        self._timer = self.runtime.call_later(self.period, self._gossip)

    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        if message.kind != ModelKind.GOSSIP or self._stopped:
            return
        if self.busy:
            self.runtime.metrics.count("gossip_models_dropped_busy")
            return
        self.model, self.age = age_weighted_merge(self.model, self.age, message.params, message.age)
        self._train(self.model)

    def _train(self, params: np.ndarray) -> None:
        future = self.runtime.train(params, self.local_steps)
        self._training = future
        future.add_done_callback(self._on_trained)

    def _on_trained(self, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped:
            return
        self._training = None
        self.model = future.result().params
        self.age += 1

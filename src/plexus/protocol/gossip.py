"""Gossip Learning (Ormándi, Hegedűs and Jelasity, 2013; Hegedűs et al., 2019), as the Plexus authors run it.

Each node holds one model and its *age*, the number of local training sessions behind it.

- **Sending.** A node sleeps ``round_timeout`` seconds (60 s in the paper; ``--round-timeout``), sends its current
  model and age to one peer drawn uniformly from the others with its own seeded RNG, waits until that transfer
  has finished (delivered, or failed because the peer is gone), and only then sleeps ``round_timeout`` again:
  the period is the timeout *plus* the transfer time, as in the authors' ``GLCommunity.do_round``
  (``sacs-epfl/plexus``, ``dlsim/gl/community.py``). Each node's first send comes after a seeded random phase
  U(0, round_timeout) plus one period, as in the authors' newer simulator (``GossipClient`` in
  ``sacs-epfl/decentralized-learning-simulator``); without it every node's timer fires at the same instants.
- **Receiving.** Every received model is merged: (a1 x m1 + a2 x m2) / (a1 + a2) with age max(a1, a2) (two
  age-0 models are averaged uniformly), then the merged model is trained (age + 1 when done). A model that
  arrives while the node trains is queued and merged, in arrival order, as soon as that training ends; the merged
  result is trained again. Nodes train only on receipt, so the first models sent are the untrained initial one,
  as in ``GLCommunity``.

**Where we differ from the authors, and why.** ``GLCommunity`` merges an arriving model into the model object at
once even while a training is running; that training then overwrites the merge, so the arrival is lost while its
age still counts. We queue instead, which is what "every received model is merged" means. The authors count age in
training *samples*; we count sessions: every session has the same ``local_steps`` and batch size, so the merge
weights are the same ratios. The peer is drawn from the node's own seeded RNG rather than Python's global one.

There are no synchronous rounds: a gossip "round" is one ``round_timeout`` of virtual time, and the observer counts
rounds that way (``--rounds R`` stops after R x round_timeout seconds).

**Under churn** Gossip Learning needs nothing more: a send to a node that is gone fails and the node moves on
after its period, as it does after any transfer. A node that comes back with its state keeps its model and age
and gossips again one period later (what it was training or had queued when it went down is lost); a node that
lost its state starts again from the initial model with age 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plexus.protocol.decentralized import DecentralizedNode
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import handles
from plexus.protocol.options import inherited, option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, Timer, TrainResult


@dataclass(frozen=True)
class GossipOptions:
    local_steps: int = inherited("local SGD steps per training session")
    round_timeout: float = option(60.0, "Gossip Learning: seconds a node waits after each transfer before the next",
                                  above=0, finite=True)

    @property
    def reacts_to_churn(self) -> bool:
        return True


@message(kind=6)
class GossipModel(Message):
    """A gossiped model and its age (training sessions behind it)."""

    age: int
    params: Params


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


@register("gossip", description="Gossip Learning: age-weighted merges, one send per --round-timeout + transfer "
          "(Ormandi et al.)", options=GossipOptions, decentralized=True, evaluation="nodes", clock="periods",
          period=lambda options: float(options.round_timeout))
class GossipNode(DecentralizedNode):
    def __init__(self, runtime: Runtime, options: GossipOptions) -> None:
        super().__init__(runtime, options)
        self.period = float(options.round_timeout)
        self.age = 0
        self.sends = 0
        self._others = len(runtime.view) - 1
        self._me = runtime.view.positions()[runtime.node_id]
        self._timer: Timer | None = None
        self._queued: list[tuple[np.ndarray, int]] = []

    def start(self) -> None:
        phase = float(self.runtime.rng.uniform(0.0, self.period))
        self._timer = self.runtime.call_later(phase + self.period, self._gossip)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().stop()

    def rejoin(self) -> None:
        self._training = None
        self._queued = []
        self._timer = self.runtime.call_later(self.period, self._gossip)

    @property
    def busy(self) -> bool:
        return self._training is not None

    def _gossip(self) -> None:
        self._timer = None
        if self._stopped:
            return
        if self._others <= 0:
            return
        self.sends += 1
        peer = self.runtime.view.other(self._me, int(self.runtime.rng.integers(self._others)))
        transmission = self.runtime.send(peer, GossipModel(self.age, self.model))
        transmission.add_done_callback(self._transfer_done)

    def _transfer_done(self, _: Future[None]) -> None:
        # delivered or failed alike: the authors' loop moves on after the transfer, whatever its outcome
        if not self._stopped:
            self._timer = self.runtime.call_later(self.period, self._gossip)

    @handles(GossipModel)
    def on_gossip(self, sender: bytes, message: GossipModel) -> None:
        if self._stopped:
            return
        metrics = self.runtime.metrics
        if sender not in self.runtime.view:
            metrics.rejected("unknown_sender", sender)
            return
        if message.params.size != self.parameters or message.age < 0:
            metrics.rejected("wrong_parameter_count" if message.age >= 0 else "negative_age", sender)
            return
        if self.busy:
            self._queued.append((message.params, message.age))
            metrics.count("gossip_models_queued")
            return
        self.model, self.age = age_weighted_merge(self.model, self.age, message.params, message.age)
        self._train()

    def _train(self) -> None:
        future = self.runtime.train(self.model, self.local_steps)
        self._training = future
        future.add_done_callback(self._on_trained)

    def _on_trained(self, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped:
            return
        self._training = None
        self.model = future.result().params
        self.age += 1
        if self._queued:
            queued, self._queued = self._queued, []
            for params, age in queued:
                self.model, self.age = age_weighted_merge(self.model, self.age, params, age)
            self._train()

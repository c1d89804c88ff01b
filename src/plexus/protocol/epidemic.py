"""Epidemic Learning (de Vos et al., NeurIPS 2023): every round, send to s random peers and average what came in.

s is ``--fanout`` (default: the sample size s of Plexus, so both send the same number of models per round).
Both variants train ``local_steps`` SGD steps per round, send the trained model to s distinct other nodes and
average it uniformly with the models received for the round (1 / (k + 1) each, as decentralizepy's
``PlainAverageSharing``). They differ in who receives and in how a node knows its round is over:

``el-oracle``
    Round r's communication graph is a fresh random directed graph in which every node sends to exactly s
    others and receives from exactly s others (:func:`~plexus.protocol.topologies.random_regular_digraph`),
    derived by every node on its own from the experiment seed and r: the paper's oracle. A node knows whom it
    waits for and ends round r once it holds the round-r models of its s in-neighbours, exactly like D-PSGD on a
    graph that changes every round. (decentralizepy's ``EL_Oracle`` asks a peer-sampler service for an
    undirected d-regular graph per round, a special case of the same rule.)

``el-local``
    Each node draws its s peers itself, uniformly among the others, with its own seeded RNG, and sends its
    model to them. A node cannot know who chose it, so, as in the paper and in decentralizepy's ``EL_Local``
    (``node/EpidemicLearning/EL_Local.py``), it also sends a small :class:`NotSending` notice for the round to
    every other node, and ends round r once it has heard from *every* other node for round r (a model or a
    notice). Messages of later rounds are kept for their round. The notices are real messages: their bytes are
    counted and they take latency and bandwidth like any other (so a slow node delays everyone, which is what
    synchronous EL-Local costs).

Both report ``metrics.round_duration(r, seconds, node)`` at the end of each of their rounds.

**Under churn** both wait forever for a node that is gone (an in-neighbour, or, for EL-Local, any node). With
``--wait-timeout SECONDS``, a node that has trained and sent waits at most that long, then averages with the models
that arrived and moves on, catching up to the latest round it already holds messages for; see
:mod:`plexus.protocol.dpsgd`, which does the same. Off by default: a run without churn is unchanged.

**Checked senders.** EL-Oracle accepts models only from in-neighbours of their round; EL-Local accepts a model
or notice only from a known node, for the current round or a later one, once per sender and round. Refusals are
counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plexus.protocol.aggregation import average
from plexus.protocol.decentralized import DecentralizedNode, NeighbourModel
from plexus.protocol.dpsgd import SynchronousNeighbourNode, catch_up
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, message
from plexus.protocol.node import handles
from plexus.protocol.options import inherited, option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, Timer, TrainResult
from plexus.protocol.topologies import Topology, random_regular_digraph


@dataclass(frozen=True)
class EpidemicOptions:
    local_steps: int = inherited("local SGD steps per round")
    seed: int = inherited("experiment seed (EL-Oracle derives its graphs from it)")
    nodes: int = inherited("number of nodes")
    sample_size: int = option(13, "s: nodes sampled per round", minimum=1)
    fanout: int | None = option(None, "Epidemic Learning: peers per round (default: sample_size)", minimum=1)
    wait_timeout: float | None = option(None, "seconds a node waits for its neighbours' models before it averages "
                                        "those that arrived (default: wait for all; set it under churn)",
                                        above=0, finite=True)

    @property
    def reacts_to_churn(self) -> bool:
        return self.wait_timeout is not None

    @property
    def peers(self) -> int:
        """s: ``fanout``, else the sample size."""
        return int(self.fanout if self.fanout is not None else self.sample_size)

    def check(self) -> None:
        source = "fanout" if self.fanout is not None else "fanout (default: sample_size)"
        if self.peers > self.nodes - 1:
            raise ValueError(f"{source} = {self.peers}: must be at most nodes - 1 = {self.nodes - 1} "
                             f"(a node sends to distinct others)")


@message(kind=7)
class NotSending(Message):
    """EL-Local: "I am not sending you my model in ``round``" (so the receiver need not wait for it)."""

    round: int


@register("el-oracle", description="Epidemic Learning with an oracle: a fresh random s-regular graph per round",
          options=EpidemicOptions, decentralized=True, evaluation="nodes")
class ELOracleNode(SynchronousNeighbourNode):
    """EL-Oracle: the synchronous neighbour-averaging loop on a fresh random s-in/s-out graph every round."""

    def __init__(self, runtime: Runtime, options: EpidemicOptions) -> None:
        super().__init__(runtime, options)
        self.fanout = options.peers
        self.seed = int(options.seed)

    def topology(self, round: int) -> Topology:
        return random_regular_digraph(len(self.ids), self.fanout, self.seed, round)


@register("el-local", description="Epidemic Learning, local peer choice: send to --fanout random peers, a notice "
          "to the others, wait to hear from all", options=EpidemicOptions, decentralized=True, evaluation="nodes")
class ELLocalNode(DecentralizedNode):
    """EL-Local, synchronous as in the paper and decentralizepy's ``EL_Local``."""

    def __init__(self, runtime: Runtime, options: EpidemicOptions) -> None:
        super().__init__(runtime, options)
        self.fanout = options.peers
        view = runtime.view
        self._others = len(view) - 1
        self._me = view.positions()[runtime.node_id]
        self.round = 0
        self._trained: np.ndarray | None = None
        self._round_started = 0.0
        # round -> sender -> its model, or None for a notice
        self._inbox: dict[int, dict[bytes, np.ndarray | None]] = {}
        self.wait_timeout: float | None = options.wait_timeout
        self._wait: Timer | None = None

    def start(self) -> None:
        self._begin(1)

    def rejoin(self) -> None:
        self._wait = None
        self._begin(max(self.round, 1))

    def stop(self) -> None:
        if self._wait is not None:
            self._wait.cancel()
        super().stop()

    def choose_peers(self) -> list[bytes]:
        """s distinct peers, uniformly among the other nodes, from this node's own seeded RNG."""
        chosen = self.runtime.rng.choice(self._others, size=self.fanout, replace=False)
        view = self.runtime.view
        return [view.other(self._me, i) for i in sorted(chosen.tolist())]

    # ------------------------------------------------------------------ receiving
    def _refusal(self, sender: bytes, round: int) -> str | None:
        """Why a round-``round`` message from ``sender`` cannot be taken (None: it can)."""
        if sender not in self.runtime.view or sender == self.runtime.node_id:
            return "unknown_sender"
        if round < self.round or round < 1:
            return "stale_round"
        if sender in self._inbox.get(round, ()):
            return "duplicate_model"
        return None

    def _take(self, sender: bytes, round: int, params: np.ndarray | None) -> None:
        if self._stopped:
            return
        reason = self._refusal(sender, round)
        if reason is None and params is not None and params.size != self.parameters:
            reason = "wrong_parameter_count"
        if reason is not None:
            self.runtime.metrics.rejected(reason, sender)
            return
        self._inbox.setdefault(round, {})[sender] = params
        if round == self.round:
            self._try_average()

    @handles(NeighbourModel)
    def on_neighbour_model(self, sender: bytes, message: NeighbourModel) -> None:
        self._take(sender, message.round, message.params)

    @handles(NotSending)
    def on_not_sending(self, sender: bytes, message: NotSending) -> None:
        self._take(sender, message.round, None)

    # ------------------------------------------------------------------ the round
    def _begin(self, round: int) -> None:
        self.round = round
        self._trained = None
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        self._round_started = self.runtime.now()
        future = self.runtime.train(self.model, self.local_steps)
        self._training = future
        future.add_done_callback(lambda done: self._on_trained(round, done))

    def _on_trained(self, round: int, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped or round != self.round:
            return
        self._training = None
        params = future.result().params
        self._trained = params
        chosen = self.choose_peers()
        model = NeighbourModel(round, self.runtime.local_samples, params)
        notice = NotSending(round)
        chosen_set = set(chosen)
        send = self.runtime.send
        for peer in self.runtime.view.ids():
            if peer == self.runtime.node_id:
                continue
            send(peer, model if peer in chosen_set else notice)
        self._try_average()
        if self.round == round and self._trained is not None and self.wait_timeout is not None:
            self._wait = self.runtime.call_later(self.wait_timeout, self._waited, round)

    def _try_average(self) -> None:
        """End the round once this node's model is trained and every other node was heard from for it."""
        if self._trained is None or self._stopped:
            return
        received = self._inbox.get(self.round, {})
        if len(received) < self._others:
            return
        round = self.round
        del self._inbox[round]
        models = [received[sender] for sender in sorted(received) if received[sender] is not None]
        self.model = average([self._trained, *models]) if models else self._trained  # type: ignore[list-item]
        self.runtime.metrics.round_duration(round, self.runtime.now() - self._round_started, self.runtime.node_id)
        self._begin(round + 1)

    def _waited(self, round: int) -> None:
        """``wait_timeout`` passed before every node was heard from: average what came, then go on."""
        self._wait = None
        if self._stopped or round != self.round or self._trained is None:
            return
        metrics = self.runtime.metrics
        received = self._inbox.pop(round, {})
        metrics.count("wait_timeouts")
        metrics.count("silent_peers", self._others - len(received))
        models = [received[sender] for sender in sorted(received) if received[sender] is not None]
        self.model = average([self._trained, *models]) if models else self._trained  # type: ignore[list-item]
        metrics.round_duration(round, self.runtime.now() - self._round_started, self.runtime.node_id)
        self._begin(catch_up(self._inbox, round, metrics))

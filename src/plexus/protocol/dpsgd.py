"""D-PSGD (Lian et al., NeurIPS 2017): synchronous decentralized SGD over a communication topology.

Every node runs the same loop, round r = 1, 2, ...:

1. train ``local_steps`` SGD steps from its current model (round 1: the seeded initial model);
2. send the trained model to its out-neighbours of round r (:class:`NeighbourModel`, tagged with r);
3. wait until it holds the round-r models of *all* its in-neighbours (models of later rounds that arrive
   early are buffered, never mixed in);
4. average them with its own trained model and start round r+1 from the result.

By default there is no timeout: one slow node delays its neighbours, which delay theirs, exactly as in synchronous
D-PSGD (decentralizepy's ``DPSGDNode`` and the authors' simulator's D-PSGD client also wait for every neighbour);
that cost is what the comparison measures.

**Under churn** (``--wait-timeout SECONDS``) a neighbour that crashed or left would make that wait endless. With
the option set, a node that has trained and sent waits at most that long for its in-neighbours, then averages its
own model with the models that arrived (``wait_timeouts``; the models that did not come are counted in
``missing_models``) and starts the next round. If by then it holds models of later rounds (it was away, or
slower than its neighbours), it moves on to the latest of them (``rounds_skipped``), so a node that comes back
catches up instead of working through rounds everyone else has finished. Nothing changes while every neighbour
answers in time. Precedent: the Plexus authors' D-PSGD baseline runs globally clocked rounds that cut unfinished
transfers when the clock ticks and average whatever arrived (``sacs-epfl/plexus``, ``dlsim/dl``); decentralizepy
waits forever. We keep D-PSGD's own pace (no global clock) and add the timeout only for nodes that can no longer
hear from everyone. A node that comes back with its state (:meth:`Node.rejoin`) trains its current round again;
one that lost it starts from the initial model at round 1 and catches up as above.

Mixing weights (``--mixing``): ``uniform`` gives each of the deg(i) + 1 models weight 1 / (deg(i) + 1);
``metropolis-hastings`` gives neighbour j the weight 1 / (1 + max(deg(i), deg(j))) and the node itself the rest
(equal to uniform on regular graphs). Degrees are in-degrees of the round's graph. Every node derives the topology
itself from the sorted ids of its view and the experiment seed (:mod:`plexus.protocol.topologies`).

**Checked senders.** A model is accepted only from an in-neighbour of its round, once per round, for the current
round or a later one, with the model's parameter count; refusals are counted by reason.

**Where we differ from the Plexus authors' D-PSGD baseline** (``sacs-epfl/plexus``, ``dlsim/dl``): theirs runs
globally clocked rounds of a fixed timeout (60-120 s) and averages whatever arrived when the clock ticks. We
run D-PSGD as Lian et al. define it (and as decentralizepy does), with no global clock; the waiting is then part
of what the comparison measures rather than hidden in a chosen timeout.

A node reports ``metrics.round_duration(r, seconds, node)`` when it finishes round r (from the start of its
training to the averaging), which is also how the observer follows the nodes' progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plexus.protocol.aggregation import average
from plexus.protocol.decentralized import DecentralizedNode, NeighbourModel
from plexus.protocol.futures import Future
from plexus.protocol.node import handles
from plexus.protocol.options import inherited, option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, Timer, TrainResult
from plexus.protocol.topologies import Topology, build_topology, parse_topology


@dataclass(frozen=True)
class DPSGDOptions:
    local_steps: int = inherited("local SGD steps per round")
    seed: int = inherited("experiment seed (every node derives the same topology from it)")
    nodes: int = inherited("number of nodes")
    topology: str = option("regular:10", "D-PSGD topology: ring, regular:K, full or one-peer-exp")
    mixing: str = option("uniform", "mixing weights: uniform or metropolis-hastings",
                         choices=("uniform", "metropolis-hastings"))
    wait_timeout: float | None = option(None, "seconds a node waits for its neighbours' models before it averages "
                                        "those that arrived (default: wait for all; set it under churn)",
                                        above=0, finite=True)

    def check(self) -> None:
        # raises ConfigError naming the value when the graph cannot exist (cached for the run)
        build_topology(parse_topology(self.topology), self.nodes, self.seed)

    @property
    def reacts_to_churn(self) -> bool:
        return self.wait_timeout is not None


class SynchronousNeighbourNode(DecentralizedNode):
    """The train / send / wait-for-all-in-neighbours / average loop shared by D-PSGD and EL-Oracle.

    Subclasses say which topology round r uses and how to weight the models.
    """

    def __init__(self, runtime: Runtime, options: Any) -> None:
        super().__init__(runtime, options)
        self.ids = runtime.view.ids()  # shared by every node of a simulation: never modified
        self.position = runtime.view.positions()
        self.me = self.position[runtime.node_id]
        self.round = 0  # the round being worked on (0 before start)
        self._trained: np.ndarray | None = None  # this round's trained model, once training finished
        self._round_started = 0.0
        self._inbox: dict[int, dict[int, np.ndarray]] = {}  # round -> sender position -> model
        self.wait_timeout: float | None = getattr(options, "wait_timeout", None)
        self._wait: Timer | None = None

    # ------------------------------------------------------------------ to override
    def topology(self, round: int) -> Topology:
        raise NotImplementedError

    def mixing_weights(self, round: int, senders: list[int]) -> list[float] | None:
        """Weights of [own model, *senders' models]; None means a plain average."""
        return None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._begin(1, self.model)

    def rejoin(self) -> None:
        # back with its model and round: the training and the wait it had started died with it
        self._stopped = False
        self._wait = None
        self._begin(max(self.round, 1), self.model)

    def stop(self) -> None:
        if self._wait is not None:
            self._wait.cancel()
        super().stop()

    @handles(NeighbourModel)
    def on_neighbour_model(self, sender: bytes, message: NeighbourModel) -> None:
        if self._stopped:
            return
        round = message.round
        position = self.position.get(sender)
        if position is None:
            self.runtime.metrics.rejected("unknown_sender", sender)
            return
        if round < self.round:
            self.runtime.metrics.rejected("stale_round", sender)
            return
        expected = self.topology(round).in_neighbours(self.me, round)
        if position not in expected:
            self.runtime.metrics.rejected("not_an_in_neighbour", sender)
            return
        if message.params.size != self.parameters:
            self.runtime.metrics.rejected("wrong_parameter_count", sender)
            return
        bucket = self._inbox.get(round)
        if bucket is None:
            bucket = self._inbox[round] = {}
        elif position in bucket:
            self.runtime.metrics.rejected("duplicate_model", sender)
            return
        bucket[position] = message.params
        # the last model the round waited for (the test _try_average makes first, here without a call per model)
        if round == self.round and self._trained is not None and len(bucket) >= len(expected):
            self._try_average()

    # ------------------------------------------------------------------ the round
    def _begin(self, round: int, params: np.ndarray) -> None:
        self.round = round
        self._trained = None
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        self._round_started = self.runtime.now()
        future = self.runtime.train(params, self.local_steps)
        self._training = future
        future.add_done_callback(lambda done: self._on_trained(round, done))

    def _on_trained(self, round: int, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped or round != self.round:
            return
        self._training = None
        params = future.result().params
        self._trained = params
        outgoing = self.topology(round).out_neighbours(self.me, round)
        if outgoing:
            message = NeighbourModel(round, self.runtime.local_samples, params)
            for position in outgoing:
                self.runtime.send(self.ids[position], message)
        self._try_average()
        if self.round == round and self._trained is not None and self.wait_timeout is not None:
            self._wait = self.runtime.call_later(self.wait_timeout, self._waited, round)

    def _try_average(self) -> None:
        """Average once this round's own model and every in-neighbour's model are here; then next round."""
        if self._trained is None or self._stopped:
            return
        round = self.round
        expected = self.topology(round).in_neighbours(self.me, round)
        received = self._inbox.get(round, {})
        if len(received) < len(expected):
            return
        self._inbox.pop(round, None)
        senders = list(expected)
        models = [self._trained, *(received[p] for p in senders)]
        weights = self.mixing_weights(round, senders)
        self.model = average(models, weights) if len(models) > 1 else self._trained
        self.runtime.metrics.round_duration(round, self.runtime.now() - self._round_started, self.runtime.node_id)
        self._begin(round + 1, self.model)

    def _waited(self, round: int) -> None:
        """``wait_timeout`` passed in ``round``: average what arrived, then go on (catching up if behind)."""
        self._wait = None
        if self._stopped or round != self.round or self._trained is None:
            return
        metrics = self.runtime.metrics
        expected = self.topology(round).in_neighbours(self.me, round)
        received = self._inbox.pop(round, {})
        senders = [p for p in expected if p in received]
        metrics.count("wait_timeouts")
        metrics.count("missing_models", len(expected) - len(senders))
        models = [self._trained, *(received[p] for p in senders)]
        weights = renormalised(self.mixing_weights(round, senders))
        self.model = average(models, weights) if len(models) > 1 else self._trained
        metrics.round_duration(round, self.runtime.now() - self._round_started, self.runtime.node_id)
        self._begin(catch_up(self._inbox, round, metrics), self.model)


def renormalised(weights: list[float] | None) -> list[float] | None:
    """Mixing weights over the models that arrived, scaled to sum to one (None stays None: a plain average)."""
    if weights is None:
        return None
    total = sum(weights)
    return [w / total for w in weights] if total > 0 else None


def catch_up(inbox: dict[int, Any], round: int, metrics: Any) -> int:
    """The round to start after a wait timed out in ``round``: the next one, or the latest round some neighbour's
    model already arrived for (older rounds in the inbox are dropped, skipped rounds counted)."""
    following = max([r for r, bucket in inbox.items() if r > round and bucket], default=round + 1)
    for old in [r for r in inbox if r < following]:
        del inbox[old]
    if following > round + 1:
        metrics.count("rounds_skipped", following - round - 1)
    return following


@register("dpsgd", description="D-PSGD: synchronous neighbour averaging on --topology (Lian et al., 2017)",
          options=DPSGDOptions, decentralized=True, evaluation="nodes")
class DPSGDNode(SynchronousNeighbourNode):
    """D-PSGD on ``options.topology`` with ``options.mixing`` weights."""

    def __init__(self, runtime: Runtime, options: DPSGDOptions) -> None:
        super().__init__(runtime, options)
        self._topology = build_topology(options.topology, len(self.ids), options.seed)
        self.metropolis_hastings = options.mixing == "metropolis-hastings"

    def topology(self, round: int) -> Topology:
        return self._topology

    def mixing_weights(self, round: int, senders: list[int]) -> list[float] | None:
        if not self.metropolis_hastings:
            return None
        return metropolis_hastings_weights(self._topology, self.me, senders, round)


def metropolis_hastings_weights(topology: Topology, node: int, senders: list[int], round: int) -> list[float]:
    """[w_ii, w_ij for j in senders] with w_ij = 1 / (1 + max(d_i, d_j)) and w_ii = 1 - sum_j w_ij.

    The weights form a symmetric doubly-stochastic matrix on any undirected graph, which is what D-PSGD's
    convergence needs when degrees differ.
    """
    own_degree = len(topology.in_neighbours(node, round))
    others = [1.0 / (1 + max(own_degree, len(topology.in_neighbours(j, round)))) for j in senders]
    return [1.0 - sum(others), *others]

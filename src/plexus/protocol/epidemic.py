"""Epidemic Learning (de Vos et al., NeurIPS 2023): every round, send to s random peers and average what came in.

s is ``--fanout`` (default: the sample size s of Plexus, so both send the same number of models per round).
Both variants train ``local_steps`` SGD steps per round, send the trained model to s distinct other nodes and
average it uniformly with the models received for the round. They differ in who receives and in how a node
knows its round is over:

``el-oracle``
    Round r's communication graph is a fresh random directed graph in which every node sends to exactly s
    others and receives from exactly s others (:func:`~plexus.protocol.topologies.random_regular_digraph`),
    derived by every node on its own from the experiment seed and r, the "oracle" of the paper. So a node
    knows whom it waits for: it ends round r once it holds the round-r models of its s in-neighbours, exactly
    like D-PSGD on a graph that changes every round (and, like it, is slowed down by stragglers).

``el-local``
    Each node draws its s peers itself, uniformly among the others, with its own seeded RNG; a node therefore
    cannot know how many models it will receive in a round (on average s). It never waits for anyone else. Its
    round r is: train, send to its s peers, then wait until its uplink has carried them (the futures
    ``runtime.send`` returns; this keeps a fast-computing node on a slow link from piling up transfers); at
    that moment the round ends and the node averages its trained model with everything received since its
    previous average (the latest model of each sender, whatever round it was sent in; an older model from the
    same sender is superseded and counted as ``superseded_models``). This is the authors' "aggregate at the start of the
    next round what has arrived" rule, applied locally. Nodes run at their own pace, so the observer's round
    clock is the mean number of rounds nodes have completed.

Both report ``metrics.round_duration(r, seconds, node)`` at the end of each of their rounds.
"""

from __future__ import annotations

import numpy as np

from plexus.config import Config
from plexus.protocol.aggregation import average
from plexus.protocol.decentralized import DecentralizedNode
from plexus.protocol.dpsgd import SynchronousNeighbourNode
from plexus.protocol.futures import Future, gather
from plexus.protocol.messages import ModelKind, ModelMessage
from plexus.protocol.runtime import Runtime, TrainResult
from plexus.protocol.topologies import Topology, random_regular_digraph


def fanout_of(config: Config) -> int:
    """s: ``config.fanout``, else the sample size."""
    fanout = config.fanout if config.fanout is not None else config.sample_size
    if fanout is None:
        raise ValueError("Epidemic Learning needs a fanout or a sample size")
    return int(fanout)


class ELOracleNode(SynchronousNeighbourNode):
    """EL-Oracle: the synchronous neighbour-averaging loop on a fresh random s-in/s-out graph every round."""

    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime, config)
        self.fanout = fanout_of(config)
        self.seed = int(config.seed)

    def topology(self, round: int) -> Topology:
        return random_regular_digraph(len(self.ids), self.fanout, self.seed, round)


class ELLocalNode(DecentralizedNode):
    """EL-Local: s peers drawn locally each round; a round ends when the node's sends have left its uplink."""

    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime, config)
        self.fanout = fanout_of(config)
        self._others = len(runtime.membership) - 1
        self._me = runtime.membership.positions()[runtime.node_id]
        if self.fanout > self._others:
            raise ValueError(f"fanout {self.fanout} exceeds the {self._others} other nodes")
        self.round = 0
        self._inbox: dict[bytes, np.ndarray] = {}
        self._round_started = 0.0

    def start(self) -> None:
        self._begin(1)

    def on_message(self, sender: bytes, message: ModelMessage) -> None:
        if message.kind != ModelKind.NEIGHBOUR or self._stopped:
            return
        if sender in self._inbox:
            self.runtime.metrics.count("superseded_models")
        self._inbox[sender] = message.params

    def choose_peers(self) -> list[bytes]:
        """s distinct peers, uniformly among the other nodes, from this node's own seeded RNG."""
        chosen = self.runtime.rng.choice(self._others, size=self.fanout, replace=False)
        membership = self.runtime.membership
        return [membership.other(self._me, i) for i in sorted(chosen.tolist())]

    def _begin(self, round: int) -> None:
        self.round = round
        self._round_started = self.runtime.now()
        future = self.runtime.train(self.model, self.local_steps)
        self._training = future
        future.add_done_callback(lambda done: self._on_trained(round, done))

    def _on_trained(self, round: int, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped:
            return
        self._training = None
        params = future.result().params
        message = ModelMessage(ModelKind.NEIGHBOUR, round, params, samples=self.runtime.local_samples)
        sent = [self.runtime.send(peer, message) for peer in self.choose_peers()]
        gather(sent).add_done_callback(lambda _: self._end_round(round, params))

    def _end_round(self, round: int, params: np.ndarray) -> None:
        if self._stopped:
            return
        received = [self._inbox[sender] for sender in sorted(self._inbox)]
        self._inbox = {}
        self.model = average([params, *received]) if received else params
        self.runtime.metrics.round_duration(round, self.runtime.now() - self._round_started, self.runtime.node_id)
        self._begin(round + 1)

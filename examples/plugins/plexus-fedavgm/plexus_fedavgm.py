"""FedAvg with server momentum (FedAvgM; Hsu, Qi and Brown, "Measuring the Effects of Non-Identical Data
Distribution for Federated Visual Classification", 2019), written as an outside package writes a plexus plug-in.

Everything plexus needs is declared here, against ``plexus.protocol`` only:

- the options (``FedAvgMOptions``): plexus turns each into a CLI flag (``--server-lr``, ``--server-momentum``) and
  a ``[protocol]`` TOML key, checks them, and lists them in ``plexus algorithms``;
- the messages (``MomentumModel``, ``ClientModel``) with kind ids from the plug-in range (1000-65535);
- the server and client node classes, with their message handlers;
- the registration (``@register``), which also records the algorithm's traits in every results folder.

The server keeps a velocity v. Each round it samples s clients uniformly, sends them the global model x, and
once floor(s x sf) trained models x_i are back it computes the pseudo-gradient d = x - mean(x_i), updates
v <- beta v + d and x <- x - eta v. With beta = 0 and eta = 1 this is plain FedAvg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import Node, handles
from plexus.protocol.options import inherited, option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, TrainResult

SERVER_ID = b"server"  # the id plexus's simulator gives the participant without data of a server algorithm


@dataclass(frozen=True)
class FedAvgMOptions:
    local_steps: int = inherited("local SGD steps per round")
    nodes: int = inherited("number of nodes")
    sample_size: int = option(13, "s: clients sampled per round", minimum=1)
    success_fraction: float = option(0.8, "sf: aggregate once floor(s x sf) models have arrived", above=0, maximum=1)
    server_lr: float = option(1.0, "FedAvgM: the server's learning rate eta", above=0, finite=True)
    server_momentum: float = option(0.9, "FedAvgM: the server's momentum beta", minimum=0, below=1)

    def check(self) -> None:
        if self.sample_size > self.nodes:
            raise ValueError(f"sample_size = {self.sample_size} exceeds nodes = {self.nodes}")


@message(kind=1001)
class MomentumModel(Message):
    """The server's global model of ``round``."""

    round: int
    params: Params


@message(kind=1002)
class ClientModel(Message):
    """A client's model trained from the global model of ``round``."""

    round: int
    params: Params


class FedAvgMServer(Node):
    def __init__(self, runtime: Runtime, options: FedAvgMOptions) -> None:
        super().__init__(runtime, options)
        self.quorum = max(1, math.floor(options.sample_size * options.success_fraction + 1e-9))
        self.model = np.array(runtime.initial_model(), dtype=np.float32)
        self.velocity = np.zeros_like(self.model, dtype=np.float64)
        self.round = 0
        self._clients = [node for node in runtime.view.ids() if node != runtime.node_id]
        self._selected: set[bytes] = set()
        self._received: dict[bytes, np.ndarray] = {}

    def start(self) -> None:
        self._begin(1)

    def _begin(self, round: int) -> None:
        self.round = round
        self._received = {}
        chosen = sorted(self.runtime.rng.choice(len(self._clients), size=self.options.sample_size,
                                                replace=False).tolist())
        self._selected = {self._clients[i] for i in chosen}
        outgoing = MomentumModel(round, self.model)
        for index in chosen:
            self.runtime.send(self._clients[index], outgoing)

    @handles(ClientModel)
    def on_client_model(self, sender: bytes, incoming: ClientModel) -> None:
        metrics = self.runtime.metrics
        if incoming.round != self.round or len(self._received) >= self.quorum:
            metrics.count("late_models_dropped")
            return
        if sender not in self._selected or sender in self._received:
            metrics.rejected("sender_not_selected" if sender not in self._selected else "duplicate_model", sender)
            return
        if incoming.params.size != self.model.size:
            metrics.rejected("wrong_parameter_count", sender)
            return
        self._received[sender] = incoming.params
        if len(self._received) == self.quorum:
            mean = np.mean(np.stack(list(self._received.values())).astype(np.float64), axis=0)
            pseudo_gradient = self.model.astype(np.float64) - mean
            self.velocity = self.options.server_momentum * self.velocity + pseudo_gradient
            self.model = (self.model - self.options.server_lr * self.velocity).astype(np.float32)
            metrics.global_model(self.round, self.model)
            self._begin(self.round + 1)


@register("fedavgm", description="FedAvg with server momentum (Hsu et al., 2019): an example plug-in",
          options=FedAvgMOptions, server=FedAvgMServer)
class FedAvgMClient(Node):
    def __init__(self, runtime: Runtime, options: FedAvgMOptions) -> None:
        super().__init__(runtime, options)
        self._training: Future[TrainResult] | None = None

    def stop(self) -> None:
        if self._training is not None:
            self._training.cancel()

    @handles(MomentumModel)
    def on_global(self, sender: bytes, incoming: MomentumModel) -> None:
        if sender != SERVER_ID:
            self.runtime.metrics.rejected("not_the_server", sender)
            return
        if self._training is not None and not self._training.done():
            self._training.cancel()
        round = incoming.round
        self._training = self.runtime.train(incoming.params, self.options.local_steps)

        def reply(done: Future[TrainResult]) -> None:
            if not done.cancelled():
                self.runtime.send(sender, ClientModel(round, done.result().params))

        self._training.add_done_callback(reply)

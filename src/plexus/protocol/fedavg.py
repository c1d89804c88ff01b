"""FedAvg with a server (McMahan et al., 2017), the baseline Plexus is measured against.

The server is not a node: it holds no data, has its own (by default infinite) bandwidth, and each round samples
s nodes uniformly at random with its seeded RNG, sends them the global model, and averages the first
floor(s x sf) trained models that come back (at least 1, the same quorum rule as Plexus so that both are
compared at equal sf); later ones are dropped and counted.

**Reference.** The Plexus authors' code (``sacs-epfl/plexus``, ``simulations/``) simulates only Plexus, D-PSGD
and Gossip Learning, so there is no FedAvg of theirs to follow; this one follows McMahan et al.'s FederatedAveraging
(the server samples clients, each runs local SGD from the global model, the server averages, uniformly or by
local sample counts with ``--weighting samples``). Where it differs, on purpose: it averages the first
floor(s x sf) replies instead of all sampled clients, so it and Plexus are compared at the same sf; ``--success-
fraction 1`` gives the original rule.

**Checked senders.** The server accepts a model only from a client it selected for the current round, once per
client, with the model's parameter count; a client accepts a global model only from the server. Refusals are
counted by reason. In simulation the server's id is ``b"server"``; in a live run it is its public key, which the
live runtime passes to every client as the inherited option ``server_id``.

**Under churn** (clients crash, leave, come back; the server stays up): when the global model cannot reach a
selected client (its transmission fails), the server selects another client it has not selected this round
(``clients_replaced``), as FL servers over-select around dropouts. With ``--aggregation-timeout SECONDS`` the round
has a deadline counted from its start: once it has passed, the server averages as soon as it holds
``--min-models`` models; if it holds none it starts the round again with a fresh selection
(``rounds_restarted``). Both act only when something failed or was late, and the timeout is off by default, so a
run without churn is unchanged. A client that comes back has lost the training it was doing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plexus.protocol.aggregation import SampledRoundOptions, average, quorum
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import Node, handles
from plexus.protocol.options import inherited
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, Timer, TrainResult

SERVER_ID = b"server"


@dataclass(frozen=True)
class FedAvgOptions(SampledRoundOptions):
    """s, sf and weighting, as Plexus's (so both are compared at equal settings), and the server's id."""

    server_id: str = inherited("the server's node id: 'server' in simulations; in a live run the runtime passes "
                               "the server's public key (hex), which is how clients recognise it", default="server")

    def check(self) -> None:
        super().check()
        if self.server_id != "server":
            try:
                bytes.fromhex(self.server_id)
            except ValueError:
                raise ValueError(f"server_id = {self.server_id!r}: not a hexadecimal node id") from None

    @property
    def reacts_to_churn(self) -> bool:
        return self.aggregation_timeout is not None


@message(kind=3)
class GlobalModel(Message):
    """The server's global model of ``round``, sent to the clients selected for it."""

    round: int
    params: Params


@message(kind=4)
class ClientUpdate(Message):
    """A client's model trained from round ``round``'s global model."""

    round: int
    samples: int
    params: Params


class FedAvgServer(Node):
    options: FedAvgOptions

    def __init__(self, runtime: Runtime, options: FedAvgOptions) -> None:
        super().__init__(runtime, options)
        self.sample_size = options.sample_size
        self.quorum = quorum(options.sample_size, options.success_fraction)
        self.weighted = options.weighting == "samples"
        self.parameters = runtime.initial_model().size
        self.round = 0
        self._selected: set[bytes] = set()
        self._collected: dict[bytes, ClientUpdate] = {}
        self._clients = [node for node in runtime.view.ids() if node != runtime.node_id]
        self.aggregation_timeout = options.aggregation_timeout
        self.min_models = options.min_models
        self._params: np.ndarray = runtime.initial_model()
        self._deadline: Timer | None = None
        self._expired = False

    def start(self) -> None:
        self._begin(1, self.runtime.initial_model())

    def stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

    def _begin(self, round: int, params: np.ndarray) -> None:
        self.round = round
        self._params = params
        self._collected = {}
        self._expired = False
        chosen = self.runtime.rng.choice(len(self._clients), size=self.sample_size, replace=False)
        self._selected = {self._clients[index] for index in chosen.tolist()}
        message = GlobalModel(round, params)
        for index in sorted(chosen.tolist()):
            self._send(self._clients[index], message)
        if self.aggregation_timeout is not None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.runtime.call_later(self.aggregation_timeout, self._timeout, round)

    def _send(self, client: bytes, message: GlobalModel) -> None:
        transmission = self.runtime.send(client, message)
        if not transmission.done():
            transmission.add_done_callback(lambda done: self._sent(client, message, done))

    def _sent(self, client: bytes, message: GlobalModel, done: Future[None]) -> None:
        if not done.failed() or message.round != self.round:
            return
        # the client is gone: select one that was not selected yet this round
        spare = [c for c in self._clients if c not in self._selected]
        if not spare:
            return
        replacement = spare[int(self.runtime.rng.integers(len(spare)))]
        self._selected.add(replacement)
        self.runtime.metrics.count("clients_replaced")
        self._send(replacement, message)

    def _timeout(self, round: int) -> None:
        self._deadline = None
        if round != self.round:
            return
        self._expired = True
        self.runtime.metrics.count("aggregation_timeouts")
        if not self._collected:
            self.runtime.metrics.count("rounds_restarted")
            self._begin(round, self._params)
        elif len(self._collected) >= self.min_models:
            self._complete()

    @handles(ClientUpdate)
    def on_update(self, sender: bytes, message: ClientUpdate) -> None:
        metrics = self.runtime.metrics
        if message.round != self.round or len(self._collected) >= self.quorum:
            if message.round <= self.round:
                metrics.count("late_models_dropped")
            else:
                metrics.rejected("future_round", sender)
            return
        if sender not in self._selected:
            metrics.rejected("sender_not_selected", sender)
            return
        if sender in self._collected:
            metrics.rejected("duplicate_model", sender)
            return
        if message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
            return
        self._collected[sender] = message
        if len(self._collected) >= (min(self.quorum, self.min_models) if self._expired else self.quorum):
            self._complete()

    def _complete(self) -> None:
        models = list(self._collected.values())
        weights = [m.samples for m in models] if self.weighted else None
        global_model = average([m.params for m in models], weights)
        self.runtime.metrics.global_model(self.round, global_model)
        self.runtime.metrics.aggregated(self.round, self.runtime.node_id, len(models), sorted(self._selected))
        self._begin(self.round + 1, global_model)


@register("fedavg", description="FedAvg with a server (McMahan et al., 2017)", options=FedAvgOptions,
          server=FedAvgServer)
class FedAvgClient(Node):
    def __init__(self, runtime: Runtime, options: FedAvgOptions) -> None:
        super().__init__(runtime, options)
        self.local_steps = options.local_steps
        self.server_id = SERVER_ID if options.server_id == "server" else bytes.fromhex(options.server_id)
        self._training: Future[TrainResult] | None = None

    def stop(self) -> None:
        if self._training is not None:
            self._training.cancel()

    def rejoin(self) -> None:
        self._training = None  # the training it was doing died with it; the server replaces late clients

    @handles(GlobalModel)
    def on_global(self, sender: bytes, message: GlobalModel) -> None:
        if sender != self.server_id:
            self.runtime.metrics.rejected("not_the_server", sender)
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
                self.runtime.send(sender, ClientUpdate(round, self.runtime.local_samples, result.params))

        future.add_done_callback(reply)

"""AD-PSGD (Lian, Zhang, Zhang and Liu, "Asynchronous Decentralized Parallel Stochastic Gradient Descent",
ICML 2018), faithful to the paper: bipartite active and passive nodes, atomic pairwise averaging, no deadlock.

**Roles.** Nodes at odd positions of the sorted ids are *active*, those at even positions *passive* (as in the
reference implementation of Assran et al.'s ``stochastic_gradient_push``, where even ranks are passive). The
communication graph is the complete bipartite graph between the two sides: the fully connected graph the DivShare
experiments use, less the edges inside a side, which AD-PSGD must drop to be free of deadlock.

**Computation** (the paper's computing thread, on every node). A node reads its current model x^ (a snapshot),
trains ``local_steps`` SGD steps from it, and adds the resulting update to its *current* model:
x <- x + (trained - x^). Averagings may have changed x while it trained; applying the update computed on the stale
read x^ to the averaged model is exactly the paper's update x <- x - gamma * grad F(x^). Then it trains again at
once: computation never waits for communication. Each finished training is an iteration, reported with
``metrics.round_duration(iteration, seconds, node)``.

**Averaging** (the communication thread of an active node). After an iteration, unless an averaging is already
under way, an active node picks a passive node uniformly at random and sends it its current model x_A
(:class:`AveragingRequest`). The passive node, in one callback, sets x_P <- (x_P + x_A) / 2 and replies with that
average (:class:`AveragingReply`). On the reply the active node sets x_A <- x_A + (average - x_A as sent): with
no update in between that is the average itself, and with updates in between it is the average plus those updates,
the state the atomic averaging followed by those updates gives. The pair's averaging is therefore atomic: neither
model changes between the two reads and the two writes except by updates that commute with it, and the sum of the
two models is preserved. An active node has at most one averaging under way; iterations that end meanwhile ask for
one more, so it averages as often as its links allow and at most once per iteration.

**No deadlock.** Passive nodes never start an averaging and never wait; an active node waits only for one passive
node at a time and keeps training while it waits. No cycle of waiting nodes can form. An averaging whose request
cannot be delivered is given up at once (``averaging_failed``); one whose reply has not come after
``--averaging-timeout`` seconds is given up too (``averaging_timed_out``; a reply arriving later is refused as
``unexpected_reply``), so a crashed passive node cannot hold an active one forever.

**Checked input.** A request is refused unless it comes from an active node of the receiver's view and reaches a
passive node (``not_an_active_node``, ``receiver_not_passive``); a reply unless it answers the averaging under way,
from the node asked (``unexpected_reply``); both with the model's parameter count (``wrong_parameter_count``).

**Where we differ from the DivShare authors' AD-PSGD** (``sacs-epfl/divshare``, ``node/ADPSGD.py``): theirs is a
simplification with no roles and no atomic pairwise averaging: every node sends its model to ``degree // 2`` peers
drawn with replacement after each iteration, receivers answer with their own latest model, and each node averages
uniformly whatever it holds at its next iteration. The issue asks for the paper's algorithm; this module is that.
Unlike ``stochastic_gradient_push``'s AD-PSGD, which runs one SGD step per exchange, the update a node adds is that
of ``local_steps`` steps (one step with ``--local-steps 1``).
"""

from __future__ import annotations

import math
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
class ADPSGDOptions:
    local_steps: int = inherited("local SGD steps per iteration")
    nodes: int = inherited("number of nodes")
    averaging_timeout: float = option(600.0, "AD-PSGD: seconds an active node waits for a passive node's reply "
                                      "before it gives the averaging up", above=0)

    def check(self) -> None:
        if self.nodes < 2:
            raise ValueError(f"nodes = {self.nodes}: AD-PSGD needs at least one active and one passive node")


@message(kind=122)
class AveragingRequest(Message):
    """An active node's model, sent to a passive node to average with (``exchange`` numbers the request)."""

    exchange: int
    params: Params


@message(kind=123)
class AveragingReply(Message):
    """The passive node's average (x_P + x_A) / 2, answering request ``exchange``."""

    exchange: int
    params: Params


def is_active(position: int) -> bool:
    """Odd positions of the sorted ids are active, even ones passive."""
    return position % 2 == 1


@register("adpsgd", description="AD-PSGD: asynchronous, active nodes average atomically with a random passive node "
          "(Lian et al., ICML 2018)", options=ADPSGDOptions, decentralized=True, evaluation="nodes")
class ADPSGDNode(DecentralizedNode):
    def __init__(self, runtime: Runtime, options: ADPSGDOptions) -> None:
        super().__init__(runtime, options)
        self.timeout = float(options.averaging_timeout)
        view = runtime.view
        self.position = view.positions()[runtime.node_id]
        self.active = is_active(self.position)
        ids = view.ids()
        self.passives: list[bytes] = view.memo(("adpsgd-passive", len(ids)),
                                               lambda: [ids[i] for i in range(0, len(ids), 2)])
        self.iteration = 0
        self.exchanges = 0  # averagings this node completed (as the active side) or served (passive side)
        self._started = 0.0
        self._snapshot: np.ndarray | None = None
        self._wanted = False  # an iteration ended since the last averaging started (active nodes)
        # the averaging under way (active nodes): its number, the passive node, the model as sent, its timer
        self._exchange: tuple[int, bytes, np.ndarray, Timer | None] | None = None
        self._sequence = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._train()

    def stop(self) -> None:
        if self._exchange is not None and self._exchange[3] is not None:
            self._exchange[3].cancel()
        self._exchange = None
        super().stop()

    # ------------------------------------------------------------------ computation
    def _train(self) -> None:
        self._started = self.runtime.now()
        self._snapshot = self.model
        future = self.runtime.train(self.model, self.local_steps)
        self._training = future
        future.add_done_callback(self._on_trained)

    def _on_trained(self, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped:
            return
        self._training = None
        trained = future.result().params
        snapshot = self._snapshot
        if self.model is snapshot:
            self.model = trained  # nothing changed the model meanwhile
        else:
            assert snapshot is not None
            self.model = (self.model.astype(np.float64) + (trained.astype(np.float64) - snapshot)).astype(np.float32)
        self.iteration += 1
        runtime = self.runtime
        runtime.metrics.round_duration(self.iteration, runtime.now() - self._started, runtime.node_id)
        if self.active:
            self._wanted = True
            self._average()
        self._train()

    # ------------------------------------------------------------------ averaging, active side
    def _average(self) -> None:
        if self._exchange is not None or not self._wanted or self._stopped:
            return
        self._wanted = False
        rng = self.runtime.rng
        peer = self.passives[int(rng.integers(len(self.passives)))]
        self._sequence += 1
        sequence = self._sequence
        sent = self.model
        timer = None
        if math.isfinite(self.timeout):
            timer = self.runtime.call_later(self.timeout, self._timed_out, sequence)
        self._exchange = (sequence, peer, sent, timer)
        transmission = self.runtime.send(peer, AveragingRequest(sequence, sent))
        transmission.add_done_callback(lambda done: self._request_done(sequence, done))

    def _request_done(self, sequence: int, done: Future[None]) -> None:
        if done.cancelled() or not done.failed():
            return
        if self._exchange is not None and self._exchange[0] == sequence:
            self.runtime.metrics.count("averaging_failed")
            self._give_up()

    def _timed_out(self, sequence: int) -> None:
        if self._exchange is not None and self._exchange[0] == sequence:
            self.runtime.metrics.count("averaging_timed_out")
            self._exchange = (sequence, self._exchange[1], self._exchange[2], None)
            self._give_up()

    def _give_up(self) -> None:
        exchange = self._exchange
        self._exchange = None
        if exchange is not None and exchange[3] is not None:
            exchange[3].cancel()
        self._average()

    @handles(AveragingReply)
    def on_reply(self, sender: bytes, message: AveragingReply) -> None:
        if self._stopped:
            return
        exchange = self._exchange
        metrics = self.runtime.metrics
        if exchange is None or exchange[0] != message.exchange or exchange[1] != sender:
            metrics.rejected("unexpected_reply", sender)
            return
        if message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
            return
        _, _, sent, timer = exchange
        if timer is not None:
            timer.cancel()
        self._exchange = None
        if self.model is sent:
            self.model = message.params
        else:
            correction = message.params.astype(np.float64) - sent
            self.model = (self.model.astype(np.float64) + correction).astype(np.float32)
        # the next training reads the averaged model; the one under way applies its update on top of it
        self.exchanges += 1
        metrics.count("adpsgd_averagings")
        self._average()

    # ------------------------------------------------------------------ averaging, passive side
    @handles(AveragingRequest)
    def on_request(self, sender: bytes, message: AveragingRequest) -> None:
        if self._stopped:
            return
        metrics = self.runtime.metrics
        view = self.runtime.view
        if sender not in view or sender == self.runtime.node_id or not is_active(view.positions()[sender]):
            metrics.rejected("not_an_active_node", sender)
            return
        if self.active:
            metrics.rejected("receiver_not_passive", sender)
            return
        if message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
            return
        average = ((self.model.astype(np.float64) + message.params) / 2.0).astype(np.float32)
        self.model = average
        self.exchanges += 1
        transmission = self.runtime.send(sender, AveragingReply(message.exchange, average))
        transmission.add_done_callback(self._reply_done)

    def _reply_done(self, done: Future[None]) -> None:
        if not done.cancelled() and done.failed():
            self.runtime.metrics.count("sends_failed")

"""AD-PSGD as the DivShare authors' artifact runs it (``sacs-epfl/divshare``, ``node/ADPSGD.py``), under its own
name: it is not Lian et al.'s algorithm (that is ``adpsgd``, :mod:`plexus.protocol.adpsgd`), but it is the
baseline the DivShare paper's AD-PSGD figures come from, so the comparison can be made against either.

**A node's loop** (see :mod:`plexus.protocol.asynchronous`): train ``local_steps`` steps; put its whole trained
model into its send queue, flagged as a *ping*, for ``degree // 2`` peers drawn uniformly *with* replacement (the
artifact's ``rng.choice``; at least one); never flush the queue; average its trained model uniformly with the
newest model received from each sender since its last aggregation; train again. A node receiving a ping keeps
the model like any other and queues its own current model back to the sender, flagged as a *pong* (not answered).

There are no active or passive roles and no atomic averaging: a node may average with several peers at once, and
the two ends of a ping and its pong average different models at different times.

**Checked input.** As for Swift: refused from the node itself or a stranger (``own_message``, ``unknown_sender``)
or with the wrong number of parameters (``wrong_parameter_count``).

**Where we differ from the artifact, and why.** Its ping flag lives on a model object shared by the queued
messages, so a pong can flip the flag of a ping still waiting in the queue (the reference notes record this); we
give each message its own flag, the evident intent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from plexus.protocol.asynchronous import AsyncSharingNode
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import handles
from plexus.protocol.registry import register
from plexus.protocol.swift import SwiftOptions


@message(kind=124)
class PingPongModel(Message):
    """A whole model: a ping (answer it with your own model) or a pong (the answer)."""

    ping: bool
    params: Params


@register("adpsgd-divshare", description="AD-PSGD as the DivShare artifact runs it: whole model to degree/2 peers "
          "(with replacement) each iteration, answered with the receiver's model; uniform averaging",
          options=SwiftOptions, decentralized=True, evaluation="nodes")
class ADPSGDDivShareNode(AsyncSharingNode):
    flush_each_iteration = False

    def needed_peers(self) -> int:
        return 1  # peers are drawn with replacement

    def pieces(self, trained: np.ndarray) -> Sequence[Message]:
        return [PingPongModel(True, trained)]

    def _share(self, trained: np.ndarray) -> None:
        if len(self.queue):
            self.runtime.metrics.count("messages_still_queued", len(self.queue))
        rng = self.runtime.rng
        chosen = rng.choice(self._others, size=max(1, self.degree // 2), replace=True)
        ping = PingPongModel(True, trained)
        view = self.runtime.view
        self.queue.extend((view.other(self._me, int(index)), ping) for index in chosen)

    @handles(PingPongModel)
    def on_model(self, sender: bytes, message: PingPongModel) -> None:
        if not self.accept_whole_model(sender, message.params):
            return
        if message.ping:
            self.queue.put(sender, PingPongModel(False, self.model))

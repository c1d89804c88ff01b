"""Swift as the DivShare paper runs it (Biswas et al., WWW 2025, baseline "Swift"; after Bornstein et al.,
"SWIFT: Rapid Decentralized Federated Learning via Wait-Free Model Communication", ICLR 2023).

**A node's loop** (see :mod:`plexus.protocol.asynchronous`): train ``local_steps`` steps; put its whole trained
model into its send queue for ``degree`` (J) distinct peers drawn afresh, in random order, without waiting for
anything and *without flushing* what the queue still holds from earlier iterations (a node whose uplink cannot keep
up builds a backlog and keeps sending its older models: ``messages_still_queued`` counts what was waiting each time
a new iteration's models were queued); average its trained model uniformly with the newest model received from each
sender since its last aggregation; train again.

**Checked input.** A model is refused (and counted) when it comes from the receiver itself or from a node outside its
view (``own_message``, ``unknown_sender``) or has the wrong number of parameters (``wrong_parameter_count``).

**As in the DivShare authors' code** (``sacs-epfl/divshare``, ``node/Swift.py``): their Swift is their DivShare
loop with the whole model as the only fragment and no flushing of the send queue; J random distinct peers per
iteration over a fully connected graph; uniform averaging of the node's model and the newest model per sender
received since the last aggregation.

**How this differs from the original SWIFT** (``marcobornstein/SWIFT``): there, every node sends (non-blocking
MPI) its model to *all* its neighbours in a fixed graph (ring, clique-ring, Erdos-Renyi, ...) after every
iteration; it averages with weights from a distributed degree-based protocol (symmetric, self weight
1 - sum of the others), and with the *last stored* model of every neighbour, whether or not a new one arrived;
averaging happens only every ``sgd_steps`` iterations (a communication set); and the averaging sits between the
backward pass and the optimiser step (the gradient of the pre-averaging model is applied to the average). The
DivShare paper's Swift keeps only the wait-free sending: random peers drawn per iteration, uniform weights over
what arrived, averaging after the local steps. We run the latter, because the comparison the issue reproduces is
the DivShare paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plexus.protocol.asynchronous import AsyncSharingNode, check_degree, degree_option, send_concurrency_option
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import handles
from plexus.protocol.options import inherited
from plexus.protocol.registry import register


@dataclass(frozen=True)
class SwiftOptions:
    local_steps: int = inherited("local SGD steps per iteration")
    nodes: int = inherited("number of nodes")
    degree: int = degree_option()
    send_concurrency: int = send_concurrency_option()

    def check(self) -> None:
        check_degree(self.degree, self.nodes)


@message(kind=121)
class SwiftModel(Message):
    """A Swift node's whole trained model."""

    params: Params


@register("swift", description="Swift as DivShare runs it: asynchronous, the whole model to J random peers each "
          "iteration, queue never flushed", options=SwiftOptions, decentralized=True, evaluation="nodes")
class SwiftNode(AsyncSharingNode):
    flush_each_iteration = False

    def pieces(self, trained: np.ndarray) -> Sequence[Message]:
        return [SwiftModel(trained)]

    @handles(SwiftModel)
    def on_model(self, sender: bytes, message: SwiftModel) -> None:
        self.accept_whole_model(sender, message.params)

"""What the asynchronous sharing algorithms (DivShare, Swift) have in common: nodes without rounds, each looping
train, send, aggregate at its own speed, with a send queue drained at link speed.

Every node repeats, with no global clock and no waiting for anyone:

1. train ``local_steps`` SGD steps from its current model;
2. (DivShare) flush its send queue: whatever has not left yet is dropped;
3. queue the *trained* model's pieces (DivShare: fragments; Swift: the whole model), each to ``degree`` distinct
   peers drawn afresh for every piece, the (peer, piece) pairs in a random order;
4. average what arrived since its last aggregation into the trained model, coordinate by coordinate
   (:func:`average_pieces`), and start the next iteration from the result.

An iteration ends at step 4; the node reports it with ``metrics.round_duration(iteration, seconds, node)``, so the
run's ``round`` column is the mean number of iterations nodes completed. Messages arriving while the node trains
wait in its inbox, which keeps, per sender and piece, only the newest copy (a newer copy replaces an older one and
is counted in ``pieces_replaced``).

**Checked input.** A piece is accepted only from a node of the receiver's view other than itself, only with a
known piece id, and only with exactly that piece's number of values; refusals are counted by reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from plexus.protocol.decentralized import DecentralizedNode
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.options import option
from plexus.protocol.runtime import Runtime, TrainResult
from plexus.protocol.sendqueue import SendQueue

Piece = tuple[np.ndarray | None, np.ndarray]  # (coordinates, or None for the whole model; values)


def degree_option() -> Any:
    """The ``degree`` option every asynchronous sharing algorithm declares (one flag, one help text)."""
    return option(6, "asynchronous DL: J, the distinct random peers each piece of a node's model goes to per "
                  "iteration (DivShare, Swift)", minimum=1)


def send_concurrency_option() -> Any:
    return option(1, "asynchronous DL: messages a node's send queue transmits at once (1: one after another at "
                  "link speed)", minimum=1)


def check_degree(degree: int, nodes: int) -> None:
    if degree > nodes - 1:
        raise ValueError(f"degree = {degree}: must be at most nodes - 1 = {nodes - 1} "
                         f"(J distinct peers other than the sender)")


def average_pieces(own: np.ndarray, pieces: Iterable[Piece], disjoint: bool = False) -> np.ndarray:
    """Per-coordinate average of ``own`` and every received piece covering the coordinate.

    Each piece is (indices, values), indices None meaning the whole vector. The node's own value counts once;
    a coordinate no piece covers keeps its own value. Accumulates in float64 and returns float32. Pieces that
    share one indices array (copies of one fragment from several senders) are summed together first, so the
    cost is one scattered update per distinct fragment, not per piece. ``disjoint`` promises that distinct
    indices arrays never share a coordinate (DivShare's fragments partition the model): each coordinate's count
    is then its fragment's, and no per-coordinate count array is needed.
    """
    groups: dict[int, list[Any]] = {}
    for indices, values in pieces:
        key = -1 if indices is None else id(indices)
        group = groups.get(key)
        if group is None:
            groups[key] = [indices, values.astype(np.float64), 1]
        else:
            # (float64 += float32 goes through NumPy's slow casting loop: convert first)
            group[1] += values.astype(np.float64)
            group[2] += 1
    total = own.astype(np.float64)
    whole = groups.pop(-1, None)
    if whole is not None:
        total += whole[1]
    base = 1.0 + (whole[2] if whole is not None else 0)
    if disjoint:
        for indices, summed, count in groups.values():
            segment = total[indices]
            segment += summed
            segment /= base + count
            total[indices] = segment
        if not groups or base != 1.0:
            # coordinates outside every fragment: own (and whole models) over base
            if base != 1.0:
                covered = np.zeros(own.size, dtype=bool)
                for indices, _, _ in groups.values():
                    covered[indices] = True
                total[~covered] /= base
        return total.astype(np.float32)
    counts = np.full(own.size, base)
    for indices, summed, count in groups.values():
        total[indices] += summed
        counts[indices] += count
    total /= counts
    return total.astype(np.float32)


def distinct_peers(runtime: Runtime, me: int, others: int, count: int) -> list[bytes]:
    """``count`` distinct nodes of the view other than the one at position ``me``, uniformly at random."""
    chosen = runtime.rng.choice(others, size=count, replace=False)
    view = runtime.view
    return [view.other(me, int(index)) for index in chosen]


class AsyncSharingNode(DecentralizedNode):
    """The loop of the module docstring; subclasses say what the pieces are (:meth:`pieces`) and whether the
    queue is flushed every iteration (``flush_each_iteration``)."""

    flush_each_iteration = False
    disjoint_pieces = False  # pieces with distinct indices never overlap (see average_pieces)

    def __init__(self, runtime: Runtime, options: Any) -> None:
        super().__init__(runtime, options)
        self.degree = int(options.degree)
        self.queue = SendQueue(runtime, int(options.send_concurrency), on_failure=self._send_failed)
        self.iteration = 0
        view = runtime.view
        self._others = len(view) - 1
        self._me = view.positions()[runtime.node_id]
        self._inbox: dict[tuple[bytes, int], Piece] = {}
        self._started = 0.0

    # ------------------------------------------------------------------ to override
    def pieces(self, trained: np.ndarray) -> Sequence[Message]:
        """The messages to send for this iteration, one per piece (each goes to ``degree`` peers)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle
    def needed_peers(self) -> int:
        """How many other nodes the view must hold (``degree`` distinct peers per piece)."""
        return self.degree

    def start(self) -> None:
        if self._others < self.needed_peers():
            raise ValueError(f"{type(self).__name__}: degree {self.degree} needs at least "
                             f"{self.needed_peers() + 1} nodes in the view, it has {self._others + 1}")
        self._train()

    def stop(self) -> None:
        super().stop()
        self.queue.close()

    def _train(self) -> None:
        self._started = self.runtime.now()
        future = self.runtime.train(self.model, self.local_steps)
        self._training = future
        future.add_done_callback(self._on_trained)

    def _on_trained(self, future: Future[TrainResult]) -> None:
        if future.cancelled() or self._stopped:
            return
        self._training = None
        trained = future.result().params
        self.iteration += 1
        self._share(trained)
        self.model = self._aggregate(trained)
        runtime = self.runtime
        runtime.metrics.round_duration(self.iteration, runtime.now() - self._started, runtime.node_id)
        self._train()

    # ------------------------------------------------------------------ sending
    def _share(self, trained: np.ndarray) -> None:
        metrics = self.runtime.metrics
        if self.flush_each_iteration:
            dropped, aborted = self.queue.flush(abort_in_flight=True)
            if dropped:
                metrics.count("messages_dropped_unsent", dropped)
            if aborted:
                metrics.count("messages_aborted_leaving", aborted)
        elif len(self.queue):
            metrics.count("messages_still_queued", len(self.queue))
        pairs = [(peer, message) for message in self.pieces(trained)
                 for peer in distinct_peers(self.runtime, self._me, self._others, self.degree)]
        order = self.runtime.rng.permutation(len(pairs))
        self.queue.extend(pairs[i] for i in order.tolist())

    def _send_failed(self, peer: bytes, message: Message, error: BaseException) -> None:
        self.runtime.metrics.count("sends_failed")

    # ------------------------------------------------------------------ receiving
    def accept(self, sender: bytes, piece: int, indices: np.ndarray | None, values: np.ndarray) -> None:
        """Keep a checked piece in the inbox (the newest per sender and piece)."""
        if self._stopped:
            return
        key = (sender, piece)
        if key in self._inbox:
            self.runtime.metrics.count("pieces_replaced")
        self._inbox[key] = (indices, values)

    def accept_whole_model(self, sender: bytes, params: np.ndarray) -> bool:
        """Keep a whole model from ``sender`` for the next aggregation (as piece 0), after the sender and size
        checks; returns whether it was kept (refusals are counted)."""
        if self._stopped or not self.known_sender(sender):
            return False
        if params.size != self.parameters:
            self.runtime.metrics.rejected("wrong_parameter_count", sender)
            return False
        self.accept(sender, 0, None, params)
        return True

    def known_sender(self, sender: bytes) -> bool:
        """Refuse (and count) pieces from the node itself or from nodes outside its view."""
        if sender == self.runtime.node_id:
            self.runtime.metrics.rejected("own_message", sender)
            return False
        if sender not in self.runtime.view:
            self.runtime.metrics.rejected("unknown_sender", sender)
            return False
        return True

    def _aggregate(self, trained: np.ndarray) -> np.ndarray:
        if not self._inbox:
            return trained
        inbox, self._inbox = self._inbox, {}
        self.runtime.metrics.count("pieces_aggregated", len(inbox))
        return average_pieces(trained, inbox.values(), self.disjoint_pieces)

"""DivShare (Biswas, Kermarrec, Marouani, Pires, Sharma and de Vos, "Boosting Asynchronous Decentralized Learning
with Model Fragmentation", WWW 2025): asynchronous nodes send random fragments of their model to random peers.

**Fragments.** With fraction Omega (``--fragment-fraction``, in (0, 1]) a model is cut into
F = max(1, floor(1/Omega)) fragments. The partition is global and seeded: for every parameter tensor, in the order
the tensors lie in the flat vector, a permutation of its elements drawn from the experiment's seeded stream is cut
into F pieces (the first F-1 of size floor(numel/F), the last taking the remainder), and fragment i is the union
of piece i of every tensor (:func:`fragment_partition`). Every fragment therefore holds about 1/F of every layer,
and every node computes the same partition, so a fragment id alone says which coordinates the values are for.
Only the fragment id and the values travel (:class:`Fragment`).

**A node's loop** (see :mod:`plexus.protocol.asynchronous`): train ``local_steps`` steps; drop whatever its send
queue still holds from the previous iteration (including the message still leaving: the authors close their
sockets with linger 0); for each fragment of the trained model draw ``degree`` (J) distinct peers afresh, shuffle
the (peer, fragment) pairs into the send queue, which sends them one after another at link speed while the node
goes on; average, coordinate by coordinate, the trained model with every fragment received since the last
aggregation (the node's own value counted once; per sender and fragment id only the newest copy); train again.

**Checked input.** A fragment is refused (and counted) when it comes from the receiver itself or from a node outside
its view (``own_message``, ``unknown_sender``), when its id is outside 0..F-1 (``unknown_fragment``), or when it
does not carry exactly that fragment's number of values (``wrong_fragment_length``).

**Where we follow the authors' code** (``sacs-epfl/divshare``, ``DivShareSharing.py`` and ``node/DivShare.py``):
F = floor(1/Omega) with the per-tensor seeded permutation and the remainder in the last piece, J distinct peers
drawn afresh per fragment and iteration over a fully connected graph, the shuffled (peer, fragment) list, the
flush of everything unsent when the next iteration's list is built, aggregation only of what arrived, newest copy
per sender and fragment. **Where we differ, and why**: the authors' message also carries the sender's iteration,
the number of fragments and a sparsity seed, unused by DivShare's aggregation; we send the id and the values only,
as the paper describes. Their permutation comes from torch's generator seeded with the dataset seed; ours from the
experiment's named stream (``divshare-fragments``), so a run's seed fixes it. Their sender thread hands messages to
ZeroMQ sockets, one per peer; we drain the queue ``--send-concurrency`` messages at a time (default 1: one after
another, so the first fragments get out even from a straggler before the flush), which the issue's model of a
per-node send queue "drained at link speed" asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plexus.protocol.asynchronous import AsyncSharingNode, check_degree, degree_option, send_concurrency_option
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import handles
from plexus.protocol.options import inherited, option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime
from plexus.rng import stream


def fragment_count(fraction: float) -> int:
    """F = max(1, floor(1/Omega)), as the authors compute it."""
    return max(1, int(1.0 / fraction + 1e-9))


def fragment_partition(layout: Sequence[int], fragments: int, seed: int) -> list[np.ndarray]:
    """The coordinates of each of ``fragments`` fragments of a flat vector made of tensors of sizes ``layout``.

    For every tensor a seeded permutation of its elements (shifted by the tensor's offset) is cut into
    ``fragments`` pieces, the first F-1 of size ``numel // F`` and the last with the rest; fragment i is the
    concatenation of piece i of every tensor. The result depends on (layout, fragments, seed) only.
    """
    if fragments < 1:
        raise ValueError(f"fragments must be >= 1, got {fragments}")
    rng = stream(seed, "divshare-fragments")
    parts: list[list[np.ndarray]] = [[] for _ in range(fragments)]
    offset = 0
    for size in layout:
        if size < 0:
            raise ValueError(f"tensor sizes must be >= 0, got {size}")
        permutation = rng.permutation(size) + offset
        step = size // fragments
        for i in range(fragments):
            end = size if i == fragments - 1 else (i + 1) * step
            parts[i].append(permutation[i * step:end])
        offset += size
    return [np.concatenate(piece).astype(np.int64) if piece else np.zeros(0, dtype=np.int64) for piece in parts]


@dataclass(frozen=True)
class DivShareOptions:
    local_steps: int = inherited("local SGD steps per iteration")
    seed: int = inherited("experiment seed (every node derives the same fragments from it)")
    nodes: int = inherited("number of nodes")
    fragment_fraction: float = option(0.1, "DivShare: Omega, the share of the model in one fragment "
                                      "(F = floor(1/Omega) fragments)", above=0, maximum=1)
    degree: int = degree_option()
    send_concurrency: int = send_concurrency_option()

    def check(self) -> None:
        check_degree(self.degree, self.nodes)


@message(kind=120)
class Fragment(Message):
    """Fragment ``fragment`` of a DivShare node's trained model: the values at that fragment's coordinates."""

    fragment: int
    params: Params


@register("divshare", description="DivShare: asynchronous, random model fragments to J random peers each "
          "iteration (Biswas et al., WWW 2025)", options=DivShareOptions, decentralized=True, evaluation="nodes")
class DivShareNode(AsyncSharingNode):
    flush_each_iteration = True
    disjoint_pieces = True  # the fragments partition the model

    def __init__(self, runtime: Runtime, options: DivShareOptions) -> None:
        super().__init__(runtime, options)
        self.fragments = fragment_count(options.fragment_fraction)
        layout = tuple(runtime.parameter_layout())
        key = ("divshare-fragments", layout, self.fragments, options.seed)
        # every node computes the same partition: share it through the roster's cache
        self.indices: list[np.ndarray] = runtime.view.memo(
            key, lambda: fragment_partition(layout, self.fragments, options.seed))

    def pieces(self, trained: np.ndarray) -> Sequence[Message]:
        return [Fragment(i, trained[indices]) for i, indices in enumerate(self.indices)]

    @handles(Fragment)
    def on_fragment(self, sender: bytes, message: Fragment) -> None:
        if self._stopped or not self.known_sender(sender):
            return
        fragment = message.fragment
        if not 0 <= fragment < self.fragments:
            self.runtime.metrics.rejected("unknown_fragment", sender)
            return
        indices = self.indices[fragment]
        if message.params.size != indices.size:
            self.runtime.metrics.rejected("wrong_fragment_length", sender)
            return
        self.accept(sender, fragment, indices, message.params)

"""The simulated world: event loop, network, compute, nodes and their runtimes, wired together."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from plexus.learning.trainer import LocalTrainer
from plexus.protocol.futures import Future
from plexus.protocol.messages import ModelMessage
from plexus.protocol.runtime import Membership, MetricsSink, Node
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.runtime import SimRuntime


def node_id_of(index: int) -> bytes:
    """The simulated id of node ``index``: its decimal index in ASCII (stable across runs and versions)."""
    return str(index).encode()


class World:
    """Endpoints 0..data_nodes-1 are nodes with data; any further endpoints are servers (e.g. FedAvg's)."""

    def __init__(
        self,
        seed: int,
        loop: EventLoop,
        network: Network,
        compute: ComputeModel,
        trainer: LocalTrainer,
        membership: Membership,
        node_ids: list[bytes],
        data_nodes: int,
        initial_params: np.ndarray,
    ) -> None:
        self.seed = seed
        self.loop = loop
        self.network = network
        self.compute = compute
        self.trainer = trainer
        self.membership = membership
        self.node_ids = node_ids
        self.index_of = {node_id: index for index, node_id in enumerate(node_ids)}
        self.data_nodes = data_nodes
        initial_params = np.array(initial_params, dtype=np.float32)
        initial_params.flags.writeable = False
        self.initial_params = initial_params
        self.nodes: list[Node] = []
        self.train_seconds_total = 0.0
        self._sample_counts = [int(indices.size) for indices in trainer.node_indices]

    def attach(
        self, make_node: Callable[[SimRuntime], Node], metrics: MetricsSink, membership: Membership | None = None
    ) -> SimRuntime:
        index = len(self.nodes)
        runtime = SimRuntime(self, index, self.node_ids[index], metrics, membership or self.membership)
        self.nodes.append(make_node(runtime))
        return runtime

    def local_samples(self, index: int) -> int:
        return self._sample_counts[index] if index < self.data_nodes else 0

    def send(self, src: int, peer: bytes, message: ModelMessage) -> Future[None]:
        """Deliver ``message``; the returned future resolves once it has left the sender's uplink."""
        dst = self.index_of.get(peer)
        if dst is None:
            raise KeyError(f"node {self.node_ids[src]!r} sent to unknown node {peer!r}")
        sent: Future[None] = Future()
        if dst == src:
            self.loop.call_later(0.0, self._deliver, src, dst, message)
            sent.set_result(None)
        else:
            self.network.transfer(src, dst, message.wire_size, lambda: self._deliver(src, dst, message),
                                  lambda: sent.set_result(None))
        return sent

    def _deliver(self, src: int, dst: int, message: ModelMessage) -> None:
        self.nodes[dst].on_message(self.node_ids[src], message)

"""The simulated world: event loop, network, compute, nodes and their runtimes, wired together.

It implements the sending half of the runtime contract (:mod:`plexus.protocol.runtime`): a message to an unknown
id fails its transmission at once (:class:`~plexus.protocol.runtime.UnknownPeer`); a message whose destination is
offline when it would arrive, or whose transfer is aborted because an end went down, fails it with
:class:`~plexus.protocol.runtime.PeerUnreachable`; every loss is counted by reason (``summary.json``'s
``messages_lost``). A message sent to a node that has since gone down and come back is lost too (a restarted
process has none of its old connections): each endpoint's ``epochs`` entry changes whenever it goes down or up.
Without churn every node is online for the whole run (:mod:`plexus.sim.churn` changes that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from plexus.learning.executors import Executor, InlineExecutor
from plexus.learning.trainer import LocalTrainer
from plexus.protocol.messages import Message
from plexus.protocol.node import Node
from plexus.protocol.runtime import MetricsSink, PeerUnreachable, Transmission, UnknownPeer
from plexus.protocol.view import View
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.runtime import SimRuntime


def node_id_of(index: int) -> bytes:
    """The simulated id of node ``index``: its decimal index in ASCII (stable across runs and versions)."""
    return str(index).encode()


class Courier(Transmission):
    """One message on its way: the sender's :class:`~plexus.protocol.runtime.Transmission` and, for the network,
    its :class:`~plexus.sim.network.Parcel` in one object. What the network reports goes to the transmission and,
    on arrival, to the receiving node. One object per message, where there were a transmission, three closures
    and a cancel hook: a D-PSGD round at 1000 nodes sends 10,000 of them."""

    __slots__ = ("world", "src", "dst", "message", "epoch", "peer", "in_network")

    def __init__(self, world: World, src: int, dst: int, message: Message, epoch: int, peer: bytes) -> None:
        Transmission.__init__(self)
        self.world = world
        self.src = src
        self.dst = dst
        self.message = message
        self.epoch = epoch
        self.peer = peer
        self.in_network = False  # a transfer the network can abort (a small message cannot be)

    left = Transmission.mark_sent  # the network: the last byte has left the sender's uplink

    def arrived(self) -> None:
        # a transmission cancelled after its last byte left only detached its sender: the message arrives
        world, dst = self.world, self.dst
        if not world.online[dst] or world.epochs[dst] != self.epoch:
            world._lost(self, world.node_ids[dst], "offline_at_arrival")
            return
        world.nodes[dst].deliver(world.node_ids[self.src], self.message)
        self.mark_delivered()

    def aborted(self, reason: str) -> None:
        self.world._lost(self, self.peer, reason)

    def cancel(self) -> bool:
        if self.in_network and not self._done:
            self.on_cancel(self._stop_transfer)  # the sender abandoned it: stop it if it has not finished sending
        return Transmission.cancel(self)

    def _stop_transfer(self) -> None:
        self.world.network.abort(self, "cancelled")


class World:
    """Endpoints 0..data_nodes-1 are nodes with data; any further endpoints are servers (e.g. FedAvg's)."""

    def __init__(
        self,
        seed: int,
        loop: EventLoop,
        network: Network,
        compute: ComputeModel,
        trainer: LocalTrainer,
        node_ids: list[bytes],
        data_nodes: int,
        initial_params: np.ndarray,
        layout: tuple[int, ...] | None = None,
    ) -> None:
        self.seed = seed
        self.loop = loop
        self.network = network
        self.compute = compute
        self.trainer = trainer
        # where training runs (plexus.learning.executors); the simulation sets it, inline by default
        self.executor: Executor = InlineExecutor(trainer, None)
        self.node_ids = node_ids
        self.index_of = {node_id: index for index, node_id in enumerate(node_ids)}
        self.data_nodes = data_nodes
        initial_params = np.array(initial_params, dtype=np.float32)
        initial_params.flags.writeable = False
        self.initial_params = initial_params
        # the sizes of the model's parameter tensors in flat-vector order (Runtime.parameter_layout)
        self.layout = tuple(layout) if layout is not None else (int(initial_params.size),)
        if sum(self.layout) != initial_params.size:
            raise ValueError(f"parameter layout {self.layout} does not add up to {initial_params.size} parameters")
        self.nodes: list[Node] = []
        self.runtimes: list[SimRuntime] = []
        self.online = [True] * len(node_ids)
        self.epochs = [0] * len(node_ids)
        self.train_seconds_total = 0.0
        self.messages_lost: Counter[str] = Counter()
        self.on_progress: Callable[[], None] | None = None
        self._sample_counts = [int(indices.size) for indices in trainer.node_indices]

    def attach(self, make_node: Callable[[SimRuntime], Node], metrics: MetricsSink, view: View,
               runtime_class: type[SimRuntime] = SimRuntime) -> SimRuntime:
        index = len(self.nodes)
        runtime = runtime_class(self, index, self.node_ids[index], metrics, view)
        self.runtimes.append(runtime)
        self.nodes.append(make_node(runtime))
        return runtime

    def local_samples(self, index: int) -> int:
        return self._sample_counts[index] if index < self.data_nodes else 0

    def progress(self) -> None:
        """Something moved the learning forward (a training job finished): the stall watchdog is told."""
        if self.on_progress is not None:
            self.on_progress()

    # ------------------------------------------------------------------ sending
    def send(self, src: int, peer: bytes, message: Message) -> Transmission:
        """Carry ``message`` from endpoint ``src`` to node ``peer`` (see the module docstring)."""
        dst = self.index_of.get(peer)
        if dst is None:
            self.messages_lost["unknown_peer"] += 1
            transmission = Transmission()
            transmission.mark_failed(UnknownPeer(peer, "unknown node"))
            return transmission
        courier = Courier(self, src, dst, message, self.epochs[dst], peer)
        if dst == src:
            self.loop.call_later(0.0, courier.arrived)
        else:
            courier.in_network = self.network.carry(src, dst, message.wire_size, courier) is not None
        return courier

    def _lost(self, transmission: Transmission, peer: bytes, reason: str) -> None:
        if transmission.cancelled():
            return  # the sender abandoned it: not a loss
        self.messages_lost[reason] += 1
        transmission.mark_failed(PeerUnreachable(peer, reason.replace("_", " ")))

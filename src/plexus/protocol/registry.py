"""The algorithm registry: ``--algorithm NAME`` looks names up here.

An algorithm is a node class, optionally a server class (a participant that holds no data, e.g. FedAvg's), and
how the observer evaluates it: ``global`` (the algorithm reports global models, evaluated every
``eval_every`` rounds) or ``nodes`` (decentralized learning: the observer evaluates node models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plexus.config import Config
from plexus.errors import ConfigError
from plexus.protocol.dpsgd import DPSGDNode
from plexus.protocol.epidemic import ELLocalNode, ELOracleNode
from plexus.protocol.fedavg import FedAvgClient, FedAvgServer
from plexus.protocol.gossip import GossipNode
from plexus.protocol.plexus import PlexusNode
from plexus.protocol.runtime import Node, Runtime

NodeFactory = Callable[[Runtime, Config], Node]


@dataclass(frozen=True)
class Algorithm:
    name: str
    description: str
    node: NodeFactory
    server: NodeFactory | None = None
    evaluation: str = "global"
    decentralized: bool = False  # a decentralized-learning baseline (the comparison's "best DL" group)
    timed_rounds: bool = False  # no synchronous rounds: a round is one round_timeout of virtual time (gossip)


ALGORITHMS: dict[str, Algorithm] = {
    "plexus": Algorithm("plexus", "Plexus: sampled FL without a server (EuroMLSys 2025)", PlexusNode),
    "fedavg": Algorithm("fedavg", "FedAvg with a server", FedAvgClient, server=FedAvgServer),
    "dpsgd": Algorithm("dpsgd", "D-PSGD: synchronous neighbour averaging on --topology (Lian et al., 2017)",
                       DPSGDNode, evaluation="nodes", decentralized=True),
    "gossip": Algorithm("gossip", "Gossip Learning: age-weighted merges every --round-timeout (Ormandi et al.)",
                        GossipNode, evaluation="nodes", decentralized=True, timed_rounds=True),
    "el-local": Algorithm("el-local", "Epidemic Learning, local peer choice: send to --fanout random peers",
                          ELLocalNode, evaluation="nodes", decentralized=True),
    "el-oracle": Algorithm("el-oracle", "Epidemic Learning with an oracle: a fresh random s-regular graph per round",
                           ELOracleNode, evaluation="nodes", decentralized=True),
}


def algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; choose from {', '.join(sorted(ALGORITHMS))}") from None

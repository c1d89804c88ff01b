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
from plexus.protocol.fedavg import FedAvgClient, FedAvgServer
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


ALGORITHMS: dict[str, Algorithm] = {
    "plexus": Algorithm("plexus", "Plexus: sampled FL without a server (EuroMLSys 2025)", PlexusNode),
    "fedavg": Algorithm("fedavg", "FedAvg with a server", FedAvgClient, server=FedAvgServer),
}


def algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; choose from {', '.join(sorted(ALGORITHMS))}") from None

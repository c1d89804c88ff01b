"""Partitioners: which training samples each node holds.

Specs (``--partition``): ``iid`` (a seeded shuffle dealt evenly), ``dirichlet:ALPHA`` (per class, node shares
drawn from Dirichlet(ALPHA); smaller is more skewed), ``shards:K`` (samples sorted by label, cut into
K x nodes shards, K per node, as in McMahan et al.), ``natural`` (the dataset's own users, e.g. LEAF writers,
dealt to nodes evenly and deterministically). Every node receives at least one sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plexus.errors import ConfigError


@dataclass(frozen=True)
class PartitionSpec:
    kind: str
    value: float | None = None

    def __str__(self) -> str:
        if self.value is None:
            return self.kind
        value = int(self.value) if self.kind == "shards" else self.value
        return f"{self.kind}:{value}"


def parse_partition(text: str) -> PartitionSpec:
    kind, _, value = text.strip().partition(":")
    kind = kind.lower()
    if kind in ("iid", "natural"):
        if value:
            raise ConfigError(f"partition {text!r}: '{kind}' takes no parameter")
        return PartitionSpec(kind)
    if kind in ("dirichlet", "shards"):
        try:
            number = float(value)
        except ValueError:
            example = "dirichlet:0.3" if kind == "dirichlet" else "shards:2"
            raise ConfigError(f"partition {text!r}: expected a number after '{kind}:', e.g. {example}") from None
        if kind == "dirichlet" and not number > 0:
            raise ConfigError(f"partition {text!r}: the Dirichlet alpha must be > 0")
        if kind == "shards" and (number < 1 or number != int(number)):
            raise ConfigError(f"partition {text!r}: the shard count must be a whole number >= 1")
        return PartitionSpec(kind, number)
    raise ConfigError(f"unknown partition {text!r}; use iid, dirichlet:ALPHA, shards:K or natural")


def partition(
    spec: PartitionSpec,
    labels: np.ndarray | None,
    samples: int,
    nodes: int,
    rng: np.random.Generator,
    groups: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Indices of the training samples held by each node (each sorted)."""
    if nodes < 1:
        raise ConfigError(f"need at least one node, got {nodes}")
    if spec.kind == "natural":
        if groups is None:
            raise ConfigError("partition 'natural' needs a dataset with users (LEAF, MovieLens)")
        return natural_partition(groups, nodes)
    if samples < nodes:
        raise ConfigError(f"{samples} training samples cannot give each of {nodes} nodes at least one")
    if spec.kind == "iid":
        parts = np.array_split(rng.permutation(samples), nodes)
    elif spec.kind == "dirichlet":
        parts = _dirichlet(_require(labels, spec), nodes, float(spec.value or 0), rng)
    elif spec.kind == "shards":
        parts = _shards(_require(labels, spec), nodes, int(spec.value or 0), rng)
    else:
        raise ConfigError(f"unknown partition kind {spec.kind!r}")
    return [np.sort(part).astype(np.int64) for part in parts]


def natural_partition(groups: Sequence[np.ndarray], nodes: int) -> list[np.ndarray]:
    """Users dealt to nodes contiguously and as evenly as possible (user i -> node i * nodes // users)."""
    users = len(groups)
    if nodes > users:
        raise ConfigError(
            f"the natural partition has {users} users, fewer than the {nodes} nodes asked for; "
            f"use --nodes {users} or fewer"
        )
    owners = (np.arange(users) * nodes) // users
    parts: list[list[np.ndarray]] = [[] for _ in range(nodes)]
    for user, owner in enumerate(owners.tolist()):
        parts[owner].append(np.asarray(groups[user], dtype=np.int64))
    return [np.sort(np.concatenate(chunks)) for chunks in parts]


def _require(labels: np.ndarray | None, spec: PartitionSpec) -> np.ndarray:
    if labels is None:
        raise ConfigError(f"partition {spec} needs class labels; this task has none (use iid or natural)")
    return np.asarray(labels)


def _dirichlet(labels: np.ndarray, nodes: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[int]] = [[] for _ in range(nodes)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(shares)[:-1] * members.size).astype(np.int64)
        for node, chunk in enumerate(np.split(members, cuts)):
            parts[node].extend(chunk.tolist())
    # no node may be empty: move one sample at a time from the largest node
    sizes = np.array([len(p) for p in parts])
    for node in np.flatnonzero(sizes == 0).tolist():
        donor = int(np.argmax([len(p) for p in parts]))
        parts[node].append(parts[donor].pop())
    return [np.array(p, dtype=np.int64) for p in parts]


def _shards(labels: np.ndarray, nodes: int, per_node: int, rng: np.random.Generator) -> list[np.ndarray]:
    count = nodes * per_node
    if count > labels.size:
        raise ConfigError(f"shards:{per_node} needs {count} shards but there are only {labels.size} samples")
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, count)
    assignment = rng.permutation(count).reshape(nodes, per_node)
    return [np.concatenate([shards[s] for s in row]) for row in assignment]

"""Averaging models (uniform, or weighted by each sender's local sample count: FedAvg's n_k / n), and what the
sampled-round algorithms (Plexus, FedAvg) share: the quorum rule and the options that define a round's sample."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plexus.protocol.options import inherited, option

try:  # the plain average in C (setup.py builds it where a C compiler is found): the same bits, without NumPy's
    from plexus.protocol._mean import mean_into  # per-call cost (a D-PSGD round averages n times)
except ImportError:  # pragma: no cover - depends on the build
    mean_into = None


def quorum(sample_size: int, success_fraction: float) -> int:
    """floor(s x sf), at least 1: the number of models an aggregator waits for (the Plexus authors' rule,
    ``has_enough_trained_models``)."""
    return max(1, math.floor(sample_size * success_fraction + 1e-9))


@dataclass(frozen=True)
class SampledRoundOptions:
    """Options of an algorithm that samples s nodes per round and aggregates floor(s x sf) of their models."""

    local_steps: int = inherited("local SGD steps per round")
    nodes: int = inherited("number of nodes")
    sample_size: int = option(13, "s: nodes sampled per round", minimum=1)
    success_fraction: float = option(0.8, "sf: aggregate once floor(s x sf) models (at least 1) have arrived",
                                     above=0, maximum=1)
    weighting: str = option("uniform", "aggregation weights: uniform (the paper) or samples (local dataset sizes)",
                            choices=("uniform", "samples"))
    aggregation_timeout: float | None = option(None, "seconds after which an aggregator averages as soon as "
                                               "min_models are there (counted from a round's start for FedAvg, "
                                               "from its first model for Plexus; default: off, 60 with "
                                               "membership = modest)", above=0)
    min_models: int = option(1, "models an aggregator needs after aggregation_timeout", minimum=1)

    def check(self) -> None:
        if self.sample_size > self.nodes:
            raise ValueError(f"sample_size = {self.sample_size} exceeds nodes = {self.nodes} "
                             f"(s must be <= the number of nodes)")
        if self.min_models > self.sample_size:
            raise ValueError(f"min_models = {self.min_models} exceeds sample_size = {self.sample_size}")


def average(models: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    if not models:
        raise ValueError("cannot average zero models")
    if weights is None and mean_into is not None and type(models[0]) is np.ndarray:
        out = np.empty(models[0].size, dtype=np.float32)
        if mean_into(models, out):  # False unless every model is a flat float32 vector of one length
            return out
    stacked = np.stack(models).astype(np.float64, copy=False)
    if weights is None:
        mean = stacked.mean(axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(models),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"bad aggregation weights {list(weights)}")
        mean = (w / w.sum()) @ stacked
    return mean.astype(np.float32)

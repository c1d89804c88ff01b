"""Averaging models: uniform, or weighted by each sender's local sample count (FedAvg's n_k / n)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average(models: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    if not models:
        raise ValueError("cannot average zero models")
    stacked = np.stack(models).astype(np.float64, copy=False)
    if weights is None:
        mean = stacked.mean(axis=0)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(models),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"bad aggregation weights {list(weights)}")
        mean = (w / w.sum()) @ stacked
    return mean.astype(np.float32)

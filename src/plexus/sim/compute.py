"""Compute model: how long local training takes in virtual time.

Training k local steps costs ``k x batch_size x seconds_per_sample x factor`` on the node, and a node trains one
job at a time (later requests queue behind earlier ones). ``factor`` defaults to 1; FedScale and the Plexus
authors' simulator charge 3x the trace's per-sample time (forward + backward), which ``factor = 3`` reproduces.
Evaluation by the observer costs nodes nothing.
"""

from __future__ import annotations

import numpy as np


class ComputeModel:
    def __init__(self, seconds_per_sample: np.ndarray, batch_size: int, factor: float = 1.0) -> None:
        seconds_per_sample = np.asarray(seconds_per_sample, dtype=np.float64)
        if (seconds_per_sample < 0).any() or not np.isfinite(seconds_per_sample).all():
            raise ValueError("seconds per sample must be finite and non-negative")
        if factor < 0:
            raise ValueError(f"compute factor must be non-negative, got {factor}")
        self.seconds_per_sample = seconds_per_sample
        self.batch_size = batch_size
        self.factor = factor
        self._busy_until = np.zeros(seconds_per_sample.size, dtype=np.float64)

    def duration(self, node: int, steps: int) -> float:
        return steps * self.batch_size * float(self.seconds_per_sample[node]) * self.factor

    def reserve(self, node: int, now: float, steps: int) -> tuple[float, float]:
        """Queue a training job; returns its (start, end) in virtual time."""
        start = max(now, float(self._busy_until[node]))
        end = start + self.duration(node, steps)
        self._busy_until[node] = end
        return start, end

    def release(self, node: int, now: float, end: float) -> None:
        """A job ending at ``end`` was abandoned at ``now``: free the node if nothing is queued behind it."""
        if self._busy_until[node] == end:
            self._busy_until[node] = now

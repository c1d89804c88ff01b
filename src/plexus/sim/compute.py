"""Compute model: how long local training takes in virtual time.

Two formulas (``--compute-model``), both multiplied by ``factor`` (``--compute-factor``, default 1):

- ``per-sample`` (default): training k local steps costs ``k x batch_size x seconds_per_sample x factor``,
  the trace's time per *sample* times the samples processed. FedScale and the Plexus authors' simulator
  (``sacs-epfl/decentralized-learning-simulator``, ``BaseClient.get_train_time``) charge this with factor 3
  (forward and backward passes).
- ``per-step``: ``k x seconds_per_sample x factor``, with no batch size: the Plexus paper's own code
  (``sacs-epfl/plexus``, ``dlsim/core/model_trainer.py``: ``AUGMENTATION_FACTOR_SIM x local_steps x ms / 1000``
  with ``AUGMENTATION_FACTOR_SIM = 3.0``), i.e. ``--compute-model per-step --compute-factor 3``.

A node trains one job at a time (later requests queue behind earlier ones). Evaluation by the observer costs
nodes nothing.
"""

from __future__ import annotations

import numpy as np


class ComputeModel:
    def __init__(
        self, seconds_per_sample: np.ndarray, batch_size: int, factor: float = 1.0, per_step: bool = False
    ) -> None:
        seconds_per_sample = np.asarray(seconds_per_sample, dtype=np.float64)
        if (seconds_per_sample < 0).any() or not np.isfinite(seconds_per_sample).all():
            raise ValueError("seconds per sample must be finite and non-negative")
        if factor < 0:
            raise ValueError(f"compute factor must be non-negative, got {factor}")
        self.seconds_per_sample = seconds_per_sample
        self.batch_size = batch_size
        self.factor = factor
        self.per_step = per_step
        self._samples_per_step = 1 if per_step else batch_size
        self._busy_until = np.zeros(seconds_per_sample.size, dtype=np.float64)

    def duration(self, node: int, steps: int) -> float:
        return steps * self._samples_per_step * float(self.seconds_per_sample[node]) * self.factor

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

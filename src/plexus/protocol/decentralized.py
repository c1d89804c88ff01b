"""What every decentralized-learning node shares: its own current model, at most one training job, and a stop
that abandons that job. The observer evaluates ``current_model()`` since there is no global model."""

from __future__ import annotations

import numpy as np

from plexus.config import Config
from plexus.protocol.futures import Future
from plexus.protocol.runtime import Node, Runtime, TrainResult


class DecentralizedNode(Node):
    def __init__(self, runtime: Runtime, config: Config) -> None:
        super().__init__(runtime)
        self.local_steps = int(config.local_steps or 1)
        self.model: np.ndarray = runtime.initial_model()
        self._training: Future[TrainResult] | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        if self._training is not None:
            self._training.cancel()
            self._training = None

    def current_model(self) -> np.ndarray | None:
        return self.model

"""What every decentralized-learning node shares: its own current model, at most one training job, a stop that
abandons that job, and the message that carries a node's model to its neighbours of a round.

The observer evaluates ``current_model()`` since there is no global model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import Node
from plexus.protocol.runtime import Runtime, TrainResult


@message(kind=5)
class NeighbourModel(Message):
    """A decentralized-learning node's model after its local training of ``round``."""

    round: int
    samples: int
    params: Params


class DecentralizedNode(Node):
    def __init__(self, runtime: Runtime, options: Any) -> None:
        super().__init__(runtime, options)
        self.local_steps = int(options.local_steps)
        self.model: np.ndarray = runtime.initial_model()
        self.parameters = self.model.size
        self._training: Future[TrainResult] | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True
        if self._training is not None:
            self._training.cancel()
            self._training = None

    def current_model(self) -> np.ndarray | None:
        return self.model

"""What a learning task is: data (train/test tensors, optional natural users), a model, a loss and a metric.

A task is registered under a name (``--task NAME``) with the papers' default hyperparameters. Its data is loaded
once per run; every node's local dataset is a set of indices into the training tensors, reachable only by
that node's training jobs. The observer evaluates on the test tensors.

Metrics: classification tasks report ``accuracy`` (higher is better); regression tasks such as MovieLens
report ``rmse`` (lower is better). The metric's name is the column name in metrics.csv.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class TensorDataset:
    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"dataset has {len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TaskData:
    """A loaded task: tensors plus what partitioners need."""

    train: TensorDataset
    test: TensorDataset
    labels: np.ndarray | None = None  # training labels, for label-skewed partitions
    users: list[np.ndarray] | None = None  # natural partition: training indices of each user
    info: dict[str, Any] = field(default_factory=dict)  # e.g. classes, users, items


@dataclass(frozen=True)
class TaskDefaults:
    """The papers' hyperparameters for a task; every one can be overridden."""

    nodes: int
    lr: float
    momentum: float = 0.0
    batch_size: int = 20
    local_steps: int = 5
    sample_size: int = 13
    success_fraction: float = 0.8
    partition: str = "iid"
    rounds: int = 100
    eval_every: int = 5
    eval_samples: int | None = None  # None: the whole test set


@dataclass(frozen=True)
class Evaluation:
    metric: float
    loss: float


class Task(ABC):
    """Base class; subclasses set the class attributes and implement ``load`` and ``build_model``."""

    name: str = ""
    description: str = ""
    model_name: str = ""
    # the names --model accepts; the first is the default (tasks with one model still name it, so that a
    # misspelt or foreign --model is refused instead of silently ignored)
    models: tuple[str, ...] = ()
    metric: str = "accuracy"
    higher_is_better: bool = True
    defaults: TaskDefaults
    needs_data: bool = True  # False when the task ships its own data (digits, synthetic)
    data_hint: str = ""  # how to obtain the data, shown when it is missing

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def load(self, data_path: str | None, seed: int) -> TaskData:
        """Read (or generate) the dataset. Raise DataError naming the file and how to get it."""

    @abstractmethod
    def build_model(self, data: TaskData) -> nn.Module:
        """A freshly initialised model (the caller seeds torch beforehand)."""

    def nominal_parameters(self) -> int | None:
        """Parameter count of the model on the task's reference dataset, without loading any data.

        Used by ``plexus tasks`` to list model sizes cheaply. The default builds the model with ``data=None``
        (works when the architecture does not depend on the data) without touching torch's global RNG; tasks
        whose model size depends on the data (MovieLens' embeddings) either override this or set a class
        attribute ``parameters`` (an int); otherwise None ("unknown until the data is loaded").
        """
        try:
            with torch.random.fork_rng(devices=[]):
                model = self.build_model(None)  # type: ignore[arg-type]
            return int(sum(p.numel() for p in model.parameters()))
        except Exception:
            declared = getattr(self, "parameters", None)
            return declared if isinstance(declared, int) and not isinstance(declared, bool) else None

    @classmethod
    def check_model(cls, requested: str | None) -> str | None:
        """The model name a run records: ``requested``, or the task's default when None; unknown names are a
        ConfigError listing the valid ones."""
        from plexus.errors import ConfigError

        if not cls.models:
            return requested
        if requested is None or requested == "":
            return cls.models[0]
        if requested not in cls.models:
            raise ConfigError(f"unknown model {requested!r} for task {cls.name}; choose from {', '.join(cls.models)}")
        return requested

    def loss_function(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.metric == "rmse":
            return nn.functional.mse_loss
        return nn.functional.cross_entropy

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        dataset: TensorDataset,
        batch_size: int = 2048,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> Evaluation:
        """Metric and mean loss of ``model`` on ``dataset``; ``on_batch(samples done, samples)`` reports
        progress before each batch (long evaluations show it)."""
        model.eval()
        loss_fn = self.loss_function()
        total_loss = 0.0
        score = 0.0
        count = len(dataset)
        for start in range(0, count, batch_size):
            if on_batch is not None:
                on_batch(start, count)
            x = dataset.x[start : start + batch_size]
            y = dataset.y[start : start + batch_size]
            out = model(x)
            total_loss += float(loss_fn(out, y, reduction="sum"))
            if self.metric == "rmse":
                score += float(((out - y) ** 2).sum())
            else:
                score += float((out.argmax(dim=1) == y).sum())
        model.train()
        if count == 0:
            return Evaluation(math.nan, math.nan)
        metric = math.sqrt(score / count) if self.metric == "rmse" else score / count
        return Evaluation(metric, total_loss / count)

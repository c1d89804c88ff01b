"""Local training: k steps of minibatch SGD (with optional momentum) on a node's own samples.

One :class:`LocalTrainer` serves every node in a process: it loads a node's flat vector into the shared model,
trains, and returns a new vector. Minibatches are drawn without replacement (a fresh shuffle of the node's
indices per pass) from a stream seeded by (experiment seed, node, job number), so a job's result does not
depend on where or when it runs. Optimizer state (momentum) starts from zero in every job, as in FedAvg.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from plexus.learning.params import FlatModel
from plexus.learning.tasks.base import Evaluation, Task, TaskData, TensorDataset
from plexus.protocol.runtime import TrainResult
from plexus.rng import stream


class TrainJob(NamedTuple):
    """One request to train: whose data, which of its jobs (it seeds the minibatches), from what, how long."""

    node: int
    job: int
    params: np.ndarray
    steps: int


@dataclass(frozen=True)
class SGDSettings:
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0


class LocalTrainer:
    def __init__(
        self,
        task: Task,
        data: TaskData,
        node_indices: list[np.ndarray],
        sgd: SGDSettings,
        seed: int,
        model: FlatModel,
    ) -> None:
        self.task = task
        self.data = data
        self.node_indices = node_indices
        self.sgd = sgd
        self.seed = seed
        self.model = model
        self.loss_fn = task.loss_function()
        self._momentum = torch.zeros_like(model.flat) if sgd.momentum else None
        self.wall_seconds = 0.0
        self.jobs = 0

    def batches(self, job: TrainJob) -> list[np.ndarray]:
        indices = self.node_indices[job.node]
        rng = stream(self.seed, "minibatches", job.node, job.job)
        batch = min(self.sgd.batch_size, indices.size)
        needed = job.steps * batch
        passes = -(-needed // indices.size)
        order = np.concatenate([rng.permutation(indices) for _ in range(passes)])[:needed]
        return np.split(order, job.steps)

    def run(self, job: TrainJob) -> TrainResult:
        started = time.perf_counter()
        model = self.model
        model.load(job.params)
        flat, grad = model.flat, model.grad
        module = model.module
        x_all, y_all = self.data.train.x, self.data.train.y
        sgd = self.sgd
        momentum = self._momentum
        if momentum is not None:
            momentum.zero_()
        total_loss = 0.0
        samples = 0
        for batch in self.batches(job):
            index = torch.from_numpy(batch)
            x, y = x_all[index], y_all[index]
            grad.zero_()
            loss = self.loss_fn(module(x), y)
            loss.backward()
            with torch.no_grad():
                if sgd.weight_decay:
                    grad.add_(flat, alpha=sgd.weight_decay)
                if momentum is not None:
                    momentum.mul_(sgd.momentum).add_(grad)
                    flat.add_(momentum, alpha=-sgd.lr)
                else:
                    flat.add_(grad, alpha=-sgd.lr)
            total_loss += float(loss.detach())
            samples += batch.size
        output = TrainResult(model.vector(), total_loss / max(1, job.steps), samples)
        self.wall_seconds += time.perf_counter() - started
        self.jobs += 1
        return output


class Evaluator:
    """The observer's evaluation of a model vector on the test set (costs nodes nothing).

    With ``samples`` below the test set's size, evaluation uses a fixed subset of that many test samples, drawn
    once from the stream (seed, "eval-samples") and kept in the test set's order: cheaper, the same subset for
    every model of the run (and of every run with that seed)."""

    def __init__(self, task: Task, data: TaskData, model: FlatModel, samples: int | None = None,
                 seed: int = 0) -> None:
        self.task = task
        self.data = data
        self.model = model
        self.wall_seconds = 0.0
        self.test = data.test
        if samples is not None and samples < len(data.test):
            chosen = np.sort(stream(seed, "eval-samples").choice(len(data.test), size=samples, replace=False))
            index = torch.from_numpy(chosen)
            self.test = TensorDataset(data.test.x[index], data.test.y[index])

    def evaluate(self, params: np.ndarray) -> Evaluation:
        started = time.perf_counter()
        self.model.load(params)
        result = self.task.evaluate(self.model.module, self.test)
        self.wall_seconds += time.perf_counter() - started
        return result

"""Local training: k steps of minibatch SGD (with optional momentum) on a node's own samples.

One :class:`LocalTrainer` serves every node in a process: it loads a node's flat vector into the shared model,
trains, and returns a new vector. Minibatches are drawn without replacement (a fresh shuffle of the node's
indices per pass) from a stream seeded by (experiment seed, node, job number), so a job's result does not
depend on where or when it runs. Optimizer state (momentum) starts from zero in every job, as in FedAvg.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


PARALLEL_WORK = 50_000_000


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Evaluator:
    """The observer's evaluation of a model vector on the test set (costs nodes nothing).

    Evaluation is the one step that runs on every core and in large batches: training jobs are tiny and stay on
    one thread, but evaluating a model on 10,000 test samples, or 100 node models one after the other,
    dominates the wall time of real-task runs. ``threads`` (default: all cores the process may use, when the
    work is large enough to gain from them) is checked against the clock: the second evaluation runs on all of
    them, the third on one, and the faster setting is kept (on a machine shared with other jobs, threads that
    wait for each other can be slower than one; results are the same either way). Changing torch's thread
    count costs about 10 ms, so callers that evaluate many models in a row (the observer) wrap them in
    :meth:`parallel` to switch once. ``samples`` limits the test set to a fixed subset drawn once from the seed
    (``--eval-samples``): the same samples at every evaluation and for every algorithm run with that seed.
    ``progress`` is (samples done, samples) while an evaluation runs, for progress displays.
    """

    def __init__(
        self,
        task: Task,
        data: TaskData,
        model: FlatModel,
        samples: int | None = None,
        seed: int = 0,
        threads: int | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.task = task
        self.data = data
        self.model = model
        self.wall_seconds = 0.0
        self.batch_size = batch_size
        self.progress: tuple[int, int] | None = None
        test = data.test
        self.test_samples = len(test)
        if samples is not None and samples < len(test):
            chosen = np.sort(stream(seed, "eval-samples").choice(len(test), size=samples, replace=False))
            index = torch.from_numpy(chosen)
            test = TensorDataset(test.x[index], test.y[index])
        self.test = test
        self.calibrate = threads is None
        if threads is None:
            # below this much work (test samples x parameters, a rough proxy for multiply-adds) one more thread
            # costs more in synchronisation than it saves (digits: 360 samples x 4,810 parameters)
            threads = available_cores() if len(test) * model.size >= PARALLEL_WORK else 1
            self.calibrate = threads > 1
        self.threads = threads
        self._session = False
        self._sessions = 0
        self._evaluated = 0
        self._timings: dict[int, float] = {}  # threads -> seconds per evaluated model

    def _on_batch(self, done: int, total: int) -> None:
        self.progress = (done, total)

    def _threads_now(self) -> int:
        if not self.calibrate:
            return self.threads
        # session 0 warms up, 1 times all threads, 2 times one thread; from then on, the faster is kept
        return 1 if self._sessions == 2 else self.threads

    @contextmanager
    def parallel(self) -> Iterator[None]:
        """Evaluations inside this block run on the chosen number of threads, switched once for all of them."""
        if self._session:
            yield
            return
        threads = self._threads_now()
        previous = torch.get_num_threads()
        if previous != threads:
            torch.set_num_threads(threads)
        self._session = True
        self._evaluated = 0
        started = time.perf_counter()
        try:
            yield
        finally:
            self._session = False
            if previous != threads:
                torch.set_num_threads(previous)
            if self.calibrate and self._sessions in (1, 2) and self._evaluated:
                self._timings[threads] = (time.perf_counter() - started) / self._evaluated
                if self._sessions == 2:
                    many, one = self._timings.get(self.threads), self._timings.get(1)
                    if many is not None and one is not None and one < many:
                        self.threads = 1
                    self.calibrate = False
            self._sessions += 1

    def evaluate(self, params: np.ndarray) -> Evaluation:
        started = time.perf_counter()
        try:
            with self.parallel():
                self.model.load(params)
                result = self.task.evaluate(self.model.module, self.test, self.batch_size, self._on_batch)
                self._evaluated += 1
        finally:
            self.progress = None
        self.wall_seconds += time.perf_counter() - started
        return result

"""What a live node or observer builds from a resolved config: the task's data, the partition, the seeded initial
model, the trainer and the evaluator, exactly as the simulator builds them (:func:`plexus.sim.simulation._run`),
so that node ``i`` of a live run holds the same local data and starts from the same model as node ``i`` of a
simulation with the same config and seed.

A node keeps only its own shard: the partition is computed from the seed like in the simulator and every other
node's indices are dropped, so a node's training can reach nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from plexus.config import Config, task_options
from plexus.errors import ConfigError
from plexus.learning.params import FlatModel
from plexus.learning.tasks import task_class
from plexus.learning.tasks.base import Task, TaskData
from plexus.learning.trainer import Evaluator, LocalTrainer, SGDSettings, TrainJob
from plexus.protocol.runtime import TrainResult
from plexus.rng import stream


@dataclass
class Experiment:
    """The learning side of a run, built once per process."""

    config: Config
    task: Task
    data: TaskData
    parts: list[np.ndarray]
    initial: np.ndarray  # read-only
    model: FlatModel

    @property
    def parameters(self) -> int:
        return int(self.initial.size)

    def trainer(self, device: str = "cpu") -> Any:
        """A trainer of this run (``run(job) -> TrainResult``); ``cuda`` trains on the GPU."""
        config = self.config
        assert config.batch_size is not None and config.lr is not None
        sgd = SGDSettings(config.batch_size, config.lr, config.momentum or 0.0, config.weight_decay)
        if device == "cpu":
            return LocalTrainer(self.task, self.data, self.parts, sgd, config.seed, self.model)
        return DeviceTrainer(self, sgd, device)

    def evaluator(self) -> Evaluator:
        """The observer's evaluator: with ``eval_samples``, the same fixed subset of test samples as a simulation."""
        return Evaluator(self.task, self.data, self.model, samples=self.config.eval_samples, seed=self.config.seed)

    def keep_only(self, index: int) -> None:
        """Forget every other node's shard (a node process holds only its own data's indices)."""
        empty = np.zeros(0, dtype=np.int64)
        self.parts = [part if i == index else empty for i, part in enumerate(self.parts)]


def prepare(config: Config) -> Experiment:
    """Load the task and build the partition and initial model as the simulator does for this config."""
    assert config.nodes is not None
    task = task_class(config.task)(task_options(config))
    data = task.load(config.data, config.seed)
    from plexus.sim.simulation import shards_and_model

    parts, model = shards_and_model(config, task, data)
    initial = model.vector()
    initial.flags.writeable = False
    return Experiment(config, task, data, parts, initial, model)


def check_device(device: str) -> str:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device {device!r}: choose cpu or cuda (or cuda:N)")
    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (torch "
                          f"{torch.__version__}); use --device cpu")
    return device


class DeviceTrainer:
    """Local SGD on another device (a GPU), with the same minibatches and update rule as
    :class:`~plexus.learning.trainer.LocalTrainer`: the model's parameters are views of one flat tensor on the
    device, the node's data is moved there once, and only the flat vector crosses back."""

    def __init__(self, experiment: Experiment, sgd: SGDSettings, device: str) -> None:
        self.device = torch.device(device)
        self.sgd = sgd
        self.seed = experiment.config.seed
        self.task = experiment.task
        self.node_indices = experiment.parts
        self.loss_fn = experiment.task.loss_function()
        module = experiment.task.build_model(experiment.data).to(self.device)
        params = [p for p in module.parameters() if p.requires_grad]
        total = sum(p.numel() for p in params)
        self.flat = torch.zeros(total, dtype=torch.float32, device=self.device)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n
        self.module = module
        self.x = experiment.data.train.x
        self.y = experiment.data.train.y
        self._on_device: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.wall_seconds = 0.0
        self.jobs = 0

    def run(self, job: TrainJob) -> TrainResult:
        started = time.perf_counter()
        indices = self.node_indices[job.node]
        x_all, y_all = self._on_device.get(job.node) or self._load(job.node, indices)
        rng = stream(self.seed, "minibatches", job.node, job.job)
        batch = min(self.sgd.batch_size, indices.size)
        needed = job.steps * batch
        passes = -(-needed // indices.size)
        order = np.concatenate([rng.permutation(indices.size) for _ in range(passes)])[:needed]
        # positions into the node's own rows, which were moved to the device in index order
        self.flat.copy_(torch.from_numpy(np.array(job.params, dtype=np.float32)))  # a writable copy
        momentum = torch.zeros_like(self.flat) if self.sgd.momentum else None
        total = 0.0
        samples = 0
        for batch_positions in np.split(order, job.steps):
            position = torch.from_numpy(batch_positions).to(self.device)
            self.grad.zero_()
            loss = self.loss_fn(self.module(x_all[position]), y_all[position])
            loss.backward()
            with torch.no_grad():
                if self.sgd.weight_decay:
                    self.grad.add_(self.flat, alpha=self.sgd.weight_decay)
                if momentum is not None:
                    momentum.mul_(self.sgd.momentum).add_(self.grad)
                    self.flat.add_(momentum, alpha=-self.sgd.lr)
                else:
                    self.flat.add_(self.grad, alpha=-self.sgd.lr)
            total += float(loss.detach())
            samples += batch_positions.size
        result = TrainResult(self.flat.detach().cpu().numpy().copy(), total / max(1, job.steps), samples)
        self.wall_seconds += time.perf_counter() - started
        self.jobs += 1
        return result

    def _load(self, node: int, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(indices)
        loaded = (self.x[index].to(self.device), self.y[index].to(self.device))
        self._on_device[node] = loaded
        return loaded

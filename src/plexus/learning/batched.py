"""The ``batched`` executor: many nodes' training jobs stacked and trained in one pass with ``torch.func``.

Jobs are queued when submitted. When the simulator needs a result that is not computed yet, every queued job is
trained at once: jobs are grouped by (steps, minibatch size), and each group, up to ``batch_models`` models at a
time, runs as one ``vmap`` over ``grad(functional_call(model, params_i, x_i))``: per step, one batched forward
and backward pass for all the group's models, each on its own minibatch (drawn exactly as
:class:`~plexus.learning.trainer.LocalTrainer` draws them, from the stream seeded by (seed, node, job)), then
the same SGD update as the trainer (weight decay, momentum from zero in every job). The stacked parameters and
the training data live on ``device`` (``cuda`` for a GPU: the data is copied there once). Node-model evaluations
are batched the same way (``evaluate_many``).

**Tolerance.** The mathematics is the trainer's, but batched kernels (a convolution over stacked models is a
grouped convolution, a linear layer a batched matrix product) add in a different order, so parameters differ from
``inline``'s in the last bits of float32: after one job of 5 steps the relative difference is about 1e-6 and
accuracy curves agree to within 0.01 over tens of rounds (``tests/test_executors.py`` checks 1e-4 relative per
job and 0.02 in final accuracy). What a batch holds is decided by virtual-time events only, so a batched run is
itself deterministic on a given device.

Models whose layers ``vmap`` cannot batch fall back, with a warning, to one ``functional_call`` per model (still
on ``device``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from plexus.learning.executors import Executor, Ticket
from plexus.learning.tasks.base import Evaluation
from plexus.learning.trainer import Evaluator, LocalTrainer, TrainJob
from plexus.protocol.runtime import TrainResult

log = logging.getLogger("plexus.run")


class BatchedExecutor(Executor):
    name = "batched"

    def __init__(self, trainer: LocalTrainer, evaluator: Evaluator, device: str = "cpu",
                 batch_models: int = 256) -> None:
        super().__init__(trainer, evaluator)
        if device.startswith("cuda") and not torch.cuda.is_available():
            from plexus.errors import ConfigError

            raise ConfigError(f"device = {device!r}: this torch build sees no CUDA device "
                              f"(torch {torch.__version__}, cuda {torch.version.cuda})")
        self.device = torch.device(device)
        self.batch_models = batch_models
        self._queue: list[Ticket] = []
        module = trainer.model.module
        self._module = module
        params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self._layout = []
        offset = 0
        for name, p in params:
            self._layout.append((name, offset, p.numel(), tuple(p.shape)))
            offset += p.numel()
        self.size = offset
        if self.device.type == "cpu":
            self._train_x, self._train_y = trainer.data.train.x, trainer.data.train.y
        else:
            self._train_x = trainer.data.train.x.to(self.device)
            self._train_y = trainer.data.train.y.to(self.device)
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None
        self._loss = trainer.loss_fn
        self._vmap_ok = True
        self.passes = 0
        self.largest_batch = 0

    # ------------------------------------------------------------------ the executor interface
    def submit(self, job: TrainJob, due: float) -> Ticket:
        ticket = Ticket(job, due)
        ticket.token = "queued"
        self._queue.append(ticket)
        return ticket

    def adopt(self, ticket: Ticket) -> None:
        if ticket.output is None and not ticket.cancelled and ticket.token is None:
            ticket.token = "queued"
            self._queue.append(ticket)

    def result(self, ticket: Ticket) -> TrainResult:
        if ticket.output is None:
            started = time.perf_counter()
            self.adopt(ticket)  # no-op unless a ticket from before a resume was not adopted
            self._flush()
            self.wall_seconds += time.perf_counter() - started
        self.jobs += 1
        output, ticket.output = ticket.output, None
        assert output is not None
        return output

    def cancel(self, ticket: Ticket) -> None:
        ticket.cancelled = True

    # ------------------------------------------------------------------ training
    def _flush(self) -> None:
        queued = [t for t in self._queue if not t.cancelled]
        self._queue = []
        groups: dict[tuple[int, int], list[tuple[Ticket, list[np.ndarray]]]] = {}
        for ticket in queued:
            batches = self.trainer.batches(ticket.job)
            groups.setdefault((ticket.job.steps, batches[0].size), []).append((ticket, batches))
        for members in groups.values():
            for start in range(0, len(members), self.batch_models):
                self._train_group(members[start:start + self.batch_models])

    def _functional(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        module, layout, loss_fn = self._module, self._layout, self._loss

        def loss_of(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            params = {name: flat[offset:offset + n].view(shape) for name, offset, n, shape in layout}
            return loss_fn(torch.func.functional_call(module, params, (x,)), y)

        return loss_of

    def _train_group(self, members: list[tuple[Ticket, list[np.ndarray]]]) -> None:
        sgd = self.trainer.sgd
        device = self.device
        count = len(members)
        self.passes += 1
        self.largest_batch = max(self.largest_batch, count)
        flat = torch.from_numpy(np.stack([ticket.job.params for ticket, _ in members])).to(device)
        momentum = torch.zeros_like(flat) if sgd.momentum else None
        steps = len(members[0][1])
        # (steps, models, batch) indices into the training set
        order = torch.from_numpy(np.stack([np.stack(batches) for _, batches in members], axis=1)).to(device)
        losses = torch.zeros(count, dtype=torch.float64, device=device)
        step_fn = self._step_function()
        for step in range(steps):
            index = order[step]
            x = self._train_x[index]
            y = self._train_y[index]
            grads, loss = step_fn(flat, x, y)
            if sgd.weight_decay:
                grads = grads.add(flat, alpha=sgd.weight_decay)
            if momentum is not None:
                momentum.mul_(sgd.momentum).add_(grads)
                flat.sub_(momentum, alpha=sgd.lr)
            else:
                flat.sub_(grads, alpha=sgd.lr)
            losses += loss.detach().to(torch.float64)
        params = flat.detach().cpu().numpy()
        loss_values = (losses / max(1, steps)).cpu().tolist()
        samples = steps * order.shape[2]
        for i, (ticket, _) in enumerate(members):
            ticket.output = TrainResult(params[i].copy(), float(loss_values[i]), samples)

    def _step_function(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                         tuple[torch.Tensor, torch.Tensor]]:
        grad_and_value = torch.func.grad_and_value(self._functional())
        batched = torch.func.vmap(grad_and_value)
        looped = self._looped(grad_and_value)
        if not self._vmap_ok:
            return looped

        def step(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if self._vmap_ok:
                try:
                    return batched(flat, x, y)
                except (RuntimeError, NotImplementedError) as error:
                    self._vmap_ok = False
                    log.warning("batched executor: vmap cannot batch this model (%s); training its models one "
                                "at a time on %s", str(error).splitlines()[0], self.device)
            return looped(flat, x, y)

        return step

    @staticmethod
    def _looped(grad_and_value: Callable[..., tuple[torch.Tensor, torch.Tensor]]
                ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        def step(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pairs = [grad_and_value(flat[i], x[i], y[i]) for i in range(flat.shape[0])]
            return torch.stack([g for g, _ in pairs]), torch.stack([v for _, v in pairs])

        return step

    # ------------------------------------------------------------------ evaluation
    def evaluate_many(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        """The node models' metric and mean loss on the test set, ``batch_models`` models per pass."""
        started = time.perf_counter()
        if self._test is None:
            test = self.trainer.data.test
            self._test = (test.x.to(self.device), test.y.to(self.device))
        results: list[Evaluation] = []
        for start in range(0, len(models), self.batch_models):
            results.extend(self._evaluate_group(models[start:start + self.batch_models]))
        self.eval_wall_seconds += time.perf_counter() - started
        return results

    @torch.no_grad()
    def _evaluate_group(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        assert self._test is not None
        x_all, y_all = self._test
        count = len(y_all)
        if count == 0:
            return [Evaluation(math.nan, math.nan) for _ in models]
        task = self.trainer.task
        rmse = task.metric == "rmse"
        module, layout, loss_fn = self._module, self._layout, self._loss
        flat = torch.from_numpy(np.stack(models)).to(self.device)

        def outputs(one: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            params = {name: one[offset:offset + n].view(shape) for name, offset, n, shape in layout}
            return torch.func.functional_call(module, params, (x,))

        forward = torch.func.vmap(outputs, in_dims=(0, None))
        total_loss = torch.zeros(len(models), dtype=torch.float64, device=self.device)
        score = torch.zeros(len(models), dtype=torch.float64, device=self.device)
        chunk = max(1, 2048 // max(1, len(models) // 8 + 1))
        module.eval()
        try:
            for start in range(0, count, chunk):
                x, y = x_all[start:start + chunk], y_all[start:start + chunk]
                try:
                    out = forward(flat, x) if self._vmap_ok else None
                except (RuntimeError, NotImplementedError):
                    self._vmap_ok = False
                    out = None
                if out is None:
                    out = torch.stack([outputs(flat[i], x) for i in range(flat.shape[0])])
                for i in range(len(models)):
                    total_loss[i] += float(loss_fn(out[i], y, reduction="sum"))
                    if rmse:
                        score[i] += float(((out[i] - y) ** 2).sum())
                    else:
                        score[i] += float((out[i].argmax(dim=1) == y).sum())
        finally:
            module.train()
        metrics = (score / count).sqrt() if rmse else score / count
        return [Evaluation(float(m), float(loss) / count) for m, loss in zip(metrics.tolist(), total_loss.tolist(),
                                                                            strict=True)]


"""Executors: where and when the real training and evaluation of a simulation run (``--executor``).

The simulator decides *what* is trained and *when its result counts* (the virtual completion time given by the
compute model); an executor decides where the computation happens. The simulated runtime submits a job as soon as
a node asks for it (:meth:`Executor.submit`, with the job's virtual completion time as its priority), and asks
for the result only when that virtual time comes (:meth:`Executor.result`). A job's result depends only on the
job (node, job number, input model, steps: the minibatches come from the stream seeded by (seed, node, job)), so
where and when it ran cannot change a run: ``inline``, ``pool`` and ``ray`` give byte-identical metrics for a
seed (same torch build, one intra-op thread everywhere), and ``batched`` agrees with them within floating-point
tolerance (see :class:`BatchedExecutor`). A job abandoned before its virtual completion
(:meth:`Executor.cancel`) is dropped if it has not started and its result discarded if it has: either way the
protocol never sees it.

- ``inline`` (default): in the simulator's own thread, lazily: a job runs when its result is due, so abandoned
  jobs cost nothing. The best choice on one core and for cheap models.
- ``pool``: ``--workers`` worker processes (default: every core). Each worker rebuilds the task's model once and
  maps the training data, which the parent places in shared memory; models travel as flat float32 vectors
  through shared-memory slots (no pickled modules or tensors per job). Jobs are dispatched earliest virtual
  completion first; while the simulator waits for a job that no worker has taken yet it trains that job itself.
- ``ray``: the same on Ray actors, on a local Ray instance or the cluster at ``--ray-address`` (the optional
  extra ``plexus[ray]``). Models travel through Ray's object store.
- ``batched``: jobs that are pending when a result is due (typically every job a decentralized round starts at
  one virtual instant) are stacked and trained in one pass with ``torch.func`` (``functional_call`` + ``vmap``
  of ``grad``), on ``--device`` (``cuda`` for a GPU; ``cpu`` works, slower). Node-model evaluations are batched
  the same way.

Wall-clock figures: ``wall_seconds`` is the time the simulator's thread spent training or waiting for training
(for ``inline`` exactly the training time), so ``overhead_fraction`` keeps meaning "the share of the event loop
spent in the simulator itself" whatever the executor.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from plexus.errors import ConfigError
from plexus.learning.tasks.base import Evaluation, Task, TaskData, TensorDataset
from plexus.learning.trainer import Evaluator, LocalTrainer, SGDSettings, TrainJob
from plexus.protocol.runtime import TrainResult

log = logging.getLogger("plexus.run")

EXECUTORS = ("inline", "pool", "ray", "batched")
DEVICES = ("cpu", "cuda")


class Ticket:
    """A submitted job: what :meth:`Executor.result` and :meth:`Executor.cancel` take.

    Picklable (checkpoints hold the tickets of the jobs in flight): only the job and, once known, its result are
    kept; an executor that meets a ticket it never saw (after a resume) simply runs its job again, which gives
    the same result.
    """

    __slots__ = ("job", "due", "output", "cancelled", "token", "__weakref__")

    def __init__(self, job: TrainJob, due: float) -> None:
        self.job = job
        self.due = due
        self.output: TrainResult | None = None
        self.cancelled = False
        self.token: Any = None  # the executor's own bookkeeping (not checkpointed)

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job, "due": self.due, "output": self.output, "cancelled": self.cancelled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.job = state["job"]
        self.due = state["due"]
        self.output = state["output"]
        self.cancelled = state["cancelled"]
        self.token = None


@dataclass
class ExecutorSettings:
    """What the run asked for: ``--executor``, ``--workers``, ``--device``, ``--ray-address``, ``--batch-models``."""

    kind: str = "inline"
    workers: int | None = None
    device: str = "cpu"
    ray_address: str | None = None
    batch_models: int = 256
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor = {self.kind!r}: choose one of {', '.join(EXECUTORS)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device = {self.device!r}: choose cpu, cuda or cuda:N")
        if self.device != "cpu" and self.kind != "batched":
            raise ConfigError(f"device = {self.device!r} needs --executor batched (the {self.kind} executor "
                              f"trains on the CPU)")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers = {self.workers}: must be >= 1")
        if self.batch_models < 1:
            raise ConfigError(f"batch_models = {self.batch_models}: must be >= 1")
        if self.ray_address is not None and self.kind != "ray":
            raise ConfigError(f"ray_address = {self.ray_address!r} needs --executor ray")


class Executor(ABC):
    """Runs training jobs (and evaluations) for a simulation; see the module docstring."""

    name = ""
    spreads_evaluation = False  # evaluate_many runs models on workers (else on the simulator's thread)

    def __init__(self, trainer: LocalTrainer, evaluator: Evaluator | None) -> None:
        self.trainer = trainer
        self.evaluator: Evaluator = evaluator  # type: ignore[assignment]  # None only in tests that never evaluate
        self.wall_seconds = 0.0  # simulator thread: training or waiting for it
        self.eval_wall_seconds = 0.0
        self.jobs = 0  # jobs whose result was used or computed here

    @abstractmethod
    def submit(self, job: TrainJob, due: float) -> Ticket:
        """Start (or queue) ``job``, whose result is due at virtual time ``due`` (earlier due, earlier run)."""

    @abstractmethod
    def result(self, ticket: Ticket) -> TrainResult:
        """The job's result, waiting for it if it is not ready."""

    def cancel(self, ticket: Ticket) -> None:
        """The job was abandoned: drop it, or discard its result when it comes."""
        ticket.cancelled = True

    def adopt(self, ticket: Ticket) -> None:  # noqa: B027 - optional hook; inline and lazy executors need nothing
        """Take over a job submitted before a resume (by another executor): start it as if just submitted."""

    def evaluate(self, params: np.ndarray) -> Evaluation:
        return self.evaluate_many([params])[0]

    def evaluate_many(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        """Evaluate several models on the test set (the observer's node-model evaluations), in order."""
        started = time.perf_counter()
        results = [self.evaluator.evaluate(params) for params in models]
        self.eval_wall_seconds += time.perf_counter() - started
        return results

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers and shared memory (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EvaluationFacade:
    """What the observer holds: ``evaluate`` / ``evaluate_many`` through the executor, and the wall time."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def evaluate(self, params: np.ndarray) -> Evaluation:
        return self.executor.evaluate(params)

    def evaluate_many(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        return self.executor.evaluate_many(models)

    @property
    def spreads(self) -> bool:
        """Whether :meth:`evaluate_many` spreads models over workers (else evaluate them one by one here)."""
        return self.executor.spreads_evaluation

    def parallel(self) -> Any:
        """The simulator-side evaluator's thread-count session (see :meth:`Evaluator.parallel`)."""
        return self.executor.evaluator.parallel()

    @property
    def wall_seconds(self) -> float:
        return self.executor.eval_wall_seconds


# ------------------------------------------------------------------------------------------------------ inline
class InlineExecutor(Executor):
    """Training in the simulator's thread, when the result is due (abandoned jobs cost nothing)."""

    name = "inline"

    def submit(self, job: TrainJob, due: float) -> Ticket:
        return Ticket(job, due)

    def result(self, ticket: Ticket) -> TrainResult:
        if ticket.output is None:
            started = time.perf_counter()
            ticket.output = self.trainer.run(ticket.job)
            self.wall_seconds += time.perf_counter() - started
            self.jobs += 1
        output, ticket.output = ticket.output, None
        return output


# ------------------------------------------------------------------------------------------- dispatch (base)
class DispatchingExecutor(Executor):
    """Common logic of ``pool`` and ``ray``: a backlog ordered by due time, at most ``depth`` jobs handed to the
    workers at once, and the simulator's thread training a job itself when it waits for one nobody took."""

    def __init__(self, trainer: LocalTrainer, evaluator: Evaluator, workers: int, depth: int) -> None:
        super().__init__(trainer, evaluator)
        self.workers = workers
        self.depth = depth
        self._backlog: list[tuple[float, int, Ticket]] = []
        self._order = itertools.count()
        self._in_flight: dict[int, Ticket] = {}
        self.stolen = 0

    def submit(self, job: TrainJob, due: float) -> Ticket:
        ticket = Ticket(job, due)
        self.adopt(ticket)
        return ticket

    def adopt(self, ticket: Ticket) -> None:
        if ticket.output is not None or ticket.cancelled:
            return
        heapq.heappush(self._backlog, (ticket.due, next(self._order), ticket))
        self._collect(block=False)
        self._fill()

    def _fill(self) -> None:
        backlog = self._backlog
        while backlog and len(self._in_flight) < self.depth:
            _, _, ticket = heapq.heappop(backlog)
            if ticket.cancelled or ticket.token == "local":
                continue
            key = self._dispatch(ticket)
            ticket.token = key
            self._in_flight[key] = ticket

    def result(self, ticket: Ticket) -> TrainResult:
        started = time.perf_counter()
        try:
            while ticket.output is None:
                if ticket.token is None:
                    # not handed to a worker yet (still in the backlog): train it here
                    ticket.token = "local"
                    self.stolen += 1
                    ticket.output = self.trainer.run(ticket.job)
                    break
                self._collect(block=True)
                self._fill()
            self.jobs += 1
            output, ticket.output = ticket.output, None
            return output
        finally:
            self.wall_seconds += time.perf_counter() - started

    def cancel(self, ticket: Ticket) -> None:
        ticket.cancelled = True  # dropped from the backlog when reached; a worker's result is discarded

    def evaluate(self, params: np.ndarray) -> Evaluation:
        """One model (a global model): evaluated here, by the simulator's evaluator on every core it chose, rather
        than by one single-threaded worker; results are the same (``evaluate_many`` spreads several models)."""
        started = time.perf_counter()
        try:
            return self.evaluator.evaluate(params)
        finally:
            self.eval_wall_seconds += time.perf_counter() - started

    def _finished(self, key: int, output: TrainResult) -> None:
        ticket = self._in_flight.pop(key)
        if not ticket.cancelled:
            ticket.output = output

    @abstractmethod
    def _dispatch(self, ticket: Ticket) -> int:
        """Hand the job to a worker; returns its key for :meth:`_finished`."""

    @abstractmethod
    def _collect(self, block: bool) -> None:
        """Take finished jobs (at least one when ``block`` and any is in flight) and call :meth:`_finished`."""


# -------------------------------------------------------------------------------------------------------- pool
@dataclass
class TrainerSpec:
    """Everything a worker needs to rebuild the trainer and evaluator (tensors travel as shared memory)."""

    task_type: type[Task]
    task_options: dict[str, Any]
    data: TaskData
    node_indices: list[np.ndarray]
    sgd: SGDSettings
    seed: int
    eval_samples: int | None = None  # --eval-samples: the same fixed subset as the simulator's evaluator

    def build(self) -> tuple[LocalTrainer, Evaluator]:
        from plexus.learning.params import FlatModel

        task = self.task_type(self.task_options)
        with torch.random.fork_rng(devices=[]):
            model = FlatModel(task.build_model(self.data))
        return (LocalTrainer(task, self.data, self.node_indices, self.sgd, self.seed, model),
                Evaluator(task, self.data, model, samples=self.eval_samples, seed=self.seed, threads=1))


def shared_data(data: TaskData) -> TaskData:
    """The task data with its tensors moved to shared memory (so workers map rather than copy them); the
    parent keeps using the same tensors."""
    import shutil

    needed = sum(t.element_size() * t.nelement() for d in (data.train, data.test) for t in (d.x, d.y))
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = None
    if free is not None and needed > free:
        raise ConfigError(f"executor = pool: the task's data needs {needed / 1e6:.0f} MB of shared memory and "
                          f"/dev/shm has {free / 1e6:.0f} MB free (enlarge it, e.g. docker --shm-size, or use "
                          f"--executor inline)")
    for dataset in (data.train, data.test):
        for tensor in (dataset.x, dataset.y):
            tensor.share_memory_()
    return TaskData(TensorDataset(data.train.x, data.train.y), TensorDataset(data.test.x, data.test.y),
                    labels=None, users=None, info=dict(data.info))


def _pool_worker(spec: TrainerSpec, shm_name: str, slots: int, size: int, requests: Any, replies: Any) -> None:
    import signal
    from multiprocessing import shared_memory

    # Ctrl-C reaches the whole process group: the simulator handles it (a checkpoint, then close()), workers not
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    trainer, evaluator = spec.build()
    memory = shared_memory.SharedMemory(name=shm_name)
    try:
        buffer = np.ndarray((slots, size), dtype=np.float32, buffer=memory.buf)
        while True:
            request = requests.get()
            if request is None:
                return
            kind, slot, node, job, steps = request
            try:
                if kind == "train":
                    started = time.perf_counter()
                    output = trainer.run(TrainJob(node, job, buffer[slot].copy(), steps))
                    buffer[slot] = output.params
                    replies.put(("train", slot, output.loss, output.samples, time.perf_counter() - started, None))
                else:
                    evaluation = evaluator.evaluate(buffer[slot])
                    replies.put(("eval", slot, evaluation.metric, evaluation.loss, 0.0, None))
            except Exception as error:  # reported in the parent with the job that failed
                replies.put((kind, slot, math.nan, 0, 0.0, f"{type(error).__name__}: {error}"))
    finally:
        del buffer
        memory.close()


class PoolExecutor(DispatchingExecutor):
    spreads_evaluation = True

    """Worker processes with models in shared-memory slots (see the module docstring)."""

    name = "pool"

    def __init__(self, trainer: LocalTrainer, evaluator: Evaluator, spec: TrainerSpec, size: int,
                 workers: int | None = None) -> None:
        import multiprocessing as mp
        from multiprocessing import shared_memory

        import torch.multiprocessing  # noqa: F401 - registers the shared-memory reductions of tensors

        count = workers or os.cpu_count() or 1
        depth = 2 * count
        super().__init__(trainer, evaluator, count, depth)
        self.size = size
        self.slots = depth
        self._memory = shared_memory.SharedMemory(create=True, size=max(1, depth * size * 4))
        self._buffer = np.ndarray((depth, size), dtype=np.float32, buffer=self._memory.buf)
        self._free = list(range(depth - 1, -1, -1))
        context = mp.get_context("spawn")
        self._requests = context.Queue()
        self._replies = context.Queue()
        self._processes = [
            context.Process(target=_pool_worker, name=f"plexus-pool-{i}", daemon=True,
                            args=(spec, self._memory.name, depth, size, self._requests, self._replies))
            for i in range(count)
        ]
        for process in self._processes:
            process.start()
        self._evaluations: dict[int, Evaluation] = {}
        self._evaluating = 0
        self._closed = False

    def _dispatch(self, ticket: Ticket) -> int:
        slot = self._free.pop()
        job = ticket.job
        self._buffer[slot] = job.params
        self._requests.put(("train", slot, job.node, job.job, job.steps))
        return slot

    def _collect(self, block: bool) -> None:
        import queue

        while self._in_flight or self._pending_evaluations:
            try:
                reply = self._replies.get(block=block, timeout=5.0 if block else None)
            except queue.Empty:
                if not block:
                    return
                self._check_alive()
                continue
            kind, slot, a, b, _, error = reply
            if error is not None:
                raise RuntimeError(f"a pool worker failed: {error}")
            if kind == "train":
                params = self._buffer[slot].copy()
                self._free.append(slot)
                self._finished(slot, TrainResult(params, float(a), int(b)))
            else:
                self._free.append(slot)
                self._evaluations[slot] = Evaluation(float(a), float(b))
            block = False

    @property
    def _pending_evaluations(self) -> bool:
        return self._evaluating > 0

    def _check_alive(self) -> None:
        dead = [p.name for p in self._processes if not p.is_alive()]
        if dead:
            raise RuntimeError(f"pool worker(s) {', '.join(dead)} died (out of memory?)")

    def evaluate_many(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        """Models go to free slots, in order; the simulator's thread evaluates from the other end meanwhile."""
        started = time.perf_counter()
        results: list[Evaluation | None] = [None] * len(models)
        first, last = 0, len(models)  # models[first:last] are not taken yet
        waiting: dict[int, int] = {}  # slot -> position
        try:
            while first < last or waiting:
                while first < last and self._free:
                    slot = self._free.pop()
                    self._buffer[slot] = models[first]
                    self._requests.put(("eval", slot, 0, 0, 0))
                    waiting[slot] = first
                    first += 1
                self._evaluating = len(waiting)
                if first < last:
                    last -= 1
                    results[last] = self.evaluator.evaluate(models[last])
                    self._collect(block=False)
                elif waiting:
                    self._collect(block=True)
                for slot in [s for s in waiting if s in self._evaluations]:
                    results[waiting.pop(slot)] = self._evaluations.pop(slot)
        finally:
            self._evaluating = 0
            self.eval_wall_seconds += time.perf_counter() - started
        self._fill()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._processes:
            self._requests.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        self._requests.close()
        self._replies.close()
        del self._buffer
        self._memory.close()
        self._memory.unlink()


# --------------------------------------------------------------------------------------------------------- ray
class RayExecutor(DispatchingExecutor):
    spreads_evaluation = True

    """Ray actors, each holding a trainer built from the shared spec (see the module docstring)."""

    name = "ray"

    def __init__(self, trainer: LocalTrainer, evaluator: Evaluator, spec: TrainerSpec,
                 workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor = ray needs Ray: pip install 'plexus[ray]'") from None
        self.ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, configure_logging=False)
            self._started_ray = True
        count = workers or int(ray.available_resources().get("CPU", os.cpu_count() or 1)) or 1
        super().__init__(trainer, evaluator, count, 2 * count)
        actor_class = ray.remote(num_cpus=1)(_RayTrainer)
        spec_ref = ray.put(spec)
        self._actors = [actor_class.remote(spec_ref) for _ in range(count)]
        self._refs: dict[Any, int] = {}
        self._keys = itertools.count()
        self._next_actor = itertools.cycle(range(count))
        self._closed = False

    def _dispatch(self, ticket: Ticket) -> int:
        job = ticket.job
        key = next(self._keys)
        actor = self._actors[next(self._next_actor)]
        ref = actor.train.remote(job.node, job.job, job.params, job.steps)
        self._refs[ref] = key
        return key

    def _collect(self, block: bool) -> None:
        if not self._refs:
            return
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=None if block else 0)
        while ready:
            for ref in ready:
                key = self._refs.pop(ref)
                params, loss, samples = self.ray.get(ref)
                self._finished(key, TrainResult(np.array(params, dtype=np.float32), float(loss), int(samples)))
            if not self._refs:
                return
            ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)

    def evaluate_many(self, models: Sequence[np.ndarray]) -> list[Evaluation]:
        started = time.perf_counter()
        refs = [self._actors[i % len(self._actors)].evaluate.remote(params) for i, params in enumerate(models)]
        results = [Evaluation(float(m), float(loss)) for m, loss in self.ray.get(refs)]
        self.eval_wall_seconds += time.perf_counter() - started
        return results

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            self.ray.kill(actor)
        if self._started_ray:
            self.ray.shutdown()


class _RayTrainer:
    """A Ray actor's state: one trainer and evaluator built from the spec."""

    def __init__(self, spec: TrainerSpec) -> None:
        torch.set_num_threads(1)
        self.trainer, self.evaluator = spec.build()

    def train(self, node: int, job: int, params: np.ndarray, steps: int) -> tuple[np.ndarray, float, int]:
        output = self.trainer.run(TrainJob(node, job, np.array(params, dtype=np.float32), steps))
        return output.params, output.loss, output.samples

    def evaluate(self, params: np.ndarray) -> tuple[float, float]:
        result = self.evaluator.evaluate(np.array(params, dtype=np.float32))
        return result.metric, result.loss


# ----------------------------------------------------------------------------------------------------- factory
def make_executor(settings: ExecutorSettings, trainer: LocalTrainer, evaluator: Evaluator,
                  spec_of: Any = None) -> Executor:
    """The executor ``settings`` asks for. ``spec_of()`` builds the :class:`TrainerSpec` workers need."""
    settings.check()
    if settings.kind == "inline":
        return InlineExecutor(trainer, evaluator)
    if settings.kind == "batched":
        from plexus.learning.batched import BatchedExecutor

        return BatchedExecutor(trainer, evaluator, settings.device, settings.batch_models)
    spec = spec_of()
    if settings.kind == "pool":
        return PoolExecutor(trainer, evaluator, spec, trainer.model.size, settings.workers)
    return RayExecutor(trainer, evaluator, spec, settings.workers, settings.ray_address)

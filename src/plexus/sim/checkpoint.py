"""Checkpoints of a running simulation, and their resumption (``--checkpoint-every``, ``plexus resume DIR``).

**What is saved.** The whole simulated state: the event heap with every pending callback, the network's flows,
the compute model's queues, every node and its view, runtime RNG states, the training jobs in flight (their
inputs), the observer with the metrics rows so far, and the config. **What is not**: the learning side (task
data, the model template, trainer, evaluator, executor and its workers), which is rebuilt from the config on
resume exactly as the run built it (same seed: same data, partition and initial model). The pickler replaces
those objects by names (``persistent_id``) and the resume puts the rebuilt ones in their place.

**How.** The heap holds closures (a node's ``lambda done: self._trained(round, done)``, whatever a plug-in
schedules) and futures whose callbacks are closures too. Two ways to persist
that were weighed: (a) make every scheduled callback a picklable bound method or ``functools.partial``, so the
standard pickle suffices; (b) pickle the state with ``cloudpickle``, which serialises closures and lambdas by
value (their code and cells) and everything importable by reference. (a) would constrain every algorithm,
built-in or plug-in, never to schedule a lambda, a rule nothing enforces and that plug-in authors would break
silently (the checkpoint would fail only when first written). (b) takes any protocol code as it is, at the
cost of a checkpoint tied to the code that wrote it: a lambda's code is stored, but the classes it uses are
looked up by name on resume, so a checkpoint is for resuming with the same plexus version (recorded; a resume
with another version warns), not an archive format. We chose (b). Coroutine-style nodes (``runtime.spawn``)
cannot be checkpointed (a running generator cannot be pickled by anyone): writing such a checkpoint fails with
a message saying so, and the run goes on. The hot paths of the simulator itself (training completions) use
bound methods, so checkpoints stay small and fast to write.

**When.** Only between two events, after the deferred work of the last one, so the state is one the event loop
could be in anyway; the loop polls every 1024 events whether ``--checkpoint-every`` wall seconds have passed
since the last checkpoint, or Ctrl-C was pressed. On Ctrl-C the checkpoint is written, then the run stops with
KeyboardInterrupt (a second Ctrl-C stops at once, without a checkpoint). Checkpoints are written atomically
(a temporary file renamed over the previous one) to ``RESULT_DIR/checkpoint.pkl``, which a finished run deletes.

**Equality.** Pausing, pickling and resuming change no event, sequence number or random draw, and the executors
give the same results whenever a job runs, so an interrupted-then-resumed run writes the same ``metrics.csv``
and ``rounds.csv`` as an uninterrupted one, byte for byte (``tests/test_checkpoint.py``, every shipped algorithm).
Wall-clock figures in ``summary.json`` add up the segments; ``summary["resumed"]`` counts the resumptions.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from plexus.errors import ConfigError

if TYPE_CHECKING:
    from plexus.config import Config
    from plexus.learning.executors import EvaluationFacade, Executor
    from plexus.learning.params import FlatModel
    from plexus.learning.tasks.base import Task, TaskData
    from plexus.learning.trainer import Evaluator, LocalTrainer
    from plexus.metrics.results import Results
    from plexus.sim.observer import Observer
    from plexus.sim.world import World

log = logging.getLogger("plexus.run")

CHECKPOINT_FILE = "checkpoint.pkl"
MAGIC = b"PLEXUS-CHECKPOINT-1\n"
POLL_EVENTS = 1024
GC_THRESHOLD = 50_000
RESUME_OVERRIDES = frozenset({"executor", "workers", "device", "ray_address", "batch_models", "checkpoint_every"})
ProgressFn = Callable[[dict[str, Any]], None]


class Learning:
    """The learning side of a run, rebuilt from the config on resume (never checkpointed)."""

    def __init__(self, task: Task, data: TaskData, model: FlatModel, trainer: LocalTrainer, evaluator: Evaluator,
                 executor: Executor) -> None:
        from plexus.learning.executors import EvaluationFacade

        self.task = task
        self.data = data
        self.model = model
        self.trainer = trainer
        self.evaluator = evaluator
        self.executor = executor
        self.evaluation: EvaluationFacade = EvaluationFacade(executor)

    def persistent(self) -> dict[int, str]:
        """The objects a checkpoint names instead of storing, by identity."""
        return {id(obj): name for name, obj in self._named().items()}

    def _named(self) -> dict[str, Any]:
        return {"task": self.task, "data": self.data, "model": self.model, "trainer": self.trainer,
                "evaluator": self.evaluator, "executor": self.executor, "evaluation": self.evaluation,
                "model.module": self.model.module}


@dataclass
class SimulationState:
    """Everything a checkpoint holds: the simulated world, its observer and the run's bookkeeping."""

    config: Config
    world: World
    observer: Observer
    notes: list[str]
    until: float
    setup_wall_seconds: float
    loop_wall_seconds: float = 0.0
    resumed: int = 0
    checkpoints: int = field(default=0)
    churn: Any = None  # the run's plexus.sim.churn.Churn, if it has churn


class _Pickler(cloudpickle.Pickler):
    def __init__(self, handle: io.BufferedWriter, names: dict[int, str]) -> None:
        super().__init__(handle, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = names

    def persistent_id(self, obj: Any) -> str | None:  # noqa: D102 - pickle hook
        return self._names.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle: io.BufferedReader, objects: dict[str, Any]) -> None:
        super().__init__(handle)
        self._objects = objects

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle hook
        try:
            return self._objects[pid]
        except KeyError:
            raise pickle.UnpicklingError(f"checkpoint refers to an unknown object {pid!r}") from None


def save_checkpoint(state: SimulationState, learning: Learning, directory: Path) -> Path:
    """Write ``state`` to ``directory/checkpoint.pkl`` atomically; returns the path."""
    from plexus import __version__

    path = directory / CHECKPOINT_FILE
    temporary = directory / (CHECKPOINT_FILE + ".tmp")
    observer = state.observer
    loop = state.world.loop
    progress, observer._on_evaluation = observer._on_evaluation, None
    pause_check, loop.pause_check = loop.pause_check, None
    started = time.perf_counter()
    try:
        with temporary.open("wb") as handle:
            handle.write(MAGIC)
            pickle.dump({"plexus_version": __version__, "config": state.config}, handle)
            _Pickler(handle, learning.persistent()).dump(state)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (TypeError, pickle.PicklingError, AttributeError) as error:
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"cannot checkpoint this run: {error} (coroutine-style nodes, runtime.spawn, "
                              f"cannot be saved)") from None
    finally:
        observer._on_evaluation = progress
        loop.pause_check = pause_check
    state.checkpoints += 1
    log.info("checkpoint %d at t=%.3fs: %s (%.1f MB, %.2f s)", state.checkpoints, loop.now, path,
             path.stat().st_size / 1e6, time.perf_counter() - started)
    return path


class CheckpointError(ConfigError):
    """A checkpoint that cannot be written or read."""


def read_header(directory: Path) -> dict[str, Any]:
    """The version and config a checkpoint was written with (without loading the state)."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {CHECKPOINT_FILE} to resume from (a finished run deletes it; "
                              f"runs write one with --checkpoint-every SECONDS or on Ctrl-C)")
    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise CheckpointError(f"{path} is not a plexus checkpoint")
        try:
            header = pickle.load(handle)
        except Exception as error:  # noqa: BLE001 - any corruption is reported as such
            raise CheckpointError(f"{path}: unreadable checkpoint header ({error})") from None
    if not isinstance(header, dict) or "config" not in header:
        raise CheckpointError(f"{path}: unreadable checkpoint header")
    return header


def load_checkpoint(directory: Path, learning: Learning) -> SimulationState:
    """The state saved in ``directory``, wired to ``learning`` (rebuilt from the same config)."""
    path = directory / CHECKPOINT_FILE
    with path.open("rb") as handle:
        handle.read(len(MAGIC))
        pickle.load(handle)
        try:
            state = _Unpickler(handle, learning._named()).load()
        except Exception as error:  # noqa: BLE001 - reported with the file's name
            raise CheckpointError(f"{path}: cannot load the checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, SimulationState):
        raise CheckpointError(f"{path}: not a simulation checkpoint")
    return state


def remove_checkpoint(directory: Path) -> None:
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
    (directory / (CHECKPOINT_FILE + ".tmp")).unlink(missing_ok=True)


class _Checkpointer:
    """Decides when the loop pauses for a checkpoint: every ``every`` wall seconds, or on Ctrl-C."""

    def __init__(self, every: float | None) -> None:
        self.every = every
        self.last = time.perf_counter()
        self.interrupted = False

    def should_pause(self) -> bool:
        if self.interrupted:
            return True
        return self.every is not None and time.perf_counter() - self.last >= self.every

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True


def run_loop(state: SimulationState, learning: Learning, out_dir: Path, progress: ProgressFn | None) -> None:
    """``loop.run(until)`` with checkpoints: every ``checkpoint_every`` wall seconds, and on Ctrl-C (then
    KeyboardInterrupt is raised once the checkpoint is written)."""
    loop = state.world.loop
    checkpointer = _Checkpointer(state.config.checkpoint_every)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, checkpointer.on_sigint) if main else None
    loop.pause_check = checkpointer.should_pause
    loop.pause_every = POLL_EVENTS
    # The objects built so far (data, nodes, views, topology) live for the whole run: frozen out of the
    # collector's generations, they are no longer traversed by every full collection; a larger first
    # generation makes collections rarer (the loop allocates many short-lived, acyclic objects).
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
    try:
        while True:
            loop.run(until=state.until)
            if not loop.paused:
                return
            try:
                save_checkpoint(state, learning, out_dir)
            except CheckpointError as error:
                if checkpointer.interrupted:
                    raise
                log.warning("%s; continuing without checkpoints", error)
                checkpointer.every = None
            checkpointer.last = time.perf_counter()
            if checkpointer.interrupted:
                log.warning("interrupted at t=%.3fs: checkpoint written; continue with: plexus resume %s",
                            loop.now, out_dir)
                raise KeyboardInterrupt
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        loop.pause_check = None
        if main:
            signal.signal(signal.SIGINT, previous)


def resume_simulation(directory: str | Path, progress: ProgressFn | None = None,
                      overrides: dict[str, Any] | None = None) -> Results:
    """Continue the run saved in ``directory`` and write its results there (``plexus resume DIR``).

    ``overrides`` may change how training is executed (``executor``, ``workers``, ``device``, ``ray_address``,
    ``batch_models``) and ``checkpoint_every``; nothing that changes results can be overridden.
    """
    import dataclasses

    import torch

    from plexus import __version__
    from plexus.config import coerce, load_plugins
    from plexus.metrics.results import LOG_FILE
    from plexus.sim.simulation import build_learning, drive

    directory = Path(directory)
    changes = dict(overrides or {})
    for name in changes:
        if name not in RESUME_OVERRIDES:
            raise ConfigError(f"resume: {name} cannot be changed on resume (only "
                              f"{', '.join(sorted(RESUME_OVERRIDES))}: the rest would change the results)")
    header = read_header(directory)
    config = header["config"]
    if changes:
        config = dataclasses.replace(config, **{k: coerce(k, v, "resume") for k, v in changes.items()})
    load_plugins(config.plugin)
    handler = logging.FileHandler(directory / LOG_FILE, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if header.get("plexus_version") != __version__:
            log.warning("checkpoint written by plexus %s, resumed by %s: the code may have changed",
                        header.get("plexus_version"), __version__)
        started = time.perf_counter()
        config, learning = build_learning(config)
        try:
            state = load_checkpoint(directory, learning)
            state.config = dataclasses.replace(state.config, **{k: getattr(config, k) for k in changes})
            state.resumed += 1
            state.setup_wall_seconds += time.perf_counter() - started
            state.observer._on_evaluation = progress
            adopt_in_flight(state, learning)
            log.info("resumed at t=%.3fs (events processed so far: %d)", state.world.loop.now,
                     state.world.loop.events_processed)
            return drive(state, learning, directory, progress)
        finally:
            learning.executor.close()
    finally:
        torch.set_num_threads(threads)
        log.removeHandler(handler)
        handler.close()


def adopt_in_flight(state: SimulationState, learning: Learning) -> None:
    """Hand the training jobs in flight at the checkpoint to the new executor (earliest due first), so that a
    parallel executor starts them at once rather than when each is due."""
    from plexus.sim.runtime import Training

    pending = []
    for _, _, timer in state.world.loop.scheduled():
        if isinstance(timer, tuple):  # fire_later: never a training job
            continue
        callback = timer.callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, Training) and not timer.cancelled():
            pending.append(owner.ticket)
    for ticket in sorted(pending, key=lambda t: t.due):
        learning.executor.adopt(ticket)

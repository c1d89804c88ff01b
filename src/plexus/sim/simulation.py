"""Build a simulated experiment from a resolved config, run it in virtual time, and write its results."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plexus import __version__
from plexus.config import Config, algorithm_options, resolve, task_options
from plexus.errors import ConfigError, PlexusError
from plexus.learning.executors import Executor, ExecutorSettings, TrainerSpec, make_executor
from plexus.learning.executors import shared_data as shared_memory_data
from plexus.learning.params import FlatModel
from plexus.learning.partition import parse_partition, partition
from plexus.learning.tasks import task_class
from plexus.learning.trainer import Evaluator, LocalTrainer, SGDSettings
from plexus.metrics.results import (
    CONFIG_FILE,
    EVENT_COLUMNS,
    EVENTS_FILE,
    LOG_FILE,
    METRICS_FILE,
    ROUND_COLUMNS,
    ROUNDS_FILE,
    SAMPLE_COLUMNS,
    SAMPLES_FILE,
    SUMMARY_FILE,
    MetricsWriter,
    Results,
    prepare_folder,
    write_csv,
    write_json,
)
from plexus.protocol import aggregation
from plexus.protocol.fedavg import SERVER_ID
from plexus.protocol.node import Node
from plexus.protocol.registry import Algorithm, algorithm
from plexus.protocol.view import PeerInfo, View, roster_of
from plexus.rng import stream, stream_seed
from plexus.sim import links
from plexus.sim.checkpoint import Learning, SimulationState, remove_checkpoint, run_loop
from plexus.sim.churn import Churn, ChurnRuntime, bootstrap_roster, parse_churn
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.observer import NodesObserver, Observer, evaluated_nodes, node_label
from plexus.sim.profiles import build_profiles
from plexus.sim.runtime import SimRuntime
from plexus.sim.world import World, node_id_of

log = logging.getLogger("plexus.run")

ProgressFn = Callable[[dict[str, Any]], None]


def default_out_dir(config: Config) -> Path:
    """results/<algorithm>-<task>-n<nodes>-s<seed>-<time>, with -2, -3, ... if two runs start in one second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("results") / f"{config.algorithm}-{config.task}-n{config.nodes}-s{config.seed}-{stamp}"
    path, count = base, 1
    while path.exists():
        count += 1
        path = base.with_name(f"{base.name}-{count}")
    return path


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal (SIGTERM); Ctrl-C is a plain KeyboardInterrupt. Both keep what was done."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class RunState:
    """What a run has built so far, visible to the code that writes its results if it ends early and to
    progress displays (read from another thread: attributes only, no locks needed for these reads)."""

    def __init__(self, config: Config, out_dir: Path) -> None:
        self.config = config
        self.out_dir = out_dir
        self.phase = "starting"
        self.phase_started = time.perf_counter()
        self.wall_start = time.perf_counter()
        self.loop_started: float | None = None
        self.task: Any = None
        self.loop: EventLoop | None = None
        self.observer: Observer | None = None
        self.world: World | None = None
        self.trainer: Any = None  # the executor (jobs, wall_seconds)
        self.evaluator: Evaluator | None = None
        self.evaluation: Any = None  # what the observer evaluates through (wall_seconds)
        self.parameters = 0
        self.last_row: dict[str, Any] | None = None
        self.notes: list[str] = []  # warnings about this run (summary.json's warnings)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_started = time.perf_counter()
        if phase == "running":
            self.loop_started = self.phase_started
        log.debug("phase: %s", phase)

    def track(self, **objects: Any) -> None:
        for name, value in objects.items():
            setattr(self, name, value)


# Loaded datasets kept while a study runs (keyed by what load() depends on), so the data a study checks before
# its first run is not decoded again by each run. Empty outside a study: one run loads its data once anyway.
_DATA_CACHE: dict[Any, Any] = {}
_CACHING = [0]


@contextmanager
def shared_data() -> Iterator[None]:
    """Within this block, runs (and :func:`preflight`) share loaded datasets."""
    _CACHING[0] += 1
    try:
        yield
    finally:
        _CACHING[0] -= 1
        if not _CACHING[0]:
            _DATA_CACHE.clear()


def load_data(task: Any, config: Config) -> Any:
    """``task.load(config.data, config.seed)``, shared between the runs of a study (see :func:`shared_data`)."""
    if not _CACHING[0]:
        return task.load(config.data, config.seed)
    options = task_options(config)
    options.pop("model", None)  # the model does not shape the data
    if task.needs_data:
        options.pop("nodes", None)  # nor does the node count, unless the task generates one user per node
    key = (config.task, config.data, tuple(sorted(options.items())), config.seed)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = task.load(config.data, config.seed)
    return _DATA_CACHE[key]


def fit_to_data(config: Config, task: Any, data: Any) -> Config:
    """The task's preset node count capped to the natural users the data has (a warning says so).

    FEMNIST's preset is the paper's 355 writers, Shakespeare's 100 roles; the data at hand often has fewer (the
    LEAF sample of FEMNIST has 105 writers). A node count other than the preset's stays as asked, and the
    natural partition refuses it if there are too few users. When the preset's sample size no longer fits, it
    is capped too.
    """
    users = data.users
    if (config.partition or "") != "natural" or users is None or config.nodes is None:
        return config
    count = len(users)
    defaults = task.defaults
    if config.nodes <= count or config.nodes != defaults.nodes:
        return config
    changes: dict[str, Any] = {"nodes": count}
    note = f"the {config.task} preset's {config.nodes} nodes exceed the {count} users in the data: running {count} " \
           f"nodes, one per user (set --nodes to choose fewer)"
    sample_size = config.protocol.get("sample_size")
    if sample_size is not None and sample_size > count and sample_size == defaults.sample_size:
        changes["sample_size"] = count
        note += f"; sample size capped to {count}"
    log.warning("%s", note)
    return resolve(config.replace(**changes))


def preflight(config: Config) -> Config:
    """Check a run's data, partition and traces without running it (a study does this for every run before
    the first starts); returns the config as the run will use it (nodes fitted to the data)."""
    from plexus.sim.traces.availability import build_availability

    config = resolve(config)
    task = task_class(config.task)(task_options(config))
    data = load_data(task, config)
    config = fit_to_data(config, task, data)
    assert config.nodes is not None
    partition(parse_partition(config.partition or "iid"), data.labels, len(data.train), config.nodes,
              stream(config.seed, "partition"), groups=data.users)
    build_profiles(config.nodes, config.seed, config.capacity_trace, config.latency_matrix, config.latency_values)
    if config.availability_trace:
        build_availability(config.availability_trace, config.nodes, config.seed)
    return config


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise :class:`RunInterrupted` while a run is in progress, as Ctrl-C raises
    KeyboardInterrupt, so a terminated run writes what it has. Only in the main thread (where handlers live)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, frame: Any) -> None:
        raise RunInterrupted(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            previous[number] = signal.signal(number, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_simulation(
    config: Config,
    progress: ProgressFn | None = None,
    *,
    overwrite: bool = False,
) -> Results:
    """Run one simulated experiment end to end; returns its results (already written to disk).

    The results folder (``config.out``, or a new one under ``results/``) is checked and created first: a
    non-empty folder is refused (ConfigError) unless ``overwrite``. From then on the run keeps what it has
    done: metrics.csv gets each row as it is produced, and if the run fails (an exception, logged to run.log
    with the error) or is interrupted (Ctrl-C, SIGTERM), summary.json is written with ``status`` ``failed`` or
    ``interrupted`` before the exception goes on; the exception then has ``results_dir`` set to the folder.

    ``progress`` is called with each metrics row; if it also has ``attach(state)`` / ``detach()`` (as
    :class:`plexus.commands.progress.ProgressBar` does), it is given the :class:`RunState` to follow the run
    between evaluations.
    """
    notes: list[str] = []
    config = resolve(config, notes)
    out_dir = prepare_folder(Path(config.out) if config.out else default_out_dir(config), overwrite=overwrite)
    state = RunState(config, out_dir)
    state.notes = notes
    root = logging.getLogger("plexus")
    try:
        handler = logging.FileHandler(out_dir / LOG_FILE, mode="w", encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {out_dir / LOG_FILE}: {error.strerror or error}") from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    level = root.level
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    metric = task_class(config.task).metric
    writer = MetricsWriter(out_dir / METRICS_FILE, metric_columns(metric))
    write_json(out_dir / SUMMARY_FILE, _base_summary(config, metric, "running"))
    (out_dir / CONFIG_FILE).write_text(config.to_toml(), encoding="utf-8")

    def on_row(row: dict[str, Any]) -> None:
        writer.write(row)
        state.last_row = row
        if progress is not None:
            progress(row)

    attach = getattr(progress, "attach", None)
    if attach is not None:
        attach(state)
    threads = torch.get_num_threads()
    # one training job at a time on tiny models: intra-op threads cost more than they give (evaluation, the
    # one step that gains from them, sets its own; see Evaluator)
    torch.set_num_threads(1)
    try:
        with _signals_interrupt():
            for note in notes:
                log.warning("%s", note)
            return _run(config, out_dir, on_row, state)
    except KeyboardInterrupt as interrupt:
        how = getattr(interrupt, "signal_name", "Ctrl-C")
        log.warning("interrupted (%s) at t=%.3fs: keeping the %d evaluations done so far", how,
                    state.loop.now if state.loop is not None else 0.0, writer.rows)
        _write_partial(state, "interrupted", f"interrupted by {how}")
        interrupt.results_dir = out_dir  # type: ignore[attr-defined]
        raise
    except BaseException as error:
        if isinstance(error, PlexusError):
            log.error("error: %s", error)
        elif isinstance(error, Exception):
            log.error("error: %s", "".join(traceback.format_exception(error)).rstrip())
        else:  # SystemExit and the like: record and go on
            log.error("stopped: %r", error)
        _write_partial(state, "failed", str(error) or type(error).__name__)
        try:
            error.results_dir = out_dir  # type: ignore[attr-defined]
        except AttributeError:
            pass
        raise
    finally:
        torch.set_num_threads(threads)
        writer.close()
        detach = getattr(progress, "detach", None)
        if detach is not None:
            detach()
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def metric_columns(metric: str) -> list[str]:
    return ["time_s", "round", metric, f"{metric}_std", "loss", "bytes_total", "messages_total",
            "train_seconds_total"]


def _base_summary(config: Config, metric: str, status: str) -> dict[str, Any]:
    from plexus.learning.tasks import task_class as _task_class

    return {
        "status": status,
        "algorithm": config.algorithm,
        "task": config.task,
        "nodes": config.nodes,
        "seed": config.seed,
        "metric": metric,
        "higher_is_better": _task_class(config.task).higher_is_better,
        "plexus_version": __version__,
    }


def _write_partial(state: RunState, status: str, reason: str) -> None:
    """summary.json (and rounds.csv, config.toml) for a run that did not finish; never raises."""
    try:
        config = state.config
        metric = task_class(config.task).metric
        observer, world = state.observer, state.world
        if observer is not None and world is not None and state.trainer is not None and state.evaluator is not None:
            summary = summarise(config, state.task, observer, world, state.parameters, state.trainer,
                                state.evaluation, state.evaluator)
            write_csv(state.out_dir / ROUNDS_FILE, observer.round_rows, ROUND_COLUMNS)
            write_csv(state.out_dir / EVENTS_FILE, observer.events, EVENT_COLUMNS)
            write_csv(state.out_dir / SAMPLES_FILE, observer.samples, SAMPLE_COLUMNS)
        else:
            summary = _base_summary(config, metric, status)
        summary["status"] = status
        summary["status_reason"] = reason
        if status == "failed":
            summary["error"] = reason
        wall = time.perf_counter() - state.wall_start
        summary["wall_seconds"] = wall
        summary["phase"] = state.phase
        write_json(state.out_dir / SUMMARY_FILE, summary)
        (state.out_dir / CONFIG_FILE).write_text(config.to_toml(), encoding="utf-8")
    except Exception as error:  # the original error matters more than this one
        log.error("could not write the partial results: %s", error)


def build_learning(config: Config, state: RunState | None = None) -> tuple[Config, Learning]:
    """The run's learning side, rebuilt identically from the config alone (a resume rebuilds it): the task and
    its data, the partition, the seeded initial model, the trainer, the evaluator and the executor. Returns the
    config as the run uses it (the node count fitted to the data, see :func:`fit_to_data`)."""
    assert config.nodes is not None and config.batch_size is not None and config.lr is not None
    task = task_class(config.task)(task_options(config))
    if state is not None:
        state.set_phase("loading data")
    data = load_data(task, config)
    config = fit_to_data(config, task, data)
    assert config.nodes is not None and config.batch_size is not None and config.lr is not None
    if state is not None:
        state.config = config
        state.set_phase("building the model and the nodes")
    parts, model = shards_and_model(config, task, data)
    sgd = SGDSettings(config.batch_size, config.lr, config.momentum or 0.0, config.weight_decay)
    trainer = LocalTrainer(task, data, parts, sgd, config.seed, model)
    evaluator = Evaluator(task, data, model, samples=config.eval_samples, seed=config.seed)
    if config.eval_samples is not None:
        log.info("evaluating on %d of the %d test samples (--eval-samples)", len(evaluator.test),
                 evaluator.test_samples)
    settings = executor_settings(config)

    def spec() -> TrainerSpec:
        return TrainerSpec(type(task), task_options(config), shared_memory_data(data), parts, sgd, config.seed,
                           config.eval_samples)

    executor = make_executor(settings, trainer, evaluator, spec)
    if settings.kind != "inline":
        log.info("executor: %s", describe_executor(executor))
    return config, Learning(task, data, model, trainer, evaluator, executor)


def shards_and_model(config: Config, task: Any, data: Any) -> tuple[list[np.ndarray], FlatModel]:
    """Every node's shard of the training set and the model holding the seeded initial parameters: what every
    world (simulated or live) builds identically from a config, so their runs start from the same point."""
    assert config.nodes is not None
    parts = partition(
        parse_partition(config.partition or "iid"),
        data.labels,
        len(data.train),
        config.nodes,
        stream(config.seed, "partition"),
        groups=data.users,
    )
    torch.manual_seed(stream_seed(config.seed, "model-init"))
    return parts, FlatModel(task.build_model(data))


def _run(config: Config, out_dir: Path, progress: ProgressFn | None, state: RunState) -> Results:
    wall_start = time.perf_counter()
    assert config.nodes is not None
    log.info("plexus %s: %s on %s, %d nodes, seed %d", __version__, config.algorithm, config.task,
             config.nodes, config.seed)
    spec = algorithm(config.algorithm)
    config, learning = build_learning(config, state)
    options = algorithm_options(config)  # after build_learning: the node count (and s) may be fitted to the data
    try:
        return _run_built(config, out_dir, progress, state, spec, options, learning, wall_start)
    finally:
        learning.executor.close()


def _run_built(config: Config, out_dir: Path, progress: ProgressFn | None, run: RunState, spec: Algorithm,
               options: Any, learning: Learning, wall_start: float) -> Results:
    assert config.nodes is not None and config.batch_size is not None
    notes = run.notes
    initial = learning.model.vector()
    profiles = build_profiles(config.nodes, config.seed, config.capacity_trace, config.latency_matrix,
                              config.latency_values)
    profiles, pair_capacity, _ = links.apply(profiles, config, config.nodes, config.seed)
    log.info("system: %s", profiles.description)
    availability = None
    if config.availability_trace:
        from plexus.sim.traces.availability import build_availability

        availability = build_availability(config.availability_trace, config.nodes, config.seed)
        log.info("nodes follow %s", availability.describe())
    plan = parse_churn(config.churn, config.nodes) if isinstance(config.churn, dict) else None
    if plan is not None:
        log.info("churn: %s", plan.describe())
    churning = plan is not None or availability is not None
    node_ids = [node_id_of(i) for i in range(config.nodes)]
    upload, download = profiles.upload_bps, profiles.download_bps
    latency = profiles.latency
    if spec.server is not None:
        node_ids.append(SERVER_ID)
        upload = np.append(upload, config.server_bandwidth)
        download = np.append(download, config.server_bandwidth)
        server_delay = latency.median()
        data_nodes = config.nodes

        def latency_fn(u: int, v: int) -> float:
            return server_delay if u >= data_nodes or v >= data_nodes else latency(u, v)
    else:
        latency_fn = latency

    loop = EventLoop()
    network = Network(loop, upload, download, latency_fn, pair_capacity)
    compute = ComputeModel(profiles.seconds_per_sample, config.batch_size, config.compute_factor,
                           per_step=config.compute_model == "per-step")
    peers = [PeerInfo(node_ids[i], float(profiles.upload_bps[i]), float(profiles.download_bps[i]))
             for i in range(config.nodes)]
    roster = roster_of(peers)  # every node's view starts from this one shared roster
    world = World(config.seed, loop, network, compute, learning.trainer, node_ids, config.nodes, initial,
                  learning.model.layout)
    world.executor = learning.executor
    observer = make_observer(config, spec, options, loop, network, learning.evaluation, learning.task.metric,
                             world, progress)
    world.on_progress = observer.note_progress
    node_class = spec.node

    def make_node(runtime: SimRuntime) -> Node:
        return node_class(runtime, options)

    churn = None
    online = [True] * config.nodes
    runtime_class: type[SimRuntime] = SimRuntime
    views = [roster] * config.nodes
    if churning:
        runtime_class = ChurnRuntime
        churn = Churn(world, plan, availability, config.seed, make_node, lambda index: View(views[index]),
                      lambda when, index, event: observer.events.append((when, node_label(node_ids[index]), event)),
                      on_change=observer.set_online if isinstance(observer, NodesObserver) else None)
        online = churn.initially_online()
        if getattr(options, "dynamic_membership", False):
            # nodes that keep their own membership start from the nodes present at time 0 (a late node from
            # those and itself); the others keep the full, static list
            start_roster = bootstrap_roster(peers, online)
            views = [start_roster if online[i] else roster_of([*start_roster.peers(), peers[i]])
                     for i in range(config.nodes)]
        observer.world_idle = lambda: churn.online_count == 0
        if isinstance(observer, NodesObserver):
            observer.track_online(online)
    for index in range(config.nodes):
        world.attach(make_node, observer, View(views[index]), runtime_class)
    if spec.server is not None:
        # the server's view: every data node plus itself; the nodes' views stay server-free
        server_roster = roster_of([*peers, PeerInfo(SERVER_ID, config.server_bandwidth, config.server_bandwidth)])
        server = spec.server
        world.attach(lambda runtime: server(runtime, options), observer, View(server_roster))

    run.track(task=learning.task, loop=loop, observer=observer, world=world, trainer=learning.executor,
              evaluator=learning.evaluator, evaluation=learning.evaluation, parameters=learning.model.size)
    state = SimulationState(config=config, world=world, observer=observer, notes=notes,
                            until=config.duration if config.duration is not None else math.inf,
                            setup_wall_seconds=time.perf_counter() - wall_start)
    state.churn = churn
    run.set_phase("running")
    observer.start()
    observer.watch_stalls(config.stall_timeout)  # never under what the protocol may wait (config.resolve)
    if churn is not None:
        churn.install(online)
    for index, node in enumerate(world.nodes):
        if index >= config.nodes or online[index]:  # a node offline at the start joins when it comes online
            node.start()
    return drive(state, learning, out_dir, progress, run)


def drive(state: SimulationState, learning: Learning, out_dir: Path, progress: ProgressFn | None,
          run: RunState | None = None) -> Results:
    """Run the event loop to its end (checkpointing as asked, see :mod:`plexus.sim.checkpoint`), then stop the
    nodes, evaluate the last models and write the results folder. A resumed run continues here."""
    config, world, observer = state.config, state.world, state.observer
    loop = world.loop
    loop_start = time.perf_counter()
    run_loop(state, learning, out_dir, progress)
    until = state.until
    stall = _stall(observer, loop, until)
    if stall is not None:
        observer.status, observer.status_reason = "stalled", stall["reason"]
    for node in world.nodes:
        node.stop()
    observer.finish()
    state.loop_wall_seconds += time.perf_counter() - loop_start
    loop_wall = state.loop_wall_seconds
    if run is not None:
        run.set_phase("writing results")
    notes = state.notes
    executor = learning.executor

    wall = state.setup_wall_seconds + loop_wall
    summary = summarise(config, learning.task, observer, world, learning.model.size, executor,
                        learning.evaluation, learning.evaluator)
    summary["stalled"] = stall is not None
    if stall is not None:
        summary["stalled_at"] = stall
        message = (f"the run stalled at t={stall['time_s']:.1f}s (round {stall['round']}): {stall['reason']}; "
                   f"results up to then are kept")
        log.warning("%s", message)
        notes.append(message)
    if isinstance(observer, NodesObserver):
        summary["evaluated_nodes"] = len(observer.evaluated)
    churn = getattr(state, "churn", None)
    if churn is not None:
        summary["churn"] = churn.summary()
    summary["warnings"] = list(notes)
    summary.update(wall_seconds=wall, setup_wall_seconds=state.setup_wall_seconds, loop_wall_seconds=loop_wall)
    summary["executor"] = executor.name
    # the optional C parts (setup.py): the same results either way, only the wall time differs
    summary["compiled_core"] = {"flow_table": world.network.core, "event_queue": world.loop.core,
                                "average": "compiled" if aggregation.mean_into is not None else "numpy"}
    if state.resumed:
        summary["resumed"] = state.resumed
    work = executor.wall_seconds + learning.evaluation.wall_seconds
    summary["overhead_fraction"] = max(0.0, 1.0 - work / loop_wall) if loop_wall > 0 else 0.0
    results = Results(out_dir, summary)
    results.metrics = observer.rows
    results.rounds = observer.round_rows
    results.events = observer.events
    results.samples = observer.samples
    results.write(config.to_toml(), metric_columns(learning.task.metric))
    remove_checkpoint(out_dir)
    log.info("finished: %s", {k: results.summary[k] for k in ("rounds_completed", "virtual_seconds",
                                                               "wall_seconds")})
    return results


def executor_settings(config: Config) -> ExecutorSettings:
    """``--executor``, ``--workers``, ``--device``, ``--ray-address``, ``--batch-models`` of a config."""
    return ExecutorSettings(config.executor, config.workers, config.device, config.ray_address,
                            config.batch_models)


def describe_executor(executor: Executor) -> str:
    workers = getattr(executor, "workers", None)
    device = getattr(executor, "device", None)
    return executor.name + (f", {workers} workers" if workers else "") + (f", device {device}" if device else "")


def _stall(observer: Observer, loop: EventLoop, until: float) -> dict[str, Any] | None:
    """Why the run ended, when it was not its stop condition: a stall (None otherwise)."""
    if observer.stop_reached or (until != math.inf and loop.now >= until):
        return None
    if observer.stalled_at is not None:
        reason = f"no global model, node round or training for {loop.now - observer.stalled_at:.0f}s"
        when = observer.stalled_at
    else:
        reason = "no event left to process (every node is waiting for something that will never come)"
        when = loop.now
    if isinstance(observer, NodesObserver) and observer.round_timeout is not None:
        round = int(math.floor(when / observer.round_timeout + 1e-9))  # the round of the stall's own time
    else:
        round = observer.current_round() if isinstance(observer, NodesObserver) else observer.rounds_completed
    return {"time_s": when, "round": int(round), "reason": reason}


def make_observer(
    config: Config,
    spec: Algorithm,
    options: Any,
    loop: EventLoop,
    network: Network,
    evaluator: Any,
    metric: str,
    world: World,
    progress: ProgressFn | None,
) -> Observer:
    """The observer the algorithm needs: global-model evaluation, or node-model evaluation for DL."""
    eval_every = int(config.eval_every or 1)

    def train_seconds() -> float:
        return world.train_seconds_total

    if spec.traits.evaluation != "nodes":
        return Observer(loop, network, evaluator, metric, eval_every, config.rounds, train_seconds,
                        on_evaluation=progress)
    assert config.nodes is not None
    evaluated = evaluated_nodes(config.nodes, config.eval_nodes, config.seed)
    log.info("evaluating %d of %d node models at each evaluation", len(evaluated), config.nodes)
    period = spec.period(options) if spec.traits.clock == "periods" and spec.period is not None else None
    return NodesObserver(
        loop, network, evaluator, metric, eval_every, config.rounds, train_seconds, on_evaluation=progress,
        node_ids=world.node_ids[: config.nodes],
        model_of=lambda index: world.nodes[index].current_model() if world.online[index] else None,
        evaluated=evaluated,
        eval_interval=config.eval_interval,
        round_timeout=period,
    )


def summarise(
    config: Config,
    task: Any,
    observer: Observer,
    world: World,
    parameters: int,
    trainer: Any,
    evaluation: Any,
    evaluator: Evaluator,
) -> dict[str, Any]:
    """``trainer``: the executor (jobs, training wall time); ``evaluation``: what the observer evaluated through
    (its wall time); ``evaluator``: the simulator's own evaluator (threads, test subset)."""
    metric = task.metric
    final = observer.rows[-1][metric] if observer.rows else math.nan
    best = observer.best(task.higher_is_better)
    summary: dict[str, Any] = {
        "status": observer.status,
        "algorithm": config.algorithm,
        "task": config.task,
        "nodes": config.nodes,
        "seed": config.seed,
        "metric": metric,
        "higher_is_better": task.higher_is_better,
        "rounds_completed": observer.rounds_completed,
        "virtual_seconds": world.loop.now,
        "wall_seconds": math.nan,
        f"final_{metric}": final,
        f"best_{metric}": best,
        "final_loss": observer.rows[-1]["loss"] if observer.rows else math.nan,
        "bytes_total": world.network.bytes_total,
        "messages_total": world.network.messages_sent,
        "train_seconds_total": world.train_seconds_total,
        "model_parameters": parameters,
        "events_processed": world.loop.events_processed,
        "training_jobs": trainer.jobs,
        "wall_train_seconds": trainer.wall_seconds,
        "wall_eval_seconds": evaluation.wall_seconds,
        "counters": dict(sorted(observer.counters.items())),
        "traits": algorithm(config.algorithm).traits.as_dict(),
        "rejections": dict(sorted(observer.rejections.items())),
        "messages_lost": dict(sorted(world.messages_lost.items())),
        "evaluation_threads": evaluator.threads,
        "plexus_version": __version__,
    }
    if observer.status_reason:
        summary["status_reason"] = observer.status_reason
    if evaluator.test_samples != len(evaluator.test):
        summary["eval_samples"] = len(evaluator.test)
    return summary

"""Build a simulated experiment from a resolved config, run it in virtual time, and write its results."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plexus import __version__
from plexus.config import Config, algorithm_options, resolve, task_options
from plexus.learning.executors import Executor, ExecutorSettings, TrainerSpec, make_executor, shared_data
from plexus.learning.params import FlatModel
from plexus.learning.partition import parse_partition, partition
from plexus.learning.tasks import task_class
from plexus.learning.trainer import Evaluator, LocalTrainer, SGDSettings
from plexus.metrics.results import LOG_FILE, Results
from plexus.protocol.fedavg import SERVER_ID
from plexus.protocol.registry import Algorithm, algorithm
from plexus.protocol.view import PeerInfo, View, roster_of
from plexus.rng import stream, stream_seed
from plexus.sim.checkpoint import Learning, SimulationState, remove_checkpoint, run_loop
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.observer import NodesObserver, Observer, evaluated_nodes
from plexus.sim.profiles import build_profiles
from plexus.sim.world import World, node_id_of

log = logging.getLogger("plexus.run")

ProgressFn = Callable[[dict[str, Any]], None]


def default_out_dir(config: Config) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{config.algorithm}-{config.task}-n{config.nodes}-s{config.seed}-{stamp}"


def run_simulation(config: Config, progress: ProgressFn | None = None) -> Results:
    """Run one simulated experiment end to end; returns its results (already written to disk)."""
    notes: list[str] = []
    config = resolve(config, notes)
    out_dir = Path(config.out) if config.out else default_out_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / LOG_FILE, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    threads = torch.get_num_threads()
    # one training job at a time on tiny models: intra-op threads cost more than they give
    torch.set_num_threads(1)
    try:
        for note in notes:
            log.warning("%s", note)
        return _run(config, out_dir, progress, notes)
    finally:
        torch.set_num_threads(threads)
        log.removeHandler(handler)
        handler.close()


def build_learning(config: Config) -> Learning:
    """The run's learning side, rebuilt identically from the config alone (a resume rebuilds it): the task and
    its data, the partition, the seeded initial model, the trainer, the evaluator and the executor."""
    assert config.nodes is not None and config.batch_size is not None and config.lr is not None
    task = task_class(config.task)(task_options(config))
    data = task.load(config.data, config.seed)
    parts = partition(
        parse_partition(config.partition or "iid"),
        data.labels,
        len(data.train),
        config.nodes,
        stream(config.seed, "partition"),
        groups=data.users,
    )
    torch.manual_seed(stream_seed(config.seed, "model-init"))
    model = FlatModel(task.build_model(data))
    sgd = SGDSettings(config.batch_size, config.lr, config.momentum or 0.0, config.weight_decay)
    trainer = LocalTrainer(task, data, parts, sgd, config.seed, model)
    evaluator = Evaluator(task, data, model)
    settings = executor_settings(config)

    def spec() -> TrainerSpec:
        return TrainerSpec(type(task), task_options(config), shared_data(data), parts, sgd, config.seed)

    executor = make_executor(settings, trainer, evaluator, spec)
    if settings.kind != "inline":
        log.info("executor: %s", describe_executor(executor))
    return Learning(task, data, model, trainer, evaluator, executor)


def _run(config: Config, out_dir: Path, progress: ProgressFn | None, notes: list[str]) -> Results:
    wall_start = time.perf_counter()
    assert config.nodes is not None and config.batch_size is not None and config.lr is not None
    log.info("plexus %s: %s on %s, %d nodes, seed %d", __version__, config.algorithm, config.task,
             config.nodes, config.seed)
    spec = algorithm(config.algorithm)
    options = algorithm_options(config)
    learning = build_learning(config)
    try:
        return _run_built(config, out_dir, progress, notes, spec, options, learning, wall_start)
    finally:
        learning.executor.close()


def _run_built(config: Config, out_dir: Path, progress: ProgressFn | None, notes: list[str], spec: Algorithm,
               options: Any, learning: Learning, wall_start: float) -> Results:
    assert config.nodes is not None and config.batch_size is not None
    initial = learning.model.vector()
    profiles = build_profiles(config.nodes, config.seed, config.capacity_trace, config.latency_matrix,
                              config.latency_values)
    log.info("system: %s", profiles.description)
    if config.availability_trace:
        # loaded and checked now so that a bad trace fails fast
        from plexus.sim.traces.availability import build_availability

        availability = build_availability(config.availability_trace, config.nodes, config.seed)
        note = f"{availability.describe()}: not acted on (churn is not simulated yet); every node stays online"
        notes.append(note)
        log.warning("%s", note)
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
    network = Network(loop, upload, download, latency_fn)
    compute = ComputeModel(profiles.seconds_per_sample, config.batch_size, config.compute_factor,
                           per_step=config.compute_model == "per-step")
    peers = [PeerInfo(node_ids[i], float(profiles.upload_bps[i]), float(profiles.download_bps[i]))
             for i in range(config.nodes)]
    roster = roster_of(peers)  # every node's view starts from this one shared roster
    world = World(config.seed, loop, network, compute, learning.trainer, node_ids, config.nodes, initial)
    world.executor = learning.executor
    observer = make_observer(config, spec, options, loop, network, learning.evaluation, learning.task.metric,
                             world, progress)
    world.on_progress = observer.note_progress
    node_class = spec.node
    for _ in range(config.nodes):
        world.attach(lambda runtime: node_class(runtime, options), observer, View(roster))
    if spec.server is not None:
        # the server's view: every data node plus itself; the nodes' views stay server-free
        server_roster = roster_of([*peers, PeerInfo(SERVER_ID, config.server_bandwidth, config.server_bandwidth)])
        server = spec.server
        world.attach(lambda runtime: server(runtime, options), observer, View(server_roster))

    state = SimulationState(config=config, world=world, observer=observer, notes=notes,
                            until=config.duration if config.duration is not None else math.inf,
                            setup_wall_seconds=time.perf_counter() - wall_start)
    observer.start()
    observer.watch_stalls(stall_timeout(config, spec, options, notes))
    for node in world.nodes:
        node.start()
    return drive(state, learning, out_dir, progress)


def drive(state: SimulationState, learning: Learning, out_dir: Path, progress: ProgressFn | None) -> Results:
    """Run the event loop to its end (checkpointing as asked, see :mod:`plexus.sim.checkpoint`), then stop the
    nodes, evaluate the last models and write the results folder. A resumed run continues here."""
    config, world, observer = state.config, state.world, state.observer
    loop = world.loop
    loop_start = time.perf_counter()
    run_loop(state, learning, out_dir, progress)
    until = state.until
    stall = _stall(observer, loop, until)
    for node in world.nodes:
        node.stop()
    observer.finish()
    state.loop_wall_seconds += time.perf_counter() - loop_start
    loop_wall = state.loop_wall_seconds
    notes = state.notes
    executor = learning.executor

    wall = state.setup_wall_seconds + loop_wall
    spec = algorithm(config.algorithm)
    summary = summarise(config, learning.task, observer, world, learning.model.size, executor,
                        learning.evaluation)
    summary["traits"] = spec.traits.as_dict()
    summary["stalled"] = stall is not None
    if stall is not None:
        summary["stalled_at"] = stall
        message = (f"the run stalled at t={stall['time_s']:.1f}s (round {stall['round']}): {stall['reason']}; "
                   f"results up to then are kept")
        log.warning("%s", message)
        notes.append(message)
    if isinstance(observer, NodesObserver):
        summary["evaluated_nodes"] = len(observer.evaluated)
    summary["warnings"] = list(notes)
    summary.update(wall_seconds=wall, setup_wall_seconds=state.setup_wall_seconds, loop_wall_seconds=loop_wall)
    summary["executor"] = executor.name
    if state.resumed:
        summary["resumed"] = state.resumed
    work = executor.wall_seconds + learning.evaluation.wall_seconds
    summary["overhead_fraction"] = max(0.0, 1.0 - work / loop_wall) if loop_wall > 0 else 0.0
    results = Results(out_dir, summary)
    results.metrics = observer.rows
    results.rounds = observer.round_rows
    metric = learning.task.metric
    metric_columns = ["time_s", "round", metric, f"{metric}_std", "loss", "bytes_total",
                      "messages_total", "train_seconds_total"]
    results.write(config.to_toml(), metric_columns)
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


def stall_timeout(config: Config, spec: Algorithm, options: Any, notes: list[str]) -> float:
    """The watchdog's timeout: ``stall_timeout``, but never under three periods of an algorithm without rounds
    (a gossip node may legitimately train nothing for a period or two)."""
    timeout = config.stall_timeout
    if spec.traits.clock == "periods" and spec.period is not None:
        floor = 3 * spec.period(options)
        if timeout < floor:
            note = (f"stall_timeout = {timeout:g}s is shorter than three of {spec.name}'s periods; "
                    f"using {floor:g}s")
            notes.append(note)
            log.warning("%s", note)
            timeout = floor
    return timeout


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
        model_of=lambda index: world.nodes[index].current_model(),
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
    evaluator: Any,
) -> dict[str, Any]:
    metric = task.metric
    final = observer.rows[-1][metric] if observer.rows else math.nan
    best = observer.best(task.higher_is_better)
    summary: dict[str, Any] = {
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
        "wall_eval_seconds": evaluator.wall_seconds,
        "counters": dict(sorted(observer.counters.items())),
        "rejections": dict(sorted(observer.rejections.items())),
        "messages_lost": dict(sorted(world.messages_lost.items())),
        "plexus_version": __version__,
    }
    return summary

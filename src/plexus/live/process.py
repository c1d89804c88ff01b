"""One live participant per process: ``plexus node`` and ``plexus observe``.

``plexus node`` loads the run's config (the same TOML as ``plexus simulate``), its key and the peers file, keeps
only its own shard of the data, listens, waits for the start (see the peers file's ``start``), runs its node until
its stop condition, the observer's stop, or SIGINT/SIGTERM (which announce a leave when the algorithm supports
it), then saves its state, sends its final report and exits. Its state folder (``--state``, default
``plexus-node-<id>``) holds ``state.json`` + ``model.npy`` (restart from them: the same command resumes),
``events.csv``, ``node.log`` and, at exit, ``node-summary.json``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch

from plexus.config import Config, resolve
from plexus.errors import ConfigError
from plexus.live.experiment import check_device, prepare
from plexus.live.keys import read_key
from plexus.live.node import build_runtime, check_run, live_options, role_of, serve
from plexus.live.peers import read_peers
from plexus.live.wire import parse_address
from plexus.protocol.registry import algorithm

log = logging.getLogger("plexus.live")
SUMMARY_FILE = "node-summary.json"


def _address(text: str, flag: str) -> tuple[str, int]:
    try:
        return parse_address(text, flag)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("plexus")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def run_node(config: Config, key: str, listen: str, peers_path: str, state: str | None = None,
             device: str = "cpu", threads: int = 1) -> int:
    """Run one node until it stops; returns the exit status (0 stopped, 1 failed)."""
    notes: list[str] = []
    config = resolve(config, notes)
    spec = algorithm(config.algorithm)
    peers = read_peers(peers_path)
    check_run(config, spec, peers)
    identity = read_key(key)
    role = role_of(identity.node_id, peers, spec)
    if role.kind == "observer":
        raise ConfigError(f"{key} is the run's observer key: run it with plexus observe")
    host, port = _address(listen, "--listen")
    check_device(device)
    state_dir = Path(state) if state else Path(f"plexus-node-{identity.hex[:8]}")
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to(state_dir / "node.log")
    for note in notes:
        log.warning("%s", note)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        experiment = prepare(config)
        if role.kind == "node":
            experiment.keep_only(role.index)
        trainer = experiment.trainer(device)
        options = live_options(config, spec, peers)
        return asyncio.run(_serve_node(config, spec, options, experiment, identity, peers, trainer, host, port,
                                       state_dir))
    finally:
        torch.set_num_threads(previous_threads)
        logging.getLogger("plexus").removeHandler(handler)
        handler.close()


async def _serve_node(config: Config, spec: Any, options: Any, experiment: Any, identity: Any, peers: Any,
                      trainer: Any, host: str, port: int, state_dir: Path) -> int:
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plexus-train")
    runtime = build_runtime(config=config, spec=spec, options=options, experiment=experiment, identity=identity,
                            peers=peers, trainer=trainer, executor=executor, state_dir=state_dir,
                            events_path=state_dir / "events.csv")
    try:
        bound = await runtime.open(host, port)
    except OSError as error:
        raise ConfigError(f"--listen {host}:{port}: cannot listen there: {error.strerror or error}") from None
    log.info("%s listening on %s:%d (%s, network %s)", runtime.label, bound[0], bound[1], spec.name, peers.network)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runtime.request_stop, f"{signal.Signals(signum).name} received", True)
    saved = runtime.load_saved_state()
    try:
        await serve(runtime, peers.start, saved)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        summary = runtime.summary()
        summary["finished_at"] = time.time()
        (state_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    log.info("%s stopped: %s", runtime.label, runtime.stop_reason)
    return 1 if runtime.status == "failed" else 0


def run_observer(config: Config, key: str, listen: str, peers_path: str, out: str, timeout: float = 86400.0,
                 ready_timeout: float = 3600.0, on_row: Any = None) -> Any:
    """``plexus observe``: evaluate and stop a live run whose nodes run elsewhere; writes its results folder."""
    from plexus.learning.params import FlatModel
    from plexus.learning.trainer import Evaluator
    from plexus.live.observer import ObserverService
    from plexus.live.results import live_summary, write_results
    from plexus.sim.observer import evaluated_nodes

    notes: list[str] = []
    config = resolve(config, notes)
    spec = algorithm(config.algorithm)
    peers = read_peers(peers_path)
    check_run(config, spec, peers)
    identity = read_key(key)
    if peers.observer is None or peers.observer.node_id != identity.node_id:
        raise ConfigError(f"{key} is not the [observer] of {peers_path}")
    host, port = _address(listen, "--listen")
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"results folder {out_dir} already exists and is not empty; choose another (--out)")
    out_dir.mkdir(parents=True, exist_ok=True)
    experiment = prepare(config)
    evaluator = Evaluator(experiment.task, experiment.data, FlatModel(experiment.task.build_model(experiment.data)))
    assert config.nodes is not None

    async def main() -> Any:
        started = time.perf_counter()
        observer = ObserverService(
            identity=identity, peers=peers, evaluate=evaluator.evaluate, metric=experiment.task.metric,
            evaluation=spec.traits.evaluation, parameters=experiment.parameters, rounds=config.rounds,
            duration=config.duration, eval_every=int(config.eval_every or 1),
            evaluated=evaluated_nodes(config.nodes, config.eval_nodes, config.seed),
            stall_timeout=config.stall_timeout, events_path=str(out_dir / "events.csv"), on_row=on_row,
            extra_ids={peers.server.node_id: "server"} if peers.server is not None else None)
        await observer.open(host, port)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, observer.stop, f"the observer received {signal.Signals(signum).name}")
        deadline = time.monotonic() + ready_timeout
        if peers.start == "observer":
            while len(observer.ready) < len(observer.members) and not observer.stopping.is_set():
                if time.monotonic() > deadline:
                    raise ConfigError(f"only {len(observer.ready)} of {len(observer.members)} participants were "
                                      f"ready within {ready_timeout:g}s")
                await asyncio.sleep(0.2)
            observer.start_run(1.0)
        else:
            origin = time.time() if peers.start == "now" else float(peers.start)
            observer.origin = origin
            observer.started.set()
        try:
            await asyncio.wait_for(observer.stopping.wait(), timeout)
        except TimeoutError:
            observer.stop(f"the observer's time limit of {timeout:g}s was reached")
        try:
            await asyncio.wait_for(observer.everyone_final.wait(), 30.0)
        except TimeoutError:
            pass
        await observer.close()
        summary = live_summary(config, spec, observer, experiment.task.higher_is_better,
                               [p.node_id for p in peers.nodes], notes, time.perf_counter() - started)
        return write_results(out_dir, config, summary, observer)

    return asyncio.run(main())

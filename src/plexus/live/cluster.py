"""Several live nodes and their observer in one process, on one event loop, over real loopback sockets.

Every node has its own key, transport, listening socket and runtime; they share the process's trainer (one job at
a time on a worker thread) instead of each loading the task. It is the quickest way to run the live stack end to
end: the tests and the conformance check use it; ``plexus launch`` runs the same pieces as one process per node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from plexus.config import Config, resolve
from plexus.learning.params import FlatModel
from plexus.learning.trainer import Evaluator
from plexus.live.experiment import prepare
from plexus.live.keys import Identity
from plexus.live.node import build_runtime, check_run, live_options, serve
from plexus.live.observer import ObserverService
from plexus.live.peers import Peer, PeersFile
from plexus.live.results import live_summary, write_results
from plexus.live.runtime import LiveRuntime
from plexus.live.transport import Limits
from plexus.metrics.results import Results
from plexus.protocol.registry import algorithm
from plexus.sim.observer import evaluated_nodes
from plexus.sim.profiles import build_profiles


async def run_cluster(
    config: Config,
    out: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    limits: Limits | None = None,
    timeout: float = 300.0,
    advertise_profiles: bool = True,
    hooks: dict[str, Any] | None = None,
) -> Results:
    """Run ``config`` live with every node in this process; returns (and, with ``out``, writes) its results.

    ``advertise_profiles``: nodes advertise the simulator's synthetic bandwidths for the same seed (so Plexus picks
    aggregators by the same rule); otherwise every node advertises infinite capacities. ``hooks`` (tests):
    ``runtimes`` receives the list of runtimes once they are open."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # intra-op threads would fight the event loop for the cores
    try:
        return await _run_cluster(config, out, host, limits, timeout, advertise_profiles, hooks)
    finally:
        torch.set_num_threads(threads)


async def _run_cluster(config: Config, out: str | Path | None, host: str, limits: Limits | None, timeout: float,
                       advertise_profiles: bool, hooks: dict[str, Any] | None) -> Results:
    wall_start = time.perf_counter()
    notes: list[str] = []
    config = resolve(config, notes)
    spec = algorithm(config.algorithm)
    assert config.nodes is not None
    experiment = prepare(config)
    trainer = experiment.trainer()
    evaluator = Evaluator(experiment.task, experiment.data, FlatModel(experiment.task.build_model(experiment.data)))
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="plexus-train")
    identities = [Identity.generate() for _ in range(config.nodes)]
    server_identity = Identity.generate() if spec.server is not None else None
    observer_identity = Identity.generate()
    if advertise_profiles:
        profiles = build_profiles(config.nodes, config.seed)
        capacities = [(float(profiles.upload_bps[i]), float(profiles.download_bps[i])) for i in range(config.nodes)]
    else:
        capacities = [(math.inf, math.inf)] * config.nodes
    # ports are known only once bound: build with placeholder addresses, then fill them in
    peers = PeersFile(
        f"cluster-{uuid.uuid4().hex[:12]}",
        [Peer(identity.node_id, host, 0, *capacities[i]) for i, identity in enumerate(identities)],
        Peer(observer_identity.node_id, host, 0),
        "observer",
        server=Peer(server_identity.node_id, host, 0, config.server_bandwidth, config.server_bandwidth)
        if server_identity is not None else None,
    )
    check_run(config, spec, peers)
    options = live_options(config, spec, peers)
    observer = ObserverService(
        identity=observer_identity, peers=peers, evaluate=evaluator.evaluate, metric=experiment.task.metric,
        evaluation=spec.traits.evaluation, parameters=experiment.parameters, rounds=config.rounds,
        duration=config.duration, eval_every=int(config.eval_every or 1),
        evaluated=evaluated_nodes(config.nodes, config.eval_nodes, config.seed),
        stall_timeout=config.stall_timeout, limits=limits,
        extra_ids={server_identity.node_id: "server"} if server_identity is not None else None,
    )
    runtimes: list[LiveRuntime] = []
    for identity in [*identities, *([server_identity] if server_identity is not None else [])]:
        runtimes.append(build_runtime(config=config, spec=spec, options=options, experiment=experiment,
                                      identity=identity, peers=peers, trainer=trainer, executor=executor,
                                      limits=limits))
    try:
        bound = await observer.open(host, 0)
        table = {observer_identity.node_id: bound}
        for runtime in runtimes:
            table[runtime.node_id] = await runtime.open(host, 0)
        for transport in [observer.transport, *(runtime.transport for runtime in runtimes)]:
            transport.addresses.update(table)
        if hooks and "runtimes" in hooks:
            hooks["runtimes"](runtimes)
        tasks = [asyncio.ensure_future(serve(runtime, "observer", None)) for runtime in runtimes]
        deadline = time.monotonic() + timeout
        while len(observer.ready) < len(runtimes) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        observer.start_run(0.05)
        nodes_done = asyncio.ensure_future(asyncio.gather(*(r.finished.wait() for r in runtimes)))
        stop_wait = asyncio.ensure_future(observer.stopping.wait())
        await asyncio.wait([nodes_done, stop_wait], timeout=max(0.0, deadline - time.monotonic()),
                           return_when=asyncio.FIRST_COMPLETED)
        if not observer.stopping.is_set():
            observer.stop("every node stopped" if nodes_done.done() else f"time limit of {timeout:g}s reached")
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30.0)
        stop_wait.cancel()
        nodes_done.cancel()
        try:
            await asyncio.wait_for(observer.everyone_final.wait(), 5.0)
        except TimeoutError:
            pass
        await observer.drain()
    finally:
        for runtime in runtimes:
            if not runtime.finished.is_set():
                runtime.request_stop("the cluster is closing")
            await runtime.transport.close()
        await observer.close()
        executor.shutdown(wait=True, cancel_futures=True)
    summary = live_summary(config, spec, observer, experiment.task.higher_is_better,
                           [r.node_id for r in runtimes], notes, time.perf_counter() - wall_start,
                           extra={"in_process": True})
    if out is None:
        observer.flush()
        results = Results(Path("."), summary)
        results.metrics = observer.rows
        results.rounds = observer.round_rows
        return results
    return write_results(Path(out), config, summary, observer)

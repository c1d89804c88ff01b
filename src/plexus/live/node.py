"""Building a live node from a config, a key and a peers file, and running it from start to stop.

Shared by ``plexus node`` (one node per process), ``plexus launch`` (which starts such processes) and the in-process
cluster of the tests (several nodes on one event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plexus.config import Config
from plexus.errors import ConfigError
from plexus.live.control import StatusReport
from plexus.live.experiment import Experiment
from plexus.live.keys import Identity
from plexus.live.peers import PeersFile
from plexus.live.runtime import LiveRuntime
from plexus.live.state import NodeState
from plexus.live.transport import Limits
from plexus.protocol.options import build
from plexus.protocol.registry import Algorithm
from plexus.protocol.view import View, roster_of
from plexus.rng import stream
from plexus.sim.observer import evaluated_nodes

log = logging.getLogger("plexus.live")


@dataclass(frozen=True)
class Role:
    """What a key is in a run: a data node (its index in the peers file), the server, or the observer."""

    kind: str  # "node", "server" or "observer"
    index: int


def role_of(node_id: bytes, peers: PeersFile, spec: Algorithm | None = None) -> Role:
    index = peers.index_of(node_id)
    if index is not None:
        return Role("node", index)
    if peers.server is not None and node_id == peers.server.node_id:
        if spec is not None and spec.server is None:
            raise ConfigError(f"{peers.source}: this key is the [server], but {spec.name} has no server")
        return Role("server", len(peers.nodes))
    if peers.observer is not None and node_id == peers.observer.node_id:
        return Role("observer", -1)
    raise ConfigError(f"{peers.source}: this node's id {node_id.hex()[:16]}... is not listed (as a [[node]], "
                      "the [server] or the [observer])")


def check_run(config: Config, spec: Algorithm, peers: PeersFile) -> None:
    """The config and the peers file describe the same run."""
    if config.nodes != len(peers.nodes):
        raise ConfigError(f"the config has nodes = {config.nodes} but {peers.source} lists {len(peers.nodes)} nodes")
    if spec.server is not None and peers.server is None:
        raise ConfigError(f"{spec.name} needs a server: add a [server] table (id, address) to {peers.source}")


def live_options(config: Config, spec: Algorithm, peers: PeersFile) -> Any:
    """The algorithm's options for a live run: as in a simulation, plus the server's id when there is one."""
    experiment = {name: getattr(config, name) for name in config.field_names()}
    if peers.server is not None:
        experiment["server_id"] = peers.server.node_id.hex()
    return build(spec.options, config.protocol, experiment, source=f"algorithm {config.algorithm}")


def build_runtime(
    *,
    config: Config,
    spec: Algorithm,
    options: Any,
    experiment: Experiment,
    identity: Identity,
    peers: PeersFile,
    trainer: Any,
    executor: concurrent.futures.Executor,
    limits: Limits | None = None,
    state_dir: str | Path | None = None,
    events_path: str | Path | None = None,
) -> LiveRuntime:
    """A runtime with its node attached (not yet open)."""
    role = role_of(identity.node_id, peers, spec)
    if role.kind == "observer":
        raise ConfigError("this key is the run's observer; run it with plexus observe")
    infos = [peer.info for peer in peers.nodes]
    if role.kind == "server":
        assert peers.server is not None
        view = View(roster_of([*infos, peers.server.info]))  # the server knows every node; nodes do not know it
        local_samples = 0
    else:
        view = View(roster_of(infos))
        local_samples = int(experiment.parts[role.index].size)
    assert config.nodes is not None
    reports_models = spec.traits.evaluation == "nodes" and role.kind == "node" and \
        role.index in set(evaluated_nodes(config.nodes, config.eval_nodes, config.seed))
    runtime = LiveRuntime(
        identity=identity,
        index=role.index,
        view=view,
        network=peers.network,
        addresses=peers.addresses(),
        spec=spec,
        options=options,
        initial=experiment.initial,
        local_samples=local_samples,
        rng=stream(config.seed, "node-rng", role.index),
        trainer=trainer if role.kind == "node" else _NoTraining(),
        executor=executor,
        limits=limits,
        observer=peers.observer.node_id if peers.observer is not None else None,
        rounds=config.rounds,
        duration=config.duration,
        eval_every=int(config.eval_every or 1),
        reports_models=reports_models,
        state_dir=state_dir,
        events_path=events_path,
    )
    factory = spec.server if role.kind == "server" else spec.node
    assert factory is not None
    runtime.attach(factory(runtime, options))
    return runtime


class _NoTraining:
    def run(self, job: Any) -> Any:
        raise RuntimeError("a participant without data (a server) cannot train")


async def announce_ready(runtime: LiveRuntime, timeout: float = 120.0) -> None:
    """Tell the observer this node listens, until it acknowledges (it may start after the node)."""
    deadline = time.monotonic() + timeout
    while not runtime.started.is_set() and not runtime.finished.is_set():
        if await runtime.report_and_wait(StatusReport(runtime.now(), "ready", ""), timeout=5.0):
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"{runtime.label}: the observer did not answer within {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def serve(runtime: LiveRuntime, start: str | float, state: NodeState | None,
                start_timeout: float = 600.0) -> None:
    """Run an opened runtime from its start to its stop (``finished``), then shut it down.

    ``start``: ``"now"``, ``"observer"`` (wait for its StartRun) or UNIX seconds (the run's origin)."""
    if start == "observer":
        await announce_ready(runtime)
        try:
            await asyncio.wait_for(_first(runtime.started.wait(), runtime.finished.wait()), start_timeout)
        except TimeoutError:
            runtime.request_stop(f"the observer did not start the run within {start_timeout:.0f}s")
    elif start == "now":
        runtime.begin(time.time(), state)
    else:
        origin = float(start)
        wait = origin - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        runtime.begin(origin, state)
    await runtime.finished.wait()
    await runtime.shutdown()


async def _first(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

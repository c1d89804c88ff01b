"""``plexus launch``: N node processes on this machine's loopback, an observer, one results folder.

The launcher is a convenience for experiments, not part of the protocol: it makes a key per node (and for the
observer and, for FedAvg, the server), picks free ports, writes the run's ``run.toml`` (the resolved config) and
``peers.toml`` (``start = "observer"``), starts one ``plexus node`` process per participant, runs the observer
in its own event loop, and when the run is over gathers everything into a results folder in the simulator's
format (see :mod:`plexus.live.results`)::

    OUT/config.toml metrics.csv rounds.csv summary.json events.csv run.log   # as a simulation, plus events.csv
    OUT/run.toml peers.toml observer.key                                    # the run's inputs
    OUT/nodes/NN/  node.key node.key.pub state.json model.npy events.csv node.log node-summary.json

The nodes advertise the bandwidths a simulation of the same config would give them (``capacity_trace``, or the
synthetic default for the seed), so Plexus picks aggregators by the same rule; the simulator's latency, compute
and availability settings are not emulated and are reported as having no effect.

A :class:`Launcher` can also be driven from Python: ``kill(i)`` and ``restart(i)``
inject faults while the run goes on (the fault tests do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from plexus.config import Config, resolve
from plexus.errors import ConfigError, PlexusError
from plexus.learning.trainer import Evaluator
from plexus.live.events import EVENTS_FILE, merge_events
from plexus.live.experiment import check_device, prepare
from plexus.live.keys import Identity, write_key
from plexus.live.node import check_run
from plexus.live.observer import ObserverService
from plexus.live.peers import Peer, PeersFile
from plexus.live.results import live_summary, write_results
from plexus.metrics.results import LOG_FILE, Results
from plexus.protocol.registry import algorithm
from plexus.sim.observer import evaluated_nodes
from plexus.sim.profiles import build_profiles

log = logging.getLogger("plexus.live")


def free_ports(host: str, count: int) -> list[int]:
    """``count`` ports free on ``host`` right now (bound together, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LaunchError(PlexusError):
    """A launched run could not start (a node process died or never became ready)."""


class Launcher:
    """One launched run (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        out: str | Path,
        *,
        host: str = "127.0.0.1",
        device: str = "cpu",
        ready_timeout: float = 300.0,
        timeout: float = 3600.0,
        stop_grace: float = 20.0,
        python: str = sys.executable,
        node_args: list[str] | None = None,
    ) -> None:
        self.notes: list[str] = []
        self.config = resolve(config, self.notes)
        self.notes.extend(live_no_effect(self.config))
        for note in self.notes:
            log.warning("%s", note)
        self.spec = algorithm(self.config.algorithm)
        self.out = Path(out)
        self.host = host
        self.device = check_device(device)
        self.ready_timeout = ready_timeout
        self.timeout = timeout
        self.stop_grace = stop_grace
        self.python = python
        self.node_args = list(node_args or [])
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.exit_codes: dict[str, list[int]] = {}
        self.commands: dict[str, list[str]] = {}
        self.observer: ObserverService | None = None
        self.peers: PeersFile | None = None
        self.labels: list[str] = []

    # ------------------------------------------------------------------------------------------- set-up
    def _prepare_folder(self) -> PeersFile:
        config = self.config
        assert config.nodes is not None
        out = self.out
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"results folder {out} already exists and is not empty; choose another (-o)")
        (out / "nodes").mkdir(parents=True, exist_ok=True)
        participants = config.nodes + (1 if self.spec.server is not None else 0)
        ports = free_ports(self.host, participants + 1)
        # nodes advertise the capacities a simulation of this config would give them (trace or synthetic)
        profiles = build_profiles(config.nodes, config.seed, config.capacity_trace)
        nodes = []
        for i in range(config.nodes):
            folder = out / "nodes" / f"{i:02d}"
            folder.mkdir()
            identity = Identity.generate()
            write_key(folder / "node.key", identity)
            nodes.append(Peer(identity.node_id, self.host, ports[i], float(profiles.upload_bps[i]),
                              float(profiles.download_bps[i])))
        server = None
        if self.spec.server is not None:
            folder = out / "nodes" / "server"
            folder.mkdir()
            identity = Identity.generate()
            write_key(folder / "node.key", identity)
            server = Peer(identity.node_id, self.host, ports[config.nodes], config.server_bandwidth,
                          config.server_bandwidth)
        observer_identity = Identity.generate()
        write_key(out / "observer.key", observer_identity)
        self.observer_identity = observer_identity
        peers = PeersFile(f"launch-{uuid.uuid4().hex[:12]}", nodes,
                          Peer(observer_identity.node_id, self.host, ports[-1]), "observer", server=server)
        check_run(config, self.spec, peers)
        peers.write(out / "peers.toml")
        (out / "run.toml").write_text(config.to_toml(), encoding="utf-8")
        self.labels = [f"{i:02d}" for i in range(config.nodes)] + (["server"] if server is not None else [])
        for label, peer in zip(self.labels, [*nodes, *([server] if server is not None else [])], strict=True):
            folder = out / "nodes" / label
            self.commands[label] = [
                self.python, "-m", "plexus.cli", "node", "--config", str(out / "run.toml"),
                "--key", str(folder / "node.key"), "--listen", peer.address, "--peers", str(out / "peers.toml"),
                "--state", str(folder), "--device", self.device, *self.node_args,
            ]
        return peers

    def _spawn(self, label: str) -> None:
        folder = self.out / "nodes" / label
        with (folder / "stderr.log").open("ab") as stderr:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.processes[label] = subprocess.Popen(self.commands[label], stdin=subprocess.DEVNULL,
                                                     stdout=stderr, stderr=stderr, env=env,
                                                     start_new_session=True)

    # ------------------------------------------------------------------------------------------- faults
    def pid(self, label: str) -> int:
        return self.processes[label].pid

    def alive(self, label: str) -> bool:
        process = self.processes.get(label)
        return process is not None and process.poll() is None

    def kill(self, label: str, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` (default SIGKILL: a crash) to a node process."""
        process = self.processes[label]
        if process.poll() is None:
            process.send_signal(signum)
            log.info("launcher: sent %s to node %s (pid %d)", signal.Signals(signum).name, label, process.pid)

    async def wait_exit(self, label: str, timeout: float = 30.0) -> int | None:
        process = self.processes[label]
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        code = process.poll()
        if code is not None:
            self.exit_codes.setdefault(label, []).append(code)
        return code

    def restart(self, label: str) -> None:
        """Start a node process again with the same key, address and state folder (it resumes)."""
        if self.alive(label):
            raise RuntimeError(f"node {label} is still running")
        self._spawn(label)
        log.info("launcher: restarted node %s (pid %d)", label, self.processes[label].pid)

    def label_of(self, node_id: bytes) -> str | None:
        assert self.peers is not None
        index = self.peers.index_of(node_id)
        return None if index is None else self.labels[index]

    # ------------------------------------------------------------------------------------------- the run
    async def run(self, script: Callable[[Launcher], Awaitable[Any]] | None = None,
                  on_row: Callable[[dict[str, Any]], None] | None = None) -> Results:
        """Start everything, run until the stop condition, the time limit or the end of ``script``'s effects,
        then gather the results folder."""
        wall_start = time.perf_counter()
        peers = self.peers = self._prepare_folder()
        handler = logging.FileHandler(self.out / LOG_FILE, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger("plexus")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        config = self.config
        assert config.nodes is not None
        experiment = prepare(config)
        evaluator = Evaluator(experiment.task, experiment.data, experiment.model)
        observer = self.observer = ObserverService(
            identity=self.observer_identity, peers=peers, evaluate=evaluator.evaluate,
            metric=experiment.task.metric, evaluation=self.spec.traits.evaluation,
            parameters=experiment.parameters, rounds=config.rounds, duration=config.duration,
            eval_every=int(config.eval_every or 1),
            evaluated=evaluated_nodes(config.nodes, config.eval_nodes, config.seed),
            stall_timeout=config.stall_timeout, events_path=str(self.out / "observer-events.csv"), on_row=on_row,
            extra_ids={peers.server.node_id: "server"} if peers.server is not None else None,
        )
        script_task: asyncio.Task[Any] | None = None
        try:
            log.info("launch: %s on %s, %d nodes, seed %d, network %s, results in %s", config.algorithm,
                     config.task, config.nodes, config.seed, peers.network, self.out)
            assert peers.observer is not None
            await observer.open(self.host, peers.observer.port)
            for label in self.labels:
                self._spawn(label)
            await self._wait_ready(observer)
            observer.start_run(0.5)
            if script is not None:
                script_task = asyncio.ensure_future(script(self))
            await self._wait_end(observer, script_task)
            if not observer.stopping.is_set():
                observer.stop("every node process exited" if not any(map(self.alive, self.labels))
                              else f"time limit of {self.timeout:g}s reached")
            await self._stop_processes()
            try:
                await asyncio.wait_for(observer.everyone_final.wait(), 2.0)
            except TimeoutError:
                pass
            await observer.drain()
        finally:
            if script_task is not None and not script_task.done():
                script_task.cancel()
            for label in self.labels:
                if self.alive(label):
                    self.kill(label)
                    await self.wait_exit(label, 5.0)
            await observer.close()
        summary = live_summary(config, self.spec, observer, experiment.task.higher_is_better,
                               [p.node_id for p in peers.nodes], self.notes, time.perf_counter() - wall_start,
                               extra={"exit_codes": self.exit_codes, "device": self.device,
                                      "processes": len(self.labels)})
        results = write_results(self.out, config, summary, observer)
        merge_events([self.out / "nodes" / label / EVENTS_FILE for label in self.labels]
                     + [self.out / "observer-events.csv"], self.out / EVENTS_FILE)
        (self.out / "observer-events.csv").unlink(missing_ok=True)
        logger.removeHandler(handler)
        handler.close()
        if script_task is not None and script_task.done() and not script_task.cancelled() \
                and script_task.exception() is not None:
            raise script_task.exception()  # type: ignore[misc]
        return results

    async def _wait_ready(self, observer: ObserverService) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while len(observer.ready) < len(self.labels):
            for label in self.labels:
                process = self.processes[label]
                if process.poll() is not None:
                    raise LaunchError(f"node {label} exited with status {process.returncode} before the start: "
                                      f"{self._tail(label)}")
            if time.monotonic() > deadline:
                missing = sorted(set(observer.members.values()) - observer.ready)
                raise LaunchError(f"nodes {', '.join(missing[:10])} were not ready within {self.ready_timeout:g}s")
            await asyncio.sleep(0.1)

    async def _wait_end(self, observer: ObserverService, script_task: asyncio.Task[Any] | None) -> None:
        deadline = time.monotonic() + self.timeout
        while not observer.stopping.is_set() and time.monotonic() < deadline:
            if script_task is not None and script_task.done() and script_task.exception() is not None:
                return
            scripted = script_task is not None and not script_task.done()
            if not scripted and not any(map(self.alive, self.labels)):
                return
            await asyncio.sleep(0.1)

    async def _stop_processes(self) -> None:
        deadline = time.monotonic() + self.stop_grace
        while any(map(self.alive, self.labels)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for label in self.labels:
            if self.alive(label):
                self.kill(label, signal.SIGTERM)
        for label in self.labels:
            code = await self.wait_exit(label, 5.0)
            if code is None:
                self.kill(label)
                await self.wait_exit(label, 5.0)

    def _tail(self, label: str) -> str:
        path = self.out / "nodes" / label / "stderr.log"
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        return lines[-1] if lines else "(no output)"


def live_no_effect(config: Config) -> list[str]:
    """The simulator's system settings that a live run on this machine does not emulate (reported as warnings)."""
    defaults = Config()
    notes = []
    for name, why in (("latency_matrix", "live messages take the network's real latency"),
                      ("compute_model", "live training takes the time it takes"),
                      ("compute_factor", "live training takes the time it takes"),
                      ("availability_trace", "live nodes are online until stopped or killed"),
                      ("churn", "live nodes crash or leave when they are killed or stopped"),
                      ("link_mbps", "live links have the speed the machine gives them"),
                      ("stragglers", "live links have the speed the machine gives them"),
                      ("region_links", "live links have the speed the machine gives them"),
                      ("sample_seconds", "live training takes the time it takes"),
                      ("executor", "each live node trains in its own process (launch --device says where)"),
                      ("workers", "each live node trains in its own process"),
                      ("device", "the simulator's batched executor's device; live nodes take launch --device"),
                      ("ray_address", "each live node trains in its own process"),
                      ("batch_models", "each live node trains in its own process"),
                      ("checkpoint_every", "live nodes save their own state as they work")):
        if getattr(config, name) != getattr(defaults, name):
            notes.append(f"{name} = {getattr(config, name)!r} has no effect on a live run: {why}")
    return notes


def launch(config: Config, out: str | Path, **kwargs: Any) -> Results:
    """Run a launched run to its end (``plexus launch``); keyword arguments go to :class:`Launcher`."""
    on_row = kwargs.pop("on_row", None)
    launcher = Launcher(config, out, **kwargs)
    return asyncio.run(launcher.run(on_row=on_row))

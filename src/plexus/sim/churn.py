"""Churn in the simulator: nodes crash, leave, join and come back, following an availability trace or a script.

**What each event does** (the runtime half of the contract in :mod:`plexus.protocol.node`):

- ``crash``: silent. The node goes offline at once: every transfer from or to it is aborted (the bytes it had not
  sent are not counted, and its peers' transmissions fail with ``PeerUnreachable``), its timers never fire again,
  its training jobs are dropped (their compute released) and its own futures never resolve; a message reaching it
  while it is offline is lost (``messages_lost``), as is one that was sent before it went down.
- ``leave``: graceful. The node's :meth:`~plexus.protocol.node.Node.leave` runs first (it may announce its
  departure; those small messages are on the wire before it goes), then it goes down exactly like a crash.
- ``join``: the node comes online. A node that never ran enters with :meth:`~plexus.protocol.node.Node.join`; a node
  that ran before either keeps its state (``rejoin = "keep"``, the default: the same object, whose
  :meth:`~plexus.protocol.node.Node.rejoin` restarts its work) or loses it (``rejoin = "lose"``: a fresh object
  built like the first one, seeded with a fresh view, entering with ``join``). events.csv names them ``join``,
  ``rejoin`` and ``rejoin-fresh``.

**Sources of events.**

- An availability trace (``--availability-trace``; :mod:`plexus.sim.traces.availability`): node i follows device
  i's online intervals. Nodes offline at time 0 enter when their first interval starts. A node going offline in
  the trace leaves gracefully (``offline = "leave"``, the default: a phone that stops being idle, charging and on
  Wi-Fi can say so) or crashes (``offline = "crash"``).
- A script: ``--churn modest-crash`` and ``--churn modest-join`` are MoDeST's two experiments (arXiv 2302.13837):
  *modest-crash*, 80 of 100 nodes crash, 5 every 60 s from 300 s; *modest-join*, 90 of 100 nodes start and the
  other 10 join, one every 60 s from 60 s. With n nodes the counts scale (0.8 n crash in batches of 0.05 n;
  0.1 n join), and any parameter can be changed: ``modest-crash:count=40,every=30``. A ``[churn]`` table in the
  config file describes any other script (see :func:`parse_churn`); ``--churn FILE.toml`` reads one from a file.

``crash_aggregator_every = N`` (a ``[churn]`` key, or ``--churn crash-aggregator:every=N``) targets the protocol
instead of the clock: the node that completes the aggregation of every N-th round (reports a global model of a
round that is a multiple of N) crashes at that instant, before its result leaves it; the report is discarded. It
measures what losing an aggregator costs (MoDeST and Plexus both stop there with one aggregator).

Which nodes a batch takes is drawn from the seeded stream ``(seed, "churn")`` among the nodes it can apply to
(online nodes for crash and leave; offline ones for join, those that never ran first), unless the step lists
``nodes``. A script and a trace may be combined: every event applies when it makes sense (a crash of an offline
node is skipped and counted as such). Servers (FedAvg's) never churn.

Everything is scheduled on the event loop, so a churn run is as deterministic as any other.
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plexus.errors import ConfigError
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.node import Node
from plexus.protocol.runtime import MetricsSink, Timer, TrainResult, Transmission
from plexus.protocol.view import Roster, View
from plexus.rng import stream
from plexus.sim.runtime import SimRuntime
from plexus.sim.traces.availability import AvailabilityTrace

EVENTS = ("crash", "leave", "join")
OFFLINE_MODES = ("leave", "crash")
REJOIN_MODES = ("keep", "lose")
SCENARIOS = ("modest-crash", "modest-join", "crash-aggregator")
_STEP_KEYS = {"event", "at", "every", "batch", "count", "nodes"}
_TABLE_KEYS = {"scenario", "offline", "rejoin", "initially_offline", "events", "crash_aggregator_every"}


# ------------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Step:
    """A scripted batch of events: ``batch`` nodes every ``every`` seconds from ``at``, ``count`` in all (or the
    listed ``nodes``, in batches, in that order)."""

    event: str
    at: float
    every: float = 0.0
    batch: int = 1
    count: int = 1
    nodes: tuple[int, ...] | None = None

    def times(self) -> list[tuple[float, int]]:
        """(time, how many nodes) of each batch."""
        total = len(self.nodes) if self.nodes is not None else self.count
        out = []
        done = 0
        k = 0
        while done < total:
            take = min(self.batch, total - done)
            out.append((self.at + k * self.every, take))
            done += take
            k += 1
        return out


@dataclass(frozen=True)
class ChurnPlan:
    """A resolved churn description (the normalised ``[churn]`` table is :meth:`as_table`)."""

    scenario: str | None = None
    steps: tuple[Step, ...] = ()
    initially_offline: int | tuple[int, ...] = 0
    offline: str = "leave"
    rejoin: str = "keep"
    crash_aggregator_every: int = 0
    table: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [self.scenario or "custom"]
        for step in self.steps:
            total = len(step.nodes) if step.nodes is not None else step.count
            every = f" every {step.every:g}s" if step.every and total > step.batch else ""
            parts.append(f"{step.event} {total} ({step.batch} at a time{every} from {step.at:g}s)")
        if self.initially_offline:
            count = self.initially_offline if isinstance(self.initially_offline, int) else len(
                self.initially_offline)
            parts.append(f"{count} offline at start")
        if self.crash_aggregator_every:
            parts.append(f"the aggregator of every {self.crash_aggregator_every}th round crashes")
        parts.append(f"departures of a trace: {self.offline}; state on return: {self.rejoin}")
        return ", ".join(parts)


def scenario_table(name: str, nodes: int) -> dict[str, Any]:
    """The ``[churn]`` table of a named scenario for ``nodes`` nodes."""
    if name == "modest-crash":
        count = max(1, round(0.8 * nodes))
        return {"events": [{"event": "crash", "at": 300.0, "every": 60.0, "batch": max(1, round(0.05 * nodes)),
                            "count": count}]}
    if name == "modest-join":
        count = max(1, round(0.1 * nodes))
        return {"initially_offline": count,
                "events": [{"event": "join", "at": 60.0, "every": 60.0, "batch": 1, "count": count}]}
    if name == "crash-aggregator":
        return {"crash_aggregator_every": 10, "events": []}
    raise ConfigError(f"churn scenario {name!r} does not exist; choose {' or '.join(SCENARIOS)}, or describe one in "
                      f"a [churn] table")


def churn_table(value: Any, source: str = "churn") -> dict[str, Any] | None:
    """The ``churn`` setting as a table: None, a table, ``SCENARIO[:key=value,...]`` or a TOML file's path."""
    if value is None or value == "" or value == "none":
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f"{source}: churn = {value!r}: expected a scenario name, a TOML file or a [churn] table")
    text = value.strip()
    if text.endswith(".toml") or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{source}: churn file {path} does not exist")
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"churn file {path} is not valid TOML: {error}") from None
        table = document.get("churn", document)
        if not isinstance(table, dict):
            raise ConfigError(f"churn file {path}: [churn] must be a table")
        return dict(table)
    name, _, rest = text.partition(":")
    table: dict[str, Any] = {"scenario": name}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"{source}: churn parameter {item!r} must be key=value")
        table[key.strip()] = _number(raw.strip(), f"{source}: churn parameter {key.strip()}")
    return table


def _number(text: str, where: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_churn(table: Mapping[str, Any] | None, nodes: int, source: str = "[churn]") -> ChurnPlan | None:
    """Check a ``[churn]`` table and resolve it for ``nodes`` nodes; every problem is a ConfigError naming the key.

    Keys: ``scenario`` (``modest-crash`` or ``modest-join``: its steps come first; its one step's parameters ``at``,
    ``every``, ``batch``, ``count`` may be given next to it), ``offline`` (``leave`` or ``crash``: how a trace's
    departures happen), ``rejoin`` (``keep`` or ``lose``: state on return), ``initially_offline`` (a count, drawn
    seeded, or a list of node indices: nodes that start offline), and ``events``, a list of steps, each with
    ``event`` (``crash``, ``leave``, ``join``), ``at`` (seconds), ``every`` (seconds between batches), ``batch``
    (nodes per batch, default 1, or all the listed ``nodes``), ``count`` (nodes in all, default ``batch``) or
    ``nodes`` (a list of indices).
    """
    if table is None:
        return None
    unknown = set(table) - _TABLE_KEYS - (_STEP_KEYS - {"event", "nodes"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r} (known: "
                          f"{', '.join(sorted(_TABLE_KEYS | {'at', 'every', 'batch', 'count'}))})")
    scenario = table.get("scenario")
    steps: list[dict[str, Any]] = []
    initially: Any = table.get("initially_offline", 0)
    if scenario is not None:
        if not isinstance(scenario, str):
            raise ConfigError(f"{source}: scenario = {scenario!r} must be a name")
        base = scenario_table(scenario, nodes)
        steps = [dict(step) for step in base["events"]]
        overrides = {k: table[k] for k in ("at", "every", "batch", "count") if k in table}
        if scenario == "crash-aggregator":
            if set(overrides) - {"every"}:
                raise ConfigError(f"{source}: crash-aggregator takes every (rounds), not "
                                  f"{sorted(set(overrides) - {'every'})[0]}")
            if "every" in overrides and "crash_aggregator_every" not in table:
                table = {**table, "crash_aggregator_every": overrides.pop("every")}
            else:
                overrides.pop("every", None)
        elif steps:
            steps[0].update(overrides)
        if "initially_offline" not in table:
            initially = base.get("initially_offline", 0)
        if scenario == "modest-join" and "count" in overrides and "initially_offline" not in table:
            initially = overrides["count"]
    else:
        stray = [k for k in ("at", "every", "batch", "count") if k in table]
        if stray:
            raise ConfigError(f"{source}: {stray[0]} belongs to a step of events (or next to a scenario)")
    events = table.get("events", [])
    if not isinstance(events, list) or not all(isinstance(step, Mapping) for step in events):
        raise ConfigError(f"{source}: events must be a list of tables ([[churn.events]])")
    steps += [dict(step) for step in events]
    parsed = tuple(_step(step, nodes, f"{source} events[{i}]") for i, step in enumerate(steps))
    offline = table.get("offline", "leave")
    if offline not in OFFLINE_MODES:
        raise ConfigError(f"{source}: offline = {offline!r}: must be leave or crash")
    rejoin = table.get("rejoin", "keep")
    if rejoin not in REJOIN_MODES:
        raise ConfigError(f"{source}: rejoin = {rejoin!r}: must be keep or lose")
    every_round = table.get("crash_aggregator_every", base["crash_aggregator_every"] if scenario == "crash-aggregator"
                            else 0)
    if isinstance(every_round, bool) or not isinstance(every_round, (int, float)) or every_round != int(every_round) \
            or every_round < 0:
        raise ConfigError(f"{source}: crash_aggregator_every = {every_round!r}: a whole number of rounds (0: off)")
    if isinstance(initially, bool) or not isinstance(initially, (int, list)):
        raise ConfigError(f"{source}: initially_offline = {initially!r}: a number of nodes or a list of indices")
    if isinstance(initially, int):
        if not 0 <= initially < nodes:
            raise ConfigError(f"{source}: initially_offline = {initially}: must be between 0 and nodes - 1 = "
                              f"{nodes - 1} (someone must be there at the start)")
        offline_at_start: int | tuple[int, ...] = initially
    else:
        offline_at_start = tuple(_indices(initially, nodes, f"{source}: initially_offline"))
        if len(set(offline_at_start)) >= nodes:
            raise ConfigError(f"{source}: initially_offline lists every node (someone must be there at the start)")
    normalised = {key: value for key, value in table.items()}
    return ChurnPlan(scenario, parsed, offline_at_start, offline, rejoin, int(every_round), normalised)


def _indices(values: Any, nodes: int, where: str) -> list[int]:
    if not isinstance(values, list):
        raise ConfigError(f"{where} must be a list of node indices")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < nodes:
            raise ConfigError(f"{where}: {value!r} is not a node index (0 to {nodes - 1})")
        out.append(value)
    return out


def _step(raw: Mapping[str, Any], nodes: int, where: str) -> Step:
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_STEP_KEYS))})")
    event = raw.get("event")
    if event not in EVENTS:
        raise ConfigError(f"{where}: event = {event!r}: must be one of {', '.join(EVENTS)}")

    def number(key: str, default: float | None, minimum: float) -> float:
        value = raw.get(key, default)
        if value is None:
            raise ConfigError(f"{where}: {key} is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < minimum:
            raise ConfigError(f"{where}: {key} = {value!r}: must be a number >= {minimum:g}")
        return float(value)

    def count(key: str, default: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
            raise ConfigError(f"{where}: {key} = {value!r}: must be a whole number >= 1")
        return int(value)

    at = number("at", None, 0.0)
    every = number("every", 0.0, 0.0)
    listed = raw.get("nodes")
    chosen = tuple(_indices(listed, nodes, f"{where}: nodes")) if listed is not None else None
    batch = count("batch", len(chosen) if chosen else 1)  # listed nodes go together unless batched
    total = count("count", batch)
    if chosen is None and total > nodes:
        raise ConfigError(f"{where}: count = {total} exceeds nodes = {nodes}")
    if every == 0 and (len(chosen) if chosen is not None else total) > batch:
        raise ConfigError(f"{where}: more nodes than one batch needs every > 0 (seconds between batches)")
    return Step(event, at, every, batch, total, chosen)


# ------------------------------------------------------------------------------------------------ the runtime
class _DeadTimer:
    """What a node that is down gets from call_later: a timer that never fires."""

    def cancel(self) -> None:
        pass

    def cancelled(self) -> bool:
        return True

    def when(self) -> float:
        return math.inf


class ChurnRuntime(SimRuntime):
    """A simulated runtime whose node can go down: everything it started before is dead afterwards.

    Each time the node goes down its *incarnation* changes; timers, training jobs and transmissions remember the
    incarnation that started them and never complete into a later one (see :mod:`plexus.protocol.node`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alive = True
        self.incarnation = 0
        self._jobs_running: dict[int, Future[TrainResult]] = {}
        self._job_keys = 0
        self._reports = _Reports(self, self._metrics)
        # called with (index, round) before a global model is reported; True discards the report (the reporter
        # crashed on the spot)
        self.before_global_model: Callable[[int, int], bool] | None = None

    @property
    def metrics(self) -> MetricsSink:
        return self._reports

    def kill(self) -> None:
        """The node goes down: drop its training jobs (freeing its compute) and orphan everything else."""
        self.alive = False
        self.incarnation += 1
        running, self._jobs_running = self._jobs_running, {}
        for inner in running.values():
            inner.cancel()

    def revive(self) -> None:
        self.alive = True

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        if not self.alive:
            return _DeadTimer()
        return self.world.loop.call_later(delay, self._fire, self.incarnation, callback, args)

    def _fire(self, incarnation: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if incarnation == self.incarnation and self.alive:
            callback(*args)

    def send(self, peer: bytes, message: Message) -> Transmission:
        outer = Transmission()
        if not self.alive:
            return outer  # a node that is down sends nothing; the future never resolves
        inner = self.world.send(self.index, peer, message)
        incarnation = self.incarnation

        def forward(done: Future[None]) -> None:
            if done.cancelled() or incarnation != self.incarnation:
                return
            if done.failed():
                outer.mark_failed(done.exception())  # type: ignore[arg-type]
            else:
                outer.mark_delivered()

        def forward_sent(done: Future[None]) -> None:
            if not done.cancelled() and not done.failed() and incarnation == self.incarnation:
                outer.mark_sent()

        inner.sent.add_done_callback(forward_sent)
        inner.add_done_callback(forward)
        outer.on_cancel(inner.cancel)
        return outer

    def train(self, params: np.ndarray, steps: int) -> Future[TrainResult]:
        outer: Future[TrainResult] = Future()
        if not self.alive:
            return outer
        inner = super().train(params, steps)
        key = self._job_keys
        self._job_keys += 1
        self._jobs_running[key] = inner
        incarnation = self.incarnation

        def forward(done: Future[TrainResult]) -> None:
            self._jobs_running.pop(key, None)
            if done.cancelled() or incarnation != self.incarnation:
                return
            outer.set_result(done.result())

        inner.add_done_callback(forward)
        outer.on_cancel(inner.cancel)
        return outer


class _Reports(MetricsSink):
    """A node's metrics as seen through churn: a node that is down reports nothing (the code left of a callback
    that crashed it still runs to its end, as the rest of a killed process's last instruction would not)."""

    def __init__(self, runtime: ChurnRuntime, sink: MetricsSink) -> None:
        self.runtime = runtime
        self.sink = sink

    def global_model(self, round: int, params: np.ndarray) -> None:
        runtime = self.runtime
        if not runtime.alive:
            return
        hook = runtime.before_global_model
        if hook is not None and hook(runtime.index, round):
            return
        self.sink.global_model(round, params)

    def count(self, name: str, amount: int = 1) -> None:
        if self.runtime.alive:
            self.sink.count(name, amount)

    def rejected(self, reason: str, sender: bytes) -> None:
        if self.runtime.alive:
            self.sink.rejected(reason, sender)

    def round_duration(self, round: int, seconds: float, node: bytes | None = None) -> None:
        if self.runtime.alive:
            self.sink.round_duration(round, seconds, node)

    def aggregated(self, round: int, node: bytes, models: int, participants: Sequence[bytes]) -> None:
        if self.runtime.alive:
            self.sink.aggregated(round, node, models, participants)

    def event(self, node: bytes, name: str) -> None:
        if self.runtime.alive:
            self.sink.event(node, name)


# ------------------------------------------------------------------------------------------------ the driver
class Churn:
    """Applies a :class:`ChurnPlan` and/or an availability trace to a world (see the module docstring)."""

    def __init__(
        self,
        world: Any,
        plan: ChurnPlan | None,
        trace: AvailabilityTrace | None,
        seed: int,
        make_node: Callable[[SimRuntime], Node],
        fresh_view: Callable[[int], View],
        record: Callable[[float, int, str], None],
        on_change: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.world = world
        self.plan = plan or ChurnPlan()
        self.trace = trace
        self.rng = stream(seed, "churn")
        self.make_node = make_node
        self.fresh_view = fresh_view
        self.record = record
        self.on_change = on_change
        self.nodes = world.data_nodes
        self.ran = [False] * self.nodes  # whether the node ever started
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.online_count = self.online_at_start = 0
        self._aggregators_crashed: set[int] = set()

    # --------------------------------------------------------------------- start
    def initially_online(self) -> list[bool]:
        """Who is there at time 0: the trace's online devices, minus the script's ``initially_offline``."""
        online = [True] * self.nodes
        if self.trace is not None:
            online = [self.trace.is_online(i, 0.0) for i in range(self.nodes)]
        chosen = self.plan.initially_offline
        if isinstance(chosen, int):
            if chosen:
                candidates = [i for i in range(self.nodes) if online[i]]
                picked = self.rng.choice(len(candidates), size=min(chosen, len(candidates)), replace=False)
                for position in picked.tolist():
                    online[candidates[position]] = False
        else:
            for index in chosen:
                online[index] = False
        return online

    def install(self, online: Sequence[bool]) -> None:
        """Mark the initial state and schedule every event (call before the nodes start)."""
        world = self.world
        for index in range(self.nodes):
            if not online[index]:
                world.online[index] = False
                world.runtimes[index].kill()
            else:
                self.ran[index] = True
        self.online_count = self.online_at_start = sum(1 for i in range(self.nodes) if world.online[i])
        if self.plan.crash_aggregator_every:
            for runtime in world.runtimes[: self.nodes]:
                runtime.before_global_model = self._aggregator_done
        loop = world.loop
        for step in self.plan.steps:
            listed = list(step.nodes) if step.nodes is not None else None
            for when, take in step.times():
                chosen = None
                if listed is not None:
                    chosen, listed = listed[:take], listed[take:]
                loop.call_at(when, self._batch, step.event, take, chosen)
        if self.trace is not None:
            for index in range(self.nodes):
                self._schedule_trace(index, 0.0)

    # --------------------------------------------------------------------- scheduling
    def _schedule_trace(self, index: int, now: float) -> None:
        assert self.trace is not None
        change = self.trace.next_change(index, now)
        if math.isfinite(change):
            self.world.loop.call_at(max(change, now), self._trace_change, index)

    def _trace_change(self, index: int) -> None:
        assert self.trace is not None
        now = self.world.loop.now
        wanted = self.trace.is_online(index, now)
        if wanted and not self.world.online[index]:
            self.join(index)
        elif not wanted and self.world.online[index]:
            if self.plan.offline == "crash":
                self.crash(index)
            else:
                self.leave(index)
        self._schedule_trace(index, now)

    def _batch(self, event: str, take: int, chosen: list[int] | None) -> None:
        online = self.world.online
        if chosen is None:
            if event == "join":
                never = [i for i in range(self.nodes) if not online[i] and not self.ran[i]]
                again = [i for i in range(self.nodes) if not online[i] and self.ran[i]]
                chosen = self._draw(never, take)
                chosen += self._draw(again, take - len(chosen))
            else:
                chosen = self._draw([i for i in range(self.nodes) if online[i]], take)
            if len(chosen) < take:
                self.skipped[event] += take - len(chosen)
        for index in chosen:
            if event == "join":
                self.join(index)
            elif event == "crash":
                self.crash(index)
            else:
                self.leave(index)

    def _draw(self, candidates: list[int], take: int) -> list[int]:
        if take <= 0 or not candidates:
            return []
        picked = self.rng.choice(len(candidates), size=min(take, len(candidates)), replace=False)
        return [candidates[i] for i in sorted(picked.tolist())]

    def _aggregator_done(self, index: int, round: int) -> bool:
        every = self.plan.crash_aggregator_every
        if round % every or round in self._aggregators_crashed:
            return False
        self._aggregators_crashed.add(round)
        self.crash(index)
        self.record(self.world.loop.now, index, f"aggregator-crash-round-{round}")
        return True

    # --------------------------------------------------------------------- events
    def crash(self, index: int) -> None:
        if not self.world.online[index]:
            self.skipped["crash"] += 1
            return
        self._down(index, "crash")

    def leave(self, index: int) -> None:
        if not self.world.online[index]:
            self.skipped["leave"] += 1
            return
        self.world.nodes[index].leave()
        self._down(index, "leave")

    def _down(self, index: int, event: str) -> None:
        world = self.world
        world.online[index] = False
        world.epochs[index] += 1
        world.runtimes[index].kill()
        world.network.abort_endpoint(index, "crashed" if event == "crash" else "left")
        self.online_count -= 1
        if self.on_change is not None:
            self.on_change(index, False)
        self._log(index, event)

    def join(self, index: int) -> None:
        world = self.world
        if world.online[index]:
            self.skipped["join"] += 1
            return
        runtime = world.runtimes[index]
        world.online[index] = True
        world.epochs[index] += 1
        runtime.revive()
        self.online_count += 1
        if self.on_change is not None:
            self.on_change(index, True)
        if not self.ran[index]:
            self.ran[index] = True
            self._log(index, "join")
            world.nodes[index].join()
        elif self.plan.rejoin == "keep":
            self._log(index, "rejoin")
            world.nodes[index].rejoin()
        else:
            runtime._view = self.fresh_view(index)
            world.nodes[index] = self.make_node(runtime)
            self._log(index, "rejoin-fresh")
            world.nodes[index].join()

    def _log(self, index: int, event: str) -> None:
        self.counts[event] += 1
        self.record(self.world.loop.now, index, event)

    def summary(self) -> dict[str, Any]:
        return {"events": dict(sorted(self.counts.items())), "skipped": dict(sorted(self.skipped.items())),
                "online_at_start": self.online_at_start, "online_at_end": self.online_count}


def bootstrap_roster(peers: Sequence[Any], online: Sequence[bool]) -> Roster:
    """The membership a node that keeps its own view starts from: the nodes online at time 0."""
    from plexus.protocol.view import roster_of

    return roster_of(peer for peer, up in zip(peers, online, strict=True) if up)


# Options that reacting to MoDeST's scenarios needs, filled in by a named scenario when the run leaves them unset
# (each applies to the algorithms that declare it): Plexus runs MoDeST's membership; the synchronous baselines and
# FedAvg's server stop waiting for nodes that are gone after 60 s (the Plexus authors' D-PSGD round timeout).
SCENARIO_OPTIONS: dict[str, Any] = {"membership": "modest", "wait_timeout": 60.0, "aggregation_timeout": 60.0}


def scenario_options(table: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options a ``[churn]`` table selects: :data:`SCENARIO_OPTIONS` for a named scenario, none otherwise."""
    if table is not None and table.get("scenario") in SCENARIOS:
        return dict(SCENARIO_OPTIONS)
    return {}

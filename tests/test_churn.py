"""Churn in the simulator: crashes that fail transfers and silence a node for good, graceful leaves, joins with
state kept or lost, availability traces that act, MoDeST's scenarios, recovery from dead aggregators, baselines
that keep going when a neighbour dies, events.csv, and determinism of churn runs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plexus
from plexus.cli import main
from plexus.config import Config, load_toml, resolve
from plexus.errors import ConfigError
from plexus.metrics.churn import churn_report, online_series
from plexus.metrics.results import Results
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.node import Node
from plexus.protocol.plexus import TrainedModel
from plexus.protocol.runtime import PeerUnreachable
from plexus.protocol.view import PeerInfo, View, roster_of
from plexus.sim.churn import Churn, ChurnRuntime, parse_churn
from plexus.sim.compute import ComputeModel
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.world import World, node_id_of
from test_world import Sink, StubTrainer

SMALL = {"nodes": 24, "sample_size": 5, "eval_every": 2}


def run(tmp_path: Path, name: str, **values: Any) -> Results:
    return plexus.simulate({**SMALL, "out": str(tmp_path / name), **values})


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------------ the world
class Recorder(Node):
    """Records what reaches it and what its own work became."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.received: list[tuple[float, bytes, Message]] = []
        self.fired: list[float] = []
        self.calls: list[str] = []

    def deliver(self, sender: bytes, message: Message) -> None:
        self.received.append((self.runtime.now(), sender, message))

    def start(self) -> None:
        self.calls.append("start")

    def join(self) -> None:
        self.calls.append("join")

    def rejoin(self) -> None:
        self.calls.append("rejoin")

    def leave(self) -> None:
        self.calls.append("leave")
        self.runtime.send(b"2", TrainedModel(0, 0, np.ones(1, dtype=np.float32)))  # a last, small message


def churn_world(nodes: int = 3, table: dict[str, Any] | None = None) -> tuple[World, Churn, list[Recorder]]:
    loop = EventLoop()
    network = Network(loop, np.full(nodes, 1000.0), np.full(nodes, math.inf), lambda u, v: 0.5)
    compute = ComputeModel(np.full(nodes, 0.01), 4)
    ids = [node_id_of(i) for i in range(nodes)]
    world = World(0, loop, network, compute, StubTrainer(nodes), ids, nodes,  # type: ignore[arg-type]
                  np.zeros(3, dtype=np.float32))
    roster = roster_of(PeerInfo(node_id, 1000.0) for node_id in ids)
    made: list[Recorder] = []

    def make(runtime: Any) -> Node:
        made.append(Recorder(runtime))
        return made[-1]

    for _ in range(nodes):
        world.attach(make, Sink(), View(roster), ChurnRuntime)
    plan = parse_churn(table or {}, nodes)
    events: list[tuple[float, int, str]] = []
    churn = Churn(world, plan, None, 0, make, lambda index: View(roster), lambda t, i, e: events.append((t, i, e)))
    churn.events = events  # type: ignore[attr-defined]
    churn.install(churn.initially_online())
    return world, churn, made


def big() -> TrainedModel:
    return TrainedModel(1, 1, np.ones(1000, dtype=np.float32))  # 4,025 bytes: shares bandwidth, can be cut


def outcome(future: Future[Any]) -> Any:
    if future.failed():
        return type(future.exception()).__name__
    return "ok" if future.done() else "pending"


def test_a_crash_fails_transfers_to_the_node_and_silences_everything_the_node_had_started() -> None:
    world, churn, nodes = churn_world()
    incoming = world.runtimes[0].send(b"1", big())  # 4 s of transfer at 1,000 bytes/s
    outgoing = world.runtimes[1].send(b"2", big())
    timer_fired: list[float] = []
    world.runtimes[1].call_later(3.0, lambda: timer_fired.append(world.loop.now))
    training = world.runtimes[1].train(np.zeros(3, dtype=np.float32), 5)  # 5 x 4 x 0.01 = 0.2 s... queued first
    world.loop.call_at(0.1, churn.crash, 1)
    world.loop.run()
    assert outcome(incoming) == "PeerUnreachable" and isinstance(incoming.exception(), PeerUnreachable)
    assert outcome(outgoing) == "pending" and outcome(training) == "pending"  # a dead node's work never completes
    assert timer_fired == [] and not nodes[2].received
    assert world.messages_lost == {"crashed": 2}
    # the bytes that had not left are not counted: 100 of each 4,025-byte message left in 0.1 s (shared uplink)
    assert world.network.bytes_total == pytest.approx(2 * 100, abs=2)
    assert world.compute._busy_until[1] <= 0.1  # its training was dropped, compute released
    assert [(t, i, e) for t, i, e in churn.events] == [(0.1, 1, "crash")]  # type: ignore[attr-defined]


def test_messages_to_a_node_that_is_down_or_came_back_since_are_lost() -> None:
    world, churn, nodes = churn_world()
    churn.crash(1)
    lost = world.runtimes[0].send(b"1", TrainedModel(1, 1, np.ones(3, dtype=np.float32)))
    world.loop.run()
    assert outcome(lost) == "PeerUnreachable" and world.messages_lost == {"offline_at_arrival": 1}
    old = world.runtimes[0].send(b"1", TrainedModel(2, 1, np.ones(3, dtype=np.float32)))
    world.loop.call_at(world.loop.now + 0.1, churn.join, 1)  # back before the message arrives (0.5 s)
    world.loop.run()
    assert outcome(old) == "PeerUnreachable" and not nodes[1].received  # sent to the node before its restart
    fresh = world.runtimes[0].send(b"1", TrainedModel(3, 1, np.ones(3, dtype=np.float32)))
    world.loop.run()
    assert outcome(fresh) == "ok" and [m.round for _, _, m in nodes[1].received] == [3]
    assert nodes[1].calls == ["rejoin"]  # state kept by default


def test_a_leave_lets_the_node_say_goodbye_and_a_rejoin_that_lost_its_state_builds_a_fresh_node() -> None:
    world, churn, nodes = churn_world(table={"rejoin": "lose"})
    churn.leave(0)
    world.loop.run()
    assert nodes[0].calls == ["leave"] and [m.round for _, _, m in nodes[2].received] == [0]
    churn.join(0)
    assert world.nodes[0] is nodes[-1] and world.nodes[0] is not nodes[0] and nodes[-1].calls == ["join"]
    assert [e for _, _, e in churn.events] == ["leave", "rejoin-fresh"]  # type: ignore[attr-defined]


def test_scripted_batches_take_seeded_nodes_among_those_they_apply_to() -> None:
    world, churn, _ = churn_world(10, {"initially_offline": 2,
                                       "events": [{"event": "crash", "at": 10, "every": 5, "batch": 3, "count": 6},
                                                  {"event": "join", "at": 30, "count": 2, "batch": 2}]})
    assert sum(world.online) == 8
    offline_at_start = [i for i in range(10) if not world.online[i]]
    world.loop.run(until=100)
    events = churn.events  # type: ignore[attr-defined]
    assert [(t, e) for t, _, e in events] == [(10.0, "crash")] * 3 + [(15.0, "crash")] * 3 + [(30.0, "join")] * 2
    crashed = [i for _, i, e in events if e == "crash"]
    assert len(set(crashed)) == 6 and not set(crashed) & set(offline_at_start)
    assert sorted(i for _, i, e in events if e == "join") == offline_at_start  # never-run nodes join first


@pytest.mark.parametrize("table, problem", [
    ({"scenario": "modest-explode"}, "scenario 'modest-explode' does not exist"),
    ({"events": [{"event": "melt", "at": 1}]}, r"events\[0\]: event = 'melt'"),
    ({"events": [{"event": "crash"}]}, "at is required"),
    ({"events": [{"event": "crash", "at": -1}]}, "at = -1"),
    ({"events": [{"event": "crash", "at": 1, "count": 3}]}, "needs every > 0"),
    ({"events": [{"event": "crash", "at": 1, "count": 99, "every": 1}]}, "count = 99 exceeds nodes = 10"),
    ({"events": [{"event": "crash", "at": 1, "nodes": [3, 10]}]}, "10 is not a node index"),
    ({"events": [{"event": "crash", "at": 1, "when": 3}]}, "unknown key 'when'"),
    ({"offline": "vanish"}, "offline = 'vanish'"),
    ({"rejoin": "maybe"}, "rejoin = 'maybe'"),
    ({"initially_offline": 10}, "initially_offline = 10"),
    ({"crash_aggregator_every": -2}, "crash_aggregator_every = -2"),
    ({"speed": 3}, "unknown key 'speed'"),
])
def test_a_bad_churn_table_is_refused_naming_the_key(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_churn(table, 10)


def test_named_scenarios_scale_with_the_nodes_and_take_parameters() -> None:
    crash = parse_churn({"scenario": "modest-crash"}, 100)
    assert crash is not None and crash.steps[0].times()[:2] == [(300.0, 5), (360.0, 5)]
    assert len(crash.steps[0].times()) == 16 and crash.steps[0].count == 80
    join = parse_churn({"scenario": "modest-join"}, 100)
    assert join is not None and join.initially_offline == 10 and join.steps[0].times()[-1] == (600.0, 1)
    small = parse_churn({"scenario": "modest-crash", "count": 4, "every": 30}, 20)
    assert small is not None and small.steps[0].times() == [(300.0, 1), (330.0, 1), (360.0, 1), (390.0, 1)]


# ------------------------------------------------------------------------------------------------ whole runs
def test_the_churn_option_takes_a_scenario_a_table_in_the_config_file_or_a_file(tmp_path: Path) -> None:
    resolved = resolve(Config(churn="modest-crash:count=4,every=30", nodes=20))
    assert resolved.churn == {"scenario": "modest-crash", "count": 4, "every": 30}
    assert resolved.protocol["membership"] == "modest"  # a MoDeST scenario selects MoDeST's membership
    assert resolve(Config(churn="modest-crash", nodes=20, algorithm="dpsgd")).protocol["wait_timeout"] == 60.0
    kept = resolve(Config(churn="modest-crash", nodes=20, protocol={"membership": "static"}))
    assert kept.protocol["membership"] == "static"  # unless the run says otherwise
    config = tmp_path / "run.toml"
    config.write_text('[task]\nnodes = 20\n[churn]\nrejoin = "lose"\n[[churn.events]]\nevent = "crash"\nat = 5\n')
    values = load_toml(config)
    assert values["churn"] == {"rejoin": "lose", "events": [{"event": "crash", "at": 5}]}
    separate = tmp_path / "churn.toml"
    separate.write_text('[churn]\noffline = "crash"\n')
    assert resolve(Config(churn=str(separate), nodes=20)).churn == {"offline": "crash"}
    with pytest.raises(ConfigError, match="churn file .*missing.toml does not exist"):
        resolve(Config(churn=str(tmp_path / "missing.toml"), nodes=20))


def test_static_plexus_warns_that_it_cannot_react_and_a_dead_aggregator_stalls_it(tmp_path: Path) -> None:
    results = run(tmp_path, "static", rounds=12, membership="static", churn="crash-aggregator:every=4")
    summary = results.summary
    assert summary["stalled"] is True and summary["rounds_completed"] < 12
    assert any("cannot react to it" in warning and "--membership modest" in warning
               for warning in summary["warnings"])


def test_a_dead_aggregator_is_recovered_from_with_one_aggregator(tmp_path: Path) -> None:
    results = run(tmp_path, "recovered", rounds=12, churn="crash-aggregator:every=4")
    summary = results.summary
    assert summary["stalled"] is False and summary["rounds_completed"] == 12
    assert summary["counters"]["recoveries"] >= 1 and summary["churn"]["events"] == {"crash": 3}
    assert summary["warnings"] == [] and summary["rejections"] == {}
    events = [row["event"] for row in rows(results.directory / "events.csv")]
    assert events.count("crash") == 3 and "aggregator-crash-round-4" in events
    assert any(event.startswith("recovery-model-round-") for event in events)
    report = churn_report(Results.load(results.directory))
    # a recovered round waits for the recovery timeout (30 s) and the pings that find the aggregator gone
    assert report["recovered_rounds"] >= 2 and 30.0 < report["extra_s_per_recovered_round"] < 60.0


def test_with_two_aggregators_one_crashing_costs_no_recovery(tmp_path: Path) -> None:
    results = run(tmp_path, "two", rounds=12, aggregators=2, churn="crash-aggregator:every=4")
    summary = results.summary
    assert summary["rounds_completed"] == 12 and summary["churn"]["events"] == {"crash": 3}
    assert "recoveries" not in summary["counters"]
    durations = {row[0]: row[3] for row in results.rounds}
    normal = sorted(d for r, d in durations.items() if r % 4)
    assert max(durations[r] for r in (4, 8, 12)) < 3 * normal[len(normal) // 2]


def test_modest_join_samples_the_joined_nodes_and_events_csv_says_when_they_came(tmp_path: Path) -> None:
    results = run(tmp_path, "join", duration=600.0, churn="modest-join:count=3,every=60")
    events = rows(results.directory / "events.csv")
    assert [(float(e["time_s"]), e["event"]) for e in events] == [(60.0, "join"), (120.0, "join"), (180.0, "join")]
    joined = {e["node"]: float(e["time_s"]) for e in events}
    sampled = {p: float(row["time_s"]) for row in rows(results.directory / "samples.csv")
               for p in row["participants"].split() if p in joined and float(row["time_s"]) > joined[p]}
    assert set(sampled) == set(joined)
    loaded = Results.load(results.directory)
    assert [event for _, _, event in loaded.events] == ["join"] * 3
    assert all(isinstance(node, str) for _, node, _ in loaded.events)
    assert loaded.samples and loaded.samples[0][0] == 1 and loaded.samples[0][4] == 5  # round 1, 5 sampled
    report = churn_report(loaded)
    assert report["joined_nodes_sampled"] == "3 of 3" and report["online_min"] == 21 and report["online_at_end"] == 24
    assert online_series(loaded)[:2] == [(0.0, 21), (60.0, 22)]
    written = plexus.compare([results.directory]).write(tmp_path / "compared")
    assert "churn.png" in [path.name for path in written]


def test_a_churn_run_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    values = {"duration": 500.0, "churn": {"events": [{"event": "crash", "at": 100, "every": 40, "batch": 2,
                                                       "count": 8}]}, "membership": "modest"}
    a, b = run(tmp_path, "a", **values), run(tmp_path, "b", **values)
    for name in ("metrics.csv", "events.csv", "samples.csv", "rounds.csv"):
        assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name
    again = plexus.simulate(a.directory / "config.toml", out=str(tmp_path / "replay"))
    assert (again.directory / "events.csv").read_bytes() == (a.directory / "events.csv").read_bytes()


def test_nodes_follow_an_availability_trace(tmp_path: Path) -> None:
    trace = tmp_path / "availability.csv"
    lines = ["device,start,end"] + [f"d{i},0,100000" for i in range(20)]
    lines += ["d20,0,150", "d20,300,100000", "d21,200,100000", "d22,0,100000", "d23,0,250"]
    trace.write_text("\n".join(lines) + "\n")
    results = run(tmp_path, "trace", duration=400.0, membership="modest", availability_trace=str(trace),
                  churn={"offline": "crash"})
    summary = results.summary
    assert summary["stalled"] is False and summary["warnings"] == []
    events = sorted((float(e["time_s"]), e["event"]) for e in rows(results.directory / "events.csv")
                    if not e["event"].startswith("recovery"))
    assert events == [(150.0, "crash"), (200.0, "join"), (250.0, "crash"), (300.0, "rejoin")]


@pytest.mark.parametrize("algorithm, options", [
    ("dpsgd", {"topology": "regular:4", "wait_timeout": 30.0}),
    ("el-oracle", {"fanout": 3, "wait_timeout": 30.0}),
    ("el-local", {"fanout": 3, "wait_timeout": 30.0}),
    ("fedavg", {"aggregation_timeout": 30.0}),
    ("gossip", {"round_timeout": 10.0}),
])
def test_baselines_do_not_stall_when_nodes_die(tmp_path: Path, algorithm: str, options: dict[str, Any]) -> None:
    churn = {"events": [{"event": "crash", "at": 15, "nodes": [3, 7]}]}
    values = {"nodes": 24, "eval_every": 2, "out": str(tmp_path / algorithm), "algorithm": algorithm, "rounds": 6,
              "churn": churn, **options}
    if algorithm in ("fedavg", "el-oracle", "el-local"):
        values["sample_size"] = 5
    summary = plexus.simulate(values).summary
    assert summary["stalled"] is False and summary["rounds_completed"] >= 6
    assert summary["warnings"] == [] and summary["churn"]["events"] == {"crash": 2}


def test_a_baseline_without_a_timeout_warns_and_stalls_when_a_neighbour_dies(tmp_path: Path) -> None:
    churn = {"events": [{"event": "crash", "at": 15, "nodes": [3]}]}
    results = plexus.simulate({"nodes": 24, "algorithm": "dpsgd", "topology": "regular:4", "rounds": 30,
                               "churn": churn, "out": str(tmp_path / "dpsgd")})
    assert results.summary["stalled"] is True
    assert any("cannot react to it" in warning and "--wait-timeout" in warning
               for warning in results.summary["warnings"])


def test_the_cli_runs_a_scenario_and_reports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    status = main(["simulate", "--quiet", "--nodes", "20", "--sample-size", "4", "--duration", "350",
                   "--churn", "modest-crash:count=4,every=10", "-o", str(out)])
    assert status == 0
    assert "[churn]" in (out / "config.toml").read_text() and (out / "events.csv").is_file()
    assert main(["simulate", "--quiet", "--churn", "modest-none", "-o", str(tmp_path / "x")]) == 2
    assert "churn scenario 'modest-none' does not exist" in capsys.readouterr().err

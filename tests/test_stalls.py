"""Failure is never silent: a normal run of every algorithm refuses nothing and loses nothing, and a run that can no
longer progress (a node that never receives, a server that is gone) stops and says so: ``stalled: true`` and
``stalled_at`` in summary.json, a warning, and exit code 3 from ``plexus simulate``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import plexus
import plexus.config as config_module
from plexus.cli import main
from plexus.protocol.registry import algorithm
from plexus.sim import simulation
from plexus.sim.world import World

# tiny runs: 12 digits nodes, a few rounds
SMALL = {"nodes": 12, "rounds": 3, "eval_every": 1, "sample_size": 4, "fanout": 3, "topology": "regular:4",
         "round_timeout": 10.0}
OPTIONS = {
    "plexus": ("sample_size",),
    "fedavg": ("sample_size",),
    "dpsgd": ("topology",),
    "gossip": ("round_timeout",),
    "el-local": ("fanout",),
    "el-oracle": ("fanout",),
}


def settings(name: str, out: Path, **extra: object) -> dict[str, Any]:
    values: dict[str, Any] = {"algorithm": name, "out": str(out)}
    values.update({k: v for k, v in SMALL.items() if k in ("nodes", "rounds", "eval_every") or k in OPTIONS[name]})
    values.update(extra)
    return values


def offline(monkeypatch: pytest.MonkeyPatch, choose: Callable[[World], Iterable[int]], at: float = 0.0) -> None:
    """Runs build a World whose chosen endpoints are offline (from time ``at``): messages to them are lost."""

    class OfflineWorld(World):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

            def go_offline() -> None:
                for index in choose(self):
                    self.online[index] = False

            if at > 0:
                self.loop.call_at(at, go_offline)
            else:
                go_offline()

    monkeypatch.setattr(simulation, "World", OfflineWorld)


def summary_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_normal_run_refuses_nothing_loses_nothing_and_does_not_stall(tmp_path: Path, name: str) -> None:
    results = plexus.simulate(settings(name, tmp_path / name))
    summary = summary_of(results.directory)
    assert summary["rejections"] == {}
    assert summary["messages_lost"] == {}
    assert summary["stalled"] is False and "stalled_at" not in summary
    assert summary["warnings"] == []
    assert summary["traits"] == algorithm(name).traits.as_dict()
    assert summary["rounds_completed"] == 3


def every_node(world: World) -> range:
    return range(world.data_nodes)


STALLS: dict[str, Callable[[World], Iterable[int]]] = {
    "plexus": every_node,  # the aggregator of round 1 never gets a model
    "fedavg": lambda world: [world.data_nodes],  # the server is gone: no update ever reaches it
    "dpsgd": lambda world: [5],  # node 5 never hears from its in-neighbours, and they wait for it
    "el-oracle": lambda world: [5],
    "el-local": lambda world: [5],  # node 5 never hears from anyone, so it never starts round 2
}


@pytest.mark.parametrize("name", sorted(STALLS))
def test_a_run_that_cannot_progress_reports_a_stall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     name: str) -> None:
    offline(monkeypatch, STALLS[name])
    results = plexus.simulate(settings(name, tmp_path / name))
    summary = summary_of(results.directory)
    assert summary["stalled"] is True
    stall = summary["stalled_at"]
    assert set(stall) == {"time_s", "round", "reason"}
    # every node ends up waiting for something that will never come: the event queue runs dry
    assert "no event left to process" in stall["reason"]
    assert stall["time_s"] == pytest.approx(summary["virtual_seconds"]) and stall["time_s"] > 0
    assert stall["round"] == summary["rounds_completed"] < 3
    assert summary["messages_lost"].get("offline_at_arrival", 0) > 0
    assert any("stalled" in warning for warning in summary["warnings"])
    assert summary["rejections"] == {}


def test_a_stall_mid_run_reports_the_last_completed_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    normal = plexus.simulate(settings("plexus", tmp_path / "normal"))
    second = next(row for row in normal.rounds if row[0] == 2)  # (round, node, end_time_s, duration_s)
    offline(monkeypatch, every_node, at=second[2] + 1e-6)  # everyone drops off right after round 2 ends
    results = plexus.simulate(settings("plexus", tmp_path / "stalled"))
    summary = summary_of(results.directory)
    assert summary["stalled"] is True and summary["rounds_completed"] == 2
    assert summary["stalled_at"]["round"] == 2 and summary["stalled_at"]["time_s"] > second[2]
    # what was done before the stall is kept
    assert [row["round"] for row in results.metrics] == [1, 2]
    assert normal.metrics[:2] == results.metrics


def test_the_watchdog_stops_a_run_whose_nodes_keep_busy_without_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # gossip nodes keep sending forever, but nobody receives, so nobody ever trains: no progress at all
    offline(monkeypatch, every_node)
    results = plexus.simulate(settings("gossip", tmp_path / "gossip", rounds=10, stall_timeout=35.0))
    summary = summary_of(results.directory)
    assert summary["stalled"] is True
    assert summary["virtual_seconds"] == pytest.approx(35.0)  # stopped by the watchdog, not at 10 x 10 s
    stall = summary["stalled_at"]
    assert stall["time_s"] == 0.0 and "no global model, node round or training for 35s" in stall["reason"]
    assert summary["messages_lost"]["offline_at_arrival"] >= 12


def test_a_gossip_stall_reports_the_round_of_its_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, every_node)
    results = plexus.simulate(settings("gossip", tmp_path / "gossip", rounds=10, stall_timeout=35.0))
    stall = summary_of(results.directory)["stalled_at"]
    assert stall["round"] == math.floor(stall["time_s"] / 10.0)


def test_the_watchdog_does_not_fire_while_training_progresses(tmp_path: Path) -> None:
    # rounds of digits take a few virtual seconds; a stall timeout well above that never fires
    results = plexus.simulate(settings("dpsgd", tmp_path / "dpsgd", stall_timeout=60.0))
    assert results.summary["stalled"] is False and results.summary["rounds_completed"] == 3


def test_plexus_simulate_exits_with_code_3_for_a_stalled_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    offline(monkeypatch, STALLS["fedavg"])
    out = tmp_path / "stalled"
    code = main(["simulate", "--quiet", "--algorithm", "fedavg", "--nodes", "12", "--sample-size", "4",
                 "--rounds", "3", "-o", str(out)])
    assert code == 3
    err = capsys.readouterr().err
    assert f"plexus: {out}: the run stalled at t=" in err and "(round 0)" in err
    assert "Traceback" not in err
    assert summary_of(out)["stalled"] is True


def test_a_study_with_a_stalled_run_exits_with_code_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    offline(monkeypatch, lambda world: [world.data_nodes] if len(world.node_ids) > world.data_nodes else [])
    out = tmp_path / "study"
    code = main(["simulate", "--quiet", "--algorithm", "plexus,fedavg", "--nodes", "12", "--sample-size", "4",
                 "--rounds", "2", "-o", str(out)])
    assert code == 3  # fedavg's server is gone; plexus is fine
    err = capsys.readouterr().err
    assert f"plexus: {out / 'fedavg'}: the run stalled" in err and str(out / "plexus") + ":" not in err
    assert summary_of(out / "plexus")["stalled"] is False and summary_of(out / "fedavg")["stalled"] is True


def test_a_normal_cli_run_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--quiet", "--nodes", "12", "--sample-size", "4", "--rounds", "2",
                 "-o", str(tmp_path / "ok")]) == 0
    assert "stalled" not in capsys.readouterr().err


def test_a_stall_timeout_shorter_than_a_modest_recovery_is_raised_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every 10th round's aggregator crashes; MoDeST recovers after recovery_timeout (30 s) and pings (5 s), so a
    # 10 s watchdog would call each recovery a stall: it is raised to what the protocol may legitimately wait
    run = {"algorithm": "plexus", "membership": "modest", "churn": "crash-aggregator", "nodes": 30, "rounds": 25,
           "sample_size": 5, "eval_every": 5, "stall_timeout": 10.0}
    results = plexus.simulate({**run, "out": str(tmp_path / "raised")})
    summary = results.summary
    assert summary["stalled"] is False and summary["rounds_completed"] == 25
    assert summary["counters"]["recoveries"] > 0
    assert any("stall_timeout = 10s is shorter than plexus may legitimately wait with these options (95s" in note
               for note in summary["warnings"])
    # the same run with the watchdog left at 10 s stops during the first recovery
    monkeypatch.setattr(config_module, "_stall_timeout_floor", lambda c, *args: c)
    cut = plexus.simulate({**run, "out": str(tmp_path / "cut")}).summary
    assert cut["stalled"] is True and cut["rounds_completed"] < 25

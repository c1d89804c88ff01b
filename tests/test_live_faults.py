"""Faults in launched live runs (one process per node on loopback): kill -9 of the current aggregator, a participant
killed and restarted from its saved state, and 40% of the nodes killed over a run.

Plexus survives a dead aggregator or a sample that lost too many members only with MoDeST's churn machinery
(``membership = "modest"``: views, pings, aggregator recovery); the tests that kill such nodes select it, as a
user running on real devices would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from plexus.config import Config
from plexus.live.launch import Launcher
from plexus.protocol.view import View

pytestmark = pytest.mark.slow


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def aggregator_of(launcher: Launcher, round: int, sample_size: int) -> str:
    """Who aggregates ``round``, computed from the peers file exactly as every Plexus node does."""
    assert launcher.peers is not None
    view = View([peer.info for peer in launcher.peers.nodes])
    candidates = view.sample(round + 1, sample_size)
    best = max(candidates, key=lambda node: (view.info(node).upload_bps, -candidates.index(node)))
    label = launcher.label_of(best)
    assert label is not None
    return label


def plexus_config(**changes: Any) -> Config:
    values = {"algorithm": "plexus", "nodes": 10, "rounds": 60, "eval_every": 10, "stall_timeout": 20.0,
              "seed": 4}
    protocol = {"sample_size": 5}
    protocol.update(changes.pop("protocol", {}))
    values.update(changes)
    return Config(**values, protocol=protocol)


def test_training_continues_after_kill_9_of_the_current_aggregator(tmp_path: Path) -> None:
    killed: dict[str, Any] = {}

    async def script(launcher: Launcher) -> None:
        observer = launcher.observer
        assert observer is not None
        await wait_for(lambda: observer.rounds_completed >= 3, 120, "round 3")
        round = observer.rounds_completed + 1
        victim = aggregator_of(launcher, round, 5)
        launcher.kill(victim, signal.SIGKILL)
        killed.update(label=victim, round=round)
        await wait_for(lambda: observer.rounds_completed >= round + 5, 60, "five rounds after the kill")

    launcher = Launcher(plexus_config(rounds=20, protocol={"membership": "modest"}), tmp_path / "run", timeout=300)
    results = asyncio.run(launcher.run(script))
    assert killed and results.summary["rounds_completed"] >= killed["round"] + 5
    assert not results.summary["stalled"]


def test_a_participant_killed_and_restarted_resumes_from_its_saved_state_and_rejoins(tmp_path: Path) -> None:
    facts: dict[str, Any] = {}

    async def script(launcher: Launcher) -> None:
        observer = launcher.observer
        assert observer is not None and launcher.peers is not None
        # the slowest uploader is never an aggregator (one always has more bandwidth), so its absence only
        # costs its own models, which the quorum (4 of 5) tolerates
        slowest = min(range(len(launcher.peers.nodes)), key=lambda i: launcher.peers.nodes[i].upload_bps)
        victim = facts["victim"] = launcher.labels[slowest]
        folder = launcher.out / "nodes" / victim

        def saved_round() -> int:
            try:
                return int(json.loads((folder / "state.json").read_text())["round"])
            except (OSError, ValueError, KeyError):
                return 0

        await wait_for(lambda: saved_round() >= 1, 120, "the victim took part in a round and saved its state")
        facts["saved_round"] = saved_round()
        launcher.kill(victim, signal.SIGKILL)
        assert await launcher.wait_exit(victim) == -signal.SIGKILL
        at_kill = observer.rounds_completed
        await wait_for(lambda: observer.rounds_completed >= at_kill + 3, 60, "three rounds without the victim")
        launcher.restart(victim)
        await wait_for(lambda: ",resumed," in (folder / "events.csv").read_text(), 120, "the restarted node resumed")
        facts["rounds_at_resume"] = observer.rounds_completed
        await wait_for(lambda: saved_round() > facts["saved_round"], 120,
                       "the restarted node trained in a later round")
        facts["rounds_at_end"] = observer.rounds_completed
        observer.stop("the test saw the node rejoin")

    launcher = Launcher(plexus_config(rounds=5000, eval_every=50), tmp_path / "run", timeout=400)
    results = asyncio.run(launcher.run(script))
    summary = results.summary
    assert not summary["stalled"] and facts["rounds_at_end"] > facts["rounds_at_resume"]
    victim = facts["victim"]
    final = json.loads((tmp_path / "run" / "nodes" / victim / "node-summary.json").read_text())
    assert final["resumed"] is True and final["training_jobs"] > 0
    assert final["round"] > facts["saved_round"]
    events = (tmp_path / "run" / "events.csv").read_text().splitlines()
    assert any(f",{int(victim)},resumed,{facts['saved_round']}," in line for line in events)


def kill_forty_percent(config: Config, tmp_path: Path) -> tuple[Any, float]:
    kills: list[float] = []

    async def script(launcher: Launcher) -> None:
        observer = launcher.observer
        assert observer is not None
        await wait_for(lambda: observer.started.is_set(), 60, "the start")
        victims = launcher.labels[: (4 * len(launcher.labels)) // 10]
        for victim in victims:
            await asyncio.sleep(2.0)
            launcher.kill(victim, signal.SIGKILL)
            kills.append(observer.now())

    launcher = Launcher(config, tmp_path / "run", timeout=300)
    results = asyncio.run(launcher.run(script))
    return results, max(kills)


def test_gossip_training_continues_when_forty_percent_of_the_nodes_are_killed(tmp_path: Path) -> None:
    config = Config(algorithm="gossip", nodes=10, rounds=40, eval_every=4, seed=4, protocol={"round_timeout": 0.5})
    results, last_kill = kill_forty_percent(config, tmp_path)
    rows = results.metrics
    after = [row for row in rows if row["time_s"] > last_kill + 1]
    assert after, "no evaluation after the last kill"
    before = [row for row in rows if row["time_s"] <= last_kill]
    assert after[-1]["accuracy"] > (before[-1]["accuracy"] if before else 0.1)
    survivors = [node for node in results.summary["live"]["nodes"] if node["node"] not in "0123"]
    assert all(node["status"] == "stopped" for node in survivors)


def test_plexus_training_continues_when_forty_percent_of_the_nodes_are_killed(tmp_path: Path) -> None:
    results, last_kill = kill_forty_percent(plexus_config(rounds=80, protocol={"membership": "modest"}), tmp_path)
    assert not results.summary["stalled"]
    assert results.summary["rounds_completed"] == 80

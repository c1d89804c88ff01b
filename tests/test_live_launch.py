"""``plexus launch``: one process per node on loopback, gathered into a results folder comparable with simulations.

Slow (each run starts a Python process with torch per node)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from plexus.cli import main

pytestmark = pytest.mark.slow


def accuracy_at(folder: Path, round: int) -> float:
    with (folder / "metrics.csv").open() as handle:
        rows = {int(row["round"]): float(row["accuracy"]) for row in csv.DictReader(handle)}
    return rows[round]


def test_plexus_launched_with_20_nodes_is_within_3_points_of_the_simulation_at_round_r(tmp_path: Path) -> None:
    common = ["--nodes", "20", "--rounds", "100", "--seed", "1", "--quiet"]
    assert main(["simulate", *common, "-o", str(tmp_path / "sim")]) == 0
    assert main(["launch", *common, "-o", str(tmp_path / "live")]) == 0
    live = tmp_path / "live"
    summary = json.loads((live / "summary.json").read_text())
    assert summary["runtime"] == "live" and summary["rounds_completed"] == 100 and not summary["stalled"]
    assert summary["rejections"] == {}
    assert abs(accuracy_at(live, 100) - accuracy_at(tmp_path / "sim", 100)) <= 0.03
    with (live / "events.csv").open() as handle:
        events = list(csv.DictReader(handle))
    assert sum(e["event"] == "global_model" for e in events) == 100
    assert {e["node"] for e in events if e["event"] == "started"} == {str(i) for i in range(20)}
    for node in range(20):
        assert (live / "nodes" / f"{node:02d}" / "state.json").is_file()
    assert main(["compare", str(tmp_path / "sim"), str(live), "--out", str(tmp_path / "cmp"), "--no-figures"]) == 0


@pytest.mark.parametrize("algorithm, extra", [("dpsgd", ["--topology", "regular:4"]),
                                              ("gossip", ["--round-timeout", "0.5"])])
def test_decentralized_baselines_run_live_as_processes(algorithm: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / algorithm
    code = main(["launch", "--algorithm", algorithm, "--nodes", "10", "--rounds", "12", "--eval-every", "4",
                 "--quiet", "-o", str(out), *extra])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_completed"] == 12 and not summary["stalled"] and summary["rejections"] == {}
    assert accuracy_at(out, 12) > accuracy_at(out, 4) > 0.15
    assert all(node["status"] == "stopped" for node in summary["live"]["nodes"])

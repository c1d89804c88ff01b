"""Asynchronous runs in studies and comparisons: time-based evaluation, TTA by virtual time, node models' mean and
std, iteration durations in rounds.csv, and MovieLens' RMSE (lower is better)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_dataset
from plexus.config import config_from_mapping
from plexus.metrics.analysis import compare
from plexus.sim.simulation import run_simulation

ASYNC = ("divshare", "adpsgd", "swift")


def run_all(tmp_path: Path, base: dict[str, object]) -> list[Path]:
    folders = []
    for algorithm in ASYNC:
        options = {"fragment_fraction": 0.5, "degree": 2} if algorithm == "divshare" else (
            {"degree": 2} if algorithm == "swift" else {})
        out = tmp_path / algorithm
        run_simulation(config_from_mapping({**base, **options, "algorithm": algorithm, "out": str(out)}))
        folders.append(out)
    return folders


def test_asynchronous_runs_compare_by_time_with_node_spread(tmp_path: Path) -> None:
    folders = run_all(tmp_path, {"nodes": 6, "duration": 6.0, "eval_interval": 2.0, "local_steps": 1,
                                 "sample_seconds": 0.01, "link_mbps": 20, "stragglers": 1})
    table = compare(folders)
    assert [row.algorithm for row in table.rows] == list(ASYNC)
    assert all(row.decentralized for row in table.rows) and table.has_dl
    for run, row in zip(table.runs, table.rows, strict=True):
        assert run.series["time_s"] == pytest.approx([2.0, 4.0, 6.0])  # evaluated every 2 virtual seconds
        assert any(std > 0 for std in run.series["std"])  # the spread of the node models
        assert row.tta_s in run.series["time_s"] and row.cta_bytes is not None and row.rta_s is not None
        # iteration durations, one row per node and iteration: 0.2 s of compute each
        assert len(run.durations) >= 6 * 25 and min(run.durations) == pytest.approx(0.2)
    records = table.records()
    best_dl = min(row.tta_s for row in table.rows if row.tta_s is not None)
    assert max(r["tta_vs_best_dl"] for r in records) == pytest.approx(1.0)
    assert all(r["tta_vs_best_dl"] == pytest.approx(best_dl / r["tta_s"]) for r in records)
    written = table.write(tmp_path / "comparison")
    assert {path.name for path in written} == {"comparison.csv", "comparison.md", "convergence.png",
                                               "round-durations.png"}


def test_movielens_asynchronous_runs_report_rmse(tmp_path: Path) -> None:
    data = shared_dataset("movielens-latest-small")
    folders = run_all(tmp_path, {"task": "movielens", "data": str(data), "nodes": 8, "duration": 3.0,
                                 "eval_interval": 1.0, "local_steps": 4, "batch_size": 8, "sample_seconds": 0.01,
                                 "link_mbps": 60, "eval_samples": 2000})
    table = compare(folders)
    assert table.metric == "rmse" and not table.higher_is_better
    for run, row in zip(table.runs, table.rows, strict=True):
        assert row.best == min(run.series["value"]) and 0.5 < row.best < 5.0
        assert row.tta_s is not None  # the default target is the highest RMSE every run gets down to
    assert "rmse" in table.to_text() and "target rmse <=" in table.to_text()

"""Failures and interruptions keep what was done: run.log holds the error, metrics.csv the rows so far, and
summary.json says how the run ended, so plexus compare can include partial runs, marked as such."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plexus.cli import main
from plexus.config import Config, config_from_mapping
from plexus.errors import ConfigError, DataError
from plexus.metrics.analysis import compare
from plexus.sim.simulation import run_simulation
from plexus.studies import plan_study, run_study

TINY = {"nodes": 12, "sample_size": 3}


def settings(**values: Any) -> Config:
    """A Config from flat settings (algorithm options included)."""
    return config_from_mapping(values)



def summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text())


def metric_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"task": "mnist", "data": "/nonexistent/mnist"}, DataError, "MNIST data not found"),
        ({"partition": "shards:1000"}, ConfigError, "shards"),
        ({"task": "movielens", "data": "{tmp}/ratings.csv"}, DataError, "line 3"),
    ],
)
def test_a_run_that_fails_on_its_input_says_why_in_its_folder(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3\n")
    options = {k: (v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v) for k, v in options.items()}
    out = tmp_path / "run"
    with pytest.raises(error, match=message):
        run_simulation(settings(**{**TINY, **options, "rounds": 2}, out=str(out)))
    log = (out / "run.log").read_text()
    assert "error:" in log and message in log
    written = summary(out)
    assert written["status"] == "failed" and message in written["error"]
    assert (out / "config.toml").is_file()
    assert metric_rows(out) == []


def test_a_failed_run_folder_without_results_can_be_reused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(DataError):
        run_simulation(settings(**TINY, task="mnist", data="/nonexistent", rounds=2, out=str(out)))
    results = run_simulation(settings(**TINY, rounds=2, out=str(out)))
    assert results.summary["status"] == "completed"


def test_an_unexpected_error_leaves_its_traceback_in_run_log(tmp_path: Path) -> None:
    out = tmp_path / "run"

    def explode(row: dict[str, Any]) -> None:
        raise RuntimeError("boom in the middle")

    with pytest.raises(RuntimeError):
        run_simulation(settings(**TINY, rounds=6, eval_every=2, out=str(out)), progress=explode)
    assert "Traceback" in (out / "run.log").read_text()
    written = summary(out)
    assert written["status"] == "failed" and written["error"] == "boom in the middle"
    assert len(metric_rows(out)) == 1  # the row being reported when it failed was already written


def test_an_interrupted_run_keeps_its_rows_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[dict[str, Any]] = []

    def interrupt_after_three(row: dict[str, Any]) -> None:
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        run_simulation(settings(**TINY, rounds=100, eval_every=2, out=str(out)), progress=interrupt_after_three)
    assert caught.value.results_dir == out  # type: ignore[attr-defined]
    rows = metric_rows(out)
    assert [int(row["round"]) for row in rows] == [2, 4, 6]
    written = summary(out)
    assert written["status"] == "interrupted"
    assert written["rounds_completed"] >= 6 and written["final_accuracy"] == float(rows[-1]["accuracy"])
    assert (out / "rounds.csv").is_file()
    comparison = compare([out])
    assert comparison.rows[0].label == "plexus [interrupted]" and comparison.rows[0].status == "interrupted"
    assert "[interrupted]: the run did not finish" in comparison.to_text()


def test_compare_marks_partial_runs_and_ignores_them_for_the_default_target(tmp_path: Path) -> None:
    full = run_simulation(settings(**TINY, rounds=8, eval_every=2, out=str(tmp_path / "full"))).directory

    def stop(row: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_simulation(settings(**TINY, algorithm="fedavg", rounds=8, eval_every=2, out=str(tmp_path / "cut")),
                       progress=stop)
    comparison = compare([full, tmp_path / "cut"])
    labels = [row.label for row in comparison.rows]
    assert labels == ["plexus", "fedavg [interrupted]"]
    assert comparison.target == max(float(r["accuracy"]) for r in metric_rows(full))


def _start(arguments: list[str], cwd: Path) -> subprocess.Popen[str]:
    # a shell may start background jobs with SIGINT ignored; a user's Ctrl-C reaches a normal process
    return subprocess.Popen(
        [sys.executable, "-m", "plexus.cli", *arguments], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_rows(out: Path, rows: int, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.communicate()}")
        path = out / "metrics.csv"
        if path.is_file() and path.read_text().count("\n") >= rows + 1:
            return
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no evaluations appeared in time")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_a_few_evaluations_leaves_a_comparable_partial_run(
    tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "run"
    process = _start(["simulate", "--rounds", "100000", "--eval-every", "10", "-o", str(out)], tmp_path)
    _wait_for_rows(out, 3, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "plexus: interrupted" in err and str(out) in err and "Traceback" not in err
    rows = metric_rows(out)
    assert len(rows) >= 3
    assert summary(out)["status"] == "interrupted"
    assert "interrupted" in (out / "run.log").read_text()
    assert main(["compare", str(out), "--no-figures", "--out", str(tmp_path / "cmp")]) == 0
    with (tmp_path / "cmp" / "comparison.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["status"] == "interrupted" and table[0]["run"] == "plexus [interrupted]"


def test_a_study_checks_every_run_before_the_first_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.toml"
    study.write_text(
        '[task]\nnodes = 12\n[protocol]\nsample_size = 3\n[run]\nrounds = 2\n'
        '[runs.a]\nalgorithm = "plexus"\n'
        '[runs.b]\nalgorithm = "fedavg"\ntask = "mnist"\ndata = "/nonexistent/mnist"\n'
    )
    started = time.perf_counter()
    assert main(["simulate", "--quiet", "--config", str(study), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "run b:" in err and "MNIST data not found" in err
    assert not (tmp_path / "out" / "a").exists()
    assert time.perf_counter() - started < 30


def test_an_interrupted_study_says_which_runs_are_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = plan_study({**TINY, "rounds": 6, "eval_every": 2}, None,
                         {"algorithm": "plexus,fedavg,gossip"})
    calls = {"rows": 0}
    import plexus.commands.progress as progress

    original = progress.ProgressBar.update

    def update(self: progress.ProgressBar, row: dict[str, Any]) -> None:
        original(self, row)
        calls["rows"] += 1
        if "fedavg" in self.label and row["round"] >= 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.ProgressBar, "update", update)
    out = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        run_study(planned, out)
    err = capsys.readouterr().err
    assert "complete: plexus" in err and "interrupted (partial results kept): fedavg" in err
    assert "not started: gossip" in err
    status = {run["name"]: run["status"] for run in json.loads((out / "study.json").read_text())["runs"]}
    assert status == {"plexus": "completed", "fedavg": "interrupted", "gossip": "not started"}
    assert summary(out / "fedavg")["status"] == "interrupted"
    with (out / "comparison" / "comparison.csv").open() as handle:
        assert [row["run"] for row in csv.DictReader(handle)] == ["plexus", "fedavg [interrupted]"]

"""Progress a person can follow: on a terminal the line refreshes on the wall clock and says what the run is
doing (phase, rounds per second, ETA, evaluation in progress); in a pipe, plain lines at a modest rate."""

from __future__ import annotations

import io
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import plexus.commands.progress as progress_module
from plexus.commands.progress import ProgressBar
from plexus.config import Config, config_from_mapping, resolve
from plexus.sim.simulation import run_simulation


def settings(**values: Any) -> Config:
    """A Config from flat settings (algorithm options included)."""
    return config_from_mapping(values)



class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_state(phase: str = "running", round_: int = 25, now: float = 300.0, evaluating=None, inner=None):  # noqa: ANN001, ANN201
    observer = SimpleNamespace(progress_round=lambda: round_, evaluating=evaluating)
    return SimpleNamespace(
        phase=phase, phase_started=time.perf_counter() - 12, loop_started=time.perf_counter() - 10,
        observer=observer if phase == "running" else None, loop=SimpleNamespace(now=now),
        evaluator=SimpleNamespace(progress=inner),
    )


def bar(stream: io.StringIO, **options: object) -> ProgressBar:
    return ProgressBar(resolve(Config(rounds=100)), stream=stream, label="plexus on digits", **options)  # type: ignore[arg-type]


def test_the_line_names_the_phase_before_the_run_starts() -> None:
    progress = bar(FakeTerminal())
    progress._state = fake_state(phase="loading data")
    assert progress.line().startswith("[plexus on digits] loading data... 0:12")


def test_the_line_shows_rate_eta_and_evaluation_in_progress() -> None:
    progress = bar(FakeTerminal())
    progress._state = fake_state(evaluating=(37, 100))
    progress._row = {"time_s": 290.0, "round": 20, "accuracy": 0.8123, "accuracy_std": 0.0}
    line = progress.line()
    assert "25.0%" in line and "round 25/100" in line and "t=300.0s" in line and "accuracy=0.8123" in line
    assert "2.50 rounds/s" in line and "ETA 0:30" in line and "evaluating 37/100 models" in line
    progress._state = fake_state(evaluating=(0, 1), inner=(4096, 10000))
    assert "evaluating 41%" in progress.line()


def test_on_a_terminal_the_bar_refreshes_between_evaluations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the bar shows an ETA only after a second of running; this small run may take less: the bar's clock runs 5 s
    # ahead of the simulation's, as if it had
    real = time.perf_counter
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(perf_counter=lambda: real() + 5.0))
    stream = FakeTerminal()
    progress = bar(stream, refresh=0.01)
    config = settings(nodes=30, sample_size=5, rounds=300, eval_every=300, out=str(tmp_path / "r"))
    run_simulation(config, progress=progress)
    progress.close()
    frames = stream.getvalue().split("\r")
    assert len(frames) > 5  # one evaluation, many redraws
    assert any("rounds/s" in frame and "ETA" in frame for frame in frames)


def test_in_a_pipe_lines_are_few_but_a_long_step_still_shows_life() -> None:
    stream = io.StringIO()
    progress = bar(stream, heartbeat=0.2)
    progress.attach(fake_state(phase="loading data"))
    time.sleep(0.5)
    progress.detach()
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and all("loading data" in line for line in lines)
    assert "\r" not in stream.getvalue()
    progress._state = None  # rows alone drive the lines now
    for round_ in range(1, 101):
        progress.update({"time_s": float(round_), "round": round_, "accuracy": 0.5, "accuracy_std": 0.0})
    assert len(stream.getvalue().splitlines()) - len(lines) == 11  # the first row, then one per tenth of the run

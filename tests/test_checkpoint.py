"""Checkpoint and resume: a run interrupted (Ctrl-C or a checkpoint then a crash) and resumed from its results
folder writes byte-identical metrics.csv and rounds.csv to an uninterrupted one, for every shipped algorithm."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import plexus
from plexus.cli import main
from plexus.errors import ConfigError
from plexus.metrics.results import METRICS_FILE, ROUNDS_FILE, SUMMARY_FILE
from plexus.sim import checkpoint
from plexus.sim.checkpoint import CHECKPOINT_FILE, resume_simulation

RUNS = {
    "plexus": {"nodes": 30, "rounds": 8, "eval_every": 2},
    "fedavg": {"nodes": 20, "sample_size": 8, "success_fraction": 0.5, "rounds": 8, "eval_every": 2},
    "dpsgd": {"nodes": 12, "topology": "regular:4", "rounds": 5, "eval_every": 1},
    "gossip": {"nodes": 12, "rounds": 5, "eval_every": 1, "round_timeout": 10.0},
    "el-oracle": {"nodes": 12, "sample_size": 3, "rounds": 4, "eval_every": 1},
    "el-local": {"nodes": 10, "sample_size": 3, "rounds": 4, "eval_every": 1},
}


def files(directory: Path) -> tuple[bytes, bytes]:
    return (directory / METRICS_FILE).read_bytes(), (directory / ROUNDS_FILE).read_bytes()


def interrupt_after(monkeypatch: pytest.MonkeyPatch, polls: int) -> None:
    """Press Ctrl-C (as the SIGINT handler would) at the ``polls``-th check, polled every 40 events."""
    monkeypatch.setattr(checkpoint, "POLL_EVENTS", 40)
    original = checkpoint._Checkpointer.should_pause
    count = {"polls": 0}

    def should_pause(self: Any) -> bool:
        count["polls"] += 1
        if count["polls"] == polls:
            self.interrupted = True
        return original(self)

    monkeypatch.setattr(checkpoint._Checkpointer, "should_pause", should_pause)


@pytest.mark.parametrize("algorithm", sorted(RUNS))
def test_interrupted_then_resumed_equals_uninterrupted(algorithm: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"algorithm": algorithm, "seed": 1, **RUNS[algorithm]}
    whole = plexus.simulate({**config, "out": str(tmp_path / "whole")})
    interrupted = tmp_path / "interrupted"
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        plexus.simulate({**config, "out": str(interrupted)})
    assert (interrupted / CHECKPOINT_FILE).is_file()
    # the interrupted folder keeps what was done (rows so far, an interrupted summary) next to its checkpoint
    assert json.loads((interrupted / SUMMARY_FILE).read_text())["status"] == "interrupted"
    assert (interrupted / METRICS_FILE).is_file()
    monkeypatch.undo()
    resumed = resume_simulation(interrupted)
    assert files(interrupted) == files(whole.directory)
    assert resumed.summary["resumed"] == 1 and resumed.summary["status"] == "completed"
    assert resumed.summary["events_processed"] == whole.summary["events_processed"]
    assert resumed.summary["counters"] == whole.summary["counters"]
    assert not (interrupted / CHECKPOINT_FILE).exists()  # a finished run removes it


def test_periodic_checkpoints_resume_from_the_latest_with_another_executor(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"algorithm": "dpsgd", "nodes": 12, "topology": "regular:4", "rounds": 5, "seed": 2}
    whole = plexus.simulate({**config, "out": str(tmp_path / "whole")})
    # every poll is a checkpoint (checkpoint_every is tiny); the fifth poll is a crash right after one
    monkeypatch.setattr(checkpoint, "POLL_EVENTS", 30)
    saved: list[float] = []
    original = checkpoint.save_checkpoint

    def save_then_crash(state: Any, learning: Any, directory: Path) -> Path:
        path = original(state, learning, directory)
        saved.append(state.world.loop.now)
        if len(saved) == 3:
            raise SystemExit("crash")
        return path

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_crash)
    out = tmp_path / "crashed"
    with pytest.raises(SystemExit):
        plexus.simulate({**config, "checkpoint_every": 1e-9, "out": str(out)})
    monkeypatch.undo()
    result = resume_simulation(out, overrides={"executor": "pool", "workers": "2"})
    assert files(out) == files(whole.directory)
    assert result.summary["executor"] == "pool"


def test_a_real_sigint_leaves_a_checkpoint_and_the_cli_resumes_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "POLL_EVENTS", 20)
    config = {"algorithm": "plexus", "nodes": 30, "rounds": 10, "eval_every": 1, "seed": 4}
    whole = plexus.simulate({**config, "out": str(tmp_path / "whole")})
    out = tmp_path / "sigint"
    pressed = []

    def press_ctrl_c(row: dict[str, Any]) -> None:
        if row["round"] == 3 and not pressed:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    from plexus.config import config_from_mapping
    from plexus.sim.simulation import run_simulation

    with pytest.raises(KeyboardInterrupt):
        run_simulation(config_from_mapping({**config, "out": str(out)}), progress=press_ctrl_c)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert (out / CHECKPOINT_FILE).is_file()
    assert main(["resume", str(out), "--quiet"]) == 0
    assert files(out) == files(whole.directory)


def test_resume_refuses_a_folder_without_checkpoint_and_changes_that_alter_results(tmp_path: Path,
                                                                                   capsys: Any) -> None:
    done = plexus.simulate({"nodes": 20, "rounds": 2, "out": str(tmp_path / "done")})
    assert main(["resume", str(done.directory)]) == 2
    assert "no checkpoint.pkl to resume from" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "missing")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    assert main(["resume", str(tmp_path / "bad")]) == 2
    assert "is not a plexus checkpoint" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cannot be changed on resume"):
        resume_simulation(done.directory, overrides={"seed": 3})

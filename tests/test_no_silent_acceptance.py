"""Nothing is accepted silently: unknown models, ignored options, mixed comparisons and such are refused or
warned about, and --eval-nodes / --eval-samples do what they say."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from plexus.cli import main
from plexus.config import Config, config_from_mapping, config_warnings, resolve
from plexus.errors import ConfigError, DataError
from plexus.learning.tasks import TASKS
from plexus.metrics.analysis import compare
from plexus.sim.simulation import run_simulation
from test_analysis import make_run

TINY = {"nodes": 12, "sample_size": 3}


def settings(**values: Any) -> Config:
    """A Config from flat settings (algorithm options included)."""
    return config_from_mapping(values)



@pytest.mark.parametrize("task", sorted(TASKS))
def test_an_unknown_model_is_refused_for_every_task(task: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown model 'bogus' for task {task}; choose from"):
        resolve(Config(task=task, model="bogus"))


def test_the_model_a_run_used_is_recorded(tmp_path: Path) -> None:
    assert resolve(Config()).model == "mlp"
    assert resolve(Config(task="mnist")).model == "cnn"
    assert resolve(Config(task="mnist", model="mlp")).model == "mlp"
    assert main(["simulate", "--quiet", "--model", "bogus", "-o", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_eval_nodes_is_honoured_on_100_nodes(tmp_path: Path) -> None:
    results = run_simulation(settings(algorithm="dpsgd", nodes=100, topology="regular:4", rounds=2, eval_every=2,
                                    eval_nodes=5, out=str(tmp_path / "r")))
    assert results.summary["evaluated_nodes"] == 5
    assert "evaluating 5 of 100 node models" in (tmp_path / "r" / "run.log").read_text()


def test_eval_samples_evaluates_a_fixed_seeded_subset(tmp_path: Path) -> None:
    a = run_simulation(settings(**TINY, rounds=4, eval_every=2, eval_samples=100, out=str(tmp_path / "a")))
    run_simulation(settings(**TINY, rounds=4, eval_every=2, eval_samples=100, out=str(tmp_path / "b")))
    assert a.summary["eval_samples"] == 100
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()
    # accuracy on 100 samples is a multiple of 1/100
    assert all(abs(row["accuracy"] * 100 - round(row["accuracy"] * 100)) < 1e-9 for row in a.metrics)
    assert "eval_samples = 100" in (tmp_path / "a" / "config.toml").read_text()
    with pytest.raises(ConfigError, match="eval_samples = 0"):
        resolve(Config(eval_samples=0))


def test_rounds_and_duration_stop_at_whichever_comes_first(tmp_path: Path) -> None:
    short = run_simulation(settings(**TINY, rounds=3, duration=10_000.0, out=str(tmp_path / "rounds")))
    assert short.summary["rounds_completed"] == 3 and short.summary["virtual_seconds"] < 10_000
    timed = run_simulation(settings(**TINY, rounds=10_000, duration=30.0, out=str(tmp_path / "time")))
    assert timed.summary["virtual_seconds"] == pytest.approx(30.0) and timed.summary["rounds_completed"] < 10_000


@pytest.mark.parametrize(
    ("options", "warning"),
    [
        ({"data": "/somewhere"}, "--data has no effect: task digits makes its own data"),
        ({"download": True}, "--download has no effect"),
        ({"alpha": 0.5}, "--alpha and --beta have no effect on task digits"),
        ({"task": "synthetic-iid", "beta": 2.0}, "--alpha and --beta have no effect on task synthetic-iid"),
        ({"latency_values": "one-way"}, "--latency-values has no effect without --latency-matrix"),
    ],
)
def test_options_without_effect_warn(options: dict[str, object], warning: str) -> None:
    notes = config_warnings(resolve(Config(**options)))  # type: ignore[arg-type]
    assert any(warning in note for note in notes), notes


def test_warnings_reach_stderr_and_run_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["simulate", "--quiet", "--nodes", "12", "--sample-size", "3", "--rounds", "2", "--alpha", "0.3",
                 "-o", str(out)]) == 0
    assert "plexus: warning: --alpha and --beta have no effect" in capsys.readouterr().err
    assert "--alpha and --beta have no effect" in (out / "run.log").read_text()
    logging.getLogger("plexus").handlers.clear()  # nothing left behind for other tests


def test_compare_refuses_runs_of_different_tasks(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0)])
    b = make_run(tmp_path, "b", "plexus", [(10, 0.7, 100, 1.0)])
    summary = (b / "summary.json").read_text().replace('"task": "digits"', '"task": "mnist"')
    (b / "summary.json").write_text(summary)
    with pytest.raises(DataError, match=r"runs of different tasks cannot share one table \(digits: .*a; mnist: .*b\)"):
        compare([a, b])


def test_comparison_labels_stay_short(tmp_path: Path) -> None:
    many = {"lr": 0.1, "momentum": 0.5, "local_steps": 3, "batch_size": 10, "data": "/x/" + "y" * 200}
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0)])
    b = make_run(tmp_path, "b", "plexus", [(10, 0.7, 100, 1.0)], config=many)
    c = make_run(tmp_path, "c", "plexus", [(10, 0.7, 100, 1.0)], config={"data": "/x/" + "z" * 200})
    labels = [row.label for row in compare([a, b]).rows]
    assert labels == ["plexus (a)", "plexus (b)"]
    labels = [row.label for row in compare([a, c]).rows]
    assert all(len(label) <= 40 for label in labels), labels


def test_summary_and_comparison_label_a_dpsgd_run_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert main(["simulate", "--quiet", "--algorithm", "dpsgd", "--topology", "ring", "--nodes", "12",
                 "--rounds", "2", "-o", str(out)]) == 0
    assert "dpsgd (ring)" in capsys.readouterr().out
    assert compare([out]).rows[0].label == "dpsgd (ring)"


def test_unknown_flag_names_the_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--rouns", "3"])
    assert "(see 'plexus simulate --help')" in capsys.readouterr().err


def test_a_folder_given_as_a_file_is_called_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--config", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        resolve(Config(capacity_trace=str(tmp_path)))


def test_evaluation_keeps_the_faster_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from plexus.learning import trainer
    from plexus.learning.params import FlatModel
    from plexus.learning.tasks import task_class

    monkeypatch.setattr(trainer, "available_cores", lambda: 2)
    monkeypatch.setattr(trainer, "PARALLEL_WORK", 0)
    task = task_class("digits")({})
    data = task.load(None, 0)
    model = FlatModel(task.build_model(data))
    evaluator = trainer.Evaluator(task, data, model)
    assert evaluator.threads == 2 and evaluator.calibrate
    seen = []
    for _ in range(5):
        with evaluator.parallel():
            seen.append(torch.get_num_threads())
            evaluator.evaluate(model.vector())
    assert seen[:3] == [2, 2, 1] and len(set(seen[3:])) == 1 and not evaluator.calibrate
    assert evaluator.threads in (1, 2)


def test_another_algorithms_options_on_the_command_line_warn(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["simulate", "--quiet", "--nodes", "12", "--sample-size", "3", "--rounds", "2", "--topology", "ring",
                 "-o", str(out)]) == 0
    assert "topology = 'ring' has no effect on plexus" in capsys.readouterr().err
    assert "topology" in json.loads((out / "summary.json").read_text())["warnings"][0]
    logging.getLogger("plexus").handlers.clear()

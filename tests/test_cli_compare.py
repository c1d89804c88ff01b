"""``plexus compare`` and studies (``plexus simulate`` with several runs) through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from plexus.cli import main
from test_analysis import make_run


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plexus: error:")
    return lines[0]


def test_compare_prints_and_writes_table_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0), (20, 0.9, 200, 2.0)])
    d = make_run(tmp_path, "d", "dpsgd", [(10, 0.5, 1000, 10.0), (20, 0.8, 3000, 30.0)], std=0.02)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(d), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dpsgd (regular:10)" in text and "target accuracy >= 0.8" in text
    assert "15.0x" in text  # CTA: 3000 / 200 at the target
    for name in ("comparison.csv", "comparison.md", "convergence.png", "round-durations.png"):
        assert (out / name).stat().st_size > 200, name
    assert main(["compare", str(a), str(d), "--target", "0.85", "-o", str(out), "--no-figures"]) == 0
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["tta_s"] for r in rows] == ["20.0", ""]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/missing"], "does not exist"),
        (["{tmp}/ok/empty"], "is not a results folder"),
        (["{tmp}/bad"], "metrics.csv"),
        (["{tmp}/ok", "--target", "high"], "--target 'high' is not a number"),
    ],
)
def test_compare_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    (make_run(tmp_path, "ok", "plexus", [(10, 0.6, 100, 1.0)]) / "empty").mkdir()
    bad = make_run(tmp_path, "bad", "plexus", [(10, 0.6, 100, 1.0)])
    (bad / "metrics.csv").write_text("time_s,round,accuracy\n1,1,0.5,9,9\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    assert main(["compare", *args, "--out", str(tmp_path / "out")]) == 2
    assert message in one_error_line(capsys)


def test_study_from_an_algorithm_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    assert main(["simulate", "--algorithm", "plexus,fedavg", "--rounds", "10", "--quiet", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("plexus", "fedavg"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["algorithm"] == name and summary["rounds_completed"] == 10
        assert summary["seed"] == 0 and summary["nodes"] == 100
    for name in ("comparison.csv", "comparison.md", "convergence.png", "round-durations.png"):
        assert (out / "comparison" / name).is_file()
    assert "TTA (s)" in text and "best vs FedAvg" in text
    # the study folder can be compared again later, e.g. with another target
    assert main(["compare", str(out), "--target", "0.1", "-o", str(tmp_path / "again"), "--no-figures"]) == 0
    with (tmp_path / "again" / "comparison.csv").open() as handle:
        assert [r["run"] for r in csv.DictReader(handle)] == ["plexus", "fedavg"]


def test_study_from_a_runs_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.toml"
    config.write_text(
        'rounds = 50\nseed = 2\n[task]\nnodes = 30\n'
        '[runs.fast]\nalgorithm = "plexus"\n'
        '[runs.slow]\nalgorithm = "plexus"\n[runs.slow.task]\nlr = 0.01\n',
        encoding="utf-8",
    )
    out = tmp_path / "study"
    # flags override the file in every run
    assert main(["simulate", "--config", str(config), "--rounds", "5", "--quiet", "-o", str(out)]) == 0
    capsys.readouterr()
    fast = json.loads((out / "fast" / "summary.json").read_text())
    assert fast["rounds_completed"] == 5 and fast["seed"] == 2 and fast["nodes"] == 30
    assert 'lr = 0.01' in (out / "slow" / "config.toml").read_text()
    with (out / "comparison" / "comparison.csv").open() as handle:
        labels = [r["run"] for r in csv.DictReader(handle)]
    assert labels == ["plexus (lr=0.1)", "plexus (lr=0.01)"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--algorithm", "plexus,nope"], "unknown algorithm 'nope'"),
        (["--algorithm", "plexus,,fedavg"], "empty item"),
        (["--algorithm", "plexus,fedavg", "--topology", "ring,full"], "need an algorithm that uses one"),
    ],
)
def test_study_errors_exit_2_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    out = tmp_path / "study"
    assert main(["simulate", *arguments, "--rounds", "2", "--quiet", "-o", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_bad_runs_table_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.toml"
    config.write_text('[runs.a]\nalgorithm = "plexus"\nout = "x"\n', encoding="utf-8")
    assert main(["simulate", "--config", str(config), "--quiet"]) == 2
    assert "cannot set out" in one_error_line(capsys)
    config.write_text('[runs.a]\nalgorithm = "plexus"\n', encoding="utf-8")
    assert main(["simulate", "--config", str(config), "--algorithm", "plexus,fedavg", "--quiet"]) == 2
    assert "cannot be combined" in one_error_line(capsys)
    config.write_text('[runs.a]\nlearning_rate = 3\n', encoding="utf-8")
    assert main(["simulate", "--config", str(config), "--quiet"]) == 2
    assert "unknown option 'learning_rate'" in one_error_line(capsys)


def test_single_run_writes_no_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "single"
    assert main(["simulate", "--rounds", "3", "--nodes", "20", "--quiet", "-o", str(out)]) == 0
    assert (out / "summary.json").is_file() and not (out / "comparison").exists()
    assert "virtual s" in capsys.readouterr().out


def test_study_of_two_dpsgd_topologies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    code = main(["simulate", "--algorithm", "plexus,dpsgd", "--topology", "regular:4,one-peer-exp",
                 "--nodes", "20", "--rounds", "3", "--quiet", "-o", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"plexus", "dpsgd-regular-4", "dpsgd-one-peer-exp", "comparison",
                                            "study.json"}
    text = capsys.readouterr().out
    assert "dpsgd (regular:4)" in text and "dpsgd (one-peer-exp)" in text and "vs best DL" in text

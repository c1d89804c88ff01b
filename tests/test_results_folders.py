"""Results folders are safe: checked and created before any work, never overwritten by accident, and a
recorded config.toml replays from any directory without writing into its own folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plexus.cli import main
from plexus.config import Config, config_from_mapping
from plexus.errors import ConfigError
from plexus.metrics.results import prepare_folder
from plexus.sim.simulation import run_simulation

TINY = ["--quiet", "--nodes", "12", "--sample-size", "3", "--rounds", "2"]


def settings(**values: Any) -> Config:
    """A Config from flat settings (algorithm options included)."""
    return config_from_mapping(values)



def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("plexus: error:") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("{tmp}/a-file", "is a file, not a folder"),
        ("{tmp}/a-file/below", "a-file is a file, not a folder"),
        ("/proc/plexus-results", "cannot use /proc/plexus-results as the results folder"),
    ],
)
def test_bad_out_paths_get_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    out = where.replace("{tmp}", str(tmp_path))
    assert main(["simulate", *TINY, "-o", out]) == 2
    assert message in one_error_line(capsys)


def test_unwritable_out_folder_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        probe = locked / "probe"
        try:
            probe.write_text("x")  # root ignores permission bits: nothing to test then
            probe.unlink()
            pytest.skip("running as root: permission bits do not stop writes")
        except PermissionError:
            pass
        assert main(["simulate", *TINY, "-o", str(locked / "run")]) == 2
        assert "Permission denied" in one_error_line(capsys)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_immutable_out_folder_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a supporting file system)")
    try:
        for out in (frozen, frozen / "run"):
            assert main(["simulate", *TINY, "-o", str(out)]) == 2
            assert "Operation not permitted" in one_error_line(capsys)
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)


def test_compare_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *TINY, "-o", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    for out in (tmp_path / "run" / "summary.json", tmp_path / "run" / "summary.json" / "below"):
        assert main(["compare", str(tmp_path / "run"), "--no-figures", "--out", str(out)]) == 2
        assert "is a file, not a folder" in one_error_line(capsys)


def test_an_existing_results_folder_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["simulate", *TINY, "-o", str(out)]) == 0
    before = (out / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert main(["simulate", *TINY, "--seed", "3", "-o", str(out)]) == 2
    line = one_error_line(capsys)
    assert "already exists and is not empty" in line and "--overwrite" in line
    assert (out / "metrics.csv").read_bytes() == before
    # --overwrite replaces it, stray files of the old run included
    (out / "rounds.csv.partial").write_text("left over")
    assert main(["simulate", *TINY, "--seed", "3", "--overwrite", "-o", str(out)]) == 0
    assert "seed = 3" in (out / "config.toml").read_text()
    assert not (out / "rounds.csv.partial").exists()


def test_overwrite_never_deletes_files_plexus_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="holds files plexus did not write"):
        prepare_folder(out, overwrite=True)
    assert (out / "thesis.tex").read_text() == "precious"


def test_api_refuses_an_existing_folder_unless_overwrite(tmp_path: Path) -> None:
    config = settings(nodes=12, sample_size=3, rounds=2, out=str(tmp_path / "run"))
    run_simulation(config)
    with pytest.raises(ConfigError, match="already exists"):
        run_simulation(config)
    run_simulation(config, overwrite=True)


def test_a_replayed_config_never_writes_into_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", *TINY, "-o", "A"]) == 0
    recorded = (tmp_path / "A" / "config.toml").read_text()
    assert "\nout =" not in recorded
    before = (tmp_path / "A" / "metrics.csv").read_bytes()
    assert main(["simulate", "--quiet", "--config", "A/config.toml", "--rounds", "3"]) == 0
    assert (tmp_path / "A" / "metrics.csv").read_bytes() == before
    new = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    assert len(new) == 1 and "rounds = 3" in (new[0] / "config.toml").read_text()


def test_a_recorded_config_replays_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    (here / "traces").mkdir(parents=True)
    (here / "traces" / "capacity.csv").write_text("computation,communication\n20,5000\n40,8000\n")
    monkeypatch.chdir(here)
    assert main([*["simulate"], *TINY, "--capacity-trace", "traces/capacity.csv", "-o", "run"]) == 0
    recorded = (here / "run" / "config.toml").read_text()
    assert f'capacity_trace = "{here / "traces" / "capacity.csv"}"' in recorded
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["simulate", "--quiet", "--config", str(here / "run" / "config.toml"), "-o", "replay"]) == 0
    assert (elsewhere / "replay" / "metrics.csv").read_bytes() == (here / "run" / "metrics.csv").read_bytes()


def test_a_study_folder_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["simulate", *TINY, "--algorithm", "plexus,fedavg", "-o", str(out)]) == 2
    assert "study folder" in one_error_line(capsys)


def test_console_script_bad_out_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    done = subprocess.run([sys.executable, "-m", "plexus.cli", "simulate", *TINY, "-o", str(tmp_path / "f")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2 and "Traceback" not in done.stderr

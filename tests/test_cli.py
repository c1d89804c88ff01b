"""The plexus command: runs, and refuses bad input with one clear line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plexus.cli import main


def test_simulate_writes_results_and_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--quiet", "--nodes", "20", "--sample-size", "4", "--rounds", "3", "-o",
                 str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "plexus" in out and "digits" in out
    assert (tmp_path / "run" / "metrics.csv").is_file()


def test_config_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text('[run]\nrounds = 2\n[task]\nnodes = 12\n[protocol]\nsample_size = 3\n')
    assert main(["simulate", "--quiet", "--config", str(config), "--nodes", "15", "-o", str(tmp_path / "r")]) == 0
    resolved = (tmp_path / "r" / "config.toml").read_text()
    assert "nodes = 15" in resolved and "rounds = 2" in resolved and "sample_size = 3" in resolved


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "--nodes", "5", "--sample-size", "13"], "sample_size = 13 exceeds nodes = 5"),
        (["simulate", "--success-fraction", "0"], "success_fraction = 0: must be > 0"),
        (["simulate", "--success-fraction", "1.2"], "success_fraction = 1.2: must be <= 1"),
        (["simulate", "--sample-size", "0"], "sample_size = 0: must be >= 1"),
        (["simulate", "--sample-size", "many"], "sample_size = 'many' is not a valid int"),
        (["simulate", "--algorithm", "gossip", "--round-timeout", "0"], "round_timeout = 0: must be > 0"),
        (["simulate", "--algorithm", "dpsgd", "--nodes", "11", "--topology", "regular:3"], "regular:3"),
        (["simulate", "--stall-timeout", "0"], "stall_timeout = 0.0: must be a positive number"),
        (["simulate", "--compute-model", "per-hour"], "compute_model = 'per-hour'"),
        (["simulate", "--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
        (["simulate", "--capacity-trace", "/nonexistent/trace.csv"], "/nonexistent/trace.csv"),
        (["simulate", "--latency-matrix", "/nonexistent/m.txt"], "/nonexistent/m.txt"),
        (["simulate", "--config", "/nonexistent/c.toml"], "/nonexistent/c.toml"),
        (["simulate", "--algorithm", "nope"], "unknown algorithm 'nope'"),
        (["simulate", "--task", "nope"], "unknown task 'nope'"),
        (["simulate", "--partition", "dirichlet:x"], "dirichlet:x"),
        (["simulate", "--lr", "fast"], "lr = 'fast'"),
        (["simulate", "--seed", "-1"], "seed = -1: must be a non-negative integer"),
    ],
)
def test_bad_input_gets_one_line_and_exit_code_2(argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) if argv[1] == "--no-such-option" else _no_raise():
        code = main(argv)
        assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err


def test_unknown_key_in_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[task]\nnodez = 3\n")
    assert main(["simulate", "--config", str(config)]) == 2
    assert "[task] nodez: unknown option 'nodez' (did you mean 'nodes'?)" in capsys.readouterr().err


def test_console_script_exit_code_is_2_without_traceback() -> None:
    plexus_bin = Path(sys.executable).with_name("plexus")
    if not plexus_bin.exists():
        pytest.skip("console script not installed in this environment")
    done = subprocess.run([str(plexus_bin), "simulate", "--nodes", "3", "--sample-size", "4"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


class _no_raise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False

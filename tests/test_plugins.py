"""Algorithms as plug-ins: the example package in examples/plugins runs through simulate, a study and compare,
found by --plugin or by its entry point, with flags generated from its options, and nothing under src/ names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "examples" / "plugins" / "plexus-fedavgm"
PLEXUS = [sys.executable, "-m", "plexus.cli"]


def plexus(*args: str, pythonpath: list[Path] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (pythonpath or []))
    return subprocess.run([*PLEXUS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_no_file_under_src_names_the_plugin() -> None:
    for path in (ROOT / "src").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".toml", ".txt", ".cfg", ".md"):
            text = path.read_text(encoding="utf-8", errors="replace").lower()
            assert "fedavgm" not in text, f"{path} names the plug-in"


def test_plugin_by_module_name_runs_with_its_own_flags_and_replays(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = plexus("simulate", "--plugin", "plexus_fedavgm", "--algorithm", "fedavgm", "--server-momentum", "0.5",
                  "--nodes", "20", "--sample-size", "5", "--rounds", "4", "--eval-every", "2", "--quiet",
                  "-o", str(out), pythonpath=[PLUGIN_DIR])
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "fedavgm" and summary["rounds_completed"] == 4
    assert summary["traits"] == {"decentralized": False, "evaluation": "global", "clock": "rounds",
                                 "uses_sample_size": True, "uses_topology": False, "server": True}
    assert summary["rejections"] == {}
    config = (out / "config.toml").read_text()
    assert 'plugin = "plexus_fedavgm"' in config and "server_momentum = 0.5" in config
    # the recorded config names the plug-in, so a replay loads it by itself
    replay = tmp_path / "replay"
    again = plexus("simulate", "--config", str(out / "config.toml"), "--quiet", "-o", str(replay),
                   pythonpath=[PLUGIN_DIR])
    assert again.returncode == 0, again.stderr
    assert (replay / "metrics.csv").read_text() == (out / "metrics.csv").read_text()


def test_plugin_by_file_path_and_its_options_are_checked(tmp_path: Path) -> None:
    module = PLUGIN_DIR / "plexus_fedavgm.py"
    bad = plexus("simulate", "--plugin", str(module), "--algorithm", "fedavgm", "--server-momentum", "1.5",
                 "--quiet", "-o", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert "server_momentum = 1.5: must be < 1" in bad.stderr
    helped = plexus("simulate", "--plugin", str(module), "--help")
    assert "--server-momentum" in helped.stdout and "[fedavgm]" in helped.stdout


def test_missing_plugin_is_a_one_line_error() -> None:
    done = plexus("simulate", "--plugin", "no_such_plugin_module", "--quiet")
    assert done.returncode == 2
    assert "no_such_plugin_module: no such module" in done.stderr and "Traceback" not in done.stderr


def _fake_installation(site: Path) -> None:
    """What `pip install examples/plugins/plexus-fedavgm` leaves behind, minus pip: a dist-info with the entry
    point (the module itself comes from PYTHONPATH)."""
    info = site / "plexus_fedavgm-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plexus-fedavgm\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[plexus.algorithms]\nfedavgm = plexus_fedavgm\n")


def test_installed_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_installation(site)
    listed = plexus("algorithms", "--json", pythonpath=[site, PLUGIN_DIR])
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert {"plexus", "fedavg", "dpsgd", "gossip", "el-local", "el-oracle", "fedavgm"} <= set(rows)
    fedavgm = rows["fedavgm"]
    assert fedavgm["traits"]["server"] is True
    assert {o["name"] for o in fedavgm["options"]} == {"sample_size", "success_fraction", "server_lr",
                                                       "server_momentum"}
    assert {m["kind"] for m in fedavgm["messages"]} == {1001, 1002}


def test_broken_entry_point_warns_and_plexus_keeps_working(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[plexus.algorithms]\nbroken = module_that_does_not_exist\n")
    listed = plexus("algorithms", pythonpath=[site])
    assert listed.returncode == 0
    assert "plug-in broken" in listed.stderr and "could not be loaded" in listed.stderr
    assert "plexus:" in listed.stdout


def test_plugin_runs_in_a_study_and_is_compared_with_its_traits(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_installation(site)
    study = tmp_path / "study.toml"
    study.write_text(
        "[task]\nnodes = 20\n[run]\nrounds = 6\neval_every = 2\n[protocol]\nsample_size = 5\n"
        "[runs.plexus]\nalgorithm = \"plexus\"\n"
        "[runs.fedavgm]\nalgorithm = \"fedavgm\"\nserver_momentum = 0.3\n"
        "[runs.dpsgd]\nalgorithm = \"dpsgd\"\ntopology = \"ring\"\nrounds = 3\n"
    )
    out = tmp_path / "out"
    done = plexus("simulate", "--config", str(study), "--quiet", "-o", str(out), pythonpath=[site, PLUGIN_DIR])
    assert done.returncode == 0, done.stderr
    assert "has no effect" not in done.stderr  # sample_size is shared; dpsgd simply does not take it
    rows = {row["run"]: row for row in _csv(out / "comparison" / "comparison.csv")}
    assert rows["fedavgm"]["dl"] == "no" and rows["dpsgd (ring)"]["dl"] == "yes"
    # compare reads traits from the folders: no plug-in needs to be importable any more
    again = plexus("compare", str(out / "fedavgm"), str(out / "dpsgd"), "--no-figures", "-o", str(tmp_path / "c"))
    assert again.returncode == 0, again.stderr
    assert "dpsgd (ring)" in again.stdout and "fedavgm" in again.stdout


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("flag", ["--sample-size", "--success-fraction", "--topology", "--mixing",
                                  "--round-timeout", "--fanout", "--aggregator-sample", "--weighting"])
def test_flags_are_generated_from_the_algorithms_options(flag: str) -> None:
    from plexus.cli import build_parser

    parser = build_parser()
    simulate = parser._subparsers._group_actions[0].choices["simulate"]  # type: ignore[union-attr]
    assert flag in simulate.format_help()

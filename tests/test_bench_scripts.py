"""The benchmarks under bench/ keep working as the package changes: each one parses its options, the overhead
benchmark runs end to end on a small setting, and the Flower side of the Flower comparison (which runs in its own
environment, so nothing else exercises it here) builds the same learning side as a simulation."""

from __future__ import annotations

import importlib.util
import json
import runpy
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from plexus.config import config_from_mapping, resolve
from plexus.learning.trainer import TrainJob
from plexus.sim.simulation import build_learning

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py"))


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), BENCH / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "flower_side.py"])
def test_every_benchmark_parses_its_options(script: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    monkeypatch.syspath_prepend(str(BENCH))
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(BENCH / script), run_name="__main__")
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_the_overhead_benchmark_runs_and_prints_its_ratio(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    overhead = load("simulator_overhead.py")
    monkeypatch.setattr(sys, "argv", ["simulator_overhead.py", "--scenario", "plexus", "--nodes", "40",
                                      "--rounds", "4", "--repeat", "1"])
    overhead.main()
    out = capsys.readouterr().out
    fraction = float(out.rsplit("plexus_overhead_fraction=", 1)[1].split()[0])
    assert 0.0 < fraction < 1.0


def test_the_flower_side_trains_with_the_simulations_learning_side() -> None:
    flower_side = load("flower_side.py")
    settings = {"task": "digits", "nodes": 100, "sample_size": 13, "rounds": 2, "seed": 0, "local_steps": 5,
                "batch_size": 20}
    learn, config = flower_side.learning(json.dumps(settings))
    assert config.nodes == 100 and config.local_steps == 5
    _, ours = build_learning(resolve(config_from_mapping({**settings, "algorithm": "fedavg"})))
    initial = ours.model.vector()
    assert np.array_equal(learn.model.vector(), initial)
    job = TrainJob(7, 0, initial, 5)
    assert np.array_equal(learn.trainer.run(job).params, ours.trainer.run(job).params)

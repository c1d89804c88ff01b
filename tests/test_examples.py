"""The example study files shipped in examples/ stay valid as the options evolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from plexus.config import load_toml
from plexus.studies import plan_study

ALL = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))
EXAMPLES = [path for path in ALL if "runs" in load_toml(path)]
SINGLE = [path for path in ALL if path not in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_study_plans_without_error(path: Path) -> None:
    values = load_toml(path)
    runs = values.pop("runs", None)
    study = plan_study(values, runs, {}, str(path))
    names = [run.name for run in study]
    assert {"plexus", "fedavg", "gossip"} <= set(names)
    assert len(names) == len(set(names)) >= 5


@pytest.mark.parametrize("path", SINGLE, ids=[p.name for p in SINGLE])
def test_example_experiment_resolves(path: Path) -> None:
    from plexus.config import config_from_mapping, resolve

    resolve(config_from_mapping(load_toml(path), str(path)))

"""Everything a simulation creates while it runs (messages, transmissions, training jobs, timers, hand-offs) is
freed by reference counting as soon as nobody needs it: no reference cycles left for the garbage collector. A
cycle through a message or a job keeps its model array alive until the collector happens to run, and every
collection of a large run costs tens of milliseconds; both grew with the number of nodes."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import plexus
import plexus.sim.checkpoint as checkpoint
import plexus.sim.simulation as simulation
from plexus.protocol.registry import algorithms

SMALL: dict[str, dict[str, Any]] = {
    "plexus": {"sample_size": 5},
    "plexus-modest-crash": {"algorithm": "plexus", "membership": "modest", "sample_size": 5,
                            "churn": "crash-aggregator", "rounds": 30},
    "fedavg": {"sample_size": 5},
    "dpsgd": {"topology": "regular:4"},
    "gossip": {},
    "el-local": {"fanout": 3},
    "el-oracle": {"fanout": 3},
    "adpsgd": {},
    "adpsgd-divshare": {"degree": 3},
    "divshare": {"degree": 3},
    "swift": {"degree": 3},
}


def test_every_registered_algorithm_is_covered() -> None:
    assert set(algorithms()) <= set(SMALL)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_a_run_leaves_nothing_for_the_cycle_collector(case: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    garbage: Counter[str] = Counter()
    run_loop = checkpoint.run_loop

    def loop_without_collector(*args: Any, **kwargs: Any) -> None:
        # only the event loop is watched: setup (imports, data loading) has cycles of its own that do not grow
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            run_loop(*args, **kwargs)
            gc.collect()
            garbage.update(type(thing).__qualname__ for thing in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    monkeypatch.setattr(simulation, "run_loop", loop_without_collector)
    settings = {"algorithm": case, "nodes": 24, "rounds": 12, "eval_every": 6, "seed": 5, **SMALL[case]}
    results = plexus.simulate({**settings, "out": str(tmp_path / "run")})
    assert results.summary["rounds_completed"] == settings["rounds"]
    assert not garbage, f"reference cycles left by {case}: {dict(garbage.most_common(8))}"

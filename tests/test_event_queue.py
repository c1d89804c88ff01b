"""The event queue: the compiled one (plexus.sim._eventqueue) and heapq's give the same events in the same order."""

from __future__ import annotations

import hashlib
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

import plexus
import plexus.sim.engine as engine
import plexus.sim.network as network
from plexus.sim.engine import EventLoop, HeapQueue

compiled = pytest.mark.skipif(engine.CompiledQueue is None,
                              reason="plexus.sim._eventqueue was not built (no C compiler at install time)")


@compiled
@pytest.mark.parametrize("seed", range(20))
def test_both_queues_pop_the_same_entries_in_the_same_order(seed: int) -> None:
    rng = random.Random(seed)
    native, python = engine.CompiledQueue(), HeapQueue()
    sequence, now = 0, 0.0
    for _ in range(800):
        operation = rng.random()
        if operation < 0.55:
            sequence += 1
            time: float = now + rng.choice([0.0, rng.random(), 10 * rng.random(), 1.0])  # many ties
            if rng.random() < 0.05:
                time = int(now) + 1  # call_at with an int: it comes back as that int
            item = ("event", sequence)
            native.push(time, sequence, item)
            python.push(time, sequence, item)
        elif operation < 0.97:
            until = now + 3 * rng.random() if rng.random() < 0.3 else math.inf
            got, expected = native.pop_until(until), python.pop_until(until)
            assert got == expected
            if got is not None:
                assert got[1] is expected[1] and type(got[0]) is type(expected[0])
                now = got[0]
        else:  # as a checkpoint does
            native, python = pickle.loads(pickle.dumps((native, python)))
        assert len(native) == len(python)
    assert sorted(native.entries(), key=lambda e: e[1]) == sorted(python.entries(), key=lambda e: e[1])


@compiled
def test_the_compiled_queue_refuses_a_nan_time_and_frees_cycles() -> None:
    queue = engine.CompiledQueue()
    with pytest.raises(ValueError, match="NaN"):
        queue.push(math.nan, 1, None)
    queue.push(1.0, 1, queue)  # a cycle through the queue: the collector must be able to see it
    assert len(queue) == 1 and queue.pop_until(0.5) is None and queue.pop_until(1.0) == (1.0, queue)


def run_hash(tmp_path: Path, name: str) -> str:
    out = tmp_path / name
    plexus.simulate({"algorithm": "dpsgd", "task": "synthetic-iid", "nodes": 60, "topology": "regular:4",
                     "rounds": 4, "out": str(out)})
    return hashlib.sha256((out / "metrics.csv").read_bytes() + (out / "rounds.csv").read_bytes()).hexdigest()


@compiled
def test_a_simulation_writes_the_same_results_with_either_queue(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(EventLoop()._queue) is engine.CompiledQueue
    native = run_hash(tmp_path, "compiled")
    monkeypatch.setenv("PLEXUS_EVENT_QUEUE", "python")
    assert type(EventLoop()._queue) is HeapQueue
    assert run_hash(tmp_path, "python") == native


@pytest.mark.parametrize("variable", ["PLEXUS_EVENT_QUEUE", "PLEXUS_NETWORK_CORE"])
def test_a_misspelt_choice_of_core_is_refused_not_ignored(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from plexus.errors import ConfigError
    from plexus.sim.network import Network

    monkeypatch.setenv(variable, "pyhton")
    with pytest.raises(ConfigError, match=f"{variable}='pyhton': expected 'python' or 'compiled'"):
        Network(EventLoop(), np.array([1e6, 1e6]), np.array([1e6, 1e6]), lambda u, v: 0.0)
    monkeypatch.setenv(variable, "compiled")
    if engine.CompiledQueue is None or network.CompiledFlowTable is None:
        with pytest.raises(ConfigError, match="not built"):
            Network(EventLoop(), np.array([1e6, 1e6]), np.array([1e6, 1e6]), lambda u, v: 0.0)
    else:
        net = Network(EventLoop(), np.array([1e6, 1e6]), np.array([1e6, 1e6]), lambda u, v: 0.0)
        assert net.core == "compiled" and net.loop.core == "compiled"

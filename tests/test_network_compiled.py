"""The compiled flow table (plexus.sim._flowtable) against the Python one: the same results, bit for bit.

Both are driven through the same operations, in tables and in whole networks, and every rate, completion time,
arrival time and byte count must be the same float. Skipped where the extension was not built (no C compiler).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import plexus.sim.network as network
from plexus.protocol import aggregation
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network, PythonFlowTable

compiled = pytest.mark.skipif(network.CompiledFlowTable is None,
                              reason="plexus.sim._flowtable was not built (no C compiler at install time)")


def both_tables(endpoints: int, capacity: list[float]) -> tuple[Any, Any]:
    assert network.CompiledFlowTable is not None
    return PythonFlowTable(endpoints, list(capacity), False), network.CompiledFlowTable(list(capacity), endpoints)


def same(a: Any, b: Any) -> bool:
    """Equal, floats compared by their bits (NaN equals NaN), payloads by identity."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b) or (a != a and b != b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a is b


@compiled
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # a random flow may get no capacity: 0 / 0
@pytest.mark.parametrize("seed", range(12))
def test_every_operation_gives_the_same_bits_in_both_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    endpoints = int(rng.integers(3, 40))
    capacity = rng.uniform(1e4, 1e7, 2 * endpoints)
    capacity[rng.random(2 * endpoints) < 0.1] = math.inf  # a few unlimited links (servers)
    capacity[: endpoints // 3] = rng.uniform(1e3, 1e4, endpoints // 3)  # and slow uplinks that saturate
    python, native = both_tables(endpoints, capacity.tolist())
    payloads = [(f"arrival {i}", None, None) for i in range(4000)]
    now, finished_py, finished_c = 0.0, [], []
    for step in range(600):
        operation = rng.choice(["add", "add", "add", "burst", "advance", "finish", "fair", "realloc", "fresh",
                                "remove", "switch", "pickle"])
        if operation in ("add", "burst"):
            src = int(rng.integers(endpoints))
            for _ in range(1 if operation == "add" else int(rng.integers(2, 12))):
                dst = int(rng.integers(endpoints - 1))
                dst += dst >= src
                size = float(rng.integers(1501, 5_000_000))
                payload = payloads[step]
                python.add(src, dst, size, payload)
                native.add(src, dst, size, payload)
        elif operation == "advance":
            elapsed = float(rng.uniform(0, 2.0))
            now += elapsed
            python.advance(elapsed)
            native.advance(elapsed)
        elif operation == "finish":
            finished_py, finished_c = python.pop_finished(), native.pop_finished()
            assert same(finished_py, finished_c)
        elif operation == "fair":
            assert python.rates_still_fair(finished_py) == native.rates_still_fair(finished_c)
        elif operation == "realloc" and len(python):
            assert same(python.reallocate(now), native.reallocate(now))
        elif operation == "fresh":
            assert same(python.add_fresh(now), native.add_fresh(now))
        elif operation == "remove":
            victim = int(rng.integers(endpoints))
            def matches(src: int, dst: int, payload: Any, victim: int = victim) -> bool:
                return victim in (src, dst)
            assert same(python.remove(matches), native.remove(matches))
        elif operation == "switch":
            if python.many:
                python.to_few()
                native.to_few()
            else:
                python.to_many()
                native.to_many()
        elif operation == "pickle":  # as a checkpoint does: both in one pickle, so their payloads stay shared
            python, native = pickle.loads(pickle.dumps((python, native)))
            finished_py = finished_c = []
        assert len(python) == len(native) and python.many == native.many


def random_transfers(seed: int, nodes: int, count: int) -> list[tuple[float, int, int, int]]:
    rng = np.random.default_rng(seed)
    transfers = []
    for _ in range(count):
        src, dst = (int(x) for x in rng.choice(nodes, 2, replace=False))
        burst = int(rng.integers(1, 8))
        start = float(rng.uniform(0, 20))
        for _ in range(burst):  # a node sending one model to several neighbours at once, as in D-PSGD
            transfers.append((start, src, dst, int(rng.integers(1000, 3_000_000))))
            dst = (dst + 1) % nodes if (dst + 1) % nodes != src else (dst + 2) % nodes
    return transfers


def run_network(core: str, seed: int, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> list[tuple[str, Any]]:
    """Arrivals, sends and aborts with their times, and the byte counts, of one random workload."""
    monkeypatch.setenv("PLEXUS_NETWORK_CORE", core)
    for name, value in settings.items():
        monkeypatch.setattr(network, name, value)
    rng = np.random.default_rng(seed + 1000)
    nodes = 30
    upload = rng.uniform(2e5, 5e6, nodes)
    download = rng.uniform(2e5, 2e7, nodes)
    download[:4] = rng.uniform(2e4, 1e5, 4)
    upload[-1] = download[-1] = math.inf
    loop = EventLoop()
    net = Network(loop, upload, download, lambda u, v: 0.003 * (u + v) + 0.01)
    assert net.core == core
    log: list[tuple[str, Any]] = []
    handles: list[Any] = []

    def start(i: int, src: int, dst: int, nbytes: int) -> None:
        handles.append(net.transfer(src, dst, nbytes, lambda: log.append(("arrived", i, loop.now)),
                                    lambda: log.append(("sent", i, loop.now)),
                                    lambda reason: log.append(("aborted", i, reason, loop.now))))

    for i, (at, src, dst, nbytes) in enumerate(random_transfers(seed, nodes, 150)):
        loop.call_at(at, start, i, src, dst, nbytes)
    for at in rng.uniform(0, 25, 6):  # some transfers abandoned, a node crashing
        loop.call_at(float(at), lambda: handles and net.abort(handles[len(handles) // 2], "cancelled"))
    loop.call_at(12.5, lambda: net.abort_endpoint(3, "crashed"))
    loop.run()
    log.append(("bytes", net.bytes_sent.tolist(), net.bytes_received.tolist()))
    log.append(("allocations", net.reallocations, net.incremental_allocations))
    return log


@compiled
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("settings", [{}, {"FEW_FLOWS_MAX": 6, "FEW_FLOWS_BACK": 3},
                                      {"FEW_FLOWS_MAX": -1, "FEW_FLOWS_BACK": -1},
                                      {"INCREMENTAL": False, "FEW_FLOWS_MAX": 10, "FEW_FLOWS_BACK": 4}])
def test_a_network_gives_the_same_times_with_either_table(seed: int, settings: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    python = run_network("python", seed, monkeypatch, **settings)
    native = run_network("compiled", seed, monkeypatch, **settings)
    assert len(python) > 300
    assert same(python, native)


def test_the_network_core_can_be_forced_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_NETWORK_CORE", "python")
    net = Network(EventLoop(), np.array([1e6, 1e6]), np.array([1e6, 1e6]), lambda u, v: 0.0)
    assert net.core == "python"


@pytest.mark.skipif(aggregation.mean_into is None, reason="plexus.protocol._mean was not built (no C compiler)")
def test_the_compiled_average_gives_numpys_bits() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        count, size = int(rng.integers(1, 25)), int(rng.integers(1, 2000))
        models = [(rng.standard_normal(size) * 10 ** rng.uniform(-5, 5)).astype(np.float32) for _ in range(count)]
        expected = np.stack(models).astype(np.float64).mean(axis=0).astype(np.float32)
        assert aggregation.average(models).tobytes() == expected.tobytes()
    # anything but flat float32 vectors of one length goes to NumPy, with NumPy's answer
    odd: list[Callable[[], list[np.ndarray]]] = [
        lambda: [np.arange(4, dtype=np.float64), np.ones(4)],
        lambda: [np.arange(8, dtype=np.float32)[::2], np.ones(4, dtype=np.float32)],
    ]
    for make in odd:
        models = make()
        expected = np.stack(models).astype(np.float64).mean(axis=0).astype(np.float32)
        assert aggregation.average(models).tobytes() == expected.tobytes()
    with pytest.raises(ValueError):
        aggregation.average([np.ones(3, dtype=np.float32), np.ones(4, dtype=np.float32)])

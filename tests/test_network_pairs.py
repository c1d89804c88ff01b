"""Pairwise link capacities in the network model: a third resource per flow, still max-min fair.

Every expected time below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.sim.engine import EventLoop
from plexus.sim.network import Network, _FewFlows, _ManyFlows, max_min_rates

MB = 10**6


def make(upload: list[float], download: list[float], pairs: dict[tuple[int, int], float],
         latency: float = 0.0) -> tuple[EventLoop, Network]:
    loop = EventLoop()
    return loop, Network(loop, np.array(upload), np.array(download), lambda u, v: latency,
                         lambda u, v: pairs.get((u, v), math.inf))


def arrivals(loop: EventLoop, network: Network, transfers: list[tuple[float, int, int, int]]) -> list[float]:
    times = [math.nan] * len(transfers)
    for i, (at, src, dst, nbytes) in enumerate(transfers):
        def start(i: int = i, src: int = src, dst: int = dst, nbytes: int = nbytes) -> None:
            network.transfer(src, dst, nbytes, lambda: times.__setitem__(i, loop.now))
        loop.call_at(at, start)
    loop.run()
    return times


def test_a_pair_link_slower_than_both_nodes_sets_the_pace() -> None:
    # 4 MB over a 2 MB/s pair link between a 10 MB/s uplink and an unlimited downlink: 2 s
    loop, net = make([10 * MB, math.inf], [math.inf, math.inf], {(0, 1): 2 * MB})
    assert arrivals(loop, net, [(0.0, 0, 1, 4 * MB)]) == [pytest.approx(2.0)]


def test_pair_links_are_directed() -> None:
    # 0 -> 1 is limited to 1 MB/s, 1 -> 0 is not: 2 MB take 2 s one way and 0.2 s (10 MB/s uplink) the other
    loop, net = make([10 * MB, 10 * MB], [math.inf, math.inf], {(0, 1): 1 * MB})
    assert arrivals(loop, net, [(0.0, 0, 1, 2 * MB), (0.0, 1, 0, 2 * MB)]) == [pytest.approx(2.0),
                                                                              pytest.approx(0.2)]


def test_the_uplink_left_by_a_pair_limited_flow_goes_to_the_others() -> None:
    # uplink 6 MB/s; 0->1 capped at 1 MB/s by its pair link, 0->2 and 0->3 share the other 5: 2.5 MB/s each.
    # 0->1 (1 MB) and 0->3 (2.5 MB) both end at t=1; 0->2 has 2.5 MB left and then the whole 6 MB/s: 1 + 2.5/6
    loop, net = make([6 * MB, math.inf, math.inf, math.inf], [math.inf] * 4, {(0, 1): 1 * MB})
    done = arrivals(loop, net, [(0.0, 0, 1, 1 * MB), (0.0, 0, 2, 5 * MB), (0.0, 0, 3, int(2.5 * MB))])
    assert done == [pytest.approx(1.0), pytest.approx(1.0 + 2.5 / 6), pytest.approx(1.0)]


def test_flows_on_one_pair_link_share_it() -> None:
    # two 2 MB messages 0 -> 1 on a 2 MB/s pair link: 1 MB/s each, both done at 2 s; a third flow 0 -> 2 gets the
    # uplink's rest (10 - 2 = 8 MB/s): 4 MB in 0.5 s
    loop, net = make([10 * MB, math.inf, math.inf], [math.inf] * 3, {(0, 1): 2 * MB})
    done = arrivals(loop, net, [(0.0, 0, 1, 2 * MB), (0.0, 0, 1, 2 * MB), (0.0, 0, 2, 4 * MB)])
    assert done == [pytest.approx(2.0), pytest.approx(2.0), pytest.approx(0.5)]


def test_a_pair_link_and_a_downlink_together() -> None:
    # into node 2 (downlink 3 MB/s): 0->2 via a 1 MB/s pair link, 1->2 unlimited: rates 1 and 2 MB/s.
    # 1->2 (2 MB) ends at 1 s; then 0->2 still has its pair link's 1 MB/s: 3 MB end at 3 s
    loop, net = make([10 * MB, 10 * MB, math.inf], [math.inf, math.inf, 3 * MB], {(0, 2): 1 * MB})
    assert arrivals(loop, net, [(0.0, 0, 2, 3 * MB), (0.0, 1, 2, 2 * MB)]) == [pytest.approx(3.0),
                                                                              pytest.approx(1.0)]


def test_a_small_message_is_limited_by_its_pair_link_too() -> None:
    # 1,000 bytes (below one MTU, no sharing) over a 1,000 B/s pair link: 1 s, plus 0.5 s latency
    loop, net = make([MB, MB], [MB, MB], {(0, 1): 1000.0}, latency=0.5)
    assert arrivals(loop, net, [(0.0, 0, 1, 1000)]) == [pytest.approx(1.5)]


def test_without_pair_capacities_the_original_flow_tables_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = EventLoop()
    monkeypatch.setenv("PLEXUS_NETWORK_CORE", "python")
    net = Network(loop, np.array([MB, MB]), np.array([MB, MB]), lambda u, v: 0.0)
    assert type(net._flows.table) is _FewFlows and net._flows._many is _ManyFlows and net.core == "python"
    paired = Network(loop, np.array([MB, MB]), np.array([MB, MB]), lambda u, v: 0.0, lambda u, v: MB)
    table = paired._flows.table
    assert type(table) is not _FewFlows and isinstance(table, _FewFlows) and paired.core == "python"
    monkeypatch.delenv("PLEXUS_NETWORK_CORE")
    paired = Network(loop, np.array([MB, MB]), np.array([MB, MB]), lambda u, v: 0.0, lambda u, v: MB)
    assert paired.core == "python"  # pair links are modelled by the Python tables only


def test_a_non_positive_pair_capacity_is_refused() -> None:
    loop, net = make([MB, MB], [MB, MB], {(0, 1): 0.0})
    with pytest.raises(ValueError, match="pair link 0 -> 1"):
        net.transfer(0, 1, 10 * MB, lambda: None)


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(st.one_of(st.floats(min_value=1.0, max_value=100.0), st.just(math.inf)), min_size=14,
                  max_size=14),
    flows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(-1, 5)), min_size=1, max_size=24),
)
def test_small_and_vectorised_paired_max_min_agree(caps, flows) -> None:
    from plexus.sim.network import _max_min_small_paired, _max_min_vectorised_paired

    up = np.array([f[0] for f in flows])
    down = np.array([4 + f[1] for f in flows])
    pair = np.array([-1 if f[2] < 0 else 8 + f[2] for f in flows])
    capacity = np.array(caps)
    vectorised = _max_min_vectorised_paired(up, down, pair, capacity)
    small = _max_min_small_paired(up.tolist(), down.tolist(), pair.tolist(), capacity)
    assert np.allclose(vectorised, small, rtol=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    caps=st.lists(st.floats(min_value=1.0, max_value=100.0), min_size=10, max_size=10),
    flows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(-1, 3)), min_size=1, max_size=14),
)
def test_paired_rates_are_feasible_and_every_flow_has_a_saturated_bottleneck(caps, flows) -> None:
    up = np.array([f[0] for f in flows])
    down = np.array([3 + f[1] for f in flows])
    pair = np.array([-1 if f[2] < 0 else 6 + f[2] for f in flows])
    capacity = np.array(caps)
    rates = max_min_rates(up, down, capacity, pair)
    load = np.zeros(10)
    for column in (up, down):
        load += np.bincount(column, weights=rates, minlength=10)
    load += np.bincount(pair[pair >= 0], weights=rates[pair >= 0], minlength=10)
    assert (load <= capacity * (1 + 1e-9)).all()
    for i in range(len(flows)):
        path = [up[i], down[i]] + ([pair[i]] if pair[i] >= 0 else [])
        ok = False
        for r in path:
            crossing = (up == r) | (down == r) | (pair == r)
            if load[r] >= capacity[r] * (1 - 1e-9) and rates[crossing].max() <= rates[i] * (1 + 1e-9):
                ok = True
        assert ok, (flows, caps, rates)


@pytest.mark.parametrize("seed", [0, 1])
def test_python_and_numpy_paired_flow_tables_give_the_same_arrivals(seed: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import plexus.sim.network as network

    rng = np.random.default_rng(seed)
    nodes = 12
    upload = rng.uniform(1e5, 1e7, nodes)
    upload[0] = math.inf
    download = rng.uniform(1e5, 1e7, nodes)
    regions = rng.integers(0, 3, nodes)
    region_rates = rng.uniform(2e5, 5e6, (3, 3))
    region_rates[0, 0] = math.inf

    def pair(u: int, v: int) -> float:
        return float(region_rates[regions[u], regions[v]])

    transfers = [(float(rng.uniform(0, 3)), int(a), int(b), int(rng.integers(1, 5 * MB)))
                 for a, b in (rng.choice(nodes, 2, replace=False) for _ in range(80))]

    def simulate(few_max: int, few_back: int) -> list[float]:
        monkeypatch.setattr(network, "FEW_FLOWS_MAX", few_max)
        monkeypatch.setattr(network, "FEW_FLOWS_BACK", few_back)
        loop = EventLoop()
        net = Network(loop, upload, download, lambda u, v: 0.01 * (u + v), pair)
        return arrivals(loop, net, transfers)

    python_only = simulate(10**9, 0)
    numpy_only = simulate(-1, -1)
    switching = simulate(20, 8)
    assert np.allclose(python_only, numpy_only, rtol=1e-9)
    assert np.allclose(python_only, switching, rtol=1e-9)


def test_aborting_a_paired_transfer_frees_its_pair_link() -> None:
    # two 2 MB flows 0 -> 1 share a 2 MB/s pair link (1 MB/s each); the first is aborted at 1 s (1 MB sent),
    # then the second has 1 MB left at the whole 2 MB/s: done at 1.5 s
    loop, net = make([10 * MB, math.inf], [math.inf, math.inf], {(0, 1): 2 * MB})
    handles: list[object] = []
    done: list[float] = []
    loop.call_at(0.0, lambda: handles.append(net.transfer(0, 1, 2 * MB, lambda: done.append(-1.0))))
    loop.call_at(0.0, lambda: net.transfer(0, 1, 2 * MB, lambda: done.append(loop.now)))
    loop.call_at(1.0, lambda: net.abort(handles[0]))
    loop.run()
    assert done == [pytest.approx(1.5)] and net.bytes_sent[0] == 3 * MB

"""Network model: transfer times, max-min fair sharing of up- and downlinks, latency, byte counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.sim.engine import EventLoop
from plexus.sim.network import Network, _FewFlows, _ManyFlows, max_min_rates

MB = 10**6


def make(upload: list[float], download: list[float], latency: float = 0.0) -> tuple[EventLoop, Network]:
    loop = EventLoop()
    return loop, Network(loop, np.array(upload), np.array(download), lambda u, v: latency)


def arrivals(loop: EventLoop, network: Network, transfers: list[tuple[float, int, int, int]]) -> list[float]:
    """Start each (time, src, dst, bytes) transfer; return each one's arrival time."""
    times = [math.nan] * len(transfers)
    for i, (at, src, dst, nbytes) in enumerate(transfers):
        def start(i: int = i, src: int = src, dst: int = dst, nbytes: int = nbytes) -> None:
            network.transfer(src, dst, nbytes, lambda: times.__setitem__(i, loop.now))
        loop.call_at(at, start)
    loop.run()
    return times


def test_lone_transfer_takes_size_over_bandwidth() -> None:
    loop, net = make([10 * MB, math.inf], [math.inf, math.inf])
    assert arrivals(loop, net, [(0.0, 0, 1, 10 * MB)]) == [pytest.approx(1.0)]


def test_two_overlapping_transfers_share_the_uplink_and_both_end_at_two_seconds() -> None:
    loop, net = make([10 * MB, math.inf, math.inf], [math.inf] * 3)
    done = arrivals(loop, net, [(0.0, 0, 1, 10 * MB), (0.0, 0, 2, 10 * MB)])
    assert done == [pytest.approx(2.0), pytest.approx(2.0)]


def test_a_transfer_joining_later_slows_the_first_one_down() -> None:
    loop, net = make([10 * MB, math.inf, math.inf], [math.inf] * 3)
    # first alone for 0.5 s (5 MB done), then both at 5 MB/s: first ends at 1.5 s, second has 5 MB left at
    # 1.5 s and then runs alone at 10 MB/s: ends at 2.0 s
    done = arrivals(loop, net, [(0.0, 0, 1, 10 * MB), (0.5, 0, 2, 10 * MB)])
    assert done == [pytest.approx(1.5), pytest.approx(2.0)]


def test_receiver_downlink_is_the_bottleneck() -> None:
    # two fast senders into one receiver with a 4 MB/s downlink: 2 MB/s each
    loop, net = make([100 * MB, 100 * MB, 1.0], [math.inf, math.inf, 4 * MB])
    done = arrivals(loop, net, [(0.0, 0, 2, 4 * MB), (0.0, 1, 2, 2 * MB)])
    # the 2 MB one ends at 1 s; the other has 2 MB left and then gets all 4 MB/s: 1.5 s
    assert done == [pytest.approx(1.5), pytest.approx(1.0)]


def test_max_min_gives_spare_capacity_to_unconstrained_flows() -> None:
    # node 0 uploads at 10 MB/s to nodes 1 and 2; node 1's downlink is only 2 MB/s, so flow 0->2 gets 8 MB/s
    rates = max_min_rates(np.array([0, 0]), np.array([3 + 1, 3 + 2]),
                          np.array([10 * MB, math.inf, math.inf, math.inf, 2 * MB, math.inf]))
    assert rates.tolist() == [pytest.approx(2 * MB), pytest.approx(8 * MB)]


def test_infinite_server_sends_to_many_nodes_each_at_their_downlink() -> None:
    loop, net = make([math.inf, 1.0, 1.0], [math.inf, 2 * MB, 4 * MB])
    done = arrivals(loop, net, [(0.0, 0, 1, 4 * MB), (0.0, 0, 2, 4 * MB)])
    assert done == [pytest.approx(2.0), pytest.approx(1.0)]


def test_infinite_links_on_both_ends_take_only_latency() -> None:
    loop, net = make([math.inf, math.inf], [math.inf, math.inf], latency=0.25)
    assert arrivals(loop, net, [(1.0, 0, 1, 123)]) == [pytest.approx(1.25)]


def test_latency_is_added_after_the_transfer() -> None:
    loop = EventLoop()
    net = Network(loop, np.array([1 * MB, 1 * MB]), np.array([1 * MB, 1 * MB]),
                  lambda u, v: 0.1 if (u, v) == (0, 1) else 0.3)
    done = arrivals(loop, net, [(0.0, 0, 1, MB), (0.0, 1, 0, MB)])
    assert done == [pytest.approx(1.1), pytest.approx(1.3)]


def test_bytes_are_counted_per_sender_and_receiver() -> None:
    loop, net = make([MB, MB, MB], [MB, MB, MB])
    arrivals(loop, net, [(0.0, 0, 1, 100), (0.0, 0, 2, 50), (0.0, 2, 1, 7)])
    assert net.bytes_sent.tolist() == [150, 0, 7]
    assert net.bytes_received.tolist() == [0, 107, 50]
    assert net.bytes_total == 157 and net.messages_sent == 3


@settings(max_examples=60, deadline=None)
@given(
    caps=st.lists(st.floats(min_value=1.0, max_value=100.0), min_size=6, max_size=6),
    flows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=12),
)
def test_max_min_rates_are_feasible_and_every_flow_has_a_saturated_bottleneck(caps, flows) -> None:
    up = np.array([f[0] for f in flows])
    down = np.array([3 + f[1] for f in flows])
    capacity = np.array(caps)
    rates = max_min_rates(up, down, capacity)
    load = np.bincount(up, weights=rates, minlength=6) + np.bincount(down, weights=rates, minlength=6)
    assert (load <= capacity * (1 + 1e-9)).all()
    for i in range(len(flows)):
        # a flow's bottleneck: a saturated resource on its path where no other flow gets more than it
        ok = False
        for r in (up[i], down[i]):
            crossing = (up == r) | (down == r)
            if load[r] >= capacity[r] * (1 - 1e-9) and rates[crossing].max() <= rates[i] * (1 + 1e-9):
                ok = True
        assert ok, (flows, caps, rates)


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(st.one_of(st.floats(min_value=1.0, max_value=100.0), st.just(math.inf)), min_size=8, max_size=8),
    flows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=16),
)
def test_small_and_vectorised_max_min_agree(caps, flows) -> None:
    from plexus.sim.network import _max_min_small, _max_min_vectorised

    up = np.array([f[0] for f in flows])
    down = np.array([4 + f[1] for f in flows])
    capacity = np.array(caps)
    vectorised = _max_min_vectorised(up, down, capacity)
    small = _max_min_small(up.tolist(), down.tolist(), capacity)
    assert np.allclose(vectorised, small, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_python_and_numpy_flow_tables_give_the_same_arrivals(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import plexus.sim.network as network

    rng = np.random.default_rng(seed)
    nodes = 12
    upload = rng.uniform(1e5, 1e7, nodes)
    upload[0] = math.inf
    download = rng.uniform(1e5, 1e7, nodes)
    transfers = [(float(rng.uniform(0, 3)), int(a), int(b), int(rng.integers(1, 5 * MB)))
                 for a, b in (rng.choice(nodes, 2, replace=False) for _ in range(80))]

    def simulate(few_max: int, few_back: int) -> list[float]:
        monkeypatch.setattr(network, "FEW_FLOWS_MAX", few_max)
        monkeypatch.setattr(network, "FEW_FLOWS_BACK", few_back)
        loop = EventLoop()
        net = Network(loop, upload, download, lambda u, v: 0.01 * (u + v))
        return arrivals(loop, net, transfers)

    python_only = simulate(10**9, 0)
    numpy_only = simulate(-1, -1)
    switching = simulate(20, 8)
    assert np.allclose(python_only, numpy_only, rtol=1e-9)
    assert np.allclose(python_only, switching, rtol=1e-9)


def test_on_sent_fires_when_the_last_byte_leaves_and_arrival_one_latency_later() -> None:
    loop = EventLoop()
    net = Network(loop, np.array([MB, math.inf]), np.array([math.inf, math.inf]), lambda u, v: 0.5)
    events: list[tuple[str, float]] = []
    loop.call_at(0.0, lambda: net.transfer(0, 1, 2 * MB, lambda: events.append(("arrived", loop.now)),
                                           lambda: events.append(("sent", loop.now))))
    loop.run()
    assert events == [("sent", pytest.approx(2.0)), ("arrived", pytest.approx(2.5))]


def test_a_small_message_bypasses_the_sharing_and_does_not_slow_a_large_one() -> None:
    loop, net = make([1000.0, math.inf, math.inf], [math.inf] * 3)
    times: dict[str, float] = {}
    loop.call_at(0.0, lambda: net.transfer(0, 1, 4000, lambda: times.setdefault("large", loop.now)))
    loop.call_at(1.0, lambda: net.transfer(0, 2, 1500, lambda: times.setdefault("small", loop.now)))
    loop.run()
    # the 1500-byte message leaves after 1500 / 1000 s on its own; the large one keeps the whole uplink
    assert times == {"large": pytest.approx(4.0), "small": pytest.approx(2.5)}
    assert net.bytes_total == 5500 and net.messages_sent == 2
    assert net.transfer(0, 1, 1500, lambda: None) is None  # a small message has no handle: it cannot be aborted


def test_aborting_a_transfer_takes_its_unsent_bytes_off_the_count_and_frees_the_link() -> None:
    loop, net = make([1000.0, math.inf, math.inf], [math.inf] * 3)
    events: list[tuple[str, float]] = []
    handles: list[object] = []
    loop.call_at(0.0, lambda: handles.append(net.transfer(
        0, 1, 4000, lambda: events.append(("first arrived", loop.now)), None,
        lambda reason: events.append((f"first aborted: {reason}", loop.now)))))
    loop.call_at(0.0, lambda: net.transfer(0, 2, 4000, lambda: events.append(("second arrived", loop.now))))
    results: list[bool] = []
    loop.call_at(2.0, lambda: results.append(net.abort(handles[0], "cancelled")))  # 1000 bytes each so far
    loop.call_at(3.0, lambda: results.append(net.abort(handles[0])))  # already gone
    loop.run()
    assert results == [True, False]
    # the second transfer had 3000 bytes left at t=2 and then the whole uplink: done at 5 s
    assert events == [("first aborted: cancelled", 2.0), ("second arrived", pytest.approx(5.0))]
    assert net.bytes_sent.tolist() == [1000 + 4000, 0, 0] and net.active_transfers == 0
    assert net.abort(None) is False


def test_aborting_an_endpoint_stops_every_transfer_from_or_to_it() -> None:
    loop, net = make([1000.0, 1000.0, math.inf], [math.inf] * 3)
    aborted: list[tuple[int, str]] = []
    def start(src: int, dst: int) -> None:
        net.transfer(src, dst, 4000, lambda: None, None, lambda reason: aborted.append((src * 10 + dst, reason)))

    for src, dst in ((0, 1), (1, 0), (0, 2), (1, 2)):
        loop.call_at(0.0, start, src, dst)
    counts: list[int] = []
    loop.call_at(1.0, lambda: counts.append(net.abort_endpoint(1, "crashed")))
    loop.run()
    assert counts == [3] and sorted(aborted) == [(1, "crashed"), (10, "crashed"), (12, "crashed")]
    # by t=1 each of the four had sent 500 bytes; the survivor (0 -> 2) is carried in full
    assert net.bytes_sent.tolist() == [500 + 4000, 500 + 500, 0]


@pytest.mark.parametrize("table", [_FewFlows, _ManyFlows])
def test_a_transfer_too_close_to_its_end_for_the_clock_to_move_finishes_now(table: type) -> None:
    """Late in a run (t ~ 33,000 s) a leftover of 3e-5 bytes at 10 MB/s is due in 3e-12 s, less than half the
    clock's resolution there: scheduling its completion would fire at the same instant forever (a hang seen at
    round 2444 of a long digits run). It must count as finished now."""
    now = 33296.2
    flows = table()
    flows.add(0, 1, 10_000.0, 3e-5, (lambda: None, None, None))
    capacity = [1e7, 1e7, 1e7, 1e7]
    soonest = flows.reallocate(capacity if table is _FewFlows else np.array(capacity), 2, now)
    assert now + 3e-12 == now and soonest == 0.0
    assert [src for src, *_ in flows.pop_finished()] == [0]
@pytest.mark.parametrize("seed", range(6))
def test_incremental_allocation_gives_the_same_arrivals_as_full_reallocations(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bursts of transfers from one sender (a D-PSGD node sending to its neighbours), many in flight: giving only
    the new flows their rates, or skipping a reallocation when a finished flow freed no shared bottleneck, must
    change no arrival time."""
    import plexus.sim.network as network

    rng = np.random.default_rng(seed)
    nodes = 60
    upload = rng.uniform(1e5, 1e6, nodes)
    download = rng.uniform(5e5, 1e7, nodes)
    download[:5] = rng.uniform(1e4, 5e4, 5)  # a few slow receivers whose downlinks saturate
    transfers = []
    for sender in rng.permutation(nodes)[:50]:
        start = float(rng.uniform(0, 5))
        size = int(rng.integers(2_000, 200_000))
        for receiver in rng.choice([n for n in range(nodes) if n != sender], 6, replace=False):
            transfers.append((start, int(sender), int(receiver), size))

    def simulate(incremental: bool) -> tuple[list[float], int]:
        monkeypatch.setattr(network, "INCREMENTAL", incremental)
        monkeypatch.setattr(network, "FEW_FLOWS_MAX", 8)
        monkeypatch.setattr(network, "FEW_FLOWS_BACK", 4)
        loop = EventLoop()
        net = Network(loop, upload, download, lambda u, v: 0.001 * (u + v))
        times = arrivals(loop, net, transfers)
        return times, net.incremental_allocations

    full, none = simulate(False)
    incremental, used = simulate(True)
    assert none == 0 and used > 0
    assert incremental == full

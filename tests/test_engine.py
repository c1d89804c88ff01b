"""The virtual-time engine: ordering, determinism of simultaneous events, cancellation."""

from __future__ import annotations

import pytest

from plexus.protocol.futures import CancelledError, Future, Task
from plexus.sim.engine import EventLoop


def test_events_run_in_time_order_and_simultaneous_ones_in_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    for name, at in [("c", 2.0), ("a", 1.0), ("b1", 1.5), ("b2", 1.5), ("b3", 1.5)]:
        loop.call_at(at, lambda n=name: seen.append((loop.now, n)))
    loop.run()
    assert seen == [(1.0, "a"), (1.5, "b1"), (1.5, "b2"), (1.5, "b3"), (2.0, "c")]
    assert loop.events_processed == 5


def test_cancelled_timer_never_fires() -> None:
    loop = EventLoop()
    fired: list[str] = []
    timer = loop.call_later(1.0, fired.append, "x")
    loop.call_later(0.5, timer.cancel)
    loop.run()
    assert fired == [] and timer.cancelled


def test_run_until_stops_at_the_horizon_and_can_resume() -> None:
    loop = EventLoop()
    fired: list[float] = []
    for t in (1.0, 2.0, 3.0):
        loop.call_at(t, lambda: fired.append(loop.now))
    loop.run(until=2.5)
    assert fired == [1.0, 2.0] and loop.now == 2.5
    loop.run()
    assert fired == [1.0, 2.0, 3.0]


def test_stop_ends_the_run_after_the_current_event() -> None:
    loop = EventLoop()
    fired: list[int] = []
    loop.call_at(1.0, lambda: (fired.append(1), loop.stop()))
    loop.call_at(1.0, lambda: fired.append(2))
    loop.run()
    assert fired == [1]


def test_scheduling_in_the_past_is_refused() -> None:
    loop = EventLoop()
    loop.call_at(5.0, lambda: None)
    loop.run()
    with pytest.raises(ValueError):
        loop.call_at(1.0, lambda: None)


def test_coroutines_sleep_in_virtual_time_and_can_be_cancelled() -> None:
    loop = EventLoop()
    log: list[tuple[str, float]] = []

    def sleep(delay: float) -> Future[None]:
        future: Future[None] = Future()
        timer = loop.call_later(delay, future.set_result, None)
        future._on_cancel = timer.cancel
        return future

    async def worker(name: str, delay: float) -> str:
        try:
            for _ in range(3):
                await sleep(delay)
                log.append((name, loop.now))
        except CancelledError:
            log.append((name + " cancelled", loop.now))
            raise
        return name

    fast = Task(worker("fast", 1.0))
    slow = Task(worker("slow", 2.5))
    loop.call_at(4.0, slow.cancel)
    loop.run()
    assert fast.result() == "fast"
    assert slow.cancelled()
    assert log == [("fast", 1.0), ("fast", 2.0), ("slow", 2.5), ("fast", 3.0), ("slow cancelled", 4.0)]

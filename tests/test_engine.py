"""The virtual-time engine: ordering, determinism of simultaneous events, cancellation, timers with asyncio's
semantics, daemon timers."""

from __future__ import annotations

import math

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
    assert fired == [] and timer.cancelled()


def test_run_until_stops_at_the_horizon_and_can_resume() -> None:
    loop = EventLoop()
    fired: list[float] = []
    for t in (1.0, 2.0, 3.0):
        loop.call_at(t, lambda: fired.append(loop.now))
    loop.run(until=2.5)
    assert fired == [1.0, 2.0] and loop.now == 2.5
    loop.run()
    assert fired == [1.0, 2.0, 3.0]


def test_run_until_does_not_move_the_clock_past_the_last_event_when_the_queue_empties() -> None:
    loop = EventLoop()
    loop.call_at(3.0, lambda: None)
    loop.run(until=10.0)
    assert loop.now == 3.0  # nothing happened after t=3: the clock says so


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
        future.on_cancel(timer.cancel)
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


def test_a_negative_delay_counts_as_zero_and_runs_in_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[tuple[str, float]] = []
    loop.call_at(2.0, lambda: (
        loop.call_later(0.0, lambda: seen.append(("zero", loop.now))),
        loop.call_later(-5.0, lambda: seen.append(("negative", loop.now))),
        seen.append(("scheduling", loop.now)),
    ))
    loop.run()
    # never synchronously inside call_later, never in the past, and in the order they were scheduled
    assert seen == [("scheduling", 2.0), ("zero", 2.0), ("negative", 2.0)]


def test_a_nan_delay_is_refused() -> None:
    loop = EventLoop()
    with pytest.raises(ValueError, match="NaN"):
        loop.call_later(math.nan, lambda: None)
    with pytest.raises(ValueError):
        loop.call_at(math.nan, lambda: None)
    assert loop.pending() == 0


def test_when_is_the_absolute_time_of_the_callback() -> None:
    loop = EventLoop()
    timers = []
    loop.call_at(4.0, lambda: timers.extend([loop.call_later(1.5, lambda: None), loop.call_later(-1, lambda: None)]))
    loop.run()
    assert [timer.when() for timer in timers] == [5.5, 4.0]


def test_cancel_is_idempotent_and_does_nothing_after_the_callback_ran() -> None:
    loop = EventLoop()
    fired: list[str] = []
    early = loop.call_later(1.0, fired.append, "early")
    late = loop.call_later(2.0, fired.append, "late")
    assert not late.cancelled()
    late.cancel()
    late.cancel()
    assert late.cancelled()
    loop.run()
    assert fired == ["early"]
    early.cancel()  # after it ran: nothing happens, no error
    assert fired == ["early"]


def test_daemon_timers_do_not_keep_the_loop_alive() -> None:
    loop = EventLoop()
    fired: list[tuple[str, float]] = []
    loop.call_daemon(1.0, lambda: fired.append(("daemon", loop.now)))
    loop.call_daemon(100.0, lambda: fired.append(("late daemon", loop.now)))
    loop.call_at(5.0, lambda: fired.append(("work", loop.now)))
    assert loop.pending() == 1
    loop.run()
    # a daemon due before the last real event runs; one due after it does not keep the run going
    assert fired == [("daemon", 1.0), ("work", 5.0)] and loop.now == 5.0
    loop.run()
    assert fired == [("daemon", 1.0), ("work", 5.0)]
    with pytest.raises(ValueError):
        loop.call_daemon(1.0, lambda: None)


def test_a_loop_with_only_daemons_returns_at_once() -> None:
    loop = EventLoop()
    fired: list[float] = []
    loop.call_daemon(1.0, fired.append, 1.0)
    loop.run()
    assert fired == [] and loop.now == 0.0 and loop.events_processed == 0


def test_deferred_callbacks_run_right_after_the_current_event() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_at(1.0, lambda: (loop.defer(lambda: seen.append("deferred")), seen.append("event")))
    loop.call_at(1.0, lambda: seen.append("next event"))
    loop.run()
    assert seen == ["event", "deferred", "next event"]

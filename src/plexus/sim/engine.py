"""Discrete-event engine in virtual time.

Events are ordered by (time, sequence number): two events at the same virtual time run in the order they were
scheduled, so a run is deterministic. Cancellation is lazy (a flag checked when the event is popped), which
keeps scheduling and cancelling O(log n) and O(1). There is no wall-clock sleep anywhere.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any


class EventTimer:
    """A scheduled callback; ``cancel()`` before it fires and it never runs."""

    __slots__ = ("time", "callback", "args", "_cancelled")

    def __init__(self, time: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.time = time
        self.callback = callback
        self.args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class EventLoop:
    """A heap of timers in virtual time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, EventTimer]] = []
        self._sequence = 0
        self._now = 0.0
        self._stopped = False
        self._deferred: list[Callable[[], Any]] = []
        self.events_processed = 0

    @property
    def now(self) -> float:
        return self._now

    def call_at(self, time: float, callback: Callable[..., Any], *args: Any) -> EventTimer:
        if not time >= self._now:  # also refuses NaN
            raise ValueError(f"cannot schedule at {time}, before the current time {self._now}")
        timer = EventTimer(time, callback, args)
        self._sequence += 1
        heapq.heappush(self._heap, (time, self._sequence, timer))
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> EventTimer:
        # the hot path of every simulation: call_at inlined
        if not delay >= 0:
            raise ValueError(f"negative or NaN delay {delay}")
        time = self._now + delay
        timer = EventTimer(time, callback, args)
        self._sequence += 1
        heapq.heappush(self._heap, (time, self._sequence, timer))
        return timer

    def defer(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` right after the current event, before any other event: a way to coalesce work
        that one event triggers many times (e.g. recomputing bandwidth shares) without a trip through the heap.
        Outside :meth:`run` it runs at the start of the next :meth:`run`."""
        self._deferred.append(callback)

    def _run_deferred(self) -> None:
        deferred = self._deferred
        while deferred:
            batch = deferred[:]
            deferred.clear()
            for callback in batch:
                callback()

    def stop(self) -> None:
        """Stop after the event being processed."""
        self._stopped = True

    def pending(self) -> int:
        return len(self._heap)

    def run(self, until: float = math.inf) -> None:
        """Process events in order until none are left, ``stop()`` is called, or time would pass ``until``."""
        heap = self._heap
        pop = heapq.heappop
        self._stopped = False
        processed = 0
        deferred = self._deferred
        if deferred:
            self._run_deferred()
        try:
            while heap and not self._stopped:
                if heap[0][0] > until:
                    self._now = until
                    break
                time, _, timer = pop(heap)
                if timer._cancelled:
                    continue
                self._now = time
                processed += 1
                timer.callback(*timer.args)
                if deferred:
                    self._run_deferred()
            else:
                if not heap and until != math.inf and not self._stopped:
                    self._now = max(self._now, until)
        finally:
            self.events_processed += processed

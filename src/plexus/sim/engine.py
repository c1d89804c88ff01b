"""Discrete-event engine in virtual time.

Events are ordered by (time, sequence number): two events at the same virtual time run in the order they were
scheduled, so a run is deterministic. Cancellation is lazy (a flag checked when the event is popped), which
keeps scheduling and cancelling O(log n) and O(1). There is no wall-clock sleep anywhere.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Callable
from typing import Any

from plexus.errors import ConfigError

try:  # the queue in C (setup.py builds it where a C compiler is found): the same order, keys in one array
    from plexus.sim._eventqueue import EventQueue as CompiledQueue
except ImportError:  # pragma: no cover - depends on the build
    CompiledQueue = None


def _never(*args: Any) -> None:
    """The callback of a cancelled timer (never called)."""


class EventTimer:
    """A scheduled callback with asyncio's ``TimerHandle`` interface: ``cancel()`` before it fires and it never
    runs (cancelling again, or after it ran, does nothing); ``cancelled()``; ``when()``."""

    __slots__ = ("time", "callback", "args", "_cancelled")

    def __init__(self, time: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.time = time
        self.callback = callback
        self.args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        # it will never run: let go of what it would have run with now (an owner that keeps its timer, with the
        # timer's arguments referring back to the owner, would otherwise be a cycle left to the garbage collector)
        self.callback = _never
        self.args = ()

    def cancelled(self) -> bool:
        return self._cancelled

    def when(self) -> float:
        return self.time


class DaemonTimer(EventTimer):
    """A timer that does not keep the loop alive: :meth:`EventLoop.run` returns once only daemons are left."""

    __slots__ = ()


Entry = tuple[float, int, Any]  # (time, sequence, an EventTimer or fire_later's (callback, args))


class HeapQueue:
    """The event queue in Python (heapq): entries leave by (time, sequence). ``plexus.sim._eventqueue.EventQueue``
    is the same queue with its keys in one compact C array (heapq's pops compare cold tuples: a noticeable share
    of a large run); both give the same order, since sequence numbers are unique."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[Entry] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time: float, sequence: int, item: Any) -> None:
        if time != time:
            raise ValueError("an event's time cannot be NaN")
        heapq.heappush(self._heap, (time, sequence, item))

    def pop_until(self, until: float) -> tuple[float, Any] | None:
        """(time, item) of the first entry, popped, or None (nothing popped) if there is none at or before until."""
        heap = self._heap
        if not heap or heap[0][0] > until:
            return None
        time, _, item = heapq.heappop(heap)
        return time, item

    def entries(self) -> list[Entry]:
        return list(self._heap)


def wants_compiled(variable: str, built: bool) -> bool:
    """Whether to use a compiled part (setup.py) or its Python twin, as environment variable ``variable`` says:
    unset or empty, the compiled one if it was built; ``python``, the twin; ``compiled``, the compiled one or a
    ConfigError if it was not built. Any other value is a ConfigError naming it, not a silent default."""
    choice = os.environ.get(variable, "").strip().lower()
    if choice == "python":
        return False
    if choice not in ("", "compiled"):
        raise ConfigError(f"{variable}={os.environ[variable]!r}: expected 'python' or 'compiled' (or leave it unset)")
    if choice == "compiled" and not built:
        raise ConfigError(f"{variable}=compiled, but plexus's C parts were not built (no C compiler at install time?): "
                          f"rerun bash scripts/setup.sh with one, or unset {variable}")
    return built


def new_queue() -> Any:
    """The compiled queue when it was built (``PLEXUS_EVENT_QUEUE=python`` forces the Python one)."""
    return CompiledQueue() if wants_compiled("PLEXUS_EVENT_QUEUE", CompiledQueue is not None) else HeapQueue()


class EventLoop:
    """A queue of timers in virtual time."""

    def __init__(self) -> None:
        self._queue = new_queue()
        self._daemons = 0
        self._sequence = 0
        self._now = 0.0
        self._stopped = False
        self._deferred: list[Callable[[], Any]] = []
        self.events_processed = 0
        # checkpoints (plexus.sim.checkpoint): every pause_every events, run() asks pause_check() whether to
        # return early, between two events; paused tells the caller it did
        self.pause_check: Callable[[], bool] | None = None
        self.pause_every = 1024
        self.paused = False

    @property
    def core(self) -> str:
        """Which event queue runs: ``compiled`` (C) or ``python`` (heapq; the same order, slower)."""
        return "python" if isinstance(self._queue, HeapQueue) else "compiled"

    @property
    def now(self) -> float:
        return self._now

    def call_at(self, time: float, callback: Callable[..., Any], *args: Any) -> EventTimer:
        if not time >= self._now:  # also refuses NaN
            raise ValueError(f"cannot schedule at {time}, before the current time {self._now}")
        timer = EventTimer(time, callback, args)
        self._sequence += 1
        self._queue.push(time, self._sequence, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> EventTimer:
        """``callback(*args)`` after ``delay`` seconds; a negative delay counts as 0 (as in asyncio)."""
        # the hot path of every simulation: call_at inlined
        if not delay >= 0:
            if delay != delay:
                raise ValueError("NaN delay")
            delay = 0.0
        time = self._now + delay
        timer = EventTimer(time, callback, args)
        self._sequence += 1
        self._queue.push(time, self._sequence, timer)
        return timer

    def fire_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        """Like :meth:`call_later` for a callback nobody will cancel (the network's arrivals, half of a large
        run's events): no timer object is made, the queue holds ``(callback, args)`` itself."""
        if not delay >= 0:
            if delay != delay:
                raise ValueError("NaN delay")
            delay = 0.0
        time = self._now + delay
        self._sequence += 1
        self._queue.push(time, self._sequence, (callback, args))

    def call_daemon(self, time: float, callback: Callable[..., Any], *args: Any) -> EventTimer:
        """Like :meth:`call_at`, but the timer does not keep the loop running (a watchdog)."""
        if not time >= self._now:
            raise ValueError(f"cannot schedule at {time}, before the current time {self._now}")
        timer = DaemonTimer(time, callback, args)
        self._sequence += 1
        self._daemons += 1
        self._queue.push(time, self._sequence, timer)
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
        """Scheduled timers other than daemons (cancelled ones included until they are popped)."""
        return len(self._queue) - self._daemons

    def scheduled(self) -> list[tuple[float, int, EventTimer | tuple[Callable[..., Any], tuple[Any, ...]]]]:
        """The queue's entries (time, sequence, timer), cancelled ones included, in no particular order; an entry
        of :meth:`fire_later` holds ``(callback, args)`` instead of a timer."""
        return self._queue.entries()

    @property
    def stopped(self) -> bool:
        """Whether the last :meth:`run` ended because :meth:`stop` was called."""
        return self._stopped

    def run(self, until: float = math.inf) -> None:
        """Process events in order until only daemon timers are left, ``stop()`` is called, or time would pass
        ``until`` (the clock then reads ``until``). When the queue runs dry first the clock stays at the last
        event: nothing happened after it. With ``pause_check`` set, it also returns (``paused`` True) when
        that says so; calling ``run`` again continues exactly where it paused."""
        queue = self._queue
        pop_until = queue.pop_until
        self._stopped = False
        self.paused = False
        processed = 0
        deferred = self._deferred
        check = self.pause_check
        every = self.pause_every
        if deferred:
            self._run_deferred()
        try:
            while len(queue) > self._daemons and not self._stopped:
                entry = pop_until(until)
                if entry is None:
                    self._now = until
                    break
                time, timer = entry
                kind = timer.__class__
                if kind is tuple:  # fire_later
                    callback, args = timer
                else:
                    if kind is DaemonTimer:
                        self._daemons -= 1
                    if timer._cancelled:
                        continue
                    callback, args = timer.callback, timer.args
                    timer.callback = _never  # fired: as on cancel, keep no reference to what it runs
                    timer.args = ()
                self._now = time
                processed += 1
                callback(*args)
                if deferred:
                    self._run_deferred()
                if check is not None and processed % every == 0 and check():
                    self.paused = True
                    break
        finally:
            self.events_processed += processed

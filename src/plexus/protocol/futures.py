"""A minimal future and coroutine driver shared by both worlds.

Algorithms may be written with callbacks (``future.add_done_callback``) or as coroutines that
``await runtime.sleep(...)`` / ``await runtime.train(...)``. Both are driven by whatever resolves the futures:
the simulator's event loop in virtual time, or the live runtime's event loop on the wall clock. The driver is
deliberately tiny and deterministic: callbacks run synchronously, in registration order, when the result is set.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class CancelledError(Exception):
    """Raised inside a coroutine awaiting a future that was cancelled."""


class Future(Generic[T]):
    """A value that arrives later; awaitable, cancellable."""

    __slots__ = ("_callbacks", "_done", "_result", "_exception", "_cancelled", "_on_cancel")

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        # created on the first callback: most futures of a simulation (every message's) never get one
        self._callbacks: list[Callable[[Future[T]], None]] | None = None
        self._done = False
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._cancelled = False
        self._on_cancel = on_cancel

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> T:
        if not self._done:
            raise RuntimeError("future is not done yet")
        if self._cancelled:
            raise CancelledError()
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def set_result(self, value: T) -> None:
        if self._done:
            return
        self._result = value
        self._finish()

    def set_exception(self, exc: BaseException) -> None:
        if self._done:
            return
        self._exception = exc
        self._finish()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` if this future is cancelled (the producer's way to stop the work behind it).
        One hook per future; a later call replaces an earlier one."""
        self._on_cancel = hook

    def exception(self) -> BaseException | None:
        """The exception the future failed with, or None (raises if not done; CancelledError if cancelled)."""
        if not self._done:
            raise RuntimeError("future is not done yet")
        if self._cancelled:
            raise CancelledError()
        return self._exception

    def failed(self) -> bool:
        """Whether the future is done with an exception (not cancelled)."""
        return self._done and not self._cancelled and self._exception is not None

    def cancel(self) -> bool:
        """Abandon the work; returns False if it had already finished."""
        if self._done:
            return False
        self._cancelled = True
        if self._on_cancel is not None:
            self._on_cancel()
        self._finish()
        return True

    def add_done_callback(self, callback: Callable[[Future[T]], None]) -> None:
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _finish(self) -> None:
        self._done = True
        # a done future can no longer be cancelled: dropping the hook breaks the cycle it usually closes (the
        # producer's hook refers to what refers to this future), so the whole job is freed by reference counting
        # at once instead of waiting, model arrays and all, for the cyclic garbage collector
        self._on_cancel = None
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for callback in callbacks:
                callback(self)

    def __await__(self) -> Generator[Future[T], None, T]:
        if not self._done:
            yield self
        return self.result()


class Task(Future[Any]):
    """Drives a coroutine whose awaits are :class:`Future` objects; is itself a future of its return value."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Future[Any], None, Any]) -> None:
        super().__init__()
        self._coro = coro
        self._waiting: Future[Any] | None = None
        self._step(None, None)

    def cancel(self) -> bool:
        if self._done:
            return False
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.cancel()  # resumes the coroutine with CancelledError
            if self._done:
                return True
        self._coro.close()
        return super().cancel()

    def _step(self, value: Any, exc: BaseException | None) -> None:
        try:
            awaited = self._coro.send(value) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            self.set_result(stop.value)
            return
        except CancelledError:
            self._cancelled = True
            self._finish()
            return
        except BaseException as error:
            # A protocol bug must stop the run loudly rather than leave a node silently stuck.
            self.set_exception(error)
            raise
        if not isinstance(awaited, Future):
            raise TypeError(f"a protocol coroutine may only await runtime futures, not {type(awaited)!r}")
        self._waiting = awaited
        awaited.add_done_callback(self._wake)

    def _wake(self, future: Future[Any]) -> None:
        self._waiting = None
        if future.cancelled():
            self._step(None, CancelledError())
        elif future._exception is not None:
            self._step(None, future._exception)
        else:
            self._step(future._result, None)


def gather(futures: list[Future[Any]]) -> Future[None]:
    """A future resolved once every one of ``futures`` is done (cancelled or not); at once for an empty list."""
    combined: Future[None] = Future()
    pending = len(futures)
    if pending == 0:
        combined.set_result(None)
        return combined

    def one_done(_: Future[Any]) -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            combined.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    return combined

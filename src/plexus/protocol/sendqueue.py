"""A node's outgoing queue, drained at link speed: the next message starts when the previous one has left.

Asynchronous algorithms (DivShare, Swift) hand a whole iteration's worth of messages to the network at once, more
than the uplink can carry before the next iteration. Handing them all to :meth:`Runtime.send` together would
share the uplink between all of them, so every message would finish at the very end; a queue instead sends them
one after another (``concurrency`` at a time), so the first ones arrive early and what is still queued when the
node moves on can be dropped (:meth:`SendQueue.flush`), as the DivShare authors' nodes do.

The queue is written against the runtime contract alone: a message *starts* when it is handed to
``runtime.send``, and has *left* when its transmission's ``sent`` future is done (resolved when the last byte left
the uplink; failed or cancelled when the transfer could not be made). So it behaves the same in the simulator,
where the network model carries the bytes, and in the live world, where the socket does.

- :meth:`put` appends a message; it starts at once if fewer than ``concurrency`` messages are leaving.
- :meth:`flush` drops every message that has not started and, with ``abort_in_flight``, cancels the ones still
  leaving (a transmission cancelled before its last byte left is abandoned: the simulator stops carrying it,
  the live runtime closes the transfer). Messages whose last byte has left are delivered regardless.
- A send that fails (unknown peer, peer unreachable) frees its place like one that left; ``on_failure`` is
  told, so the node can count it (failures are never silent).

Counters: ``started``, ``left`` (last byte out), ``dropped`` (never started), ``aborted`` (cut by a flush),
``failed``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from plexus.protocol.futures import Future
from plexus.protocol.messages import Message
from plexus.protocol.runtime import Runtime, Transmission

FailureFn = Callable[[bytes, Message, BaseException], None]


class SendQueue:
    """A FIFO of (peer, message) drained through ``runtime.send`` at most ``concurrency`` at a time."""

    def __init__(self, runtime: Runtime, concurrency: int = 1, on_failure: FailureFn | None = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"send queue concurrency must be an integer >= 1, got {concurrency!r}")
        self.runtime = runtime
        self.concurrency = concurrency
        self.on_failure = on_failure
        self._queue: deque[tuple[bytes, Message]] = deque()
        self._leaving: dict[Transmission, tuple[bytes, Message]] = {}
        self._pumping = False
        self._closed = False
        self.started = 0
        self.left = 0
        self.dropped = 0
        self.aborted = 0
        self.failed = 0

    # ------------------------------------------------------------------ reading
    @property
    def pending(self) -> int:
        """Messages queued that have not started."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Messages started whose last byte has not left yet."""
        return len(self._leaving)

    def __len__(self) -> int:
        return len(self._queue) + len(self._leaving)

    def queued_bytes(self) -> int:
        """Wire bytes of the messages that have not started."""
        return sum(message.wire_size for _, message in self._queue)

    # ------------------------------------------------------------------ using
    def put(self, peer: bytes, message: Message) -> None:
        """Queue ``message`` for ``peer``; it starts as soon as a place is free."""
        if self._closed:
            raise RuntimeError("this send queue is closed")
        self._queue.append((peer, message))
        self._pump()

    def extend(self, items: Iterable[tuple[bytes, Message]]) -> None:
        """Queue several messages in order (one pump at the end)."""
        if self._closed:
            raise RuntimeError("this send queue is closed")
        self._queue.extend(items)
        self._pump()

    def flush(self, abort_in_flight: bool = False) -> tuple[int, int]:
        """Drop every message that has not started; with ``abort_in_flight``, also cancel those still leaving.
        Returns (dropped, aborted)."""
        dropped = len(self._queue)
        self._queue.clear()
        self.dropped += dropped
        aborted = 0
        if abort_in_flight:
            for transmission in list(self._leaving):
                if not transmission.sent.done() and transmission.cancel():
                    aborted += 1
            # cancelled transmissions free their places through their callbacks; count them here
            self.aborted += aborted
        return dropped, aborted

    def close(self) -> None:
        """Drop everything queued and cancel what is leaving; the queue takes nothing more (node stopped)."""
        self._closed = True
        self.flush(abort_in_flight=True)

    # ------------------------------------------------------------------ internals
    def _pump(self) -> None:
        if self._pumping:
            return  # a send that completed synchronously re-enters here: the running loop goes on
        self._pumping = True
        try:
            while self._queue and len(self._leaving) < self.concurrency and not self._closed:
                peer, message = self._queue.popleft()
                transmission = self.runtime.send(peer, message)
                self.started += 1
                self._leaving[transmission] = (peer, message)
                transmission.sent.add_done_callback(lambda sent, t=transmission: self._left(t, sent))
                transmission.add_done_callback(
                    lambda done, p=peer, m=message: self._done(done, p, m))
        finally:
            self._pumping = False

    def _left(self, transmission: Transmission, sent: Future[None]) -> None:
        """The message's last byte left, or it never will (failed, cancelled): its place is free."""
        if self._leaving.pop(transmission, None) is None:
            return
        if not sent.cancelled() and not sent.failed():
            self.left += 1
        self._pump()

    def _done(self, done: Future[None], peer: bytes, message: Message) -> None:
        if done.cancelled() or not done.failed():
            return
        self.failed += 1
        if self.on_failure is not None:
            error = done.exception()
            assert error is not None
            self.on_failure(peer, message, error)

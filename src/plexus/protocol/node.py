"""The base class of an algorithm's per-node logic, and how a node declares which messages it takes.

A node is built as ``NodeClass(runtime, options)``; the runtime calls :meth:`Node.start` once, then
:meth:`Node.deliver` for every message that reaches the node, and :meth:`Node.stop` at the end. Handlers are
declared next to the logic that needs them::

    class MyNode(Node):
        @handles(Trained)
        def on_trained(self, sender: bytes, message: Trained) -> None: ...

:meth:`Node.deliver` dispatches on the message's exact type. A message of a type the node declares no handler
for is refused and counted (``rejections.unexpected_message_type``): a node never silently ignores input.
Handlers are inherited and may be overridden by name in subclasses.

**Churn.** A node may go away and come back. The runtime then calls, instead of :meth:`Node.start`:

- :meth:`Node.join` on a node that enters a run already under way (a device that joins late, or one that came
  back having lost its state: a fresh object built by ``NodeClass(runtime, options)``);
- :meth:`Node.leave` on a node about to leave gracefully: it may send a few last messages (announcements), then
  it is offline;
- :meth:`Node.rejoin` on a node that comes back with its state (what it keeps in memory here stands for what a
  real device keeps on disk).

A crash calls nothing: the node just stops. Whether it crashed or left, everything it had started before going
down is gone for good: its timers never fire, its training jobs and transmissions never resolve (their futures
stay pending forever), and messages sent to it meanwhile are lost. :meth:`Node.rejoin` must therefore restart
whatever work it still wants done. The defaults (``join`` and ``rejoin`` call ``start``; ``leave`` does nothing)
suit a node that keeps no state between messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from plexus.protocol.messages import Message
from plexus.protocol.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def handles(*message_types: type[Message]) -> Callable[[F], F]:
    """Declare the decorated method as the handler of ``message_types``: ``method(self, sender, message)``."""
    for message_type in message_types:
        if not (isinstance(message_type, type) and issubclass(message_type, Message)):
            raise TypeError(f"@handles takes message classes, got {message_type!r}")

    def mark(method: F) -> F:
        method.__plexus_handles__ = message_types  # type: ignore[attr-defined]
        return method

    return mark


class Node:
    """An algorithm's per-node logic (see the module docstring)."""

    handlers: ClassVar[dict[type[Message], str]] = {}

    def __init__(self, runtime: Runtime, options: Any = None) -> None:
        self.runtime = runtime
        self.options = options

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type[Message], str] = {}
        for klass in reversed(cls.__mro__):
            for name, attribute in vars(klass).items():
                for message_type in getattr(attribute, "__plexus_handles__", ()):
                    table[message_type] = name
        cls.handlers = table

    @classmethod
    def message_types(cls) -> list[type[Message]]:
        """The message types this node accepts."""
        return list(cls.handlers)

    def start(self) -> None:
        """Begin participating (schedule timers, start training, ...)."""

    def join(self) -> None:
        """Enter a run already under way (a late join, or a return after losing all state). Default: ``start``."""
        self.start()

    def rejoin(self) -> None:
        """Come back after leaving or crashing, with the state held before; every timer, training job and
        transmission started before going down is dead (see the module docstring). Default: ``start``."""
        self.start()

    def leave(self) -> None:
        """About to leave gracefully (announce it if the algorithm does); offline right after. Default: nothing."""

    def deliver(self, sender: bytes, message: Message) -> None:
        """A message from ``sender`` reached this node: dispatch it to its declared handler."""
        name = self.handlers.get(type(message))
        if name is None:
            self.runtime.metrics.rejected("unexpected_message_type", sender)
            return
        getattr(self, name)(sender, message)

    def current_model(self) -> np.ndarray | None:
        """This node's current model, for an observer that evaluates node models (decentralized learning)."""
        return None

    def stop(self) -> None:
        """Release timers and pending work; the node will receive nothing more."""

"""The live runtime's own messages: reports from nodes to an observer, and the observer's start and stop notices.

They travel like protocol messages (same encoding, same signed transport) but never reach an algorithm: the live
runtime handles them itself. A node accepts ``StartRun`` and ``StopRun`` only from the observer its peers file
names and refuses every report (only observers take those); an observer accepts reports only from the nodes of
its run. Kinds 900-909 are reserved for them.
"""

from __future__ import annotations

from plexus.protocol.messages import Message, Params, message


@message(kind=900)
class ModelReport(Message):
    """A model for the observer to evaluate: a round's global model (``role = "global"``) or a node's own model
    at its round or period ``round`` (``role = "node"``). ``time`` is the sender's clock."""

    round: int
    time: float
    role: str
    params: Params


@message(kind=901)
class RoundReport(Message):
    """A round completed at the sender (an aggregator's global model, or a decentralized node's own round),
    with the sender's running totals so the observer can sum the run's cost without asking."""

    round: int
    time: float
    seconds: float
    bytes_sent: int
    messages_sent: int
    train_seconds: float


@message(kind=902)
class StatusReport(Message):
    """``state`` is ``ready`` (listening, waiting for the start), ``final`` (stopping: ``body`` holds the node's
    counters, rejections and totals as JSON) or ``failed``."""

    time: float
    state: str
    body: str


@message(kind=903)
class StartRun(Message):
    """Start the protocol; ``origin`` is the run's time 0 (UNIX seconds), shared by every node's clock."""

    origin: float


@message(kind=904)
class StopRun(Message):
    """The run is over (its stop condition was reached, or the observer was told to stop)."""

    reason: str


@message(kind=905)
class Totals(Message):
    """A node's running totals, sent after each training job so that the observer's cost columns stay current
    for nodes that report no rounds (a Plexus participant that never aggregates)."""

    time: float
    bytes_sent: int
    messages_sent: int
    train_seconds: float


REPORT_TYPES = (ModelReport, RoundReport, StatusReport, Totals)
CONTROL_TYPES = (*REPORT_TYPES, StartRun, StopRun)

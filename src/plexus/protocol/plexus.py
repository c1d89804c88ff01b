"""Plexus (Dhasade et al., EuroMLSys 2025): federated learning without a server.

Round k's participants are the sample S_k every node derives on its own from its view (Algorithm 1, see
:mod:`plexus.protocol.sampling`). Algorithm 2, push-based:

1. The members of S_1 start from the same seeded initial model.
2. A participant of round k trains ``local_steps`` SGD steps and sends its model to the round's aggregator.
3. The aggregator of round k is, by default, the member of S_{k+1} with the highest advertised upload
   bandwidth (ties broken by hash order): it will train in round k+1 itself, which saves one transfer.
   ``aggregator_sample = "current"`` takes it from S_k instead, the literal reading of Algorithm 2.
4. The aggregator averages as soon as it holds floor(s x sf) models of round k (at least 1; later ones are
   dropped and counted), reports the result as round k's global model, and pushes it to every member of S_{k+1}.
5. A member of S_{k+1} receiving it abandons any older training still running and trains round k+1.

**Checked senders.** An aggregator accepts a model of round k only if it is itself the aggregator of round k by
its own view, only from a member of S_k, once per sender, and only with the model's parameter count; a node
accepts the aggregate of round k+1 only from the aggregator of round k, and only if it is in S_{k+1}. Anything
else is refused and counted by reason (``summary.json``'s ``rejections``).

**Where we follow the authors' code** (``sacs-epfl/plexus``, ``dlsim/plexus/community.py``): the quorum is
``floor(s x sf)`` (``has_enough_trained_models``: 10 of 13 at sf = 0.8), late models are ignored, averaging is
uniform, and the aggregator is a high-bandwidth member of the next round's sample. **Where we differ, and why**:
the authors sort the first s candidates of round k+1 by bandwidth and ping them, taking the first to answer;
without churn (this module) every candidate answers, so the fastest uploader of S_{k+1} is exactly their choice.
Their 300 s aggregation timeout, pings and retries belong to fault tolerance (MoDeST): ``membership = "modest"``
runs :class:`~plexus.protocol.modest.ModestPlexusNode` instead (views on the wire, pings, announcements, several
aggregators, recovery when an aggregator dies). ``weighting = "samples"`` (FedAvg's n_k / n) is offered as an
option; the paper averages uniformly.

**Membership** (``membership``): ``static`` (the default, the Plexus paper) gives every node the full membership
for the whole run, no views on the wire and no pings: nothing here reacts to a node that goes away (a dead
aggregator stops the run, which the stall watchdog reports), and a run without churn is exactly the paper's
protocol. ``modest`` adds MoDeST's machinery; see :mod:`plexus.protocol.modest`. The options that only
``modest`` reads (``aggregators``, ``inactivity_threshold``, ``ping_timeout``, ``announce_fanout``,
``recovery_timeout``) are reported as having no effect under ``static``. ``aggregation_timeout`` and
``min_models`` work in both: once ``aggregation_timeout`` seconds have passed since a round's first model, the
aggregator averages as soon as it holds ``min_models`` models (off by default with ``static``, so runs are
unchanged; 60 s with ``modest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from plexus.protocol.aggregation import SampledRoundOptions, average, quorum
from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import Node, handles
from plexus.protocol.options import option
from plexus.protocol.registry import register
from plexus.protocol.runtime import Runtime, TrainResult


@dataclass(frozen=True)
class PlexusOptions(SampledRoundOptions):
    aggregator_sample: str = option("next", "take round k's aggregator from sample k+1 (next, as the authors' "
                                    "code) or from sample k (current, the literal Algorithm 2)",
                                    choices=("next", "current"))
    membership: str = option("static", "static: the full membership, fixed (the Plexus paper); modest: MoDeST's "
                             "views on the wire, pings, announcements and recovery (churn)",
                             choices=("static", "modest"))
    aggregators: int = option(1, "a: aggregators per round, the first a available members of the next sample "
                              "(membership = modest)", minimum=1)
    inactivity_threshold: int = option(1000, "rounds a node may stay silent before it leaves the active view "
                                       "(membership = modest; MoDeST's simulations use 1000)", minimum=1)
    ping_timeout: float = option(5.0, "seconds a candidate has to answer pings (repeated every second) before it "
                                 "is skipped (membership = modest)", above=0, finite=True)
    announce_fanout: int | None = option(None, "nodes a JOIN or LEAVE announcement is sent to (membership = modest; "
                                         "default: sample_size)", minimum=1)
    recovery_timeout: float | None = option(None, "seconds a node that handed a model on waits for a sign of the "
                                            "next round before checking its receivers are alive (membership = "
                                            "modest; default 30)", above=0, finite=True)

    def check(self) -> None:
        super().check()
        if self.aggregators > 1 and self.membership != "modest":
            raise ValueError(f"aggregators = {self.aggregators} needs membership = modest (static Plexus has one "
                             f"aggregator per round)")
        if self.aggregators > self.sample_size:
            raise ValueError(f"aggregators = {self.aggregators} exceeds sample_size = {self.sample_size} "
                             f"(the aggregators come from the next sample)")

    @property
    def dynamic_membership(self) -> bool:
        """Whether nodes keep their own membership (a simulator then seeds views with the nodes present at start)."""
        return self.membership == "modest"

    @property
    def reacts_to_churn(self) -> bool:
        return self.membership == "modest"

    @property
    def effective_aggregation_timeout(self) -> float | None:
        if self.aggregation_timeout is not None:
            return float(self.aggregation_timeout)
        return MODEST_AGGREGATION_TIMEOUT if self.membership == "modest" else None

    @property
    def effective_recovery_timeout(self) -> float:
        return float(self.recovery_timeout) if self.recovery_timeout is not None else MODEST_RECOVERY_TIMEOUT

    @property
    def effective_announce_fanout(self) -> int:
        return int(self.announce_fanout) if self.announce_fanout is not None else int(self.sample_size)

    def longest_quiet(self) -> float:
        """Seconds a run may show no progress (no global model, round or training anywhere) while it still works:
        with MoDeST, the participants of a round whose aggregator died wait ``recovery_timeout``, ping the dead
        aggregator for up to ``ping_timeout``, and the aggregator they fall back to may wait
        ``aggregation_timeout`` for the models that are left. A stall watchdog must wait longer than that."""
        if self.membership != "modest":
            return float(self.aggregation_timeout or 0.0)
        aggregation = self.effective_aggregation_timeout or 0.0
        return self.effective_recovery_timeout + float(self.ping_timeout) + aggregation

    def ineffective(self) -> list[str]:
        """Options given a value that this configuration never reads (reported as warnings)."""
        if self.membership == "modest":
            return []
        notes = []
        for name in ("aggregators", "inactivity_threshold", "ping_timeout", "announce_fanout", "recovery_timeout"):
            value = getattr(self, name)
            default = PlexusOptions.__dataclass_fields__[name].default
            if value != default:
                notes.append(f"option {name} = {value!r} has no effect with membership = static "
                             f"(use --membership modest)")
        return notes


MODEST_AGGREGATION_TIMEOUT = 60.0
MODEST_RECOVERY_TIMEOUT = 30.0


@message(kind=1)
class TrainedModel(Message):
    """A participant's locally trained model of ``round``, sent to that round's aggregator."""

    round: int
    samples: int
    params: Params


@message(kind=2)
class AggregatedModel(Message):
    """The aggregate of round ``round - 1``, pushed to the members of S_round, who train on it."""

    round: int
    params: Params


@register("plexus", description="Plexus: sampled FL without a server (EuroMLSys 2025)", options=PlexusOptions)
class PlexusNode(Node):
    options: PlexusOptions
    variants: ClassVar[tuple[type[Node], ...]] = ()  # set by plexus.protocol.modest

    def __new__(cls, runtime: Runtime | None = None, options: PlexusOptions | None = None) -> PlexusNode:
        # no arguments: an unpickled node (a checkpoint) whose class is already the right one
        if cls is PlexusNode and getattr(options, "membership", "static") == "modest":
            from plexus.protocol.modest import ModestPlexusNode

            cls = ModestPlexusNode
        return super().__new__(cls)

    def __init__(self, runtime: Runtime, options: PlexusOptions) -> None:
        super().__init__(runtime, options)
        self.aggregation_timeout = options.effective_aggregation_timeout
        self.min_models = options.min_models
        self._expired: set[int] = set()  # rounds whose aggregation timeout has passed
        self.sample_size = options.sample_size
        self.quorum = quorum(options.sample_size, options.success_fraction)
        self.local_steps = options.local_steps
        self.aggregate_from_next = options.aggregator_sample == "next"
        self.weighted = options.weighting == "samples"
        self.parameters = runtime.initial_model().size
        self.round = 0  # the latest round this node trained (or is training) in
        self._training: dict[int, Future[TrainResult]] = {}
        self._collected: dict[int, dict[bytes, TrainedModel]] = {}
        self._aggregated_up_to = 0  # rounds <= this one were aggregated here (or are stale)

    # ----------------------------------------------------------- sampling
    def sample(self, round: int) -> list[bytes]:
        return self.runtime.view.sample(round, self.sample_size)

    def aggregator(self, round: int) -> bytes:
        """Who aggregates the models trained in ``round``, by this node's view."""
        source = round + 1 if self.aggregate_from_next else round
        view = self.runtime.view
        return view.memo(("plexus-aggregator", source, self.sample_size),
                         lambda: self._fastest_uploader(self.sample(source)))

    def _fastest_uploader(self, candidates: list[bytes]) -> bytes:
        view = self.runtime.view
        best = candidates[0]
        best_bandwidth = view.info(best).upload_bps
        for candidate in candidates[1:]:
            bandwidth = view.info(candidate).upload_bps
            if bandwidth > best_bandwidth:  # strict: ties keep the earlier one in hash order
                best, best_bandwidth = candidate, bandwidth
        return best

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.runtime.node_id in self.sample(1):
            self._train(1, self.runtime.initial_model())

    def stop(self) -> None:
        for future in list(self._training.values()):
            future.cancel()
        self._training.clear()

    def join(self) -> None:
        # a late node has nothing to start: round 1 is long gone; it trains when an aggregate reaches it
        pass

    def rejoin(self) -> None:
        # static Plexus keeps no work across an absence: the training it was doing is gone with it
        self._training.clear()

    # ----------------------------------------------------------- participant
    @handles(AggregatedModel)
    def on_aggregate(self, sender: bytes, message: AggregatedModel) -> None:
        round = message.round
        metrics = self.runtime.metrics
        if round < 2 or sender != self.aggregator(round - 1):
            metrics.rejected("not_the_aggregator", sender)
        elif self.runtime.node_id not in self.sample(round):
            metrics.rejected("receiver_not_in_sample", sender)
        elif message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
        elif round <= self.round:
            metrics.count("duplicate_aggregates_ignored")
        else:
            self._train(round, message.params)

    def _train(self, round: int, params: np.ndarray) -> None:
        for old_round in [r for r in self._training if r < round]:
            self._training.pop(old_round).cancel()
            self.runtime.metrics.count("stale_training_abandoned")
        self.round = round
        future = self.runtime.train(params, self.local_steps)
        self._training[round] = future
        future.add_done_callback(lambda done: self._trained(round, done))

    def _trained(self, round: int, future: Future[TrainResult]) -> None:
        if future.cancelled():
            return
        self._training.pop(round, None)
        result = future.result()
        message = TrainedModel(round, self.runtime.local_samples, result.params)
        self.runtime.send(self.aggregator(round), message)

    # ----------------------------------------------------------- aggregator
    @handles(TrainedModel)
    def on_trained_model(self, sender: bytes, message: TrainedModel) -> None:
        round = message.round
        metrics = self.runtime.metrics
        if round < 1 or self.aggregator(round) != self.runtime.node_id:
            metrics.rejected("not_the_aggregator", sender)
            return
        if sender not in self.sample(round):
            metrics.rejected("sender_not_in_sample", sender)
            return
        if message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
            return
        if round <= self._aggregated_up_to and round not in self._collected:
            metrics.count("late_models_dropped")
            return
        bucket = self._collected.get(round)
        if bucket is None:
            bucket = self._collected[round] = {}
            if self.aggregation_timeout is not None:
                self.runtime.call_later(self.aggregation_timeout, self._timeout, round)
        if sender in bucket:
            metrics.rejected("duplicate_model", sender)
            return
        bucket[sender] = message
        self._maybe_aggregate(round)

    def _timeout(self, round: int) -> None:
        if round in self._collected:
            self._expired.add(round)
            self.runtime.metrics.count("aggregation_timeouts")
            self._maybe_aggregate(round)

    def _maybe_aggregate(self, round: int) -> None:
        bucket = self._collected[round]
        needed = min(self.quorum, self.min_models) if round in self._expired else self.quorum
        if len(bucket) >= needed:
            metrics = self.runtime.metrics
            self._expired.discard(round)
            del self._collected[round]
            self._aggregated_up_to = max(self._aggregated_up_to, round)
            for stale in [r for r in self._collected if r < round]:
                # an older round that never reached its quorum here can no longer matter
                metrics.count("late_models_dropped", len(self._collected.pop(stale)))
            self._aggregate(round, list(bucket.values()))

    def _aggregate(self, round: int, models: list[TrainedModel]) -> None:
        weights = [m.samples for m in models] if self.weighted else None
        global_model = average([m.params for m in models], weights)
        self.runtime.metrics.global_model(round, global_model)
        message = AggregatedModel(round + 1, global_model)
        for member in self.sample(round + 1):
            self.runtime.send(member, message)

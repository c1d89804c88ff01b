"""Plexus with MoDeST's membership (``--membership modest``): it keeps training while nodes leave, crash and join.

The rounds are Plexus's (:mod:`plexus.protocol.plexus`): participants of round k train and send their models to
the aggregator(s) of round k, who average and push the result to the sample of round k+1. What changes is how
samples and aggregators are found, and what happens when a node is gone:

1. **Views** (:mod:`plexus.protocol.membership`): every model carries the sender's view (its bytes are counted),
   merged by the receiver; JOIN and LEAVE announcements; an inactivity threshold. Samples are derived from the
   active view.
2. **Liveness when deriving a sample.** Candidates are taken in the hash order of the round over the active view;
   each is pinged (every second, up to ``ping_timeout``); those that do not answer are skipped and the next one
   asked, until s answer or the candidates run out. The aggregator of round k pushes to the s it found; the size
   it reached travels with the model (``sampled``), and the round's quorum is floor(sampled x sf) (at least 1).
3. **Several aggregators** (``aggregators`` = a): the first a available aggregator candidates of round k: the
   first s of round k+1's hash order over every joined node (Plexus: by upload bandwidth, ties in hash order),
   then the rest of that order, skipping nodes outside the active view. Participants send to all of them; each
   averages on its own; a participant trains on the first aggregate of a round it receives and ignores later ones
   (``duplicate_aggregates_ignored``).
4. **Timeouts and staleness.** ``aggregation_timeout`` seconds after a round's first model, the aggregator averages
   as soon as ``min_models`` are there. Training for a round is abandoned as soon as a newer round is known, from
   any message (an aggregate, a ping, a view): its model would only arrive late. Each aggregator completes its
   round on its own, as in MoDeST, even if another one did first.
5. **Recovery when a receiver dies** (neither paper has it; it is what lets a = 1 survive a dead aggregator). A
   node that hands a model on (a participant its round k model, an aggregator its average pushed as round k+1)
   stays responsible for it until it has evidence of round k+2: only then has the round after its own completed,
   so that the model it fed certainly reached the next sample. (Evidence of round k+1 is not enough: the aggregator
   of round k may name round k+1 in its pings and crash before its push reached anyone.)

   - a send that fails (the receiver crashed, left, or was offline on arrival) excludes that receiver; when none
     of the receivers got the model, the node derives receivers again, skipping the excluded ones, and resends;
   - ``recovery_timeout`` seconds after a delivery without that evidence, the node pings the receivers it
     delivered to. An answer naming round k+2 or later ends the hand-off; any other answer means a receiver is alive
     (an aggregator still waiting for its quorum, or done and working) and the wait starts again; no answer at all
     means they are gone: the node derives new receivers without them and resends (``recoveries``, an event in
     events.csv). An aggregator takes such a model unless it aggregated that round itself or knows that the round
     after it completed (round k+2); it may therefore complete a round a dead aggregator had completed just
     before dying, which is harmless (see below).

   So when the aggregator of round k dies after the models reached it, every participant of round k resends to the
   next aggregator candidate, which collects them and completes the round; when a whole sample dies, the
   aggregator that pushed to it samples again. **Two aggregators of one round** (a recovery that raced a slow but
   live aggregator, or a > 1) are safe: each average is a valid round k model, a participant trains on the first
   it receives and ignores the others, and the models of round k+1 then reach the aggregators of round k+1 whoever
   sent them the aggregate, so the lineages merge again.

**Checked senders.** Under ``static`` membership every node can recompute who may send what. Here the sample and
the aggregators depend on which candidates answered pings, which a receiver cannot verify, so the positional
checks become membership checks: a model or an aggregate is accepted only from a joined member (after merging the
view it carries: a late node is admitted by its own JOIN, which is what a JOIN is), only for a round this node has
not completed, once per sender, with a well-formed view, a plausible ``sampled`` and the model's parameter count.
A member can therefore make itself an aggregator or a participant; it cannot make a node train twice in a round,
nor inject models under another node's name (senders are authenticated).

**Without churn** the choices are the static ones (every candidate answers its ping, so the sample is the first s
of the hash order and the aggregator the fastest uploader of S_(k+1)); the run differs from ``static`` by the view
bytes on every model, the pings, and the round trips they take.

**Where we follow MoDeST and the Plexus authors' code**: pings with the authors' timing, the first a available
aggregators, views on model transfers, the first aggregate wins, the aggregation timeout then a minimum number of
models (MoDeST hard-codes 3; ``min_models``, default 1), late models ignored. **Where we differ**: the recovery
above (MoDeST only re-forwards when a departing aggregator says so with a negative acknowledgement, which a crash
never sends); the quorum follows the sample size actually reached; a late model is simply dropped (no
acknowledgements: a participant learns that its round completed from the next round's evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from plexus.protocol.aggregation import average
from plexus.protocol.futures import Future
from plexus.protocol.membership import MembershipNode, Pong
from plexus.protocol.messages import Message, Params, message
from plexus.protocol.node import handles
from plexus.protocol.plexus import AggregatedModel, PlexusNode, PlexusOptions, TrainedModel, quorum
from plexus.protocol.runtime import Runtime, SendError, Timer, TrainResult, Transmission


@message(kind=40)
class ModestTrainedModel(Message):
    """A participant's model of ``round`` with its view; ``sampled`` is the size of the sample it was part of."""

    round: int
    samples: int
    sampled: int
    view: bytes
    params: Params


@message(kind=41)
class ModestAggregate(Message):
    """The aggregate of round ``round - 1`` with the aggregator's view, pushed to the ``sampled`` members of
    S_round it found alive."""

    round: int
    sampled: int
    view: bytes
    params: Params


@dataclass
class Handoff:
    """A model this node handed on and answers for until ``done_round`` is known (see the module docstring)."""

    kind: Literal["model", "aggregate"]
    round: int  # the round of the message sent (a trained model's round, or the round an aggregate starts)
    done_round: int
    params: np.ndarray
    samples: int
    sampled: int
    models: int = 0  # aggregate: how many models it averages
    receivers: list[bytes] = field(default_factory=list)
    delivered: set[bytes] = field(default_factory=set)
    excluded: set[bytes] = field(default_factory=set)
    in_flight: int = 0
    searching: bool = False
    checking: bool = False
    timer: Timer | None = None


@dataclass
class Collection:
    """The models of one round reaching this node as one of its aggregators."""

    models: dict[bytes, ModestTrainedModel] = field(default_factory=dict)
    sampled: int = 1
    expired: bool = False
    timer: Timer | None = None


class ModestPlexusNode(MembershipNode, PlexusNode):
    """Plexus with MoDeST's membership, liveness, several aggregators and recovery (see the module docstring)."""

    options: PlexusOptions

    def __init__(self, runtime: Runtime, options: PlexusOptions) -> None:
        PlexusNode.__init__(self, runtime, options)
        self.init_membership(options.inactivity_threshold, options.ping_timeout, options.effective_announce_fanout)
        self.success_fraction = float(options.success_fraction)
        self.aggregator_count = int(options.aggregators)
        self.recovery_timeout = options.effective_recovery_timeout
        self._inputs: dict[int, tuple[np.ndarray, int]] = {}  # round -> (model trained from, sampled)
        self._handoffs: dict[tuple[str, int], Handoff] = {}
        self._collections: dict[int, Collection] = {}
        self._stopped = False

    # ----------------------------------------------------------- derivations
    def round_estimate(self) -> int:
        return self.membership.estimate

    def aggregator_candidates(self, round: int) -> list[bytes]:
        """Who may aggregate ``round``, best first: the first s of the source round's hash order over every joined
        node, sorted by upload bandwidth (ties in hash order), then the rest of that order; nodes not in the active
        view (inactive, suspected) are skipped, which keeps the others' order, so participants that disagree only
        on who is alive still rank the live candidates alike."""
        source = round + 1 if self.aggregate_from_next else round
        membership = self.membership
        order = membership.joined_order(source)
        head, rest = order[: self.sample_size], order[self.sample_size:]
        info = membership.info
        ranked = sorted(range(len(head)), key=lambda i: (-info(head[i]).upload_bps, i))
        return [c for c in [head[i] for i in ranked] + rest if membership.available(c)]

    def participant_candidates(self, round: int) -> list[bytes]:
        return self.membership.order(round)

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.membership_start()
        first = self.participant_candidates(1)[: self.sample_size]
        if self.runtime.node_id in first:
            self._train(1, self.runtime.initial_model(), len(first))

    def join(self) -> None:
        self.membership_join()

    def leave(self) -> None:
        self.membership_leave()

    def rejoin(self) -> None:
        """Back with the state: restart the training of the current round, re-check every hand-off, re-arm every
        aggregation timeout (all timers, jobs and transmissions of before died with the node)."""
        self.membership_rejoin()
        self._training.clear()
        for round in sorted(self._inputs):
            if round >= self.round and self.round_estimate() <= round:
                params, sampled = self._inputs[round]
                self._train(round, params, sampled)
        for handoff in list(self._handoffs.values()):
            handoff.timer = None
            handoff.in_flight = 0
            handoff.searching = handoff.checking = False
            self._check(handoff)
        for round, collection in self._collections.items():
            collection.timer = None
            if not collection.expired:
                self._arm_collection(round, collection)

    def stop(self) -> None:
        self._stopped = True
        super().stop()
        for handoff in self._handoffs.values():
            if handoff.timer is not None:
                handoff.timer.cancel()
        for collection in self._collections.values():
            if collection.timer is not None:
                collection.timer.cancel()

    # ----------------------------------------------------------- staleness
    def on_round(self, round: int) -> None:
        """A newer round is known: abandon older training, and the hand-offs and collections it settles (a round
        r collection is late once round r + 1 completed, i.e. round r + 2 is known)."""
        metrics = self.runtime.metrics
        for old in [r for r in self._training if r < round]:
            self._training.pop(old).cancel()
            metrics.count("stale_training_abandoned")
        for old in [r for r in self._inputs if r < round]:
            del self._inputs[old]
        for key in [key for key, handoff in self._handoffs.items() if handoff.done_round <= round]:
            handoff = self._handoffs.pop(key)
            if handoff.timer is not None:
                handoff.timer.cancel()
        for old in [r for r in self._collections if r + 2 <= round]:
            collection = self._collections.pop(old)
            if collection.timer is not None:
                collection.timer.cancel()
            metrics.count("late_models_dropped", len(collection.models))
            metrics.count("aggregations_abandoned")
            self._aggregated_up_to = max(self._aggregated_up_to, old)

    # ----------------------------------------------------------- participant
    @handles(ModestAggregate)
    def on_modest_aggregate(self, sender: bytes, message: ModestAggregate) -> None:
        metrics = self.runtime.metrics
        if not self.merge_view(sender, message.view):
            return
        round = message.round
        if not self.membership.joined(sender):
            metrics.rejected("sender_not_a_member", sender)
        elif round < 2 or not 1 <= message.sampled <= self.sample_size:
            metrics.rejected("malformed_aggregate", sender)
        elif message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
        elif round <= self.round:
            metrics.count("duplicate_aggregates_ignored")
        else:
            self.membership.saw(sender, round)
            self._learn(round)
            self._train(round, message.params, message.sampled)

    def _train(self, round: int, params: np.ndarray, sampled: int) -> None:
        for old in [r for r in self._training if r < round]:
            self._training.pop(old).cancel()
            self.runtime.metrics.count("stale_training_abandoned")
        self.round = max(self.round, round)
        self._learn(round)
        self._inputs[round] = (params, sampled)
        future = self.runtime.train(params, self.local_steps)
        self._training[round] = future
        future.add_done_callback(lambda done: self._trained(round, done))

    def _trained(self, round: int, future: Future[TrainResult]) -> None:  # type: ignore[override]
        if future.cancelled() or self._training.get(round) is not future:
            return
        del self._training[round]
        params, sampled = self._inputs.pop(round, (None, 1))
        if self.round_estimate() > round:
            self.runtime.metrics.count("stale_training_abandoned")
            return
        result = future.result()
        handoff = Handoff("model", round, round + 2, result.params, self.runtime.local_samples, sampled)
        self._handoffs[("model", round)] = handoff
        self._derive(handoff)

    # ----------------------------------------------------------- hand-offs
    def _candidates(self, handoff: Handoff) -> tuple[list[bytes], int]:
        if handoff.kind == "model":
            candidates, count = self.aggregator_candidates(handoff.round), self.aggregator_count
        else:
            candidates, count = self.participant_candidates(handoff.round), self.sample_size
        return [c for c in candidates if c not in handoff.excluded], count

    def _derive(self, handoff: Handoff) -> None:
        """Find live receivers for a hand-off (pings) and send to them."""
        if handoff.searching:
            return
        candidates, count = self._candidates(handoff)
        handoff.searching = True
        search = self.find_available(candidates, count)
        search.add_done_callback(lambda done: self._found(handoff, done.result()))

    def _live(self, handoff: Handoff) -> bool:
        return not self._stopped and self._handoffs.get((handoff.kind, handoff.round)) is handoff

    def _found(self, handoff: Handoff, receivers: list[bytes]) -> None:
        handoff.searching = False
        if not self._live(handoff):
            return
        metrics = self.runtime.metrics
        if not receivers:
            # nobody answered: try again after a while (nodes may come back)
            metrics.count("no_receiver_found")
            self._arm(handoff)
            return
        handoff.receivers = receivers
        handoff.delivered = set()
        if handoff.kind == "aggregate":
            handoff.sampled = len(receivers)
            metrics.aggregated(handoff.round - 1, self.runtime.node_id, handoff.models, receivers)
        for receiver in receivers:
            self._send(handoff, receiver)
        self.sent_model()

    def _message(self, handoff: Handoff) -> Message:
        view = self.view_bytes()
        if handoff.kind == "model":
            return ModestTrainedModel(handoff.round, handoff.samples, handoff.sampled, view, handoff.params)
        return ModestAggregate(handoff.round, handoff.sampled, view, handoff.params)

    def _send(self, handoff: Handoff, receiver: bytes) -> None:
        handoff.in_flight += 1
        transmission = self.runtime.send(receiver, self._message(handoff))
        transmission.add_done_callback(lambda done: self._sent(handoff, receiver, done))

    def _sent(self, handoff: Handoff, receiver: bytes, done: Transmission) -> None:
        handoff.in_flight -= 1
        if not self._live(handoff) or done.cancelled():
            return
        if done.failed():
            error = done.exception()
            reason = error.reason if isinstance(error, SendError) else "failed"
            self.runtime.metrics.count(f"{handoff.kind}_sends_failed")
            handoff.excluded.add(receiver)
            if not handoff.delivered and handoff.in_flight == 0:
                self._recover(handoff, f"send failed: {reason}")
            return
        handoff.delivered.add(receiver)
        if handoff.timer is None:
            self._arm(handoff)

    def _arm(self, handoff: Handoff) -> None:
        if handoff.timer is not None:
            handoff.timer.cancel()
        handoff.timer = self.runtime.call_later(self.recovery_timeout, self._check, handoff)

    def _check(self, handoff: Handoff) -> None:
        """The recovery timer: is the round this hand-off feeds done, are its receivers alive?"""
        handoff.timer = None
        if not self._live(handoff) or handoff.checking or handoff.searching:
            return
        if self.round_estimate() >= handoff.done_round:
            self._handoffs.pop((handoff.kind, handoff.round), None)
            return
        targets = sorted(handoff.delivered)
        if not targets:
            if handoff.in_flight == 0:
                self._derive(handoff)
            return
        me = self.runtime.node_id
        if me in targets:
            self._arm(handoff)  # this node is one of the receivers: it is alive and working
            return
        handoff.checking = True
        answers: dict[bytes, Pong | None] = {}

        def answered(target: bytes, pong: Pong | None) -> None:
            answers[target] = pong
            if len(answers) < len(targets):
                return
            handoff.checking = False
            if not self._live(handoff):
                return
            alive = [pong for pong in answers.values() if pong is not None]
            if any(pong.round >= handoff.done_round for pong in alive) or \
                    self.round_estimate() >= handoff.done_round:
                self._handoffs.pop((handoff.kind, handoff.round), None)
            elif alive:
                self._arm(handoff)
            else:
                handoff.excluded.update(targets)
                self._recover(handoff, "receivers stopped answering")

        for target in targets:
            self.ping(target, answered)

    def _recover(self, handoff: Handoff, why: str) -> None:
        metrics = self.runtime.metrics
        metrics.count("recoveries")
        metrics.count(f"{handoff.kind}_recoveries")
        metrics.event(self.runtime.node_id, f"recovery-{handoff.kind}-round-{handoff.round}")
        handoff.delivered = set()
        self._derive(handoff)

    # ----------------------------------------------------------- aggregator
    @handles(ModestTrainedModel)
    def on_modest_trained_model(self, sender: bytes, message: ModestTrainedModel) -> None:
        metrics = self.runtime.metrics
        if not self.merge_view(sender, message.view):
            return
        round = message.round
        if not self.membership.joined(sender):
            metrics.rejected("sender_not_a_member", sender)
            return
        if round < 1 or not 1 <= message.sampled <= self.sample_size:
            metrics.rejected("malformed_model", sender)
            return
        if message.params.size != self.parameters:
            metrics.rejected("wrong_parameter_count", sender)
            return
        self.membership.saw(sender, round)
        self._learn(round)
        if round <= self._aggregated_up_to or self.round_estimate() >= round + 2:
            metrics.count("late_models_dropped")
            return
        collection = self._collections.get(round)
        if collection is None:
            collection = self._collections[round] = Collection()
            self._arm_collection(round, collection)
        if sender in collection.models:
            metrics.rejected("duplicate_model", sender)
            return
        collection.models[sender] = message
        collection.sampled = max(collection.sampled, message.sampled)
        self._maybe_complete(round)

    def _arm_collection(self, round: int, collection: Collection) -> None:
        if self.aggregation_timeout is not None:
            collection.timer = self.runtime.call_later(self.aggregation_timeout, self._collection_timeout, round,
                                                       collection)

    def _collection_timeout(self, round: int, collection: Collection) -> None:
        if self._collections.get(round) is not collection or self._stopped:
            return
        collection.timer = None
        collection.expired = True
        self.runtime.metrics.count("aggregation_timeouts")
        self._maybe_complete(round)

    def _maybe_complete(self, round: int) -> None:
        collection = self._collections[round]
        needed = quorum(min(self.sample_size, collection.sampled), self.success_fraction)
        if collection.expired:
            needed = min(needed, self.min_models)
        if len(collection.models) < needed:
            return
        del self._collections[round]
        if collection.timer is not None:
            collection.timer.cancel()
        self._aggregated_up_to = max(self._aggregated_up_to, round)
        models = list(collection.models.values())
        weights = [m.samples for m in models] if self.weighted else None
        global_model = average([m.params for m in models], weights)
        self.runtime.metrics.global_model(round, global_model)
        self._learn(round + 1)  # settles older collections and hand-offs
        handoff = Handoff("aggregate", round + 1, round + 2, global_model, 0, 0, models=len(models))
        self._handoffs[("aggregate", round + 1)] = handoff
        self._derive(handoff)

    # ----------------------------------------------------------- the static messages
    @handles(TrainedModel, AggregatedModel)
    def on_static_message(self, sender: bytes, message: Message) -> None:
        # a node running static Plexus in the same deployment: the two protocols do not mix
        self.runtime.metrics.rejected("wrong_membership_protocol", sender)


PlexusNode.variants = (ModestPlexusNode,)  # listed by `plexus algorithms` with the static node's messages

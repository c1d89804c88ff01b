"""Plexus with MoDeST's membership (``membership = "modest"``), one node on a hand-driven runtime: liveness when
deriving samples and aggregators, several aggregators, the first aggregate wins, stale-round abandonment, the
aggregation timeout, recovery of hand-offs to dead receivers, and the membership checks on senders."""

from __future__ import annotations

import numpy as np

from plexus.protocol.membership import Ping, Pong
from plexus.protocol.modest import ModestAggregate, ModestPlexusNode, ModestTrainedModel
from plexus.protocol.plexus import AggregatedModel, PlexusNode, PlexusOptions, TrainedModel
from plexus.protocol.runtime import PeerUnreachable
from plexus.protocol.sampling import derive_sample
from plexus.protocol.view import PeerInfo
from protocol_stub import StubRuntime

IDS = [str(i).encode() for i in range(20)]
BANDWIDTH = {node: float(100 + 7 * i) for i, node in enumerate(IDS)}  # all distinct


def options(**given: object) -> PlexusOptions:
    base: dict[str, object] = {"sample_size": 5, "success_fraction": 0.6, "membership": "modest"}
    base.update(given)
    return PlexusOptions(local_steps=1, nodes=len(IDS), **base)  # type: ignore[arg-type]


def node_on(node_id: bytes, opts: PlexusOptions | None = None) -> ModestPlexusNode:
    peers = [PeerInfo(n, BANDWIDTH[n], 1.0) for n in IDS]
    node = PlexusNode(StubRuntime(node_id, peers), opts or options())
    assert isinstance(node, ModestPlexusNode)
    node.membership_start()
    return node


def stub(node: ModestPlexusNode) -> StubRuntime:
    assert isinstance(node.runtime, StubRuntime)
    return node.runtime


def sent(node: ModestPlexusNode, kind: type) -> list[tuple[bytes, object]]:
    return [(peer, m) for peer, m, _ in stub(node).sent if type(m) is kind]


def answer_pings(node: ModestPlexusNode, alive: set[bytes], round: int = 0) -> None:
    """Every ping sent so far to a node in ``alive`` is answered (once)."""
    runtime = stub(node)
    answered = getattr(runtime, "_answered", set())
    for peer, message, _ in list(runtime.sent):
        if type(message) is Ping and peer in alive and message.nonce not in answered:
            answered.add(message.nonce)
            node.deliver(peer, Pong(round, 0, message.nonce))
    runtime._answered = answered  # type: ignore[attr-defined]


def expected_aggregators(round: int, s: int = 5, skip: frozenset[bytes] = frozenset()) -> list[bytes]:
    head = derive_sample(IDS, round + 1, s)
    rest = [n for n in derive_sample(IDS, round + 1, len(IDS)) if n not in head]
    return [n for n in sorted(head, key=lambda n: -BANDWIDTH[n]) + rest if n not in skip]


def trained_participant(round: int = 3, **given: object) -> ModestPlexusNode:
    """A member of S_round that received the round's aggregate and finished training it."""
    member = derive_sample(IDS, round, 5)[0]
    node = node_on(member, options(**given))
    sender = next(n for n in IDS if n != member)
    node.deliver(sender, ModestAggregate(round, 5, node.view_bytes(), np.full(3, 2.0, dtype=np.float32)))
    stub(node).finish_training()
    return node


def test_membership_modest_builds_the_modest_node_and_static_the_paper_node() -> None:
    peers = [PeerInfo(n) for n in IDS]
    assert type(PlexusNode(StubRuntime(IDS[0], peers), options())) is ModestPlexusNode
    assert type(PlexusNode(StubRuntime(IDS[0], peers), options(membership="static"))) is PlexusNode


def test_a_participant_sends_to_the_first_available_aggregator_skipping_one_that_does_not_answer() -> None:
    node = trained_participant()
    first, second = expected_aggregators(3)[:2]
    pinged = [peer for peer, _ in sent(node, Ping)]
    assert pinged[0] == first  # best candidate first (the fastest uploader of S_4), a few more ahead
    answer_pings(node, set(IDS) - {first})
    assert not sent(node, ModestTrainedModel)  # the best candidate has not answered yet
    stub(node).loop.run(until=5.5)  # it never does: skipped after the ping timeout
    (peer, message), = sent(node, ModestTrainedModel)
    assert peer == second and message.round == 3 and message.sampled == 5
    assert message.params.tolist() == [3.0] * 3


def test_with_several_aggregators_a_participant_sends_to_each_of_the_first_a_that_answer() -> None:
    node = trained_participant(aggregators=3)
    answer_pings(node, set(IDS))
    assert [peer for peer, _ in sent(node, ModestTrainedModel)] == expected_aggregators(3)[:3]


def test_a_failed_send_to_the_aggregator_is_redone_with_the_next_candidate() -> None:
    node = trained_participant()
    answer_pings(node, set(IDS))
    (first, _, transmission), = [(p, m, t) for p, m, t in stub(node).sent if type(m) is ModestTrainedModel]
    transmission.mark_failed(PeerUnreachable(first, "crashed"))
    answer_pings(node, set(IDS))
    resent = [peer for peer, _ in sent(node, ModestTrainedModel)]
    assert resent == [first, expected_aggregators(3)[1]]
    sink = stub(node).sink
    assert sink.counters["recoveries"] == 1 and sink.counters["model_sends_failed"] == 1
    assert [name for _, _, name in sink.events] == ["recovery-model-round-3"]


def test_an_aggregator_that_goes_silent_after_the_delivery_is_replaced_after_the_recovery_timeout() -> None:
    node = trained_participant(recovery_timeout=30.0)
    runtime = stub(node)
    answer_pings(node, set(IDS))
    (aggregator, _, transmission), = [(p, m, t) for p, m, t in runtime.sent if type(m) is ModestTrainedModel]
    transmission.mark_delivered()
    runtime.loop.run(until=29.0)
    assert len(sent(node, ModestTrainedModel)) == 1
    runtime.loop.run(until=30.5)  # the timer fired: the aggregator is pinged...
    assert sent(node, Ping)[-1][0] == aggregator
    answer_pings(node, {aggregator}, round=4)  # ...alive, and round 4 (not 5) known: wait again
    runtime.loop.run(until=61.0)
    answer_pings(node, set(IDS) - {aggregator})  # the next check: it no longer answers
    runtime.loop.run(until=70.0)
    answer_pings(node, set(IDS) - {aggregator})
    assert [peer for peer, _ in sent(node, ModestTrainedModel)] == [aggregator, expected_aggregators(3)[1]]
    assert runtime.sink.counters["recoveries"] == 1


def test_a_hand_off_ends_when_a_receiver_names_the_round_after_next() -> None:
    node = trained_participant(recovery_timeout=30.0)
    runtime = stub(node)
    answer_pings(node, set(IDS))
    (aggregator, _, transmission), = [(p, m, t) for p, m, t in runtime.sent if type(m) is ModestTrainedModel]
    transmission.mark_delivered()
    runtime.loop.run(until=31.0)
    answer_pings(node, {aggregator}, round=5)  # round 4 completed: the round-3 model is settled
    pings = len(sent(node, Ping))
    runtime.loop.run(until=200.0)
    assert len(sent(node, Ping)) == pings and not node._handoffs


def test_training_is_abandoned_as_soon_as_a_newer_round_is_known() -> None:
    member = derive_sample(IDS, 3, 5)[0]
    node = node_on(member)
    node.deliver(IDS[19] if member != IDS[19] else IDS[18],
                 ModestAggregate(3, 5, node.view_bytes(), np.ones(3, dtype=np.float32)))
    (_, _, training), = stub(node).trainings
    node.deliver(IDS[7], Ping(4, 0, 1))  # someone is working on round 4: round 3 was aggregated
    assert training.cancelled() and stub(node).sink.counters["stale_training_abandoned"] == 1


def test_the_first_aggregate_of_a_round_wins_and_later_ones_are_ignored() -> None:
    member = derive_sample(IDS, 3, 5)[0]
    node = node_on(member)
    others = [n for n in IDS if n != member]
    node.deliver(others[0], ModestAggregate(3, 5, node.view_bytes(), np.ones(3, dtype=np.float32)))
    node.deliver(others[1], ModestAggregate(3, 5, node.view_bytes(), np.full(3, 9.0, dtype=np.float32)))
    assert len(stub(node).trainings) == 1 and stub(node).trainings[0][0].tolist() == [1.0] * 3
    assert stub(node).sink.counters["duplicate_aggregates_ignored"] == 1 and not stub(node).sink.rejections


def aggregator_with(models: int, sampled: int = 5, **given: object) -> ModestPlexusNode:
    node = node_on(IDS[0], options(**given))
    senders = [n for n in derive_sample(IDS, 3, 5) if n != IDS[0]] + [IDS[10], IDS[11]]
    for value, sender in enumerate(senders[:models], start=1):
        node.deliver(sender, ModestTrainedModel(3, 1, sampled, node.view_bytes(),
                                                np.full(3, float(value), dtype=np.float32)))
    return node


def test_an_aggregator_averages_at_the_quorum_of_the_sample_size_reached_and_pushes_to_the_next_sample() -> None:
    node = aggregator_with(2, sampled=4)  # floor(4 x 0.6) = 2 models (3 for a full sample of 5)
    runtime = stub(node)
    (round_, average), = runtime.sink.globals
    assert round_ == 3 and average.tolist() == [1.5] * 3
    following = derive_sample(IDS, 4, len(IDS))
    dead = following[1]
    answer_pings(node, set(IDS) - {dead})
    runtime.loop.run(until=5.5)
    answer_pings(node, set(IDS) - {dead})
    expected = [n for n in following if n != dead][:5]
    pushed = sent(node, ModestAggregate)
    assert [peer for peer, _ in pushed] == expected
    assert all(m.round == 4 and m.sampled == 5 for _, m in pushed)
    assert runtime.sink.aggregations == [(3, IDS[0], 2, expected)]


def test_after_the_aggregation_timeout_min_models_are_enough() -> None:
    node = aggregator_with(1, aggregation_timeout=20.0, min_models=1)
    runtime = stub(node)
    assert not runtime.sink.globals
    runtime.loop.run(until=19.0)
    assert not runtime.sink.globals
    runtime.loop.run(until=21.0)
    assert [r for r, _ in runtime.sink.globals] == [3] and runtime.sink.counters["aggregation_timeouts"] == 1
    waiting = aggregator_with(1, aggregation_timeout=20.0, min_models=2)
    stub(waiting).loop.run(until=21.0)
    assert not stub(waiting).sink.globals  # one model is not enough: the next one completes the round
    waiting.deliver(IDS[12], ModestTrainedModel(3, 1, 5, waiting.view_bytes(), np.ones(3, dtype=np.float32)))
    assert [r for r, _ in stub(waiting).sink.globals] == [3]


def test_senders_must_be_members_and_messages_well_formed() -> None:
    node = node_on(IDS[0])
    view = node.view_bytes()
    good = np.ones(3, dtype=np.float32)
    node.deliver(b"stranger", ModestTrainedModel(3, 1, 5, view, good))  # not in the view it sent
    node.deliver(IDS[2], ModestTrainedModel(3, 1, 0, view, good))  # sampled must be 1..s
    node.deliver(IDS[2], ModestTrainedModel(3, 1, 5, view, np.ones(4, dtype=np.float32)))
    node.deliver(IDS[2], ModestTrainedModel(3, 1, 5, b"junk", good))
    node.deliver(IDS[3], ModestAggregate(1, 5, view, good))  # round 1 has no aggregate
    node.deliver(IDS[3], TrainedModel(3, 1, good))  # static Plexus's messages do not mix with these
    node.deliver(IDS[3], AggregatedModel(3, good))
    assert stub(node).sink.rejections == {"sender_not_a_member": 1, "malformed_model": 1, "wrong_parameter_count": 1,
                                          "malformed_view": 1, "malformed_aggregate": 1,
                                          "wrong_membership_protocol": 2}
    assert not stub(node).trainings and not stub(node).sink.globals


def test_a_late_node_is_admitted_by_the_view_it_sends_its_model_with() -> None:
    node = node_on(IDS[0])
    late = node_on(b"late")  # knows everyone, and itself
    node.deliver(b"late", ModestTrainedModel(3, 1, 5, late.view_bytes(), np.ones(3, dtype=np.float32)))
    assert not stub(node).sink.rejections and node.membership.joined(b"late")


def test_a_node_that_comes_back_with_its_state_trains_its_round_again_and_resumes_its_hand_offs() -> None:
    member = derive_sample(IDS, 3, 5)[0]
    node = node_on(member)
    runtime = stub(node)
    node.deliver(IDS[19] if member != IDS[19] else IDS[18],
                 ModestAggregate(3, 5, node.view_bytes(), np.full(3, 2.0, dtype=np.float32)))
    node.rejoin()  # the training of before died with the node: it starts again
    assert len(runtime.trainings) == 2 and runtime.trainings[1][0].tolist() == [2.0] * 3
    runtime.finish_training()
    answer_pings(node, set(IDS))
    (_, message, transmission), = [(p, m, t) for p, m, t in runtime.sent if type(m) is ModestTrainedModel]
    transmission.mark_delivered()
    sends = len(sent(node, ModestTrainedModel))
    node.rejoin()  # the hand-off is checked again at once: its receiver is pinged
    assert sent(node, Ping)[-1][0] == expected_aggregators(3)[0] and len(sent(node, ModestTrainedModel)) == sends

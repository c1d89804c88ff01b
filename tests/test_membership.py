"""MoDeST's membership machinery on a hand-driven runtime: the view merge rule, pending JOINs applied on send,
LEAVE at once, the inactivity threshold, suspicion of nodes that fail pings, pings in candidate order with
unresponsive candidates skipped, and the view's wire format under hostile input."""

from __future__ import annotations

import math
import struct

import pytest

from plexus.protocol.membership import (
    JOINED,
    LEFT,
    Announce,
    Entry,
    MalformedView,
    MembershipNode,
    Ping,
    Pong,
    ViewReply,
    decode_view,
    encode_view,
)
from plexus.protocol.view import PeerInfo
from protocol_stub import StubRuntime

IDS = [str(i).encode() for i in range(10)]


class Member(MembershipNode):
    """The membership machinery alone, as an algorithm would embed it."""

    def __init__(self, runtime: StubRuntime, threshold: int = 5, fanout: int = 3) -> None:
        super().__init__(runtime)
        self.init_membership(threshold, ping_timeout=5.0, announce_fanout=fanout)
        self.rounds: list[int] = []

    def on_round(self, round: int) -> None:
        self.rounds.append(round)


def member(node: bytes = IDS[0], ids: list[bytes] | None = None, **kwargs: int) -> Member:
    peers = [PeerInfo(n, float(10 + i), 5.0) for i, n in enumerate(ids or IDS)]
    node_ = Member(StubRuntime(node, peers), **kwargs)
    node_.membership_start()
    return node_


def stub(node: Member) -> StubRuntime:
    assert isinstance(node.runtime, StubRuntime)
    return node.runtime


def sent(node: Member, kind: type) -> list[tuple[bytes, object]]:
    return [(peer, message) for peer, message, _ in stub(node).sent if type(message) is kind]


# ------------------------------------------------------------------------------------------------ merge rule
def test_merge_adds_unknown_nodes_takes_the_highest_round_and_lets_a_higher_index_replace_the_status() -> None:
    node = member()
    membership = node.membership
    membership.entries[IDS[1]] = Entry(4, 2, JOINED)
    membership.entries[IDS[2]] = Entry(9, 3, JOINED)
    membership.entries[IDS[3]] = Entry(2, 5, LEFT)
    newcomer = PeerInfo(b"new", 123.0, 45.0)
    incoming = [
        (PeerInfo(IDS[1], 11.0, 5.0), Entry(7, 2, LEFT)),  # same index: status kept, round raised to 7
        (PeerInfo(IDS[2], 12.0, 5.0), Entry(3, 4, LEFT)),  # higher index: status replaced, round stays 9
        (PeerInfo(IDS[3], 13.0, 5.0), Entry(8, 4, JOINED)),  # lower index: only the round moves
        (newcomer, Entry(6, 1, JOINED)),  # unknown: added with its capacities
    ]
    assert node.merge_view(IDS[4], encode_view(incoming))
    assert membership.entries[IDS[1]] == Entry(7, 2, JOINED)
    assert membership.entries[IDS[2]] == Entry(9, 4, LEFT)
    assert membership.entries[IDS[3]] == Entry(8, 5, LEFT)
    assert membership.entries[b"new"] == Entry(6, 1, JOINED) and membership.info(b"new") == newcomer
    assert membership.estimate == 8 and node.rounds == [8]  # the highest round the view names is evidence


def test_a_view_claiming_this_node_left_makes_it_announce_itself_again_above_that_index() -> None:
    node = member()
    assert node.merge_view(IDS[1], encode_view([(PeerInfo(IDS[0], 10.0, 5.0), Entry(3, 4, LEFT))]))
    assert node.membership.entries[IDS[0]].index == 5 and node.membership.status(IDS[0]) == JOINED
    announcements = sent(node, Announce)
    assert len(announcements) == 3 and all(m.change == JOINED and m.index == 5 for _, m in announcements)


def test_a_malformed_view_is_refused_and_changes_nothing() -> None:
    node = member()
    before = dict(node.membership.entries)
    assert not node.merge_view(IDS[1], b"V\x01\x05garbage")
    assert node.membership.entries == before
    assert stub(node).sink.rejections == {"malformed_view": 1}


# ------------------------------------------------------------------------------------------------ JOIN and LEAVE
def test_a_join_is_pending_until_the_receiver_sends_a_model_and_is_answered_with_the_view() -> None:
    node = member()
    node.deliver(b"late", Announce(7, 1, JOINED, 99.0, 9.0))
    membership = node.membership
    assert b"late" not in membership.entries and b"late" not in membership.active()  # not yet in any sample
    (peer, reply), = sent(node, ViewReply)
    assert peer == b"late" and reply.round == membership.estimate
    assert {info.node_id for info, _ in decode_view(reply.view)} == set(IDS)
    node.sent_model()
    assert membership.entries[b"late"] == Entry(7, 1, JOINED) and membership.info(b"late").upload_bps == 99.0
    assert b"late" in membership.active() and b"late" in node.runtime.view
    assert stub(node).sink.counters == {"joins_queued": 1, "joins_applied": 1}


def test_a_leave_is_applied_at_once_and_a_later_join_with_a_higher_index_brings_the_node_back() -> None:
    node = member()
    node.deliver(IDS[3], Announce(2, 1, LEFT, 13.0, 5.0))
    assert node.membership.status(IDS[3]) == LEFT and IDS[3] not in node.membership.active()
    node.deliver(IDS[3], Announce(2, 1, LEFT, 13.0, 5.0))  # the same news again changes nothing
    assert stub(node).sink.counters["leaves_applied"] == 1
    node.deliver(IDS[3], Announce(4, 2, JOINED, 13.0, 5.0))
    assert IDS[3] not in node.membership.active()  # pending
    node.sent_model()
    assert node.membership.entries[IDS[3]] == Entry(4, 2, JOINED) and IDS[3] in node.membership.active()


def test_announcements_go_to_fanout_nodes_leave_to_active_ones_join_to_any_known() -> None:
    node = member(fanout=4)
    node.deliver(IDS[5], Announce(0, 1, LEFT, 15.0, 5.0))
    node.membership_leave()
    leaves = sent(node, Announce)
    assert len(leaves) == 4 and all(m.change == LEFT and m.index == 1 for _, m in leaves)
    assert all(peer not in (IDS[0], IDS[5]) for peer, _ in leaves)  # not to itself, not to a node that left
    other = member(fanout=20)  # more than it knows: everyone else once
    other.membership_join()
    joins = sent(other, Announce)
    assert sorted(peer for peer, _ in joins) == sorted(IDS[1:]) and all(m.change == JOINED for _, m in joins)


def test_a_join_nobody_answers_is_announced_again_to_other_nodes() -> None:
    node = member(fanout=3)
    node.membership_join()
    first = {peer for peer, _ in sent(node, Announce)}
    stub(node).loop.run(until=5.0)
    second = {peer for peer, _ in sent(node, Announce)} - first
    assert len(second) == 3 and stub(node).sink.counters["join_retries"] == 1
    node.deliver(IDS[1], ViewReply(3, node.view_bytes()))  # an answer stops the retries
    stub(node).loop.run(until=30.0)
    assert stub(node).sink.counters["join_retries"] == 1 and node.membership.estimate == 3


def test_malformed_announcements_are_refused() -> None:
    node = member()
    node.deliver(IDS[1], Announce(0, 1, 7, 1.0, 1.0))
    node.deliver(IDS[1], Announce(0, 0, JOINED, 1.0, 1.0))
    node.deliver(IDS[1], Announce(0, 1, JOINED, -1.0, 1.0))
    node.deliver(IDS[1], Announce(0, 1, JOINED, math.nan, 1.0))
    assert stub(node).sink.rejections == {"malformed_announcement": 4}
    assert not node.membership.pending


# ------------------------------------------------------------------------------------------------ activity
def test_nodes_silent_for_more_than_the_inactivity_threshold_leave_the_active_view() -> None:
    node = member(threshold=5)
    membership = node.membership
    membership.saw(IDS[1], 10)
    membership.saw(IDS[2], 5)
    membership.learn_round(10)
    active = set(membership.active())
    assert IDS[1] in active and IDS[2] in active  # 10 - 5 = 5 rounds: still in
    assert IDS[3] not in active  # last seen at round 0
    assert IDS[0] in active  # a node is always in its own view
    membership.learn_round(11)
    assert IDS[2] not in membership.active()
    node.deliver(IDS[2], Ping(11, 0, 1))  # heard from again: active again
    assert IDS[2] in membership.active()


def test_a_node_that_fails_pings_is_suspected_until_something_newer_is_known_about_it() -> None:
    node = member()
    search = node.find_available([IDS[1]], 1)
    stub(node).loop.run(until=6.0)
    assert search.result() == [] and IDS[1] not in node.membership.active()
    node.merge_view(IDS[2], encode_view([(PeerInfo(IDS[1], 11.0, 5.0), Entry(3, 0, JOINED))]))
    assert IDS[1] in node.membership.active()  # seen active at a later round than when it failed


# ------------------------------------------------------------------------------------------------ pings
def pongs(node: Member, answering: set[bytes]) -> None:
    """Answer every ping sent so far by a node in ``answering`` (once per nonce)."""
    runtime = stub(node)
    done = getattr(runtime, "_answered", set())
    for peer, message, _ in list(runtime.sent):
        if type(message) is Ping and peer in answering and message.nonce not in done:
            done.add(message.nonce)
            node.deliver(peer, Pong(4, 0, message.nonce))
    runtime._answered = done  # type: ignore[attr-defined]


def test_candidates_are_pinged_in_order_unresponsive_ones_skipped_and_the_next_asked() -> None:
    node = member()
    runtime = stub(node)
    candidates = [IDS[3], IDS[5], IDS[1], IDS[7], IDS[2], IDS[8], IDS[9]]
    search = node.find_available(candidates, 2, window=2)
    assert [peer for peer, _ in sent(node, Ping)] == [IDS[3], IDS[5]]  # the first two at once
    pongs(node, {IDS[5]})
    assert not search.done()  # IDS[3] is ahead and undecided
    runtime.loop.run(until=1.5)  # pings are repeated every second until the timeout
    assert [peer for peer, _ in sent(node, Ping)].count(IDS[3]) == 2
    pongs(node, {IDS[1]})
    runtime.loop.run(until=5.1)  # IDS[3] gave up: the next candidate is asked
    assert IDS[1] in [peer for peer, _ in sent(node, Ping)]
    pongs(node, {IDS[1]})
    runtime.loop.run(until=5.2)
    assert search.result() == [IDS[5], IDS[1]]
    assert IDS[7] not in [peer for peer, _ in sent(node, Ping)]  # never needed
    assert runtime.sink.counters["pings_unanswered"] == 1 and runtime.sink.counters["pings_answered"] == 2


def test_the_result_follows_candidate_order_not_the_order_of_answers() -> None:
    node = member()
    search = node.find_available([IDS[4], IDS[6], IDS[2]], 2)  # window count + 3: all three pinged
    pongs(node, {IDS[2]})
    pongs(node, {IDS[6]})
    assert not search.done()
    pongs(node, {IDS[4]})
    assert search.result() == [IDS[4], IDS[6]]


def test_the_node_itself_counts_as_available_without_a_ping_and_a_short_list_returns_what_answered() -> None:
    node = member()
    search = node.find_available([IDS[0], IDS[3]], 3)
    assert [peer for peer, _ in sent(node, Ping)] == [IDS[3]]
    stub(node).loop.run(until=6.0)
    assert search.result() == [IDS[0]]


def test_a_ping_is_answered_with_the_round_and_refreshes_the_pingers_activity() -> None:
    node = member()
    node.deliver(IDS[4], Ping(12, 0, 77))
    (peer, pong), = sent(node, Pong)
    assert peer == IDS[4] and pong.nonce == 77 and pong.round == 12
    assert node.membership.entries[IDS[4]].last_round == 12 and node.rounds == [12]
    node.deliver(IDS[4], Ping(12, 3, 78))  # a higher index than known: it (re)joined
    assert node.membership.entries[IDS[4]].index == 3


def test_a_pong_nobody_asked_for_is_refused() -> None:
    node = member()
    node.deliver(IDS[2], Pong(1, 0, 5))
    node.ping(IDS[3], lambda *_: None)
    nonce = sent(node, Ping)[0][1].nonce
    node.deliver(IDS[2], Pong(1, 0, nonce))  # the right nonce from the wrong node
    assert stub(node).sink.rejections == {"unsolicited_pong": 2}


# ------------------------------------------------------------------------------------------------ wire format
def entries() -> list[tuple[PeerInfo, Entry]]:
    return [(PeerInfo(b"a", 1.5, math.inf), Entry(-1, 0, JOINED)), (PeerInfo(b"b" * 40, 2e6, 3e6), Entry(300, 2, LEFT)),
            (PeerInfo(b"c", 7.0, 8.0), Entry(1 << 40, 1 << 20, JOINED))]


def test_a_view_round_trips_through_its_encoding_sorted_by_id() -> None:
    data = encode_view(list(reversed(entries())))
    assert list(decode_view(data)) == entries()
    assert encode_view(entries()) == data
    # 3-byte header, then per entry: id length, id, round + 1, index, status, two float64
    assert len(encode_view(entries()[:1])) == 3 + 1 + 1 + 1 + 1 + 1 + 16


@pytest.mark.parametrize("data, problem", [
    (b"", "shorter than its 3-byte header"),
    (b"X\x01\x00", "bad view magic"),
    (b"V\x09\x00", "unsupported view version 9"),
    (b"V\x01\x7f", "announces 127 entries"),
    (b"V\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "entry count"),
    (b"V\x01\x01\x00" + b"\x00" * 20, "id of 0 bytes"),
    (b"V\x01\x01\x30a" + b"\x00" * 25, "id announces 48 bytes"),
    (b"V\x01\x01\x01a\x01\x00\x07" + struct.pack(">dd", 1.0, 1.0), "status byte 7"),
    (b"V\x01\x01\x01a\x01\x00\x00" + struct.pack(">dd", math.nan, 1.0), "upload capacity nan"),
    (b"V\x01\x01\x01a\x01\x00\x00" + struct.pack(">dd", 1.0, -2.0), "download capacity -2.0"),
    (b"V\x01\x01\x01a\x01\x00\x00" + struct.pack(">dd", 1.0, 1.0) + b"!", "1 unexpected trailing bytes"),
    (b"V\x01\x02" + (b"\x01a\x01\x00\x00" + struct.pack(">dd", 1.0, 1.0)) * 2, "not strictly increasing"),
    (b"V\x01\x01\x01a\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00" + struct.pack(">dd", 1.0, 1.0), "out of range"),
])
def test_a_hostile_view_is_refused_with_a_reason(data: bytes, problem: str) -> None:
    with pytest.raises(MalformedView, match=problem.replace("(", r"\(")):
        decode_view(data)

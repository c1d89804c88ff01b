"""Per-node views: immutable interned rosters whose caches (samples, memos) are shared by every view holding
them, and views that switch roster (and bump their version) whenever the membership they know changes."""

from __future__ import annotations

import math

import pytest

from plexus.protocol import view as view_module
from plexus.protocol.sampling import derive_sample
from plexus.protocol.view import PeerInfo, Roster, View, roster_of

IDS = [f"peer-{i:02d}".encode() for i in range(20)]


def peers(ids: list[bytes] = IDS, bandwidth: float = 10.0) -> list[PeerInfo]:
    return [PeerInfo(node_id, bandwidth, bandwidth) for node_id in ids]


def test_peer_info_defaults_to_infinite_links() -> None:
    info = PeerInfo(b"a")
    assert info.upload_bps == math.inf and info.download_bps == math.inf


def test_equal_rosters_are_interned_whatever_the_order() -> None:
    a = roster_of(peers())
    assert roster_of(reversed(peers())) is a
    assert View(peers()).roster is a
    # the same ids with other capacities are another membership (aggregator choice depends on them)
    assert roster_of(peers(bandwidth=11.0)) is not a
    assert roster_of(peers(IDS[:-1])) is not a


def test_roster_reads() -> None:
    roster = roster_of(peers(IDS[::-1]))
    assert list(roster.ids()) == sorted(IDS) and len(roster) == 20
    assert IDS[3] in roster and b"stranger" not in roster
    assert roster.info(IDS[3]) == PeerInfo(IDS[3], 10.0, 10.0)
    assert roster.positions() == {node_id: i for i, node_id in enumerate(sorted(IDS))}
    assert roster.positions() is roster.positions()


def test_views_sharing_a_roster_share_the_sample_cache() -> None:
    roster = roster_of(peers())
    first, second = View(roster), View(peers())
    sample = first.sample(5, 4)
    assert sample == derive_sample(IDS, 5, 4)
    assert second.sample(5, 4) is sample  # computed once, for both nodes
    assert first.sample(6, 4) is not sample and first.sample(5, 3) == derive_sample(IDS, 5, 3)


def test_memo_is_computed_once_per_roster() -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    first, second = View(peers()), View(peers())
    assert first.memo(("test-memo", 1), compute) == 42
    assert second.memo(("test-memo", 1), compute) == 42
    assert calls == [1]
    assert first.memo(("test-memo", 2), compute) == 42 and calls == [1, 1]


def test_remove_bumps_the_version_switches_roster_and_changes_samples() -> None:
    shared = roster_of(peers())
    mine, other = View(shared), View(shared)
    before = mine.sample(3, 5)
    gone = before[0]
    assert mine.remove(gone) is True
    assert mine.version == 1 and mine.roster is not shared
    assert gone not in mine and len(mine) == 19
    after = mine.sample(3, 5)
    assert gone not in after and after == derive_sample([i for i in IDS if i != gone], 3, 5)
    # the other node's view, and the cache it shares, are untouched
    assert other.roster is shared and other.version == 0 and other.sample(3, 5) is before
    # forgetting an unknown node changes nothing
    assert mine.remove(b"stranger") is False and mine.version == 1


def test_views_that_converge_share_a_roster_again() -> None:
    shared = roster_of(peers())
    mine = View(shared)
    info = shared.info(IDS[4])
    mine.remove(IDS[4])
    assert mine.add(info) is True
    assert mine.roster is shared and mine.version == 2


def test_add_and_replace_bump_the_version_only_when_the_view_changes() -> None:
    mine = View(peers(IDS[:5]))
    assert mine.add(PeerInfo(IDS[0], 10.0, 10.0)) is False and mine.version == 0
    assert mine.add(PeerInfo(IDS[0], 99.0, 10.0)) is True and mine.version == 1  # new capacities
    assert mine.info(IDS[0]).upload_bps == 99.0 and len(mine) == 5
    assert mine.add(PeerInfo(IDS[7])) is True and mine.version == 2 and IDS[7] in mine
    assert mine.replace(mine.roster) is False and mine.version == 2
    assert mine.replace(peers(IDS[:3])) is True and mine.version == 3
    assert list(mine.ids()) == IDS[:3]
    assert mine.replace(roster_of(peers(IDS[:3]))) is False


def test_other_skips_the_node_itself() -> None:
    mine = View(peers(IDS[:4]))
    ids = list(mine.ids())
    assert [mine.other(1, index) for index in range(3)] == [ids[0], ids[2], ids[3]]
    assert [mine.other(0, index) for index in range(3)] == ids[1:]
    assert [mine.other(3, index) for index in range(3)] == ids[:3]


def test_saw_keeps_the_latest_time() -> None:
    mine = View(peers())
    assert mine.last_seen(IDS[0]) is None
    mine.saw(IDS[0], 5.0)
    mine.saw(IDS[0], 3.0)
    assert mine.last_seen(IDS[0]) == 5.0
    mine.saw(IDS[0], 8.0)
    assert mine.last_seen(IDS[0]) == 8.0 and mine.last_seen(IDS[1]) is None
    assert mine.version == 0  # hearing of a peer does not change the membership


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_module, "CACHE_LIMIT", 3)
    roster = Roster(peers())  # a private roster: not interned, so no other test sees its caches
    kept = [roster.sample(round_, 2) for round_ in range(1, 4)]
    assert roster.sample(1, 2) is kept[0]
    roster.sample(4, 2)  # the fourth entry clears the cache
    assert roster.sample(1, 2) is not kept[0] and roster.sample(1, 2) == kept[0]
    for key in range(5):
        roster.memo(key, lambda key=key: key)
    assert len(roster._memo) <= 3

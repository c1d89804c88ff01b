"""MoDeST's membership machinery (de Vos et al., arXiv 2302.13837, section 3): views that travel with models,
JOIN and LEAVE announcements, an inactivity threshold, and pings that find which candidates are alive.

Written against the :class:`~plexus.protocol.runtime.Runtime` only, so the simulator and the live runtime run it
unchanged. An algorithm uses it by subclassing :class:`MembershipNode` (see :mod:`plexus.protocol.modest`).

**The view** (:class:`Membership`). Per known node: the last round it was seen active, and a membership record
(an index and a status, joined or left). A node's own index grows each time it announces a change. Its
capacities (:class:`~plexus.protocol.view.PeerInfo`) are kept with it, because the Plexus aggregator is chosen by
upload bandwidth and a node that learns of a newcomer from a view must rank it like everyone else.

- *Merge* (a view received with a model, or in reply to a JOIN): unknown nodes are added; activity rounds take the
  maximum; a higher membership index replaces the status. A view that claims this node left, or knows a higher
  index for it, makes it announce itself again with a higher index (MoDeST's implicit rejoin).
- *Active view*: the joined nodes seen active within the last ``inactivity_threshold`` rounds of this node's round
  estimate, plus the node itself, minus the nodes this node *suspects*: a node that did not answer this node's
  pings is left out until something newer is known about it (it is heard from, or a view or announcement brings a
  later activity round or a higher index). :attr:`Runtime.view` is set to the active view each time the node
  derives something from it (:meth:`Membership.active`, :meth:`Membership.order`), so sampling
  (:meth:`~plexus.protocol.view.View.sample`) and everything cached on the view follow it.
- *Round estimate*: the highest round this node has evidence of (its own work, any round a message names, the
  highest activity round in its view).

**Announcements.** A node that joins (or comes back) sends ``JOIN`` to ``announce_fanout`` random nodes among all
it knows (its view may be stale, so not only the active ones); a node that leaves gracefully sends ``LEAVE`` to
``announce_fanout`` random active nodes. A ``LEAVE`` is applied at once. A ``JOIN`` is kept pending and applied
when the receiver next sends a model (:meth:`Membership.flush_pending`), so that a sample being derived from the
current view stays the same for everyone involved. A receiver answers a ``JOIN`` with its view and round
(:class:`ViewReply`), which is how a late node learns the membership and the current round; a node that hears
nothing back within ``ping_timeout`` announces again to other nodes.

**Pings** (:meth:`MembershipNode.find_available`): candidates are taken in order; the first ``count + 3`` are
pinged at once, each ping is repeated every ``PING_INTERVAL`` (1 s) until a pong arrives or ``ping_timeout`` (5 s)
has passed; a candidate that does not answer is skipped and the next one pinged (``count + 3`` candidates are kept
answered or pending), until the first ``count`` candidates that answered are known (every candidate before them
answered or was skipped) or the candidates run out. The node
itself counts as available without a ping. The result is in candidate order and does not depend on which pong
came first, so nodes with the same view and the same live peers agree on it. Pings and pongs carry the
sender's round estimate and membership index: receiving one refreshes the sender's activity (and rejoins it if
its index is higher), and the round it names counts as evidence of progress.

**Wire format of a view** (:func:`encode_view`, :func:`decode_view`; never pickle): ``b"V"``, a version byte, the
entry count as an unsigned LEB128 varint, then per entry, sorted by id: id length (varint, at most
``MAX_ID_BYTES``), the id, last active round + 1 (varint), membership index (varint), status (one byte: 0 joined,
1 left), upload and download capacity (two big-endian float64). The decoder treats its input as hostile: every
length is checked against what is left before anything is allocated, varints are bounded, ids must be strictly
increasing (so unique), statuses 0 or 1, capacities positive (infinity allowed, NaN refused), and nothing may
trail. Any problem raises :class:`MalformedView`.

**Where we follow MoDeST's code** (``devos50/decentralized-learning``, ``accdfl/dfl/community.py``,
``accdfl/core/peer_manager.py``, ``accdfl/dfl/caches.py``): the per-node (round, (index, change)) record, pending
JOINs flushed after a model send, LEAVE applied at once, JOIN sent to all known and LEAVE to active peers, the merge
rule as in the authors' later ``ClientManager.merge_population_views`` (``decentralized-learning-simulator``: the
devos50 copy also overwrites the round with the index, which looks like a slip), the inactivity threshold on the
round estimate (default 1000 rounds, as MoDeST's simulations set it; its code's own default, 50, is a few minutes
when rounds take seconds, after which live nodes that were not sampled lately drop out of every view and samples
shrink: on the FLASH trace the median sample reached fell from 8 to 3), ping retries every second with a 5 s
timeout, and failed pings replaced by the next candidate.

**Where we differ, and why.** A node remembers who failed its pings (MoDeST forgets, and asks a crashed node again
at every sample until the inactivity threshold drops it, 5 s each time: with 80 of 100 nodes dead a round then takes
minutes). Three candidates beyond those needed are pinged ahead (MoDeST pings exactly as many as it needs, so with a
= 1 every dead candidate ahead costs a full timeout), and the answer order of pings does not decide who is chosen
(candidate order does), so participants that ping the same live candidates agree on the same aggregators. Views are
a compact checked binary encoding instead of a pickled dict (pickle on the wire is unsafe), and their entries carry
capacities (the Plexus aggregator is chosen by bandwidth, which the authors read from a global table). Announcements
go to ``announce_fanout`` peers (default s, the older MoDeST rule) instead of 10 x s. A JOIN is answered with the
receiver's view (MoDeST lets a late node wait for a view to arrive with a model, which takes until it is sampled,
and it cannot be sampled before others know it).

**Limits.** A view says what its sender believes about everyone: a member can claim that others left (with a higher
index) and push them out of views for a while, as in MoDeST; only announcements signed by the node concerned
would prevent it. A view costs about 20 bytes plus the id (16 for the capacities, a few for round, index
and status) per known node on every model: 2.2 KB with 100 simulated nodes (the digits model is 19 KB), 24 KB
with 1,000, ten times a 610-parameter model.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from plexus.protocol.futures import Future
from plexus.protocol.messages import Message, message
from plexus.protocol.node import Node, handles
from plexus.protocol.runtime import Runtime, Timer
from plexus.protocol.sampling import derive_sample
from plexus.protocol.view import PeerInfo, Roster, roster_of

JOINED = 0
LEFT = 1
STATUS_NAMES = {JOINED: "joined", LEFT: "left"}
PING_INTERVAL = 1.0  # seconds between repeated pings to one candidate (MoDeST's PING_INTERVAL)
SEARCH_SLACK = 3  # candidates pinged ahead of those needed: a run of dead candidates costs one timeout, not one each
VIEW_MAGIC = b"V"
VIEW_VERSION = 1
MAX_ID_BYTES = 256
MAX_COUNTER = (1 << 62) - 1  # rounds and indices beyond this are refused (no honest run gets near)
_CAPACITIES = struct.Struct(">dd")
_MIN_ENTRY_BYTES = 1 + 1 + 1 + 1 + 1 + _CAPACITIES.size  # id length, a 1-byte id, round, index, status, capacities


class MalformedView(ValueError):
    """Bytes that are not a valid view; the text names what is wrong."""


class Entry(NamedTuple):
    """What a node believes about one member: last round seen active, membership index and status."""

    last_round: int
    index: int
    status: int


# ------------------------------------------------------------------------------------------------ wire format
_SMALL_VARINTS = [bytes([value]) for value in range(128)]


def _uvarint(value: int) -> bytes:
    if value < 128:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_uvarint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    for position in range(offset, min(offset + 9, len(data))):
        byte = data[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > MAX_COUNTER:
                raise MalformedView(f"{what}: {value} is out of range")
            return value, position + 1
        shift += 7
    if offset >= len(data):
        raise MalformedView(f"{what}: truncated")
    raise MalformedView(f"{what}: varint longer than 9 bytes or truncated")


_ENCODED_ENTRIES: dict[tuple[PeerInfo, Entry], bytes] = {}


def _encode_entry(info: PeerInfo, entry: Entry) -> bytes:
    key = (info, entry)
    data = _ENCODED_ENTRIES.get(key)
    if data is None:
        node_id = info.node_id
        data = b"".join((_uvarint(len(node_id)), node_id, _uvarint(entry.last_round + 1), _uvarint(entry.index),
                         b"\x01" if entry.status == LEFT else b"\x00",
                         _CAPACITIES.pack(info.upload_bps, info.download_bps)))
        if len(_ENCODED_ENTRIES) >= 1 << 16:
            _ENCODED_ENTRIES.clear()
        _ENCODED_ENTRIES[key] = data
    return data


def encode_view(entries: Iterable[tuple[PeerInfo, Entry]]) -> bytes:
    """The wire form of a view (see the module docstring); entries are sorted by id. (Entries seen before are
    encoded once per process: most entries of most views are the same everywhere.)"""
    ordered = sorted(entries, key=lambda item: item[0].node_id)
    parts = [VIEW_MAGIC, bytes([VIEW_VERSION]), _uvarint(len(ordered))]
    parts += [_encode_entry(info, entry) for info, entry in ordered]
    return b"".join(parts)


_DECODED: dict[bytes, tuple[tuple[PeerInfo, Entry], ...]] = {}
_DECODED_LIMIT = 512


def decode_view(data: bytes) -> tuple[tuple[PeerInfo, Entry], ...]:
    """Parse and check a view; raises :class:`MalformedView` naming the problem.

    The result is immutable, so identical bytes (one view sent to many receivers) are decoded once per process.
    """
    if not isinstance(data, bytes):
        raise MalformedView(f"a view is bytes, not {type(data).__name__}")
    cached = _DECODED.get(data)
    if cached is not None:
        return cached
    entries = tuple(_decode_view(data))
    if len(_DECODED) >= _DECODED_LIMIT:
        _DECODED.clear()
    _DECODED[data] = entries
    return entries


def _decode_view(data: bytes) -> list[tuple[PeerInfo, Entry]]:
    total = len(data)
    if total < 3:
        raise MalformedView(f"view of {total} bytes is shorter than its 3-byte header")
    if data[:1] != VIEW_MAGIC:
        raise MalformedView(f"bad view magic {data[:1]!r}")
    if data[1] != VIEW_VERSION:
        raise MalformedView(f"unsupported view version {data[1]} (this plexus reads {VIEW_VERSION})")
    count, offset = _read_uvarint(data, 2, "entry count")
    if count * _MIN_ENTRY_BYTES > total - offset:
        raise MalformedView(f"view announces {count} entries, {total - offset} bytes cannot hold them")
    entries: list[tuple[PeerInfo, Entry]] = []
    previous: bytes | None = None
    unpack = _CAPACITIES.unpack_from
    tail = 1 + _CAPACITIES.size
    for number in range(count):
        # one-byte varints (ids, rounds and indices below 128) are read inline: this loop runs for every entry of
        # every view a node receives
        if offset < total and data[offset] < 0x80:
            length = data[offset]
            offset += 1
        else:
            length, offset = _read_uvarint(data, offset, f"entry {number}: id length")
        if not 1 <= length <= MAX_ID_BYTES:
            raise MalformedView(f"entry {number}: id of {length} bytes (1 to {MAX_ID_BYTES})")
        if offset + length > total:
            raise MalformedView(f"entry {number}: id announces {length} bytes, {total - offset} left")
        node_id = data[offset:offset + length]
        offset += length
        if previous is not None and node_id <= previous:
            raise MalformedView(f"entry {number}: ids not strictly increasing (a node listed twice, or unsorted)")
        previous = node_id
        if offset < total and data[offset] < 0x80:
            round_plus_one = data[offset]
            offset += 1
        else:
            round_plus_one, offset = _read_uvarint(data, offset, f"entry {number}: round")
        if offset < total and data[offset] < 0x80:
            index = data[offset]
            offset += 1
        else:
            index, offset = _read_uvarint(data, offset, f"entry {number}: membership index")
        if offset + tail > total:
            raise MalformedView(f"entry {number}: truncated status or capacities")
        status = data[offset]
        if status > 1:
            raise MalformedView(f"entry {number}: status byte {status} (0 joined, 1 left)")
        upload, download = unpack(data, offset + 1)
        offset += tail
        if not (upload > 0 and download > 0):  # also refuses NaN
            which, value = ("upload", upload) if not upload > 0 else ("download", download)
            raise MalformedView(f"entry {number}: {which} capacity {value} (must be > 0; inf allowed)")
        entries.append((PeerInfo(node_id, upload, download), Entry(round_plus_one - 1, index, status)))
    if offset != total:
        raise MalformedView(f"view has {total - offset} unexpected trailing bytes")
    return entries


# ------------------------------------------------------------------------------------------------ messages
@message(kind=42)
class Ping(Message):
    """Are you there? Carries the sender's round estimate and own membership index; answered by a :class:`Pong`."""

    round: int
    index: int
    nonce: int


@message(kind=43)
class Pong(Message):
    """The answer to the :class:`Ping` with the same ``nonce``."""

    round: int
    index: int
    nonce: int


@message(kind=44)
class Announce(Message):
    """The sender joined (``change`` 0) or is leaving (1), with its new membership index and its capacities."""

    round: int
    index: int
    change: int
    upload_bps: float
    download_bps: float


@message(kind=45)
class ViewReply(Message):
    """The answer to a JOIN: the receiver's view and round estimate, so a late node learns both."""

    round: int
    view: bytes


# ------------------------------------------------------------------------------------------------ the view
class Membership:
    """One node's membership view (see the module docstring); ``runtime.view`` is its active part, refreshed when
    read through :meth:`active` or :meth:`order`."""

    def __init__(self, runtime: Runtime, inactivity_threshold: int) -> None:
        self.runtime = runtime
        self.me = runtime.node_id
        self.threshold = int(inactivity_threshold)
        # everyone the runtime seeded the view with is a member seen at round 0 (the bootstrap list)
        self.peers: dict[bytes, PeerInfo] = {peer.node_id: peer for peer in runtime.view.roster.peers()}
        self.entries: dict[bytes, Entry] = {node_id: Entry(0, 0, JOINED) for node_id in self.peers}
        if self.me not in self.peers:
            self.peers[self.me] = PeerInfo(self.me)
            self.entries[self.me] = Entry(0, 0, JOINED)
        self.pending: dict[bytes, tuple[PeerInfo, Entry]] = {}
        self.estimate = 0
        self._changed = True  # the active view needs recomputing
        self._active_floor: int | None = None
        self._version = 0  # bumped by every change of an entry
        self._encoded: tuple[int, bytes] | None = None
        self.suspected: dict[bytes, Entry] = {}  # node -> its entry when it failed this node's pings
        self._joined: tuple[int, Roster] | None = None

    def _touch(self) -> None:
        self._changed = True
        self._version += 1

    # --------------------------------------------------------------------- reading
    @property
    def index(self) -> int:
        return self.entries[self.me].index

    def status(self, node_id: bytes) -> int | None:
        entry = self.entries.get(node_id)
        return None if entry is None else entry.status

    def joined(self, node_id: bytes) -> bool:
        entry = self.entries.get(node_id)
        return entry is not None and entry.status == JOINED

    def known(self) -> list[bytes]:
        """Every node this view holds an entry for (joined or left), sorted."""
        return sorted(self.entries)

    def active(self) -> Sequence[bytes]:
        """The active view's ids (sorted): refreshed from the entries when they or the round estimate changed."""
        self.refresh()
        return self.runtime.view.ids()

    def highest_round(self) -> int:
        return max(entry.last_round for entry in self.entries.values())

    def order(self, round: int) -> list[bytes]:
        """Every active node in the hash order of ``round`` (Algorithm 1 over the active view, not cut to s)."""
        self.refresh()
        view = self.runtime.view
        return view.memo(("membership-order", round), lambda: derive_sample(view.ids(), round, len(view)))

    def joined_order(self, round: int) -> list[bytes]:
        """Every joined node, active or not, in the hash order of ``round``. Nodes that agree on who joined agree
        on this order even when they disagree on who is active, so a rule that cuts it (the first s) and then skips
        unavailable nodes picks the same live node everywhere."""
        cached = self._joined
        if cached is None or cached[0] != self._version:
            roster = roster_of(self.peers[node_id] for node_id, entry in self.entries.items()
                               if entry.status == JOINED or node_id == self.me)
            cached = self._joined = (self._version, roster)
        roster = cached[1]
        return roster.memo(("membership-order", round), lambda: derive_sample(roster.ids(), round, len(roster)))

    def available(self, node_id: bytes) -> bool:
        """Whether ``node_id`` is in the active view (joined, recently active, not suspected)."""
        self.refresh()
        return node_id in self.runtime.view

    def info(self, node_id: bytes) -> PeerInfo:
        return self.peers[node_id]

    def encode(self) -> bytes:
        """This view on the wire, with this node's own entry at its current round estimate (encoded again only
        after a change)."""
        self.saw(self.me, self.estimate)
        cached = self._encoded
        if cached is None or cached[0] != self._version:
            data = encode_view((self.peers[node_id], entry) for node_id, entry in self.entries.items())
            cached = self._encoded = (self._version, data)
        return cached[1]

    # --------------------------------------------------------------------- changing
    def refresh(self) -> None:
        floor = self.estimate - self.threshold
        if not self._changed and floor == self._active_floor:
            return
        self._changed = False
        self._active_floor = floor
        suspected = self.suspected
        if suspected:
            for node_id in [n for n, entry in suspected.items() if self.entries.get(n) != entry]:
                del suspected[node_id]  # something newer is known about it: give it another chance
        chosen = [self.peers[node_id] for node_id, entry in self.entries.items()
                  if node_id == self.me or (entry.status == JOINED and entry.last_round >= floor
                                            and node_id not in suspected)]
        self.runtime.view.replace(roster_of(chosen))

    def suspect(self, node_id: bytes) -> None:
        """``node_id`` did not answer pings: leave it out of the active view until something newer is known."""
        entry = self.entries.get(node_id)
        if entry is not None and node_id != self.me:
            self.suspected[node_id] = entry
            self._changed = True

    def heard_from(self, node_id: bytes) -> None:
        """A message from ``node_id`` arrived: it is alive."""
        if self.suspected.pop(node_id, None) is not None:
            self._changed = True

    def learn_round(self, round: int) -> bool:
        """Evidence that ``round`` exists; returns whether it raised the estimate."""
        if round > self.estimate:
            self.estimate = round
            return True
        return False

    def saw(self, node_id: bytes, round: int) -> None:
        """``node_id`` was active in ``round`` (known nodes only: unknown ones enter through JOIN or a view)."""
        entry = self.entries.get(node_id)
        if entry is not None and round > entry.last_round:
            self.entries[node_id] = Entry(round, entry.index, entry.status)
            self._touch()

    def set_own(self, index: int, status: int) -> None:
        entry = self.entries[self.me]
        self.entries[self.me] = Entry(max(entry.last_round, self.estimate), index, status)
        self._touch()

    def apply_leave(self, node_id: bytes, info: PeerInfo, index: int, round: int) -> bool:
        """A LEAVE: applied at once; returns whether it changed anything."""
        if node_id == self.me:
            return False
        entry = self.entries.get(node_id)
        if entry is not None and index <= entry.index:
            return False
        if entry is None:
            self.peers[node_id] = info
        self.entries[node_id] = Entry(max(round, entry.last_round if entry else -1), index, LEFT)
        pending = self.pending.get(node_id)
        if pending is not None and pending[1].index <= index:
            del self.pending[node_id]
        self._touch()
        return True

    def queue_join(self, node_id: bytes, info: PeerInfo, index: int, round: int) -> bool:
        """A JOIN: kept pending until :meth:`flush_pending`; returns whether it is news."""
        if node_id == self.me:
            return False
        entry = self.entries.get(node_id)
        if entry is not None and (index < entry.index or (index == entry.index and entry.status == JOINED)):
            return False
        queued = self.pending.get(node_id)
        if queued is not None and queued[1].index >= index:
            return False
        self.pending[node_id] = (info, Entry(round, index, JOINED))
        return True

    def flush_pending(self) -> int:
        """Apply the pending JOINs (after this node sent a model); returns how many changed the view."""
        if not self.pending:
            return 0
        applied = 0
        for node_id, (info, incoming) in sorted(self.pending.items()):
            entry = self.entries.get(node_id)
            if entry is None:
                self.peers[node_id] = info
                self.entries[node_id] = incoming
            elif incoming.index > entry.index or (incoming.index == entry.index and entry.status == LEFT):
                self.entries[node_id] = Entry(max(entry.last_round, incoming.last_round), incoming.index, JOINED)
            else:
                continue
            applied += 1
        self.pending.clear()
        if applied:
            self._touch()
        return applied

    def merge(self, incoming: Iterable[tuple[PeerInfo, Entry]]) -> bool:
        """MoDeST's merge rule; returns whether the incoming view claims something newer about this node itself
        (it left, or a higher index), which the caller answers by announcing itself again."""
        own_news = False
        entries = self.entries
        me = self.me
        changed = False
        for info, theirs in incoming:
            node_id = info.node_id
            mine = entries.get(node_id)
            if mine == theirs:
                continue  # the common case: both views agree on this node
            if node_id == me:
                if mine is not None and (theirs.index > mine.index or (theirs.index == mine.index
                                                                      and theirs.status != mine.status)):
                    own_news = True
                continue
            if mine is None:
                self.peers[node_id] = info
                entries[node_id] = theirs
                changed = True
            elif theirs.index > mine.index:
                entries[node_id] = Entry(max(mine.last_round, theirs.last_round), theirs.index, theirs.status)
                changed = True
            elif theirs.last_round > mine.last_round:
                entries[node_id] = Entry(theirs.last_round, mine.index, mine.status)
                changed = True
        if changed:
            self._touch()
        return own_news


# ------------------------------------------------------------------------------------------------ pings
@dataclass
class _Probe:
    target: bytes
    deadline: float
    done: Callable[[bytes, Pong | None], None]
    timer: Timer | None = None


class _Search:
    """One :meth:`MembershipNode.find_available` in progress: up to ``window`` pings out at a time, candidates
    chosen strictly in candidate order (candidate i is chosen once it answered and every earlier one has answered or
    failed), so the answer order of pings never changes the result."""

    def __init__(self, node: MembershipNode, candidates: Sequence[bytes], count: int, window: int) -> None:
        self.node = node
        self.candidates = list(dict.fromkeys(candidates))  # de-duplicated, order kept
        self.count = count
        self.window = max(window, count)
        self.alive: list[bool | None] = [None] * len(self.candidates)
        self.next = 0
        self.outstanding = 0
        self.found = 0
        self.future: Future[list[bytes]] = Future()

    def start(self) -> None:
        self._fill()

    def _fill(self) -> None:
        me = self.node.runtime.node_id
        # keep `window` candidates that answered or may still answer
        while not self.future.done() and self.found + self.outstanding < self.window \
                and self.next < len(self.candidates):
            position = self.next
            self.next += 1
            candidate = self.candidates[position]
            if candidate == me:
                self.alive[position] = True  # a node knows it is alive
                self.found += 1
                if self._decide():
                    return
                continue
            self.outstanding += 1
            self.node.ping(candidate, lambda _, pong, position=position: self._answered(position, pong))
        self._decide()

    def _answered(self, position: int, pong: Pong | None) -> None:
        self.outstanding -= 1
        self.alive[position] = pong is not None
        self.found += pong is not None
        if not self.future.done():
            self._fill()

    def _decide(self) -> bool:
        """Resolve the search if its result is known; returns whether it is."""
        if self.future.done():
            return True
        chosen: list[bytes] = []
        for position, alive in enumerate(self.alive):
            if alive is None:
                return False  # this candidate is undecided (pinged, or not yet): so is the result
            if alive:
                chosen.append(self.candidates[position])
                if len(chosen) == self.count:
                    break
        self.future.set_result(chosen)
        return True


class MembershipNode(Node):
    """A node with a MoDeST membership view, announcements and pings (see the module docstring).

    Subclasses call :meth:`init_membership` from ``__init__`` and :meth:`membership_start`,
    :meth:`membership_join`, :meth:`membership_rejoin` or :meth:`membership_leave` from the lifecycle hooks; attach
    :meth:`view_bytes` to every model they send (then :meth:`sent_model`) and pass every view they receive to
    :meth:`merge_view`. :meth:`on_round` is called whenever the round estimate rises.
    """

    membership: Membership
    ping_timeout: float
    announce_fanout: int

    def init_membership(self, inactivity_threshold: int, ping_timeout: float, announce_fanout: int) -> None:
        self.membership = Membership(self.runtime, inactivity_threshold)
        self.ping_timeout = float(ping_timeout)
        self.announce_fanout = int(announce_fanout)
        self._probes: dict[int, _Probe] = {}
        self._nonce = 0
        self._join_tried: set[bytes] = set()
        self._join_timer: Timer | None = None
        self._awaiting_view = False

    # --------------------------------------------------------------------- to override
    def on_round(self, round: int) -> None:
        """The round estimate rose to ``round`` (training of older rounds may be abandoned)."""

    # --------------------------------------------------------------------- lifecycle helpers
    def membership_start(self) -> None:
        self.membership.refresh()

    def membership_join(self) -> None:
        """A late node (or one that lost its state): announce JOIN and wait for a view."""
        self.membership.refresh()
        self._announce_join()

    def membership_rejoin(self) -> None:
        """Back with its state: pings in flight died with the node; announce JOIN again (a higher index)."""
        self._probes.clear()
        self._join_timer = None
        self._announce_join()

    def membership_leave(self) -> None:
        """Graceful departure: LEAVE to ``announce_fanout`` random active nodes."""
        membership = self.membership
        membership.set_own(membership.index + 1, LEFT)
        others = [node_id for node_id in membership.active() if node_id != membership.me]
        self._announce(others, LEFT)

    # --------------------------------------------------------------------- views on the wire
    def view_bytes(self) -> bytes:
        return self.membership.encode()

    def sent_model(self) -> None:
        """A model (with this node's view) was just sent: apply pending JOINs now (MoDeST's flush)."""
        applied = self.membership.flush_pending()
        if applied:
            self.runtime.metrics.count("joins_applied", applied)

    def merge_view(self, sender: bytes, view: bytes) -> bool:
        """Merge a received view; False (and the message should be refused) when it is malformed."""
        try:
            entries = decode_view(view)
        except MalformedView:
            self.runtime.metrics.rejected("malformed_view", sender)
            return False
        membership = self.membership
        membership.heard_from(sender)
        own_news = membership.merge(entries)
        self._learn(max((entry.last_round for _, entry in entries), default=0))
        if own_news:
            # someone believes this node left, or knows a newer index for it: rejoin above that index
            theirs = next(entry for info, entry in entries if info.node_id == membership.me)
            membership.set_own(theirs.index + 1, JOINED)
            self.runtime.metrics.count("implicit_rejoins")
            self._announce(self._join_targets(), JOINED)
        return True

    def _learn(self, round: int) -> None:
        if self.membership.learn_round(round):
            self.on_round(round)

    # --------------------------------------------------------------------- announcements
    def _join_targets(self) -> list[bytes]:
        membership = self.membership
        return [node_id for node_id in membership.known()
                if node_id != membership.me and node_id not in self._join_tried]

    def _announce_join(self) -> None:
        membership = self.membership
        membership.set_own(membership.index + 1, JOINED)
        self._join_tried = set()
        self._awaiting_view = True
        self._announce(self._join_targets(), JOINED)

    def _announce(self, candidates: Sequence[bytes], change: int) -> None:
        runtime = self.runtime
        if not candidates:
            return
        count = min(self.announce_fanout, len(candidates))
        chosen = sorted(runtime.rng.choice(len(candidates), size=count, replace=False).tolist())
        me = self.membership.info(self.membership.me)
        message = Announce(self.membership.estimate, self.membership.index, change, me.upload_bps,
                           me.download_bps)
        for position in chosen:
            target = candidates[position]
            if change == JOINED:
                self._join_tried.add(target)
            runtime.send(target, message)
        runtime.metrics.count("joins_announced" if change == JOINED else "leaves_announced")
        if change == JOINED:
            if self._join_timer is not None:
                self._join_timer.cancel()
            self._join_timer = runtime.call_later(self.ping_timeout, self._join_unanswered)

    def _join_unanswered(self) -> None:
        self._join_timer = None
        if not self._awaiting_view:
            return
        targets = self._join_targets()
        if not targets:  # everyone was tried: start over (some may be back by now)
            self._join_tried = set()
            targets = self._join_targets()
        self.runtime.metrics.count("join_retries")
        self._announce(targets, JOINED)

    @handles(Announce)
    def on_announce(self, sender: bytes, message: Announce) -> None:
        metrics = self.runtime.metrics
        if message.change not in STATUS_NAMES or message.index < 1 or message.round < 0:
            metrics.rejected("malformed_announcement", sender)
            return
        if not (message.upload_bps > 0 and message.download_bps > 0):
            metrics.rejected("malformed_announcement", sender)
            return
        info = PeerInfo(sender, message.upload_bps, message.download_bps)
        membership = self.membership
        if message.change == LEFT:
            if membership.apply_leave(sender, info, message.index, max(message.round, membership.estimate)):
                metrics.count("leaves_applied")
            return
        if membership.queue_join(sender, info, message.index, max(message.round, membership.estimate)):
            metrics.count("joins_queued")
        self.runtime.send(sender, ViewReply(membership.estimate, self.view_bytes()))

    @handles(ViewReply)
    def on_view_reply(self, sender: bytes, message: ViewReply) -> None:
        if message.round < 0:
            self.runtime.metrics.rejected("malformed_view", sender)
            return
        if not self.merge_view(sender, message.view):
            return
        self._awaiting_view = False
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        self.membership.saw(sender, message.round)
        self._learn(message.round)

    # --------------------------------------------------------------------- pings
    def find_available(self, candidates: Sequence[bytes], count: int, window: int | None = None
                       ) -> Future[list[bytes]]:
        """The first ``count`` of ``candidates`` that answer a ping, in candidate order (see the docstring); at
        most ``window`` pings are out at a time (default ``count + SEARCH_SLACK``)."""
        search = _Search(self, candidates, count, count + SEARCH_SLACK if window is None else window)
        search.start()
        return search.future

    def ping(self, target: bytes, done: Callable[[bytes, Pong | None], None]) -> None:
        """Ping ``target`` every second until it answers (``done(target, pong)``) or ``ping_timeout`` passes
        (``done(target, None)``)."""
        self._nonce += 1
        nonce = self._nonce
        probe = _Probe(target, self.runtime.now() + self.ping_timeout, done)
        self._probes[nonce] = probe
        self._send_ping(nonce)

    def _send_ping(self, nonce: int) -> None:
        probe = self._probes.get(nonce)
        if probe is None:
            return
        runtime = self.runtime
        now = runtime.now()
        if now >= probe.deadline - 1e-9:
            del self._probes[nonce]
            runtime.metrics.count("pings_unanswered")
            self.membership.suspect(probe.target)
            probe.done(probe.target, None)
            return
        runtime.send(probe.target, Ping(self.membership.estimate, self.membership.index, nonce))
        runtime.metrics.count("pings_sent")
        probe.timer = runtime.call_later(min(PING_INTERVAL, probe.deadline - now), self._send_ping, nonce)

    def _peer_index(self, sender: bytes, index: int, round: int) -> None:
        """A ping or pong from ``sender``: it is active, and a higher index than known means it (re)joined."""
        membership = self.membership
        membership.heard_from(sender)
        entry = membership.entries.get(sender)
        if entry is not None and index > entry.index:
            membership.entries[sender] = Entry(max(entry.last_round, round), index, JOINED)
            membership._touch()
        membership.saw(sender, round)
        self._learn(round)

    @handles(Ping)
    def on_ping(self, sender: bytes, message: Ping) -> None:
        if message.round < 0 or message.index < 0:
            self.runtime.metrics.rejected("malformed_ping", sender)
            return
        self._peer_index(sender, message.index, message.round)
        self.runtime.send(sender, Pong(self.membership.estimate, self.membership.index, message.nonce))

    @handles(Pong)
    def on_pong(self, sender: bytes, message: Pong) -> None:
        probe = self._probes.get(message.nonce)
        if probe is None or probe.target != sender:
            if probe is None and 0 < message.nonce <= self._nonce:
                self.runtime.metrics.count("late_pongs")  # an answer to a ping that had already timed out
            else:
                self.runtime.metrics.rejected("unsolicited_pong", sender)
            return
        if message.round < 0 or message.index < 0:
            self.runtime.metrics.rejected("malformed_ping", sender)
            return
        del self._probes[message.nonce]
        if probe.timer is not None:
            probe.timer.cancel()
        self._peer_index(sender, message.index, message.round)
        self.runtime.metrics.count("pings_answered")
        probe.done(sender, message)


def describe_entries(entries: Iterable[tuple[PeerInfo, Entry]]) -> list[dict[str, Any]]:
    """A readable form of decoded entries (for logs and tests)."""
    return [{"node": info.node_id, "last_round": entry.last_round, "index": entry.index,
             "status": STATUS_NAMES[entry.status]} for info, entry in entries]

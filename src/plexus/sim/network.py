"""Network model: per-node upload/download capacities, pairwise latency, max-min fair bandwidth sharing.

A message of B bytes from u to v occupies u's uplink and v's downlink until its B bytes have been carried,
then arrives after the one-way latency(u, v). Transfers that overlap in time share each link by max-min
fairness, recomputed whenever a transfer starts or ends (all transfers one event starts are coalesced into one
recomputation). Capacities may be infinite (an FL server); a transfer between two infinite links
takes no time beyond its latency.

The allocation is computed by progressive filling, vectorised with NumPy: at each step every resource whose
fair share is a local minimum (no flow through it has a smaller share elsewhere) freezes its flows at that
share. Shares never decrease as flows freeze, so freezing all local minima at once gives the same allocation
as freezing the single global minimum, in far fewer steps.

Most of the time only a handful of transfers are in flight (a Plexus round moves s models), and NumPy's
per-call cost would then dominate: below a threshold the flow table lives in plain Python lists, above it in
NumPy arrays, with hysteresis between the two. Both give the same allocation (tests check it).

**The compiled flow table.** ``plexus.sim._flowtable.FlowTable`` (``_flowtable.c``, built by ``setup.py`` where a
C compiler is found) is :class:`PythonFlowTable` written in C, operation for operation: the same switch between
the two modes, the same flow order (and free-slot order), every floating-point sum in the order Python's loops or
NumPy's ``bincount`` make it, no fused multiply-add. A simulation therefore gives byte-identical results with
either (``tests/test_network_compiled.py`` drives both through the same operations and networks and compares
every float's bits). It carries D-PSGD at 1000 nodes, where nearly every completion changes someone's share and
the Python tables were most of the simulator's own time. The network uses it unless pair links are modelled or
``PLEXUS_NETWORK_CORE=python`` is set; :attr:`Network.core` says which runs.

Each transfer carries a :class:`Parcel` (the simulated world's ``Courier``: one object per message, where three
closures were) that the network tells when the last byte left, when it arrived, or why it was aborted.

Messages of at most ``SMALL_MESSAGE_BYTES`` (one Ethernet MTU: pings, notices, acknowledgements) do not enter
the sharing: such a message leaves after ``bytes / min(upload, download)`` and arrives one latency later. Its
bytes are counted like any other's; modelling it as a flow would cost a reallocation for a packet that takes
microseconds of link time.

**Pairwise links** (optional, ``pair_capacity``): a flow from u to v may also cross a link of its own, the
directed path u -> v with a capacity of its own (a region-to-region bandwidth matrix, for example). That link is
a third resource of the flow, shared max-min fairly with everything else that crosses it (only flows from u to v
do). Pair links are numbered lazily as pairs start talking; a pair with an infinite capacity adds no resource.
Without ``pair_capacity`` the flow tables and allocators are the two-resource ones, unchanged.

A transfer in flight can be aborted (:meth:`Network.abort`, or every transfer of an endpoint that crashed with
:meth:`Network.abort_endpoint`): it stops using its links at once, the bytes it had not yet sent are taken off
the sender's count, and its parcel's ``aborted(reason)`` runs. Once its last byte has left, a message is on the wire and
arrives; whether the receiver is still there to take it is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from plexus.sim.engine import EventLoop, EventTimer, wants_compiled

try:  # the flow table in C (setup.py builds it where a C compiler is found): same results, several times faster
    from plexus.sim._flowtable import FlowTable as CompiledFlowTable
except ImportError:  # pragma: no cover - depends on the build
    CompiledFlowTable = None

LatencyFn = Callable[[int, int], float]
PairCapacityFn = Callable[[int, int], float]  # bytes/s of the directed link src -> dst (inf: no such limit)


Arrival = Callable[[], None]
Abort = Callable[[str], None]


class Parcel(Protocol):
    """What a transfer carries for its sender, and its handle: ``left()`` when the last byte has left the sender's
    uplink, ``arrived()`` when it lands, ``aborted(reason)`` if it is stopped first (``left`` and ``aborted`` may be
    None: nobody to tell). The simulated world sends each message as one such object (no closures per message)."""

    left: Arrival | None
    arrived: Arrival
    aborted: Abort | None


class Callbacks:
    """A parcel made of three callbacks (:meth:`Network.transfer`)."""

    __slots__ = ("arrived", "left", "aborted")

    def __init__(self, arrived: Arrival, left: Arrival | None = None, aborted: Abort | None = None) -> None:
        self.arrived = arrived
        self.left = left
        self.aborted = aborted


Payload = Parcel  # what a flow table carries for each transfer
SMALL_MESSAGE_BYTES = 1500
FEW_FLOWS_MAX = 32  # above this many transfers, switch to the NumPy flow table
FEW_FLOWS_BACK = 12  # and back to plain Python below this many
INCREMENTAL = True  # allocate only the new flows when that is exact (see _ManyFlows.add_fresh)


def _done_tolerance(size: float) -> float:
    return max(size * 1e-9, 1e-6)


class _FewFlows:
    """Flow table for a handful of transfers: plain Python lists."""

    def __init__(self) -> None:
        self.src: list[int] = []
        self.dst: list[int] = []
        self.size: list[float] = []
        self.remaining: list[float] = []
        self.rate: list[float] = []
        self.arrival: list[Payload] = []
        # links loaded to capacity by the current rates; None while the rates are stale (a flow was added
        # or the table was just filled), i.e. until the next reallocation
        self.saturated: set[int] | None = None

    def __len__(self) -> int:
        return len(self.src)

    def add(self, src: int, dst: int, size: float, remaining: float, arrival: Payload) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.size.append(size)
        self.remaining.append(remaining)
        self.rate.append(0.0)
        self.arrival.append(arrival)
        self.saturated = None

    def advance(self, elapsed: float) -> None:
        remaining, rate = self.remaining, self.rate
        for i in range(len(remaining)):
            remaining[i] -= rate[i] * elapsed

    def pop_finished(self) -> list[tuple[int, int, float, Payload]]:
        done = [i for i in range(len(self.src)) if self.remaining[i] <= _done_tolerance(self.size[i])]
        finished = [(self.src[i], self.dst[i], self.size[i], self.arrival[i]) for i in done]
        for i in reversed(done):
            for column in (self.src, self.dst, self.size, self.remaining, self.rate, self.arrival):
                del column[i]
        return finished

    def reallocate(self, capacity: list[float], endpoints: int, now: float) -> float:
        down = [d + endpoints for d in self.dst]
        self.rate = rates = _max_min_small(self.src, down, capacity)
        load: dict[int, float] = {}
        for i, rate in enumerate(rates):
            for resource in (self.src[i], down[i]):
                load[resource] = load.get(resource, 0.0) + rate
        self.saturated = {r for r, used in load.items() if used >= capacity[r] * (1 - 1e-9)}
        return self.soonest(now)

    def soonest(self, now: float) -> float:
        """Seconds until the first transfer ends at the current rates. Transfers due now are zeroed: those
        under a picosecond, and those too close for the clock to move (``now + seconds == now`` late in a run)."""
        soonest = math.inf
        for i, rate in enumerate(self.rate):
            seconds = 0.0 if rate == math.inf else self.remaining[i] / rate
            if seconds <= 1e-12 or now + seconds <= now:
                self.remaining[i] = 0.0
                seconds = 0.0
            soonest = min(soonest, seconds)
        return soonest

    def rates_still_fair(self, finished: list[tuple[int, int, float, Payload]], endpoints: int) -> bool:
        """Whether the remaining flows' rates stay max-min fair without ``finished``.

        Every flow's rate is set by a bottleneck: a saturated link on which no flow gets more. A finished
        flow frees capacity only on its own two links; if neither was saturated while also carrying a
        remaining flow, every remaining flow keeps its bottleneck, so the allocation is unchanged.
        """
        saturated = self.saturated
        if saturated is None:
            return False
        for src, dst, _, _ in finished:
            for resource in (src, dst + endpoints):
                if resource in saturated and (resource in self.src or resource - endpoints in self.dst):
                    return False
        return True

    def drain(self) -> list[tuple[int, int, float, float, Payload]]:
        return list(zip(self.src, self.dst, self.size, self.remaining, self.arrival, strict=True))

    def remove(self, matches: Callable[[int, int, Payload], bool]) -> list[tuple[int, float, Payload]]:
        """Take out the transfers ``matches(src, dst, payload)`` selects: (src, remaining bytes, payload)."""
        chosen = [i for i in range(len(self.src)) if matches(self.src[i], self.dst[i], self.arrival[i])]
        removed = [(self.src[i], self.remaining[i], self.arrival[i]) for i in chosen]
        for i in reversed(chosen):
            for column in (self.src, self.dst, self.size, self.remaining, self.rate, self.arrival):
                del column[i]
        if removed:
            self.saturated = None
        return removed


class _ManyFlows:
    """Flow table for many transfers: NumPy arrays with reusable slots."""

    def __init__(self, capacity: int = 64, resources: int = 0) -> None:
        # incremental bookkeeping (see Network._reallocate): flows per resource, the resources loaded to
        # capacity by the current rates (None while unknown), and the flows added since the last allocation
        self.users = np.zeros(resources, dtype=np.int64)
        self.load = np.zeros(resources, dtype=np.float64)  # rates summed per resource
        self.saturated: np.ndarray | None = None
        self.fresh: list[int] = []
        self.src = np.zeros(capacity, dtype=np.int64)
        self.dst = np.zeros(capacity, dtype=np.int64)
        self.size = np.zeros(capacity, dtype=np.float64)
        self.remaining = np.zeros(capacity, dtype=np.float64)
        self.rate = np.zeros(capacity, dtype=np.float64)
        self.active = np.zeros(capacity, dtype=bool)
        self.arrival: list[Payload | None] = [None] * capacity
        self.free = list(range(capacity - 1, -1, -1))
        self.count = 0
        self._slots: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count

    def slots(self) -> np.ndarray:
        if self._slots is None:
            self._slots = np.flatnonzero(self.active)
        return self._slots

    def add(self, src: int, dst: int, size: float, remaining: float, arrival: Payload) -> None:
        if not self.free:
            self._grow()
        slot = self.free.pop()
        self.src[slot], self.dst[slot], self.size[slot] = src, dst, size
        self.remaining[slot], self.rate[slot] = remaining, 0.0
        self.active[slot] = True
        self.arrival[slot] = arrival
        self.count += 1
        self._slots = None
        self.fresh.append(slot)
        if self.users.size:
            self.users[src] += 1
            self.users[dst + self.users.size // 2] += 1

    def _grow(self) -> None:
        old = self.active.size
        for name in ("src", "dst", "size", "remaining", "rate", "active"):
            array = getattr(self, name)
            grown = np.zeros(old * 2, dtype=array.dtype)
            grown[:old] = array
            setattr(self, name, grown)
        self.arrival.extend([None] * old)
        self.free.extend(range(2 * old - 1, old - 1, -1))

    def advance(self, elapsed: float) -> None:
        slots = self.slots()
        self.remaining[slots] -= self.rate[slots] * elapsed

    def pop_finished(self) -> list[tuple[int, int, float, Payload]]:
        slots = self.slots()
        done = slots[self.remaining[slots] <= np.maximum(self.size[slots] * 1e-9, 1e-6)]
        finished = []
        half = self.users.size // 2
        for slot in done.tolist():
            arrival = self.arrival[slot]
            assert arrival is not None
            src, dst = int(self.src[slot]), int(self.dst[slot])
            finished.append((src, dst, float(self.size[slot]), arrival))
            self.arrival[slot] = None
            self.active[slot] = False
            self.free.append(slot)
            if half:
                self.users[src] -= 1
                self.users[dst + half] -= 1
                rate = self.rate[slot]
                if rate != math.inf:
                    self.load[src] -= rate
                    self.load[dst + half] -= rate
        if finished:
            self.count -= len(finished)
            self._slots = None
        return finished

    def reallocate(self, capacity: np.ndarray, endpoints: int, now: float) -> float:
        slots = self.slots()
        up, down = self.src[slots], self.dst[slots] + endpoints
        rates = _max_min_vectorised(up, down, capacity)
        self.rate[slots] = rates
        self.fresh = []
        if self.users.size:
            load = self.load = (np.bincount(up, weights=rates, minlength=capacity.size)
                                + np.bincount(down, weights=rates, minlength=capacity.size))
            self.saturated = load >= capacity * (1 - 1e-9)
        return self.soonest(now)

    def soonest(self, now: float) -> float:
        """Seconds until the first transfer ends at the current rates (transfers due now are zeroed; see
        :meth:`_FewFlows.soonest`)."""
        slots = self.slots()
        if not slots.size:
            return math.inf
        seconds = self.remaining[slots] / self.rate[slots]  # an infinite rate gives 0 s
        instant = (seconds <= 1e-12) | (now + seconds <= now)  # the clock could not move to their end
        if instant.any():
            self.remaining[slots[instant]] = 0.0
            seconds[instant] = 0.0
        return float(seconds.min())

    def rates_still_fair(self, finished: list[tuple[int, int, float, Payload]], endpoints: int) -> bool:
        """As :meth:`_FewFlows.rates_still_fair`: no finished flow left a saturated link that others still use."""
        saturated, users = self.saturated, self.users
        if saturated is None or self.fresh:
            return False
        for src, dst, _, _ in finished:
            for resource in (src, dst + endpoints):
                if saturated[resource] and users[resource] > 0:
                    return False
        return True

    def add_fresh(self, capacity: list[float], endpoints: int, now: float) -> float | None:
        """Give the flows added since the last allocation their rates without touching the others', when that
        is exact; returns the seconds to the next completion, or None when a full allocation is needed.

        The flows in place keep a max-min fair allocation; the new ones get the max-min allocation of the
        capacity left on their links. If no link the new flows share with flows in place ends up saturated,
        every flow in place keeps its bottleneck (a saturated link the new flows do not touch, unchanged) and
        every new flow has one among its own links, so the union is the max-min fair allocation. A link that
        only new flows use offers its whole capacity, exactly as a full allocation would see it.
        """
        fresh, saturated = self.fresh, self.saturated
        if not fresh or saturated is None:
            return None
        users, load = self.users, self.load
        up = self.src[fresh].tolist()
        down = [d + endpoints for d in self.dst[fresh].tolist()]
        count: dict[int, int] = {}
        for resource in up + down:
            count[resource] = count.get(resource, 0) + 1
        spare: dict[int, float] = {}
        shared: list[int] = []
        for resource, fresh_users in count.items():
            if users[resource] > fresh_users:  # also carries flows in place
                if saturated[resource]:
                    return None
                shared.append(resource)
                spare[resource] = capacity[resource] - float(load[resource])
            else:
                spare[resource] = capacity[resource]
        rates = _max_min_small(up, down, spare)
        added = dict.fromkeys(count, 0.0)
        for flow, rate in enumerate(rates):
            added[up[flow]] += rate
            added[down[flow]] += rate
        for resource in shared:
            if float(load[resource]) + added[resource] >= capacity[resource] * (1 - 1e-9):
                return None
        self.rate[fresh] = rates
        for resource, amount in added.items():
            if resource in spare and users[resource] == count[resource]:
                load[resource] = amount
            else:
                load[resource] += amount
            saturated[resource] = load[resource] >= capacity[resource] * (1 - 1e-9)
        self.fresh = []
        return self.soonest(now)

    def remove(self, matches: Callable[[int, int, Payload], bool]) -> list[tuple[int, float, Payload]]:
        removed = []
        for slot in self.slots().tolist():
            payload = self.arrival[slot]
            assert payload is not None
            if matches(int(self.src[slot]), int(self.dst[slot]), payload):
                removed.append((int(self.src[slot]), float(self.remaining[slot]), payload))
                self.arrival[slot] = None
                self.active[slot] = False
                self.free.append(slot)
        if removed:
            self.count -= len(removed)
            self._slots = None
            self.saturated = None
            half = self.users.size // 2
            if half:
                self.users[:] = 0
                active = self.slots()
                np.add.at(self.users, self.src[active], 1)
                np.add.at(self.users, self.dst[active] + half, 1)
        return removed

    def drain(self) -> list[tuple[int, int, float, float, Payload]]:
        slots = self.slots().tolist()
        drained = [(int(self.src[s]), int(self.dst[s]), float(self.size[s]), float(self.remaining[s]),
                    self.arrival[s]) for s in slots]
        return drained  # type: ignore[return-value]


class _FewPairedFlows(_FewFlows):
    """:class:`_FewFlows` whose flows may cross a third resource, their pair link (-1: none)."""

    def __init__(self) -> None:
        super().__init__()
        self.pair: list[int] = []
        self.finished_pairs: list[int] = []  # pair links of the flows the last pop_finished took out

    def add(self, src: int, dst: int, size: float, remaining: float, arrival: Payload, pair: int = -1) -> None:
        super().add(src, dst, size, remaining, arrival)
        self.pair.append(pair)

    def pop_finished(self) -> list[tuple[int, int, float, Payload]]:
        done = [i for i in range(len(self.src)) if self.remaining[i] <= _done_tolerance(self.size[i])]
        finished = [(self.src[i], self.dst[i], self.size[i], self.arrival[i]) for i in done]
        self.finished_pairs = [self.pair[i] for i in done]
        for i in reversed(done):
            for column in (self.src, self.dst, self.size, self.remaining, self.rate, self.arrival, self.pair):
                del column[i]
        return finished

    def reallocate(self, capacity: list[float], endpoints: int, now: float) -> float:
        down = [d + endpoints for d in self.dst]
        self.rate = rates = _max_min_small_paired(self.src, down, self.pair, capacity)
        load: dict[int, float] = {}
        for i, rate in enumerate(rates):
            for resource in (self.src[i], down[i], self.pair[i]):
                if resource >= 0:
                    load[resource] = load.get(resource, 0.0) + rate
        self.saturated = {r for r, used in load.items() if used >= capacity[r] * (1 - 1e-9)}
        return self.soonest(now)

    def rates_still_fair(self, finished: list[tuple[int, int, float, Payload]], endpoints: int) -> bool:
        if not super().rates_still_fair(finished, endpoints):
            return False
        saturated = self.saturated
        assert saturated is not None
        return not any(pair >= 0 and pair in saturated and pair in self.pair for pair in self.finished_pairs)

    def drain(self) -> list[tuple[int, int, float, float, Payload, int]]:  # type: ignore[override]
        return list(zip(self.src, self.dst, self.size, self.remaining, self.arrival, self.pair, strict=True))

    def remove(self, matches: Callable[[int, int, Payload], bool]) -> list[tuple[int, float, Payload]]:
        chosen = [i for i in range(len(self.src)) if matches(self.src[i], self.dst[i], self.arrival[i])]
        removed = [(self.src[i], self.remaining[i], self.arrival[i]) for i in chosen]
        for i in reversed(chosen):
            for column in (self.src, self.dst, self.size, self.remaining, self.rate, self.arrival, self.pair):
                del column[i]
        if removed:
            self.saturated = None
        return removed


class _ManyPairedFlows(_ManyFlows):
    """:class:`_ManyFlows` whose flows may cross a third resource, their pair link (-1: none). It keeps no
    incremental bookkeeping (``resources`` is ignored): every change reallocates in full, pair links included."""

    def __init__(self, capacity: int = 64, resources: int = 0) -> None:
        super().__init__(capacity)
        self.pair = np.full(capacity, -1, dtype=np.int64)

    def add(self, src: int, dst: int, size: float, remaining: float, arrival: Payload, pair: int = -1) -> None:
        if not self.free:
            self._grow()
        slot = self.free[-1]
        super().add(src, dst, size, remaining, arrival)
        self.pair[slot] = pair

    def _grow(self) -> None:
        old = self.pair.size
        super()._grow()
        grown = np.full(old * 2, -1, dtype=np.int64)
        grown[:old] = self.pair
        self.pair = grown

    def reallocate(self, capacity: np.ndarray, endpoints: int, now: float) -> float:
        slots = self.slots()
        rates = _max_min_vectorised_paired(self.src[slots], self.dst[slots] + endpoints, self.pair[slots], capacity)
        self.rate[slots] = rates
        self.fresh = []
        seconds = self.remaining[slots] / rates
        instant = (seconds <= 1e-12) | (now + seconds <= now)  # see _FewFlows.soonest
        if instant.any():
            self.remaining[slots[instant]] = 0.0
            seconds[instant] = 0.0
        return float(seconds.min())

    def drain(self) -> list[tuple[int, int, float, float, Payload, int]]:  # type: ignore[override]
        slots = self.slots().tolist()
        drained = [(int(self.src[s]), int(self.dst[s]), float(self.size[s]), float(self.remaining[s]),
                    self.arrival[s], int(self.pair[s])) for s in slots]
        return drained  # type: ignore[return-value]


class PythonFlowTable:
    """The flow table in Python: plain lists for a few flows, NumPy arrays for many (the network switches with
    hysteresis, see ``FEW_FLOWS_MAX``), pair links when ``paired``. ``plexus.sim._flowtable.FlowTable`` is the same
    table in C, operation for operation; the network uses it when it was built and no pair links are modelled."""

    def __init__(self, endpoints: int, capacity: list[float], paired: bool) -> None:
        self.endpoints = endpoints
        self._capacity_list = capacity  # the network's list: pair links are appended to it as pairs start talking
        self._capacity = np.array(capacity, dtype=np.float64)
        self._paired = paired
        self._few: type[_FewFlows] = _FewPairedFlows if paired else _FewFlows
        self._many: type[_ManyFlows] = _ManyPairedFlows if paired else _ManyFlows
        self.table: _FewFlows | _ManyFlows = self._few()

    @property
    def many(self) -> bool:
        return isinstance(self.table, _ManyFlows)

    def __len__(self) -> int:
        return len(self.table)

    def add(self, src: int, dst: int, size: float, payload: Payload, pair: int = -1) -> None:
        if self._paired:
            self.table.add(src, dst, size, size, payload, pair)  # type: ignore[call-arg]
        else:
            self.table.add(src, dst, size, size, payload)

    def to_many(self) -> None:
        self._switch(self._many(resources=2 * self.endpoints))

    def to_few(self) -> None:
        self._switch(self._few())

    def _switch(self, table: _FewFlows | _ManyFlows) -> None:
        for row in self.table.drain():
            table.add(*row)
        self.table = table

    def advance(self, elapsed: float) -> None:
        self.table.advance(elapsed)

    def pop_finished(self) -> list[tuple[int, int, float, Payload]]:
        return self.table.pop_finished()

    def soonest(self, now: float) -> float:
        return self.table.soonest(now)

    def rates_still_fair(self, finished: list[tuple[int, int, float, Payload]]) -> bool:
        return self.table.rates_still_fair(finished, self.endpoints)

    def reallocate(self, now: float) -> float:
        if not self.many:
            return self.table.reallocate(self._capacity_list, self.endpoints, now)
        if self._capacity.size != len(self._capacity_list):  # pair links were added since
            self._capacity = np.array(self._capacity_list, dtype=np.float64)
        return self.table.reallocate(self._capacity, self.endpoints, now)  # type: ignore[arg-type]

    def add_fresh(self, now: float) -> float | None:
        table = self.table
        return table.add_fresh(self._capacity_list, self.endpoints, now) if isinstance(table, _ManyFlows) else None

    def remove(self, matches: Callable[[int, int, Payload], bool]) -> list[tuple[int, float, Payload]]:
        return self.table.remove(matches)


class Network:
    """Transfers between endpoints 0..n-1 on an :class:`EventLoop`."""

    def __init__(
        self,
        loop: EventLoop,
        upload_bps: np.ndarray,
        download_bps: np.ndarray,
        latency: LatencyFn,
        pair_capacity: PairCapacityFn | None = None,
    ) -> None:
        upload = np.asarray(upload_bps, dtype=np.float64)
        download = np.asarray(download_bps, dtype=np.float64)
        if upload.shape != download.shape or upload.ndim != 1:
            raise ValueError("upload and download capacities must be vectors of the same length")
        if (upload <= 0).any() or (download <= 0).any() or np.isnan(upload).any() or np.isnan(download).any():
            raise ValueError("link capacities must be positive (infinity allowed)")
        self.loop = loop
        self.endpoints = upload.size
        self._capacity_list = np.concatenate([upload, download]).tolist()
        self._latency = latency
        # per endpoint; Python lists, since each message adds to one entry (a NumPy scalar update costs 5x more)
        self._bytes_sent = [0] * self.endpoints
        self._bytes_received = [0] * self.endpoints
        self.messages_sent = 0
        self.reallocations = 0
        self.incremental_allocations = 0
        self._pair_capacity = pair_capacity
        self._pair_ids: dict[tuple[int, int], int] = {}  # (src, dst) -> resource id, -1 for an unlimited pair
        self._flows: Any = self._flow_table(pair_capacity is not None)
        self._last_update = 0.0
        self._completion_timer: EventTimer | None = None
        self._reallocation_pending = False

    # ------------------------------------------------------------------ public
    def transfer(
        self,
        src: int,
        dst: int,
        nbytes: int,
        on_arrival: Arrival,
        on_sent: Arrival | None = None,
        on_abort: Abort | None = None,
    ) -> Payload | None:
        """Start carrying ``nbytes`` from ``src`` to ``dst``: ``on_sent()`` runs when the last byte has left the
        sender's uplink, ``on_arrival()`` one latency later, when it lands, ``on_abort(reason)`` if the transfer
        is aborted first. Returns the handle :meth:`abort` takes (None for a small message, which cannot be)."""
        return self.carry(src, dst, nbytes, Callbacks(on_arrival, on_sent, on_abort))

    def carry(self, src: int, dst: int, nbytes: int, parcel: Parcel) -> Parcel | None:
        """:meth:`transfer` with the callbacks as one :class:`Parcel`; returns it as the handle (None for a small
        message, which cannot be aborted)."""
        if nbytes <= 0:
            raise ValueError(f"a transfer must carry at least one byte, got {nbytes}")
        if src == dst:
            raise ValueError("a node does not send to itself over the network")
        if nbytes <= SMALL_MESSAGE_BYTES:
            rate = min(self._capacity_list[src], self._capacity_list[dst + self.endpoints])
            if self._pair_capacity is not None:
                rate = min(rate, self.pair_capacity(src, dst))
            seconds = 0.0 if rate == math.inf else nbytes / rate
            self._bytes_sent[src] += nbytes
            self.messages_sent += 1
            left = parcel.left
            if left is not None:
                self.loop.fire_later(seconds, left)
            self.loop.fire_later(seconds + self._latency(src, dst), self._arrive, dst, nbytes, parcel)
            return None
        if self.loop.now != self._last_update:
            self._advance()
        flows = self._flows
        if self._pair_capacity is None:
            flows.add(src, dst, float(nbytes), parcel)
        else:
            flows.add(src, dst, float(nbytes), parcel, self._pair_id(src, dst))
        if not flows.many and len(flows) > FEW_FLOWS_MAX:
            flows.to_many()
        self._bytes_sent[src] += nbytes
        self.messages_sent += 1
        if not self._reallocation_pending:
            self._reallocation_pending = True
            self.loop.defer(self._deferred_reallocate)
        return parcel

    def abort(self, handle: Payload | None, reason: str = "aborted") -> bool:
        """Stop a transfer that has not finished sending; returns whether it was still in flight."""
        if handle is None:
            return False
        return bool(self._remove(lambda src, dst, payload: payload is handle, reason))

    def abort_endpoint(self, endpoint: int, reason: str) -> int:
        """Stop every transfer from or to ``endpoint`` (it crashed or left); returns how many."""
        return self._remove(lambda src, dst, payload: src == endpoint or dst == endpoint, reason)

    def _remove(self, matches: Callable[[int, int, Payload], bool], reason: str) -> int:
        self._advance()
        removed = self._flows.remove(matches)
        for src, remaining, parcel in removed:
            self._bytes_sent[src] -= int(remaining)
            aborted = parcel.aborted
            if aborted is not None:
                aborted(reason)
        if removed and not self._reallocation_pending:
            self._reallocation_pending = True
            self.loop.defer(self._deferred_reallocate)
        return len(removed)

    def latency(self, src: int, dst: int) -> float:
        return self._latency(src, dst)

    def pair_capacity(self, src: int, dst: int) -> float:
        """Capacity of the pair link src -> dst in bytes/s (inf when pairs are not limited)."""
        if self._pair_capacity is None:
            return math.inf
        return float(self._pair_capacity(src, dst))

    def _pair_id(self, src: int, dst: int) -> int:
        key = (src, dst)
        resource = self._pair_ids.get(key)
        if resource is None:
            capacity = self.pair_capacity(src, dst)
            if math.isnan(capacity) or capacity <= 0:
                raise ValueError(f"pair link {src} -> {dst}: capacity must be positive (inf allowed), got {capacity}")
            if capacity == math.inf:
                resource = -1
            else:
                resource = len(self._capacity_list)
                self._capacity_list.append(capacity)
            self._pair_ids[key] = resource
        return resource

    @property
    def active_transfers(self) -> int:
        return len(self._flows)

    @property
    def bytes_sent(self) -> np.ndarray:
        """Bytes each endpoint has sent (a message aborted midway counts what had left)."""
        return np.array(self._bytes_sent, dtype=np.int64)

    @property
    def bytes_received(self) -> np.ndarray:
        """Bytes that have arrived at each endpoint."""
        return np.array(self._bytes_received, dtype=np.int64)

    @property
    def bytes_total(self) -> int:
        return sum(self._bytes_sent)

    @property
    def core(self) -> str:
        """Which flow table carries the transfers: ``compiled`` (C) or ``python`` (same results, slower)."""
        return "compiled" if isinstance(self._flows, CompiledFlowTable or ()) else "python"

    # ---------------------------------------------------------------- internals
    def _flow_table(self, paired: bool) -> Any:
        compiled = wants_compiled("PLEXUS_NETWORK_CORE", CompiledFlowTable is not None)  # checks the variable too
        if compiled and not paired:  # pair links: the Python table only (README, summary.json's compiled_core)
            return CompiledFlowTable(self._capacity_list, self.endpoints)
        return PythonFlowTable(self.endpoints, self._capacity_list, paired)

    def _advance(self) -> None:
        # every active flow has a finite rate here: flows between two infinite links finish at the
        # reallocation that gives them their (infinite) rate, and new flows wait at rate 0 until then
        now = self.loop.now
        elapsed = now - self._last_update
        if elapsed > 0 and len(self._flows):
            self._flows.advance(elapsed)
        self._last_update = now

    def _on_completion_timer(self) -> None:
        self._completion_timer = None
        self._advance()
        finished = self._finish_done()
        flows = self._flows
        if finished and (INCREMENTAL or not flows.many) and flows.rates_still_fair(finished):
            # nobody else's share changes: only the next completion time needs finding
            soonest = flows.soonest(self.loop.now)
            if soonest > 0.0:
                if soonest != math.inf:
                    self._completion_timer = self.loop.call_later(soonest, self._on_completion_timer)
                return
        self._reallocate()

    def _finish_done(self) -> list[tuple[int, int, float, Payload]]:
        if not len(self._flows):
            return []
        finished = self._flows.pop_finished()
        fire_later, latency = self.loop.fire_later, self._latency
        for src, dst, size, parcel in finished:
            fire_later(latency(src, dst), self._arrive, dst, int(size), parcel)
            left = parcel.left
            if left is not None:
                left()
        flows = self._flows
        if flows.many and len(flows) < FEW_FLOWS_BACK:
            flows.to_few()
        return finished

    def _arrive(self, dst: int, nbytes: int, parcel: Parcel) -> None:
        self._bytes_received[dst] += nbytes
        parcel.arrived()

    def _deferred_reallocate(self) -> None:
        # a completion handled in the same event may have reallocated already (a message queued behind one that
        # just left starts in that event): nothing is left to do then
        if self._reallocation_pending:
            self._reallocate()

    def _reallocate(self) -> None:
        self._reallocation_pending = False
        self._advance()
        if self._completion_timer is not None:
            self._completion_timer.cancel()
            self._completion_timer = None
        flows = self._flows
        if flows.many and INCREMENTAL:
            soonest_fresh = flows.add_fresh(self.loop.now)
            if soonest_fresh is not None and soonest_fresh > 1e-12:
                self.incremental_allocations += 1
                if soonest_fresh != math.inf:
                    self._completion_timer = self.loop.call_later(soonest_fresh, self._on_completion_timer)
                return
        while len(flows):
            self.reallocations += 1
            soonest = flows.reallocate(self.loop.now)
            if soonest > 0.0:
                self._completion_timer = self.loop.call_later(soonest, self._on_completion_timer)
                return
            # instantaneous transfers (infinite links, or rounding leftovers) finish now
            self._finish_done()


def max_min_rates(
    up: np.ndarray, down: np.ndarray, capacity: np.ndarray, pair: np.ndarray | None = None
) -> np.ndarray:
    """Max-min fair rates for flows each crossing resources ``up[i]`` and ``down[i]`` (and ``pair[i]`` when
    given and >= 0).

    ``capacity`` is indexed by resource id and may hold ``inf``. Returns one rate per flow (``inf`` for a flow
    whose resources are all infinite).
    """
    if pair is not None:
        if up.size <= SMALL_FLOWS:
            return np.array(_max_min_small_paired(up.tolist(), down.tolist(), pair.tolist(), capacity),
                            dtype=np.float64)
        return _max_min_vectorised_paired(up, down, pair, capacity)
    if up.size <= SMALL_FLOWS:
        return np.array(_max_min_small(up.tolist(), down.tolist(), capacity), dtype=np.float64)
    return _max_min_vectorised(up, down, capacity)


def _max_min_vectorised(up: np.ndarray, down: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    flows = up.size
    rates = np.zeros(flows, dtype=np.float64)
    if 8 * flows < capacity.size:
        # few flows among many links: renumber the links they use so per-step counts stay small
        used, inverse = np.unique(np.concatenate([up, down]), return_inverse=True)
        up, down = inverse[:flows], inverse[flows:]
        capacity = capacity[used]
    resources = capacity.size
    spare = capacity.astype(np.float64, copy=True)
    unfrozen = np.arange(flows)
    while unfrozen.size:
        u_up = up[unfrozen]
        u_down = down[unfrozen]
        crossing = np.bincount(u_up, minlength=resources) + np.bincount(u_down, minlength=resources)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = spare / crossing
        share_up = share[u_up]
        share_down = share[u_down]
        level = np.minimum(share_up, share_down)
        not_minimal = np.zeros(resources, dtype=bool)
        not_minimal[u_up[share_up > level]] = True
        not_minimal[u_down[share_down > level]] = True
        freeze = ((share_up == level) & ~not_minimal[u_up]) | ((share_down == level) & ~not_minimal[u_down])
        frozen = unfrozen[freeze]
        frozen_rate = level[freeze]
        rates[frozen] = frozen_rate
        finite = np.isfinite(frozen_rate)
        if finite.any():
            used = np.bincount(up[frozen[finite]], weights=frozen_rate[finite], minlength=resources)
            used += np.bincount(down[frozen[finite]], weights=frozen_rate[finite], minlength=resources)
            spare = np.maximum(spare - used, 0.0)
        unfrozen = unfrozen[~freeze]
    return rates


SMALL_FLOWS = 16


def _max_min_small(up: list[int], down: list[int], capacity: list[float] | np.ndarray | dict[int, float]
                   ) -> list[float]:
    """Progressive filling in plain Python (NumPy's per-call cost dominates for a handful of flows), freezing
    every local-minimum resource at once like the vectorised version: a star of flows into (or out of) one
    node, the common case, is then settled in one or two steps."""
    flows = len(up)
    if flows == 1:
        return [min(float(capacity[up[0]]), float(capacity[down[0]]))]
    spare: dict[int, float] = {}
    crossing: dict[int, list[int]] = {}
    for flow in range(flows):
        for resource in (up[flow], down[flow]):
            members = crossing.get(resource)
            if members is None:
                crossing[resource] = [flow]
                spare[resource] = float(capacity[resource])
            else:
                members.append(flow)
    rates = [0.0] * flows
    while crossing:
        share = {resource: spare[resource] / len(members) for resource, members in crossing.items()}
        frozen: list[tuple[int, float]] = []
        for resource, members in crossing.items():
            level = share[resource]
            for flow in members:
                other = down[flow] if up[flow] == resource else up[flow]
                if share[other] < level:
                    break
            else:
                frozen.extend((flow, level) for flow in members)
        done: set[int] = set()
        for flow, level in frozen:
            if flow in done:
                continue  # crosses two local minima with the same share
            done.add(flow)
            rates[flow] = level
            for resource in (up[flow], down[flow]):
                if level != math.inf:
                    spare[resource] = max(spare[resource] - level, 0.0)
                members = crossing[resource]
                members.remove(flow)
                if not members:
                    del crossing[resource]
    return rates


def _max_min_vectorised_paired(
    up: np.ndarray, down: np.ndarray, pair: np.ndarray, capacity: np.ndarray
) -> np.ndarray:
    """:func:`_max_min_vectorised` for flows crossing up to three resources: ``pair[i]`` < 0 means flow i has no
    pair link (it crosses a dummy resource of infinite capacity instead, which never limits anyone)."""
    flows = up.size
    rates = np.zeros(flows, dtype=np.float64)
    capacity = np.append(np.asarray(capacity, dtype=np.float64), math.inf)
    pair = np.where(pair >= 0, pair, capacity.size - 1)
    columns = [up, down, pair]
    if 8 * flows < capacity.size:
        used, inverse = np.unique(np.concatenate(columns), return_inverse=True)
        columns = [inverse[:flows], inverse[flows:2 * flows], inverse[2 * flows:]]
        capacity = capacity[used]
    resources = capacity.size
    spare = capacity.copy()
    unfrozen = np.arange(flows)
    while unfrozen.size:
        crossing = sum(np.bincount(column[unfrozen], minlength=resources) for column in columns)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = spare / crossing
        ids = [column[unfrozen] for column in columns]
        shares = [share[i] for i in ids]
        level = np.minimum(np.minimum(shares[0], shares[1]), shares[2])
        not_minimal = np.zeros(resources, dtype=bool)
        for i, s in zip(ids, shares, strict=True):
            not_minimal[i[s > level]] = True
        freeze = np.zeros(unfrozen.size, dtype=bool)
        for i, s in zip(ids, shares, strict=True):
            freeze |= (s == level) & ~not_minimal[i]
        frozen = unfrozen[freeze]
        frozen_rate = level[freeze]
        rates[frozen] = frozen_rate
        finite = np.isfinite(frozen_rate)
        if finite.any():
            used = sum(np.bincount(column[frozen[finite]], weights=frozen_rate[finite], minlength=resources)
                       for column in columns)
            spare = np.maximum(spare - used, 0.0)
        unfrozen = unfrozen[~freeze]
    return rates


def _max_min_small_paired(
    up: list[int], down: list[int], pair: list[int], capacity: list[float] | np.ndarray
) -> list[float]:
    """:func:`_max_min_small` for flows crossing up to three resources (``pair[i]`` < 0: no pair link)."""
    paths = [(u, d) if p < 0 else (u, d, p) for u, d, p in zip(up, down, pair, strict=True)]
    flows = len(paths)
    spare: dict[int, float] = {}
    crossing: dict[int, list[int]] = {}
    for flow, path in enumerate(paths):
        for resource in path:
            members = crossing.get(resource)
            if members is None:
                crossing[resource] = [flow]
                spare[resource] = float(capacity[resource])
            else:
                members.append(flow)
    rates = [0.0] * flows
    while crossing:
        share = {resource: spare[resource] / len(members) for resource, members in crossing.items()}
        frozen: list[tuple[int, float]] = []
        for resource, members in crossing.items():
            level = share[resource]
            if all(share[other] >= level for flow in members for other in paths[flow]):
                frozen.extend((flow, level) for flow in members)
        done: set[int] = set()
        for flow, level in frozen:
            if flow in done:
                continue
            done.add(flow)
            rates[flow] = level
            for resource in paths[flow]:
                if level != math.inf:
                    spare[resource] = max(spare[resource] - level, 0.0)
                members = crossing[resource]
                members.remove(flow)
                if not members:
                    del crossing[resource]
    return rates


def transfer_seconds(nbytes: float, upload_bps: float, download_bps: float) -> float:
    """Time a lone transfer takes (no latency): limited by the slower of the two links."""
    bottleneck = min(upload_bps, download_bps)
    return 0.0 if math.isinf(bottleneck) else nbytes / bottleneck

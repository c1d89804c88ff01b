"""Network model: per-node upload/download capacities, pairwise latency, max-min fair bandwidth sharing.

A message of B bytes from u to v occupies u's uplink and v's downlink until its B bytes have been carried,
then arrives after the one-way latency(u, v). Transfers that overlap in time share each link by max-min
fairness, recomputed whenever a transfer starts or ends (all changes at one virtual instant are coalesced
into one recomputation). Capacities may be infinite (an FL server); a transfer between two infinite links
takes no time beyond its latency.

The allocation is computed by progressive filling, vectorised with NumPy: at each step every resource whose
fair share is a local minimum (no flow through it has a smaller share elsewhere) freezes its flows at that
share. Shares never decrease as flows freeze, so freezing all local minima at once gives the same allocation
as freezing the single global minimum, in far fewer steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from plexus.sim.engine import EventLoop, EventTimer

LatencyFn = Callable[[int, int], float]


class Network:
    """Transfers between endpoints 0..n-1 on an :class:`EventLoop`."""

    def __init__(
        self,
        loop: EventLoop,
        upload_bps: np.ndarray,
        download_bps: np.ndarray,
        latency: LatencyFn,
    ) -> None:
        upload = np.asarray(upload_bps, dtype=np.float64)
        download = np.asarray(download_bps, dtype=np.float64)
        if upload.shape != download.shape or upload.ndim != 1:
            raise ValueError("upload and download capacities must be vectors of the same length")
        if (upload <= 0).any() or (download <= 0).any() or np.isnan(upload).any() or np.isnan(download).any():
            raise ValueError("link capacities must be positive (infinity allowed)")
        self.loop = loop
        self.endpoints = upload.size
        self._capacity = np.concatenate([upload, download])
        self._latency = latency
        self.bytes_sent = np.zeros(self.endpoints, dtype=np.int64)
        self.bytes_received = np.zeros(self.endpoints, dtype=np.int64)
        self.messages_sent = 0
        self.reallocations = 0
        # flow table (slots are reused)
        size = 64
        self._src = np.zeros(size, dtype=np.int64)
        self._dst = np.zeros(size, dtype=np.int64)
        self._size = np.zeros(size, dtype=np.float64)
        self._remaining = np.zeros(size, dtype=np.float64)
        self._rate = np.zeros(size, dtype=np.float64)
        self._active = np.zeros(size, dtype=bool)
        self._on_arrival: list[Callable[[], None] | None] = [None] * size
        self._free = list(range(size - 1, -1, -1))
        self._active_count = 0
        self._active_slots: np.ndarray | None = np.zeros(0, dtype=np.int64)  # None: recompute from the mask
        self._last_update = 0.0
        self._completion_timer: EventTimer | None = None
        self._reallocation_pending = False

    # ------------------------------------------------------------------ public
    def transfer(self, src: int, dst: int, nbytes: int, on_arrival: Callable[[], None]) -> None:
        """Start carrying ``nbytes`` from ``src`` to ``dst``; ``on_arrival()`` runs when the last byte lands."""
        if nbytes <= 0:
            raise ValueError(f"a transfer must carry at least one byte, got {nbytes}")
        if src == dst:
            raise ValueError("a node does not send to itself over the network")
        self._advance()
        slot = self._allocate_slot()
        self._src[slot] = src
        self._dst[slot] = dst
        self._size[slot] = nbytes
        self._remaining[slot] = nbytes
        self._rate[slot] = 0.0
        self._active[slot] = True
        self._on_arrival[slot] = on_arrival
        self._active_count += 1
        self._active_slots = None
        self.bytes_sent[src] += nbytes
        self.messages_sent += 1
        self._request_reallocation()

    def latency(self, src: int, dst: int) -> float:
        return self._latency(src, dst)

    @property
    def active_transfers(self) -> int:
        return self._active_count

    @property
    def bytes_total(self) -> int:
        return int(self.bytes_sent.sum())

    # ---------------------------------------------------------------- internals
    def _allocate_slot(self) -> int:
        if not self._free:
            old = self._active.size
            new = old * 2
            for name in ("_src", "_dst", "_size", "_remaining", "_rate", "_active"):
                array = getattr(self, name)
                grown = np.zeros(new, dtype=array.dtype)
                grown[:old] = array
                setattr(self, name, grown)
            self._on_arrival.extend([None] * (new - old))
            self._free.extend(range(new - 1, old - 1, -1))
        return self._free.pop()

    def _slots(self) -> np.ndarray:
        if self._active_slots is None:
            self._active_slots = np.flatnonzero(self._active)
        return self._active_slots

    def _advance(self) -> None:
        # every active flow has a finite rate here: flows between two infinite links finish at the
        # reallocation that gives them their (infinite) rate, and new flows wait at rate 0 until then
        now = self.loop.now
        elapsed = now - self._last_update
        if elapsed > 0 and self._active_count:
            slots = self._slots()
            self._remaining[slots] -= self._rate[slots] * elapsed
        self._last_update = now

    def _request_reallocation(self) -> None:
        if not self._reallocation_pending:
            self._reallocation_pending = True
            self.loop.call_later(0.0, self._reallocate)

    def _on_completion_timer(self) -> None:
        self._completion_timer = None
        self._advance()
        self._finish_done()
        self._reallocate()

    def _finish_done(self) -> None:
        if not self._active_count:
            return
        active = self._slots()
        done = active[self._remaining[active] <= np.maximum(self._size[active] * 1e-9, 1e-6)]
        if done.size:
            self._active_slots = None
        for slot in done.tolist():
            src = int(self._src[slot])
            dst = int(self._dst[slot])
            nbytes = int(self._size[slot])
            callback = self._on_arrival[slot]
            self._on_arrival[slot] = None
            self._active[slot] = False
            self._active_count -= 1
            self._free.append(slot)
            self.loop.call_later(self._latency(src, dst), self._arrive, dst, nbytes, callback)

    def _arrive(self, dst: int, nbytes: int, callback: Callable[[], None]) -> None:
        self.bytes_received[dst] += nbytes
        callback()

    def _reallocate(self) -> None:
        self._reallocation_pending = False
        self._advance()
        if self._completion_timer is not None:
            self._completion_timer.cancel()
            self._completion_timer = None
        if not self._active_count:
            return
        self.reallocations += 1
        active = self._slots()
        rates = max_min_rates(self._src[active], self._dst[active] + self.endpoints, self._capacity)
        self._rate[active] = rates
        seconds = self._remaining[active] / rates  # infinite rate: 0 s
        soonest = float(seconds.min())
        if soonest <= 1e-12:
            # instantaneous transfers (infinite links, or rounding leftovers) finish now
            self._remaining[active[seconds <= 1e-12]] = 0.0
            self._finish_done()
            self._reallocate()
            return
        self._completion_timer = self.loop.call_later(soonest, self._on_completion_timer)


def max_min_rates(up: np.ndarray, down: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates for flows each crossing resources ``up[i]`` and ``down[i]``.

    ``capacity`` is indexed by resource id and may hold ``inf``. Returns one rate per flow (``inf`` for a flow
    whose resources are both infinite).
    """
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


def _max_min_small(up: list[int], down: list[int], capacity: np.ndarray) -> list[float]:
    """Progressive filling in plain Python: NumPy's per-call cost dominates for a handful of flows."""
    flows = len(up)
    spare: dict[int, float] = {}
    crossing: dict[int, list[int]] = {}
    for flow in range(flows):
        for resource in (up[flow], down[flow]):
            if resource in crossing:
                crossing[resource].append(flow)
            else:
                crossing[resource] = [flow]
                spare[resource] = float(capacity[resource])
    rates = [0.0] * flows
    frozen = [False] * flows
    left = flows
    while left:
        level = math.inf
        bottleneck = -1
        for resource, members in crossing.items():
            if members:
                share = spare[resource] / len(members)
                if share < level or bottleneck < 0:
                    level, bottleneck = share, resource
        for flow in crossing[bottleneck]:
            frozen[flow] = True
            rates[flow] = level
            left -= 1
            for resource in (up[flow], down[flow]):
                if level != math.inf:
                    spare[resource] = max(spare[resource] - level, 0.0)
                if resource != bottleneck:
                    crossing[resource].remove(flow)
        crossing[bottleneck] = []
    return rates


def transfer_seconds(nbytes: float, upload_bps: float, download_bps: float) -> float:
    """Time a lone transfer takes (no latency): limited by the slower of the two links."""
    bottleneck = min(upload_bps, download_bps)
    return 0.0 if math.isinf(bottleneck) else nbytes / bottleneck

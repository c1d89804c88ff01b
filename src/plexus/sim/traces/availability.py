"""Availability traces: for each device, the intervals of time (seconds) during which it is online.

Churn (nodes leaving and coming back) follows such a trace. This module reads traces, generates synthetic
ones, checks them, and answers the questions a simulator asks: is a device online at time t, when does its
state next change, what share of time is it online.

The model
---------
Every device ``d`` has an observation *window* ``[window_start[d], window_end[d])`` and, inside it, sorted,
non-overlapping, non-touching half-open online intervals ``[start, end)``. Outside its window a device's
pattern *repeats* with period ``window_end - window_start`` (``repeat=True``, the default, as FLASH does), or
the device is offline (``repeat=False``). A trace's ``horizon`` is the latest window end. All times are seconds
of *trace time*; simulation time 0 is trace time 0.

File formats (detected by extension and content)
------------------------------------------------
- **CSV**: header ``device,start,end``; one row per online interval; lines starting with ``#`` are comments.
  Every device's window is ``[0, horizon)`` with ``horizon`` = the largest ``end`` in the file. A device
  exists only if it has at least one row.
- **JSON**: ``{"horizon": seconds (optional), "devices": {"<id>": [[start, end], ...], ...}}``; a device may
  have an empty list (never online). ``horizon`` defaults to the largest ``end``; it must not be smaller.
- **FLASH / FLHetBench** (``cached_timers.json``): ``{"<id>": {"isSuccess": bool, "trace_start": s,
  "trace_end": s, "ready_time": [[start, end], ...]}}``, times in seconds since FLASH's reference instant
  (2020-01-02 00:00 on the clock of the machine that built it). A device is "ready" (idle, charging, on Wi-Fi)
  inside its ``ready_time`` windows, and its trace covers ``[trace_start, trace_end)``. Here:

  * trace time 0 is the reference midnight just before the earliest ``trace_start`` (the earliest start
    floored to a whole day), so every device keeps its real time of day and devices stay correlated (phones
    charge at night); each device's window is its own ``[trace_start, trace_end)`` shifted by that origin.
    In the real file every window is a whole number of days, so repeating a window preserves time of day.
  * devices with ``isSuccess: false`` (FLASH could not parse their log; they have no window and no
    intervals: 290 of the 1,000 devices) carry no information and are left out; their number is kept in
    :attr:`AvailabilityTrace.dropped`. (FLASH itself treats them as never ready, which would only add
    permanently dead nodes.)
  * zero-length windows ``[t, t]`` (844 in the real file: states that lasted under a second) are empty under
    the half-open convention and are dropped; ``start > end`` is an error.

Validation, all formats: times must be finite, non-negative numbers with ``start <= end`` (``start < end``
for CSV and JSON); intervals of one device that overlap or touch are **merged** (FLASH merges its windows the
same way); intervals beyond a device's window are an error. Any problem raises :class:`plexus.errors.DataError`
with one line naming the file, the device and the field.

Synthetic traces
----------------
``synthetic`` / ``synthetic:diurnal`` / ``synthetic:diurnal:share=0.3,days=7,...`` selects
:func:`synthetic_diurnal` (parameters in :class:`DiurnalParameters`) instead of a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from plexus.errors import ConfigError, DataError
from plexus.rng import stream
from plexus.textrows import require_complete, require_fields

DAY_S = 86400.0
SYNTHETIC_PREFIX = "synthetic"


@dataclass(frozen=True)
class AvailabilityTrace:
    """Per-device online intervals (see the module docstring for the model).

    ``intervals[d]`` is a float64 array of shape (k, 2): sorted, non-overlapping, non-touching ``[start, end)``
    rows inside ``[window_start[d], window_end[d])``. Devices are addressed by index; ``devices[d]`` is the id
    the source file gave (several indices may share an id after :meth:`assign` cycles through a small trace).
    """

    devices: tuple[str, ...]
    intervals: tuple[np.ndarray, ...]
    window_start: np.ndarray
    window_end: np.ndarray
    source: str
    repeat: bool = True
    dropped: int = 0  # devices of the source left out (FLASH's isSuccess: false)
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (len(self.devices) == len(self.intervals) == len(self.window_start) == len(self.window_end)):
            raise ValueError("devices, intervals and windows must have one entry per device")

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def horizon(self) -> float:
        """The latest window end: how much trace time the source describes."""
        return float(self.window_end.max()) if len(self) else 0.0

    def period(self, device: int) -> float:
        return float(self.window_end[device] - self.window_start[device])

    # ------------------------------------------------------------------ queries a churn model asks
    def _trace_time(self, device: int, t: float) -> float | None:
        """``t`` mapped into the device's window (None when outside it and not repeating)."""
        start, end = float(self.window_start[device]), float(self.window_end[device])
        if start <= t < end:
            return t
        if not self.repeat or end <= start:
            return None
        u = start + (t - start) % (end - start)
        return u if u < end else start  # rounding can land exactly on the end

    def is_online(self, device: int, t: float) -> bool:
        """Whether ``device`` is online at time ``t`` (intervals are half-open: online at start, not at end)."""
        u = self._trace_time(device, t)
        if u is None:
            return False
        rows = self.intervals[device]
        index = int(np.searchsorted(rows[:, 0], u, side="right")) - 1
        return index >= 0 and u < rows[index, 1]

    def _change_points(self, device: int) -> tuple[np.ndarray, np.ndarray]:
        """Times in the window where the state flips, and the cumulative online time at each interval end."""
        cached = self._cache.get(device)
        if cached is not None:
            return cached
        rows = self.intervals[device]
        start, end = float(self.window_start[device]), float(self.window_end[device])
        if rows.size == 0:
            points = np.empty(0)
        elif self.repeat:
            inner = np.concatenate([rows[:, 0][rows[:, 0] > start], rows[:, 1][rows[:, 1] < end]])
            online_at_start = rows[0, 0] <= start
            online_before_end = rows[-1, 1] >= end
            if online_at_start != online_before_end:
                inner = np.append(inner, start)
            points = np.sort(inner)
        else:
            points = np.sort(rows.ravel())
        cumulative = np.cumsum(rows[:, 1] - rows[:, 0]) if rows.size else np.empty(0)
        self._cache[device] = (points, cumulative)
        return points, cumulative

    def next_change(self, device: int, t: float) -> float:
        """The first time after ``t`` at which ``device`` goes online or offline (``inf`` if never)."""
        points, _ = self._change_points(device)
        if points.size == 0:
            return math.inf
        if not self.repeat:
            index = int(np.searchsorted(points, t, side="right"))
            return float(points[index]) if index < points.size else math.inf
        u = self._trace_time(device, t)
        assert u is not None
        index = int(np.searchsorted(points, u, side="right"))
        if index < points.size:
            return t + float(points[index] - u)
        return t + float(points[0] + self.period(device) - u)

    def _online_until(self, device: int, x: float) -> float:
        """Online seconds in ``[window_start, x)`` for ``x`` inside the window."""
        rows = self.intervals[device]
        if rows.size == 0:
            return 0.0
        _, cumulative = self._change_points(device)
        index = int(np.searchsorted(rows[:, 0], x, side="right"))  # intervals starting at or before x
        if index == 0:
            return 0.0
        before = float(cumulative[index - 2]) if index >= 2 else 0.0
        return before + min(x, float(rows[index - 1, 1])) - float(rows[index - 1, 0])

    def _cumulative_online(self, device: int, t: float) -> float:
        """Online seconds in ``[window_start, t)`` (negative for ``t`` before the window when repeating)."""
        start, end = float(self.window_start[device]), float(self.window_end[device])
        if not self.repeat or end <= start:
            return self._online_until(device, min(max(t, start), end))
        length = end - start
        cycles = math.floor((t - start) / length)
        per_cycle = self._online_until(device, end)
        return cycles * per_cycle + self._online_until(device, min(max(t - cycles * length, start), end))

    def online_time(self, device: int, start: float, end: float) -> float:
        """Seconds ``device`` is online within ``[start, end)``."""
        if end <= start:
            return 0.0
        return self._cumulative_online(device, end) - self._cumulative_online(device, start)

    def online_share(self, device: int, horizon: float | None = None) -> float:
        """Share of ``[0, horizon)`` the device is online; by default the share of its own window."""
        if horizon is None:
            length = self.period(device)
            return self._online_until(device, float(self.window_end[device])) / length if length > 0 else 0.0
        return self.online_time(device, 0.0, horizon) / horizon if horizon > 0 else 0.0

    def online_shares(self, horizon: float | None = None) -> np.ndarray:
        return np.array([self.online_share(d, horizon) for d in range(len(self))], dtype=np.float64)

    # ------------------------------------------------------------------ populations
    def assign(self, nodes: int, rng: np.random.Generator) -> AvailabilityTrace:
        """A trace with one device per simulated node: trace devices dealt after a seeded shuffle.

        Like :meth:`CapacityTrace.assign`: files are often sorted, so devices are shuffled first, and the list
        is cycled when the trace has fewer devices than there are nodes.
        """
        if len(self) == 0:
            raise DataError(f"availability trace {self.source} holds no devices")
        order = rng.permutation(len(self))
        rows = order[np.arange(nodes) % len(self)].tolist()
        return AvailabilityTrace(
            devices=tuple(self.devices[r] for r in rows),
            intervals=tuple(self.intervals[r] for r in rows),
            window_start=self.window_start[rows].copy(),
            window_end=self.window_end[rows].copy(),
            source=self.source,
            repeat=self.repeat,
            dropped=self.dropped,
        )

    def session_lengths(self) -> np.ndarray:
        parts = [rows[:, 1] - rows[:, 0] for rows in self.intervals if rows.size]
        return np.concatenate(parts) if parts else np.empty(0)

    def describe(self) -> str:
        """One line for logs: source, devices, horizon, mean online share."""
        shares = self.online_shares()
        mean = float(shares.mean()) if shares.size else 0.0
        dropped = f" ({self.dropped} unusable devices of the source left out)" if self.dropped else ""
        return (f"availability {self.source}: {len(self)} devices{dropped}, horizon {self.horizon / 3600:.1f} h, "
                f"mean online share {mean:.3f}{', repeating' if self.repeat else ''}")


# ---------------------------------------------------------------------------------------------- files
def load_availability_trace(path: str | Path) -> AvailabilityTrace:
    """Read a CSV, JSON or FLASH availability file (format detected from the extension and the content)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"availability trace {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as error:
        raise DataError(f"availability trace {path} is not a readable UTF-8 text file: {error}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"availability trace {path} is not valid JSON: {error}") from None
        return _from_json_document(document, path)
    return _from_csv(text, path)


def availability_json_kind(document: Any) -> str | None:
    """'plexus' (``{"devices": ...}``), 'flash' (``{id: {"ready_time": ...}}``) or None."""
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("devices"), dict):
        return "plexus"
    if document and all(isinstance(v, dict) and "ready_time" in v for v in document.values()):
        return "flash"
    return None


def _from_json_document(document: Any, path: Path) -> AvailabilityTrace:
    kind = availability_json_kind(document)
    if kind == "plexus":
        return _from_plexus_json(document, path)
    if kind == "flash":
        return _from_flash(document, path)
    raise DataError(
        f"availability trace {path}: unknown JSON structure; expected {{\"devices\": {{id: [[start, end], ...]}}}} "
        "or FLASH's {id: {isSuccess, trace_start, trace_end, ready_time}}"
    )


def _from_csv(text: str, path: Path) -> AvailabilityTrace:
    require_complete(text, path, "availability trace")
    # keep each row's file line number for error messages: remember it beside the rows we keep
    kept = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    line_numbers = [number for number, _ in kept[1:]]
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in kept)))
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    if not {"device", "start", "end"} <= set(header):
        raise DataError(f"availability trace {path}: CSV header {header} lacks the columns device,start,end")
    table: dict[str, list[tuple[float, float]]] = {}
    for number, row in zip(line_numbers, reader, strict=False):
        found = sum(value is not None for key, value in row.items() if key is not None) + len(row.get(None) or [])
        require_fields(path, number, found, len(header), "availability trace", ",".join(header))
        device = (row.get("device") or "").strip()
        where = f"line {number} (device {device!r})"
        if not device:
            raise DataError(f"availability trace {path}, line {number}: field device is empty")
        start = _time(row.get("start"), path, where, "start")
        end = _time(row.get("end"), path, where, "end")
        if not start < end:
            raise DataError(f"availability trace {path}, {where}: start={start} must be < end={end}")
        table.setdefault(device, []).append((start, end))
    if not table:
        raise DataError(f"availability trace {path} holds no intervals")
    horizon = max(end for rows in table.values() for _, end in rows)
    return _build(table, {d: (0.0, horizon) for d in table}, str(path), path)


def _from_plexus_json(document: dict[str, Any], path: Path) -> AvailabilityTrace:
    unknown = sorted(set(document) - {"horizon", "devices"})
    if unknown:
        raise DataError(f"availability trace {path}: unknown top-level key {unknown[0]!r} (expected horizon, devices)")
    table: dict[str, list[tuple[float, float]]] = {}
    for device, rows in document["devices"].items():
        where = f"device {device!r}"
        table[str(device)] = _pairs(rows, path, where, strict=True)
    if not table:
        raise DataError(f"availability trace {path} holds no devices")
    latest = max((end for rows in table.values() for _, end in rows), default=0.0)
    if document.get("horizon") is None:
        horizon = latest
    else:
        horizon = _time(document["horizon"], path, "top level", "horizon")
        if horizon < latest:
            raise DataError(f"availability trace {path}: field horizon={horizon} is before the last interval end "
                            f"{latest}")
    if not horizon > 0:
        raise DataError(f"availability trace {path}: field horizon must be > 0 (no interval and no horizon given)")
    return _build(table, {d: (0.0, horizon) for d in table}, str(path), path)


def _from_flash(document: dict[str, Any], path: Path) -> AvailabilityTrace:
    table: dict[str, list[tuple[float, float]]] = {}
    windows: dict[str, tuple[float, float]] = {}
    dropped = 0
    for device, entry in document.items():
        where = f"device {device!r}"
        success = entry.get("isSuccess")
        if not isinstance(success, bool):
            raise DataError(f"availability trace {path}, {where}: field isSuccess={success!r} is not true/false")
        if not success:
            dropped += 1
            continue
        start = _time(entry.get("trace_start"), path, where, "trace_start")
        end = _time(entry.get("trace_end"), path, where, "trace_end")
        if not start < end:
            raise DataError(f"availability trace {path}, {where}: trace_start={start} must be < trace_end={end}")
        rows = [(a, b) for a, b in _pairs(entry.get("ready_time"), path, where, strict=False) if a < b]
        for a, b in rows:
            if a < start or b > end:
                raise DataError(f"availability trace {path}, {where}: field ready_time holds [{a}, {b}] outside "
                                f"[trace_start, trace_end] = [{start}, {end}]")
        table[str(device)] = rows
        windows[str(device)] = (start, end)
    if not table:
        raise DataError(f"availability trace {path}: no device with isSuccess true")
    origin = math.floor(min(start for start, _ in windows.values()) / DAY_S) * DAY_S
    shifted = {d: [(a - origin, b - origin) for a, b in rows] for d, rows in table.items()}
    shifted_windows = {d: (a - origin, b - origin) for d, (a, b) in windows.items()}
    return _build(shifted, shifted_windows, str(path), path, dropped=dropped)


def _pairs(rows: Any, path: Path, where: str, strict: bool) -> list[tuple[float, float]]:
    field_name = "ready_time" if not strict else "intervals"
    if not isinstance(rows, list):
        raise DataError(f"availability trace {path}, {where}: field {field_name} is not a list of [start, end]")
    pairs = []
    for index, pair in enumerate(rows):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DataError(f"availability trace {path}, {where}: {field_name}[{index}]={pair!r} is not [start, end]")
        start = _time(pair[0], path, where, f"{field_name}[{index}] start")
        end = _time(pair[1], path, where, f"{field_name}[{index}] end")
        if start > end or (strict and start == end):
            raise DataError(f"availability trace {path}, {where}: {field_name}[{index}] start={start} must be "
                            f"{'<' if strict else '<='} end={end}")
        pairs.append((start, end))
    return pairs


def _time(value: Any, path: Path, where: str, field_name: str) -> float:
    if isinstance(value, bool):
        value = None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, AttributeError):
        raise DataError(f"availability trace {path}, {where}: field {field_name}={value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise DataError(f"availability trace {path}, {where}: field {field_name}={value!r} must be a finite "
                        "number >= 0 (seconds)")
    return number


def merge_intervals(rows: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Sort intervals and merge those that overlap or touch; returns a (k, 2) float64 array."""
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    array = array[array[:, 1] > array[:, 0]]
    if array.shape[0] <= 1:
        return array.copy()
    array = array[np.argsort(array[:, 0], kind="stable")]
    merged = [array[0].tolist()]
    for start, end in array[1:].tolist():
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return np.array(merged, dtype=np.float64)


def _build(
    table: dict[str, list[tuple[float, float]]],
    windows: dict[str, tuple[float, float]],
    source: str,
    path: Path | None,
    dropped: int = 0,
    repeat: bool = True,
) -> AvailabilityTrace:
    devices = tuple(table)
    intervals = []
    for device in devices:
        merged = merge_intervals(table[device])
        start, end = windows[device]
        if merged.size and (merged[0, 0] < start or merged[-1, 1] > end):
            raise DataError(f"availability trace {path or source}, device {device!r}: an interval lies outside "
                            f"the window [{start}, {end})")
        intervals.append(merged)
    return AvailabilityTrace(
        devices=devices,
        intervals=tuple(intervals),
        window_start=np.array([windows[d][0] for d in devices], dtype=np.float64),
        window_end=np.array([windows[d][1] for d in devices], dtype=np.float64),
        source=source,
        repeat=repeat,
        dropped=dropped,
    )


# ---------------------------------------------------------------------------------------------- synthetic
@dataclass(frozen=True)
class DiurnalParameters:
    """Parameters of :func:`synthetic_diurnal` (names as written in the spec string).

    - ``share``: target mean online share (fraction of the day a node is online), in (0, 1]; 1 = always online.
    - ``days``: trace length in whole days (the pattern then repeats, keeping the time of day).
    - ``peak``: local hour at the middle of the daily online window (2 = 2 a.m.: phones idle, charging, on
      Wi-Fi at night, as in FLASH's definition of "ready").
    - ``spread``: width in hours of the time-zone range; offsets are whole hours uniform in
      ``[-spread/2, spread/2)`` (24 = worldwide, 0 = everyone in one zone).
    - ``jitter``: standard deviation (hours) of the window's start from one day to the next.
    - ``variation``: log-normal sigma of the per-node window length (some nodes are online longer than others).
    - ``session``: mean length (minutes) of an online session inside the window (exponential).
    - ``gap``: mean length (minutes) of a dropout between two sessions (exponential).
    """

    share: float = 0.25
    days: float = 7.0
    peak: float = 2.0
    spread: float = 24.0
    jitter: float = 1.0
    variation: float = 0.3
    session: float = 120.0
    gap: float = 10.0

    def check(self, spec: str) -> None:
        def need(condition: bool, name: str, rule: str) -> None:
            if not condition:
                raise ConfigError(f"availability spec {spec!r}: {name}={getattr(self, name)} {rule}")

        need(0 < self.share <= 1, "share", "must be in (0, 1]")
        need(self.days >= 1 and self.days == int(self.days), "days", "must be a whole number of days >= 1")
        need(0 <= self.peak < 24, "peak", "must be an hour in [0, 24)")
        need(0 <= self.spread <= 24, "spread", "must be in [0, 24] hours")
        need(0 <= self.jitter <= 12, "jitter", "must be in [0, 12] hours")
        need(0 <= self.variation <= 3, "variation", "must be in [0, 3]")
        need(self.session > 0 and math.isfinite(self.session), "session", "must be > 0 minutes")
        need(self.gap >= 0 and math.isfinite(self.gap), "gap", "must be >= 0 minutes")


def is_synthetic_spec(spec: str | None) -> bool:
    return spec is not None and spec.strip().lower().split(":", 1)[0] == SYNTHETIC_PREFIX


def parse_synthetic_spec(spec: str) -> DiurnalParameters:
    """``synthetic[:diurnal[:key=value,...]]`` -> parameters; raises ConfigError naming the bad part."""
    parts = spec.strip().split(":", 2)
    if parts[0].lower() != SYNTHETIC_PREFIX:
        raise ConfigError(f"availability spec {spec!r}: expected synthetic[:diurnal[:key=value,...]]")
    model = parts[1].strip().lower() if len(parts) > 1 and parts[1].strip() else "diurnal"
    if model != "diurnal":
        raise ConfigError(f"availability spec {spec!r}: unknown synthetic model {model!r} (available: diurnal)")
    known = {f.name for f in fields(DiurnalParameters)}
    values: dict[str, float] = {}
    for item in (parts[2].split(",") if len(parts) > 2 else []):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in known:
            raise ConfigError(f"availability spec {spec!r}: {item.strip()!r} is not one of "
                              f"{', '.join(sorted(known))} as key=value")
        try:
            values[key] = float(value)
        except ValueError:
            raise ConfigError(f"availability spec {spec!r}: {key}={value.strip()!r} is not a number") from None
    parameters = DiurnalParameters(**values)
    parameters.check(spec)
    return parameters


def synthetic_diurnal(nodes: int, seed: int, parameters: DiurnalParameters | None = None) -> AvailabilityTrace:
    """A seeded diurnal availability trace, one device per node.

    Node ``i`` gets (from stream ``(seed, "availability", i)``): a whole-hour time-zone offset; a daily window
    length ``W = (share x 24 h x F - gap^2 session / (session + gap)^2) x (session + gap) / session`` with
    ``F ~ LogNormal(-variation^2/2, variation)`` (mean 1), clipped to [1 min, 24 h], so that a node's expected
    online time per day is ``share x 24 h x F`` once dropouts are taken out; then each day a window
    centred on local hour ``peak`` (start jittered by Normal(0, jitter)) filled with alternating online
    sessions ~ Exp(session) and dropouts ~ Exp(gap). Windows that run past the horizon wrap to its start, as
    the trace repeats. The mean online share is ``share`` up to the clipping (exact for share = 1).
    """
    p = parameters or DiurnalParameters()
    horizon = p.days * DAY_S
    table: dict[str, list[tuple[float, float]]] = {}
    for node in range(nodes):
        device = str(node)
        if p.share >= 1:
            table[device] = [(0.0, horizon)]
            continue
        rng = stream(seed, "availability", node)
        zone_h = math.floor(rng.uniform(-p.spread / 2, p.spread / 2)) if p.spread > 0 else 0.0
        duty = p.session / (p.session + p.gap)
        # a window opens online, which adds gap^2 x session / (session + gap)^2 of online time on average
        # (two-state Markov chain started in its online state): take it out so the mean share is ``share``
        head_start = (p.gap * 60.0) ** 2 * (p.session * 60.0) / ((p.session + p.gap) * 60.0) ** 2
        factor = math.exp(rng.normal(-p.variation**2 / 2, p.variation)) if p.variation > 0 else 1.0
        window = min(max((p.share * DAY_S * factor - head_start) / duty, 60.0), DAY_S)
        rows: list[tuple[float, float]] = []
        for day in range(int(p.days)):
            centre = day * DAY_S + (p.peak - zone_h) * 3600.0 + rng.normal(0.0, p.jitter * 3600.0)
            t, end = centre - window / 2, centre + window / 2
            while t < end:
                length = rng.exponential(p.session * 60.0)
                rows.append((t, min(t + length, end)))
                t += length + (rng.exponential(p.gap * 60.0) if p.gap > 0 else 0.0)
        table[device] = _wrap(rows, horizon)
    spec = (f"synthetic:diurnal:share={p.share:g},days={p.days:g},peak={p.peak:g},spread={p.spread:g},"
            f"jitter={p.jitter:g},variation={p.variation:g},session={p.session:g},gap={p.gap:g}")
    return _build(table, {d: (0.0, horizon) for d in table}, spec, None)


def _wrap(rows: list[tuple[float, float]], horizon: float) -> list[tuple[float, float]]:
    """Intervals folded into ``[0, horizon)`` (the trace repeats with that period)."""
    folded: list[tuple[float, float]] = []
    for start, end in rows:
        length = min(end - start, horizon)
        a = start % horizon
        b = a + length
        if b <= horizon:
            folded.append((a, b))
        else:
            folded.extend([(a, horizon), (0.0, b - horizon)])
    return folded


# ---------------------------------------------------------------------------------------------- runs
def build_availability(spec: str, nodes: int, seed: int) -> AvailabilityTrace:
    """The availability of ``nodes`` simulated nodes, from a file or a ``synthetic...`` spec.

    A file's devices are dealt to nodes with the seeded stream ``(seed, "availability-assignment")``.
    """
    if is_synthetic_spec(spec):
        return synthetic_diurnal(nodes, seed, parse_synthetic_spec(spec))
    return load_availability_trace(spec).assign(nodes, stream(seed, "availability-assignment"))

"""``events.csv``: what happened to a node, one row per event, written as it happens (flushed), so a node killed
with SIGKILL leaves its story up to that moment.

Columns: ``time_s`` (the run's clock: seconds since the run's origin), ``node`` (index in the peers file, or
``observer``), ``event``, ``round`` (empty when none applies) and ``detail``. Events: ``started``, ``resumed``
(from saved state), ``joined``/``left`` (churn, when the algorithm announces it), ``global_model`` (round and
model digest), ``round`` (a decentralized node's own round), ``rejected`` (first rejection of a peer for a
reason: later ones are counted, not logged), ``banned``, ``send_failed`` (first failure per peer and reason),
``saved`` (state written), ``stopping`` (with the reason), ``stopped``, ``failed`` (a protocol bug, with the
error), and the observer's ``evaluated``, ``start_sent`` and ``stop_sent``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.csv"
EVENT_COLUMNS = ["time_s", "node", "event", "round", "detail"]


class EventLog:
    """Appends rows to an events.csv (or keeps them in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None, node: str, clock: Any) -> None:
        self.node = node
        self.clock = clock
        self.rows: list[tuple[Any, ...]] = []
        self._handle = None
        self._writer = None
        if path is not None:
            path = Path(path)
            fresh = not path.exists() or path.stat().st_size == 0
            self._handle = path.open("a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._handle, lineterminator="\n")
            if fresh:
                self._writer.writerow(EVENT_COLUMNS)
                self._handle.flush()

    def add(self, event: str, round: int | None = None, detail: str = "") -> None:
        row = (round_time(self.clock()), self.node, event, "" if round is None else int(round), detail)
        if self._writer is not None and self._handle is not None:
            self._writer.writerow(row)
            self._handle.flush()
        else:
            self.rows.append(row)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._writer = None


def round_time(value: float) -> float:
    return round(float(value), 6)


def read_events(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def merge_events(paths: list[Path], out: Path, extra: list[tuple[Any, ...]] | None = None) -> int:
    """Merge several events.csv files (and extra rows) into one, ordered by time; returns the row count."""
    rows: list[tuple[float, int, list[str]]] = []
    order = 0
    for path in paths:
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != EVENT_COLUMNS:
                continue
            for row in reader:
                if len(row) != len(EVENT_COLUMNS):
                    continue  # a row cut short by a kill -9
                try:
                    when = float(row[0])
                except ValueError:
                    continue
                rows.append((when, order, row))
                order += 1
    for row in extra or []:
        rows.append((float(row[0]), order, [str(v) for v in row]))
        order += 1
    rows.sort(key=lambda item: (item[0], item[1]))
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        for _, _, row in rows:
            writer.writerow(row)
    return len(rows)

"""Results folders: the only thing comparisons and plots read.

A run writes ``config.toml`` (resolved), ``metrics.csv`` (one row per evaluation, virtual-time quantities
only, so two runs of the same config compare byte for byte), ``rounds.csv`` (round durations),
``events.csv`` (churn: who crashed, left, joined, and the recoveries the protocol made), ``samples.csv`` (per
aggregation: the models averaged and the sample size actually reached), ``summary.json`` (totals, plus
wall-clock figures) and ``run.log``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plexus.errors import DataError

METRICS_FILE = "metrics.csv"
ROUNDS_FILE = "rounds.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.toml"
LOG_FILE = "run.log"
EVENTS_FILE = "events.csv"
SAMPLES_FILE = "samples.csv"
ROUND_COLUMNS = ["round", "node", "end_time_s", "duration_s"]
EVENT_COLUMNS = ["time_s", "node", "event"]
SAMPLE_COLUMNS = ["round", "time_s", "aggregator", "models", "sampled", "participants"]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    return str(value)


def write_csv(path: Path, rows: Sequence[dict[str, Any] | tuple[Any, ...]], columns: list[str]) -> None:
    """Rows are dicts keyed by column, or tuples in column order."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            values = row if isinstance(row, tuple) else [row.get(column, "") for column in columns]
            writer.writerow([format_value(value) for value in values])


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@dataclass
class Results:
    """A finished run, as read back from (or about to be written to) its folder."""

    directory: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[tuple[Any, ...]] = field(default_factory=list)  # rows (round, node, end_time_s, duration_s)
    events: list[tuple[Any, ...]] = field(default_factory=list)  # rows (time_s, node, event)
    samples: list[tuple[Any, ...]] = field(default_factory=list)  # rows as SAMPLE_COLUMNS

    @property
    def metric(self) -> str:
        return str(self.summary.get("metric", "accuracy"))

    @property
    def higher_is_better(self) -> bool:
        return bool(self.summary.get("higher_is_better", True))

    def write(self, config_toml: str, metric_columns: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / CONFIG_FILE).write_text(config_toml, encoding="utf-8")
        write_csv(self.directory / METRICS_FILE, self.metrics, metric_columns)
        write_csv(self.directory / ROUNDS_FILE, self.rounds, ROUND_COLUMNS)
        write_csv(self.directory / EVENTS_FILE, self.events, EVENT_COLUMNS)
        write_csv(self.directory / SAMPLES_FILE, self.samples, SAMPLE_COLUMNS)
        text = json.dumps(_json_safe(self.summary), indent=2, sort_keys=False)
        (self.directory / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> Results:
        directory = Path(directory)
        summary_path = directory / SUMMARY_FILE
        metrics_path = directory / METRICS_FILE
        for path in (summary_path, metrics_path):
            if not path.is_file():
                raise DataError(f"{directory} is not a results folder: {path.name} is missing")
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"{summary_path} is not valid JSON: {error}") from None
        metrics = _read_csv(metrics_path)
        rounds = _rows(directory / ROUNDS_FILE, ROUND_COLUMNS)
        events = _rows(directory / EVENTS_FILE, EVENT_COLUMNS, text={"node", "event"})
        samples = _rows(directory / SAMPLES_FILE, SAMPLE_COLUMNS, text={"aggregator", "participants"})
        return cls(directory, summary, metrics, rounds, events, samples)


def _rows(path: Path, columns: list[str], text: frozenset[str] | set[str] = frozenset()) -> list[tuple[Any, ...]]:
    """A CSV written by :meth:`Results.write` as tuples in column order ([] when the file is absent: folders
    written before it existed); ``text`` columns stay strings (node ids such as ``"7"`` are names, not numbers)."""
    if not path.is_file():
        return []
    out = []
    for row in _read_csv(path, keep_text=text):
        out.append(tuple(row.get(column) for column in columns))
    return out


def _read_csv(path: Path, keep_text: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key is None:
                    raise DataError(f"{path}, line {line}: more fields than the header has")
                parsed[key] = (value or "") if key in keep_text else _parse(value)
            rows.append(parsed)
    return rows


def _parse(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        number = int(value)
        return number
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value

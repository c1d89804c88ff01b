"""Results folders: the only thing comparisons and plots read.

A run writes ``config.toml`` (resolved), ``metrics.csv`` (one row per evaluation, virtual-time quantities
only, so two runs of the same config compare byte for byte), ``rounds.csv`` (round durations),
``events.csv`` (churn: who crashed, left, joined, and the recoveries the protocol made), ``samples.csv`` (per
aggregation: the models averaged and the sample size actually reached), ``summary.json`` (totals, plus
wall-clock figures, and the run's ``status``) and ``run.log``.

A results folder is never overwritten by accident: :func:`prepare_folder` checks a path and creates the folder
before a run does any work, refusing a non-empty folder unless asked to replace it. ``metrics.csv`` is written
row by row as evaluations happen (:class:`MetricsWriter`), so an interrupted or failed run keeps its rows, and
``summary.json`` says how the run ended: ``completed``, ``interrupted`` (Ctrl-C or SIGTERM), ``failed`` (an
error, in ``error``), ``stalled`` (the protocol could no longer progress), or ``running`` (written when the run
starts: a folder still saying so belongs to a run in progress or to a process that was killed).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plexus.errors import ConfigError, DataError

METRICS_FILE = "metrics.csv"
ROUNDS_FILE = "rounds.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.toml"
LOG_FILE = "run.log"
EVENTS_FILE = "events.csv"
SAMPLES_FILE = "samples.csv"
ROUND_COLUMNS = ["round", "node", "end_time_s", "duration_s"]
STUDY_FILE = "study.json"
STATUSES = ("completed", "interrupted", "failed", "stalled", "running")
# what plexus writes into a results, study or comparison folder: --overwrite only ever deletes folders like these
_OWN_FILES = frozenset({METRICS_FILE, ROUNDS_FILE, SUMMARY_FILE, CONFIG_FILE, LOG_FILE, STUDY_FILE, EVENTS_FILE,
                        SAMPLES_FILE, "churn.png", "checkpoint.pkl",
                        "checkpoint.pkl.tmp",
                        "comparison.csv", "comparison.md", "convergence.png", "round-durations.png"})
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


class MetricsWriter:
    """``metrics.csv`` written as the run goes: the header at once, then each row flushed as it is produced."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._handle = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(columns)
        self._handle.flush()
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        if self._handle.closed:
            return
        self._writer.writerow([format_value(row.get(column, "")) for column in self.columns])
        self._handle.flush()
        self.rows += 1

    def close(self) -> None:
        self._handle.close()


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON document atomically (a reader never sees half a summary)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(_json_safe(document), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(path)


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
        write_json(self.directory / SUMMARY_FILE, self.summary)

    @property
    def status(self) -> str:
        """How the run ended (folders written before statuses existed were complete runs)."""
        return str(self.summary.get("status") or "completed")

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


# --------------------------------------------------------------------------------------------- folders
def is_plexus_folder(path: Path) -> bool:
    """Whether ``path`` holds only what plexus writes: results, study or comparison files and such folders."""
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    if not entries:
        return True
    own = False
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            if not is_plexus_folder(entry):
                return False
            own = True
        elif entry.name in _OWN_FILES or entry.name.endswith(".partial"):
            own = True
        else:
            return False
    return own


def prepare_folder(path: str | Path, *, overwrite: bool = False, must_be_new: bool = True,
                   what: str = "results folder") -> Path:
    """Check ``path`` and create it as a folder before any work is done; every problem is one ConfigError line.

    With ``must_be_new`` a non-empty folder is refused unless ``overwrite``, which empties it first (and only
    if it holds nothing but plexus output: results, study and comparison files). A folder holding a run that
    failed before its first evaluation is reused (nothing in it is worth keeping). Returns the path.
    """
    path = Path(path).expanduser()
    try:
        _check_folder_path(path, what)
        if must_be_new and path.is_dir() and any(path.iterdir()):
            if overwrite:
                if not is_plexus_folder(path):
                    raise ConfigError(f"{what} {path} holds files plexus did not write; --overwrite only replaces "
                                      "plexus results: choose another folder")
                _empty(path)
            elif _failed_without_rows(path):
                _empty(path)
            else:
                raise ConfigError(f"{what} {path} already exists and is not empty; choose another folder "
                                  "(-o), or pass --overwrite to replace it")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".plexus-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except ConfigError:
        raise
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot use {path} as the {what}: {reason}") from None
    return path


def _check_folder_path(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder; choose a folder path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {path}: {parent} is a file, not a folder")
            break


def _failed_without_rows(path: Path) -> bool:
    summary = path / SUMMARY_FILE
    try:
        document = json.loads(summary.read_text(encoding="utf-8"))
        rows = _read_csv(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else []
    except (OSError, ValueError, DataError, csv.Error):
        return False
    return isinstance(document, dict) and document.get("status") == "failed" and not rows \
        and not any(entry.is_dir() for entry in path.iterdir())


def _empty(path: Path) -> None:
    import shutil

    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()

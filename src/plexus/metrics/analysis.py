"""Comparison of finished runs: time-, communication- and resources-to-accuracy, read from results folders.

Everything here starts from folders on disk (never from live simulator objects), so a comparison can be
redone at any time, on runs made on other machines or by other versions, and a study's table is the same
whether it is printed right after the runs or rebuilt later with ``plexus compare``.

Quantities, per run, at the first evaluation that reaches the target (the Plexus paper's vocabulary):

- **TTA**: virtual time (s) at that evaluation;
- **CTA**: bytes sent by all participants up to then (``bytes_total``);
- **RTA**: seconds of local training summed over all nodes up to then (``train_seconds_total``).

Ratios compare each run with the best decentralized-learning (DL) run, as the paper's headline claims do:
``best DL value / this run's value``, so "15x less communication than the best DL baseline" reads 15.0.
"""

from __future__ import annotations

import csv
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plexus.errors import DataError
from plexus.metrics.results import CONFIG_FILE, METRICS_FILE, ROUNDS_FILE, SUMMARY_FILE, Results, write_csv

FEDAVG = "fedavg"
QUANTITIES = ("tta", "cta", "rta")
QUANTITY_COLUMNS = {"tta": "time_s", "cta": "bytes_total", "rta": "train_seconds_total"}
# config fields that never distinguish one run from another in a label
_LABEL_IGNORED = frozenset({"out"})
# a label names at most this many differing options, each value cut to this length; more than that and the
# folder name is the clearer label
_LABEL_MAX_OPTIONS = 3
_LABEL_MAX_VALUE = 24


# --------------------------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One results folder, checked and reduced to what a comparison needs."""

    results: Results
    label: str
    config: dict[str, Any]
    series: dict[str, list[float]]  # time_s, bytes_total, train_seconds_total, value, std (aligned)

    @property
    def directory(self) -> Path:
        return self.results.directory

    @property
    def algorithm(self) -> str:
        return str(self.results.summary.get("algorithm") or self.config.get("algorithm") or "?")

    @property
    def traits(self) -> dict[str, Any]:
        """What the algorithm declared about itself, as the run recorded it in summary.json (folders written
        before traits were recorded have none: they count as neither decentralized nor topology-based)."""
        traits = self.results.summary.get("traits")
        return traits if isinstance(traits, dict) else {}

    @property
    def decentralized(self) -> bool:
        """A decentralized-learning baseline: the group the ratios are computed against."""
        return bool(self.traits.get("decentralized", False))

    @property
    def uses_topology(self) -> bool:
        """Its behaviour depends on --topology, so its label always names it (D-PSGD's graph is part of what
        the baseline *is*: the paper reports "D-PSGD (10-regular)" and "D-PSGD (one-peer exp.)" separately)."""
        return bool(self.traits.get("uses_topology", False))

    @property
    def status(self) -> str:
        """completed, interrupted, failed, stalled or running (see :mod:`plexus.metrics.results`)."""
        return self.results.status

    @property
    def task(self) -> str:
        return str(self.results.summary.get("task") or self.config.get("task") or "?")

    @property
    def durations(self) -> list[float]:
        values = [row[3] for row in self.results.rounds]  # (round, node, end_time_s, duration_s)
        return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0]


def results_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Expand study folders into their runs (in the order they were run), keep results folders as they are.

    So ``plexus compare results/study-x`` redoes a study's comparison, e.g. with another ``--target``.
    """
    folders: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / SUMMARY_FILE).is_file():
            inner = [child for child in path.iterdir() if (child / SUMMARY_FILE).is_file()]
            if inner:
                inner.sort(key=lambda child: ((child / SUMMARY_FILE).stat().st_mtime_ns, child.name))
                folders += inner
                continue
        folders.append(path)
    return folders


def load_run(directory: str | Path) -> Run:
    """Read and check one results folder; every problem is a one-line :class:`DataError` naming the file."""
    directory = Path(directory)
    if not directory.exists():
        raise DataError(f"results folder {directory} does not exist")
    if not directory.is_dir():
        raise DataError(f"{directory} is not a results folder (not a directory)")
    try:
        results = Results.load(directory)
    except (csv.Error, UnicodeDecodeError, OSError) as error:
        for name in (METRICS_FILE, ROUNDS_FILE):  # name the file at fault, not just the folder
            path = directory / name
            try:
                if path.is_file():
                    path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as inner:
                raise DataError(f"{path} is not readable text: {inner}") from None
        raise DataError(f"{directory}: cannot read its CSV files: {error}") from None
    if not isinstance(results.summary, dict):
        raise DataError(f"{directory / 'summary.json'}: expected a JSON object")
    config = _read_config(directory)
    series = _series(results)
    return Run(results, "", config, series)


def _read_config(directory: Path) -> dict[str, Any]:
    """The run's resolved options, flattened; an absent config.toml only costs label detail."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid TOML: {error}") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == "churn" and isinstance(value, dict):
            flat["churn"] = value.get("scenario") or "custom"  # one label entry, not every key of the table
        elif isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _series(results: Results) -> dict[str, list[float]]:
    metric = results.metric
    path = results.directory / METRICS_FILE
    needed = ["time_s", metric, "bytes_total", "train_seconds_total"]
    series: dict[str, list[float]] = {"time_s": [], "bytes_total": [], "train_seconds_total": [],
                                      "value": [], "std": []}
    for line, row in enumerate(results.metrics, start=2):
        missing = [name for name in needed if name not in row]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} is missing")
        numbers = {}
        for name in needed:
            value = row[name]
            if value is None:
                value = math.nan
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(f"{path}, line {line}: {name} = {value!r} is not a number")
            numbers[name] = float(value)
        if math.isnan(numbers[metric]):
            continue  # an evaluation that produced no value (e.g. no model yet) reaches nothing
        std = row.get(f"{metric}_std")
        series["time_s"].append(numbers["time_s"])
        series["bytes_total"].append(numbers["bytes_total"])
        series["train_seconds_total"].append(numbers["train_seconds_total"])
        series["value"].append(numbers[metric])
        series["std"].append(float(std) if isinstance(std, (int, float)) and math.isfinite(std) else 0.0)
    return series


def assign_labels(runs: Sequence[Run]) -> None:
    """Give each run a distinct, readable label: the algorithm, plus the options that tell same-algorithm runs apart.

    Two D-PSGD runs on different graphs become ``dpsgd (regular:10)`` and ``dpsgd (one-peer-exp)``; two Plexus
    runs with different seeds ``plexus (seed=0)`` and ``plexus (seed=1)``. Identical configs fall back to the
    folder name, so a label never hides that two rows are different folders.
    """
    by_algorithm: dict[str, list[Run]] = {}
    for run in runs:
        by_algorithm.setdefault(run.algorithm, []).append(run)
    for algorithm, group in by_algorithm.items():
        differing: list[str] = []
        if len(group) > 1:
            keys = sorted({k for run in group for k in run.config} - _LABEL_IGNORED)
            differing = [k for k in keys if len({repr(run.config.get(k)) for run in group}) > 1]
        if any(run.uses_topology for run in group):
            differing = [key for key in differing if key != "topology"]
        too_many = len(differing) > _LABEL_MAX_OPTIONS
        for run in group:
            parts = []
            if run.uses_topology and "topology" in run.config:
                parts.append(_short(run.config["topology"]))
            if too_many:
                parts.append(run.directory.name[:_LABEL_MAX_VALUE])
            else:
                parts += [f"{key}={_short(run.config.get(key))}" for key in differing]
            run.label = f"{algorithm} ({', '.join(parts)})" if parts else algorithm
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    for run in runs:
        if counts[run.label] > 1:
            run.label = f"{run.label} [{run.directory.name}]"
    seen: dict[str, int] = {}
    for run in runs:  # the same folder given twice: still distinct rows
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} #{seen[run.label]}"
    for run in runs:  # a run that did not complete says so wherever its label appears
        if run.status != "completed":
            run.label = f"{run.label} [{run.status}]"


def labels_for(results: Sequence[Results]) -> list[str]:
    """The labels a comparison of these runs would show (the summary table uses them too)."""
    runs = [Run(r, "", _read_config(r.directory), {}) for r in results]
    assign_labels(runs)
    return [run.label for run in runs]


def _short(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = str(value)
    if "/" in text:  # file options (traces): the file name is what tells runs apart
        text = text.rstrip("/").rsplit("/", 1)[-1]
    if len(text) > _LABEL_MAX_VALUE:
        text = text[: _LABEL_MAX_VALUE - 3] + "..."
    return text


# --------------------------------------------------------------------------------------------- analysis
def reaches(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def first_reaching(run: Run, target: float, higher_is_better: bool) -> int | None:
    """Index of the first evaluation at or beyond the target (None if the run never gets there)."""
    for index, value in enumerate(run.series["value"]):
        if reaches(value, target, higher_is_better):
            return index
    return None


def best_value(run: Run, higher_is_better: bool) -> float:
    values = run.series["value"]
    if not values:
        return math.nan
    return max(values) if higher_is_better else min(values)


def default_target(runs: Sequence[Run], higher_is_better: bool) -> float:
    """The best value that *every* run reaches: the worst of the runs' bests (so TTA is defined for all)."""
    bests = [best_value(run, higher_is_better) for run in runs]
    bests = [b for b in bests if not math.isnan(b)]
    if not bests:
        raise DataError("no run has any evaluation: nothing to compare")
    return min(bests) if higher_is_better else max(bests)


@dataclass
class RunRow:
    """One line of the comparison table."""

    label: str
    algorithm: str
    decentralized: bool
    directory: Path
    status: str
    best: float
    final: float
    tta_s: float | None = None
    cta_bytes: float | None = None
    rta_s: float | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)  # quantity -> best DL / this run
    best_vs_fedavg: float | None = None
    final_vs_fedavg: float | None = None
    virtual_seconds: float = math.nan
    bytes_total: float = math.nan
    train_seconds_total: float = math.nan

    def value(self, quantity: str) -> float | None:
        return {"tta": self.tta_s, "cta": self.cta_bytes, "rta": self.rta_s}[quantity]


@dataclass
class Comparison:
    """The comparison table of several runs, plus what the figures need (the runs' series)."""

    runs: list[Run]
    rows: list[RunRow]
    metric: str
    higher_is_better: bool
    target: float
    target_given: bool
    has_dl: bool
    has_fedavg: bool

    # ----------------------------------------------------------------- table
    def columns(self) -> list[str]:
        """CSV columns; ratio and FedAvg columns appear only when there is a DL / FedAvg run to compare with."""
        m = self.metric
        columns = ["run", "algorithm", "status", "dl", "tta_s", "cta_bytes", "rta_s"]
        if self.has_dl:
            columns += ["tta_vs_best_dl", "cta_vs_best_dl", "rta_vs_best_dl"]
        columns += [f"best_{m}", f"final_{m}"]
        if self.has_fedavg:
            columns += [f"best_{m}_vs_fedavg", f"final_{m}_vs_fedavg"]
        columns += ["target", "virtual_seconds", "bytes_total", "train_seconds_total", "folder"]
        return columns

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by :meth:`columns` (None = not reached / not applicable)."""
        m = self.metric
        out = []
        for row in self.rows:
            record: dict[str, Any] = {
                "run": row.label, "algorithm": row.algorithm, "status": row.status,
                "dl": "yes" if row.decentralized else "no",
                "tta_s": row.tta_s, "cta_bytes": row.cta_bytes, "rta_s": row.rta_s,
                f"best_{m}": row.best, f"final_{m}": row.final, "target": self.target,
                "virtual_seconds": row.virtual_seconds, "bytes_total": row.bytes_total,
                "train_seconds_total": row.train_seconds_total, "folder": str(row.directory),
            }
            for quantity in QUANTITIES:
                record[f"{quantity}_vs_best_dl"] = row.ratios.get(quantity)
            record[f"best_{m}_vs_fedavg"] = row.best_vs_fedavg
            record[f"final_{m}_vs_fedavg"] = row.final_vs_fedavg
            out.append(record)
        return out

    def target_line(self) -> str:
        how = "given with --target" if self.target_given else (
            "default: the highest value every run reaches" if self.higher_is_better
            else "default: the lowest value every run reaches")
        direction = ">=" if self.higher_is_better else "<="
        return f"target {self.metric} {direction} {self.target:.4g} ({how})"

    def display(self) -> tuple[list[str], list[list[str]]]:
        """Human-readable headers and cells (MB, 'x' ratios, '-' for not reached), for the terminal and Markdown."""
        m = self.metric
        headers = ["run", "DL", "TTA (s)", "CTA (MB)", "RTA (train s)"]
        if self.has_dl:
            headers += ["TTA vs best DL", "CTA vs best DL", "RTA vs best DL"]
        headers += [f"best {m}", f"final {m}"]
        if self.has_fedavg:
            headers += ["best vs FedAvg", "final vs FedAvg"]
        cells = []
        for row in self.rows:
            line = [row.label, "yes" if row.decentralized else "no", _num(row.tta_s, 1),
                    _num(None if row.cta_bytes is None else row.cta_bytes / 1e6, 2), _num(row.rta_s, 1)]
            if self.has_dl:
                line += [_ratio(row.ratios.get(q)) for q in QUANTITIES]
            line += [_num(row.best, 4), _num(row.final, 4)]
            if self.has_fedavg:
                line += [_signed(row.best_vs_fedavg), _signed(row.final_vs_fedavg)]
            cells.append(line)
        return headers, cells

    def to_text(self) -> str:
        headers, cells = self.display()
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
        lines = [self.target_line(),
                 "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        for row in cells:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines.append(_legend(self))
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        headers, cells = self.display()
        lines = [f"**{self.target_line()}**", "",
                 "| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        for row in cells:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        lines += ["", _legend(self), "", "Folders:", ""]
        lines += [f"- {row.label}: `{row.directory}`" for row in self.rows]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path, figures: bool = True) -> list[Path]:
        """Write comparison.csv, comparison.md and (unless ``figures`` is False) the PNG figures; returns paths."""
        from plexus.metrics.results import prepare_folder

        out = prepare_folder(out_dir, must_be_new=False, what="comparison folder")
        csv_path = out / "comparison.csv"
        write_csv(csv_path, [{k: ("" if v is None else v) for k, v in r.items()} for r in self.records()],
                  self.columns())
        md_path = out / "comparison.md"
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        written = [csv_path, md_path]
        if figures:
            from plexus.metrics.plots import write_figures

            written += write_figures(self, out)
        return written


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _signed(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:+.4f}"


def _legend(comparison: Comparison) -> str:
    parts = ["TTA/CTA/RTA: virtual time, bytes sent and summed training seconds at the first evaluation that "
             "reaches the target ('-': never reached)."]
    if comparison.has_dl:
        parts.append("'vs best DL' = best decentralized-learning run's value / this run's value "
                     "(higher is better; 15x = 15 times less).")
    if comparison.has_fedavg:
        parts.append(f"'vs FedAvg' = this run's {comparison.metric} minus FedAvg's.")
    partial = sorted({row.status for row in comparison.rows if row.status != "completed"})
    if partial:
        parts.append(f"[{'], ['.join(partial)}]: the run did not finish; its values are those it reached "
                     "(the default target ignores it).")
    return " ".join(parts)


def compare_runs(runs: Sequence[Run], target: float | None = None) -> Comparison:
    """Build the comparison of already-loaded runs (labels must be assigned)."""
    if not runs:
        raise DataError("nothing to compare: no results folders given")
    tasks: dict[str, list[str]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(str(run.directory))
    if len(tasks) > 1:
        groups = "; ".join(f"{task}: {', '.join(_few(folders))}" for task, folders in tasks.items())
        raise DataError(f"runs of different tasks cannot share one table ({groups}); compare each task's runs "
                        "separately")
    metrics = {run.results.metric for run in runs}
    if len(metrics) > 1:
        raise DataError(f"runs measure different metrics ({', '.join(sorted(metrics))}): cannot compare them")
    metric = runs[0].results.metric
    directions = {run.results.higher_is_better for run in runs}
    if len(directions) > 1:
        raise DataError(f"runs disagree on whether a higher {metric} is better: cannot compare them")
    higher = runs[0].results.higher_is_better
    given = target is not None
    if target is None:
        # a run that did not finish does not lower the bar for the others (unless no run finished)
        finished = [run for run in runs if run.status == "completed"]
        target = default_target(finished or runs, higher)
    elif not math.isfinite(target):
        raise DataError(f"target {target} is not a finite number")

    rows = []
    for run in runs:
        values = run.series["value"]
        summary = run.results.summary
        row = RunRow(
            label=run.label, algorithm=run.algorithm, decentralized=run.decentralized, directory=run.directory,
            status=run.status,
            best=best_value(run, higher), final=values[-1] if values else math.nan,
            virtual_seconds=_float(summary.get("virtual_seconds")),
            bytes_total=_integral(_float(summary.get("bytes_total"))),
            train_seconds_total=_float(summary.get("train_seconds_total")),
        )
        index = first_reaching(run, target, higher)
        if index is not None:
            row.tta_s = run.series["time_s"][index]
            row.cta_bytes = _integral(run.series["bytes_total"][index])
            row.rta_s = run.series["train_seconds_total"][index]
        rows.append(row)

    has_dl = any(row.decentralized for row in rows)
    if has_dl:
        for quantity in QUANTITIES:
            reached = [v for row in rows if row.decentralized and (v := row.value(quantity)) is not None]
            best_dl = min(reached) if reached else None
            for row in rows:
                row.ratios[quantity] = _ratio_value(best_dl, row.value(quantity))

    fedavg_rows = [row for row in rows if row.algorithm == FEDAVG and not math.isnan(row.best)]
    has_fedavg = bool(fedavg_rows)
    if has_fedavg:
        # several FedAvg runs: the reference is the best of them (FL with a server as the bar to meet)
        pick = max if higher else min
        reference = pick(fedavg_rows, key=lambda r: r.best)
        for row in rows:
            row.best_vs_fedavg = _diff(row.best, reference.best)
            row.final_vs_fedavg = _diff(row.final, reference.final)
    return Comparison(list(runs), rows, metric, higher, target, given, has_dl, has_fedavg)


def _few(items: list[str], limit: int = 3) -> list[str]:
    return items if len(items) <= limit else [*items[:limit], f"and {len(items) - limit} more"]


def _ratio_value(best_dl: float | None, value: float | None) -> float | None:
    if best_dl is None or value is None:
        return None
    if value == 0:
        return 1.0 if best_dl == 0 else math.inf
    return best_dl / value


def _diff(a: float, b: float) -> float | None:
    if math.isnan(a) or math.isnan(b):
        return None
    return a - b


def _integral(value: float) -> float:
    """Byte counts are whole numbers: keep them ints so the CSV reads 23531112, not 23531112.0."""
    return int(value) if math.isfinite(value) and value == int(value) else value


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def compare(
    directories: Sequence[str | Path],
    target: float | None = None,
    labels: Sequence[str] | None = None,
) -> Comparison:
    """Load results folders and compare them; ``labels`` (one per folder) replaces the derived labels.

    A study folder (no summary.json itself, results folders inside) stands for its runs.
    """
    runs = [load_run(directory) for directory in results_folders(directories)]
    assign_labels(runs)
    if labels is not None:
        if len(labels) != len(runs):
            raise DataError(f"{len(labels)} labels given for {len(runs)} results folders")
        for run, label in zip(runs, labels, strict=True):
            run.label = label
    return compare_runs(runs, target)

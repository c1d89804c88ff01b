"""Churn in results folders: who was online when, the sample sizes rounds actually reached, what recoveries cost,
and the figure ``plexus compare`` adds for runs with churn (``churn.png``).

Everything is read from the results folder (``events.csv``, ``samples.csv``, ``summary.json``), like the rest of
:mod:`plexus.metrics`.

- :func:`online_series`: nodes online over time, from ``summary.json``'s ``churn.online_at_start`` and the
  crash/leave/join events.
- :func:`samples_per_round`: per round, the largest sample an aggregator of that round reached and the models it
  averaged (a round recovered after its aggregator died may have several rows; the largest is what the round got).
- :func:`recovery_cost`: for runs where the aggregator of some rounds crashed (``crash_aggregator_every``), the
  median duration of those rounds against the others' (round durations are the gaps between consecutive rounds'
  aggregations).
- :func:`churn_report`: one line per run with the figures above.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plexus.metrics.results import Results

if TYPE_CHECKING:
    from plexus.metrics.analysis import Comparison

CHURN_FILE = "churn.png"
DOWN = ("crash", "leave")
UP = ("join", "rejoin", "rejoin-fresh")
_MARKERS = {"crash": "x", "leave": "v", "join": "^", "rejoin": "^", "rejoin-fresh": "^"}


def has_churn(results: Results) -> bool:
    return isinstance(results.summary.get("churn"), dict)


def online_series(results: Results) -> list[tuple[float, int]]:
    """(time, nodes online) at the start and after every crash, leave and join."""
    churn = results.summary.get("churn") or {}
    online = int(churn.get("online_at_start", results.summary.get("nodes") or 0))
    points = [(0.0, online)]
    for time_s, _, event in results.events:
        if event in DOWN:
            online -= 1
        elif event in UP:
            online += 1
        else:
            continue
        points.append((float(time_s), online))
    return points


def samples_per_round(results: Results) -> dict[int, tuple[int, int]]:
    """round -> (largest sample reached, models that aggregation averaged)."""
    best: dict[int, tuple[int, int]] = {}
    for row in results.samples:
        round_, sampled, models = int(row[0]), int(row[4]), int(row[3])
        if round_ not in best or sampled > best[round_][0]:
            best[round_] = (sampled, models)
    return best


def _round_ends(results: Results) -> dict[int, float]:
    """When each round's model first left an aggregator (samples.csv)."""
    ends: dict[int, float] = {}
    for row in results.samples:
        round_, time_s = int(row[0]), float(row[1])
        ends[round_] = min(time_s, ends.get(round_, math.inf))
    return ends


@dataclass(frozen=True)
class RecoveryCost:
    rounds: int  # rounds whose aggregator crashed and that completed anyway
    median_recovered_s: float
    median_other_s: float

    @property
    def extra_s(self) -> float:
        return self.median_recovered_s - self.median_other_s


def recovery_cost(results: Results) -> RecoveryCost | None:
    """What a dead aggregator cost: median duration of the rounds whose aggregator crashed vs the others."""
    crashed = {int(event.rsplit("-", 1)[1]) for _, _, event in results.events
               if event.startswith("aggregator-crash-round-")}
    if not crashed:
        return None
    ends = _round_ends(results)
    durations = {r: ends[r] - ends[r - 1] for r in ends if r - 1 in ends}
    recovered = [d for r, d in durations.items() if r in crashed]
    others = [d for r, d in durations.items() if r not in crashed and r - 1 not in crashed]
    if not recovered or not others:
        return None
    return RecoveryCost(len(recovered), statistics.median(recovered), statistics.median(others))


def joined_and_sampled(results: Results) -> list[tuple[str, float, list[float]]]:
    """Nodes that joined during the run: (node, first join time, times it was pushed a model after that)."""
    joined: dict[str, float] = {}
    for time_s, node, event in results.events:
        if event == "join" and str(node) not in joined:
            joined[str(node)] = float(time_s)
    out = []
    for node, since in sorted(joined.items(), key=lambda item: item[1]):
        times = [float(row[1]) for row in results.samples
                 if float(row[1]) >= since and node in str(row[5] or "").split()]
        out.append((node, since, times))
    return out


def churn_report(results: Results) -> dict[str, Any]:
    """The churn figures of one run (empty for a run without churn)."""
    if not has_churn(results):
        return {}
    summary = results.summary
    churn = summary["churn"]
    online = [count for _, count in online_series(results)]
    sizes = samples_per_round(results)
    report: dict[str, Any] = {
        "events": churn.get("events", {}),
        "online_min": min(online),
        "online_at_end": online[-1],
        "rounds_completed": summary.get("rounds_completed"),
        "stalled": summary.get("stalled"),
        "recoveries": summary.get("counters", {}).get("recoveries", 0),
    }
    if sizes:
        sampled = [s for s, _ in sizes.values()]
        report.update(sampled_min=min(sampled), sampled_median=statistics.median(sampled))
    cost = recovery_cost(results)
    if cost is not None:
        report.update(recovered_rounds=cost.rounds, recovered_round_median_s=cost.median_recovered_s,
                      other_round_median_s=cost.median_other_s, extra_s_per_recovered_round=cost.extra_s)
    joins = joined_and_sampled(results)
    if joins:
        report["joined_nodes_sampled"] = f"{sum(1 for _, _, times in joins if times)} of {len(joins)}"
        waits = [times[0] - since for _, since, times in joins if times]
        if waits:
            report["median_wait_to_first_sample_s"] = statistics.median(waits)
    return report


def plot_churn(comparison: Comparison, path: str | Path) -> Path | None:
    """Metric over time with churn events marked (and nodes online), the sample size each round reached, and, when
    nodes joined, when each of them was sampled; None (no file) when no run had churn."""
    from plexus.metrics.plots import _colors, _metric_name, _pyplot

    runs = [(run, row) for run, row in zip(comparison.runs, comparison.rows, strict=True)]
    churned = [(run, row) for run, row in runs if has_churn(run.results)]
    if not churned:
        return None
    plt = _pyplot()
    path = Path(path)
    joins = next(((run, row, joined_and_sampled(run.results)) for run, row in churned
                  if joined_and_sampled(run.results)), None)
    panels = 3 if joins else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.4))
    colors = {id(run): color for (run, _), color in zip(runs, _colors(len(runs)), strict=True)}
    metric_ax, size_ax = axes[0], axes[1]
    online_ax = metric_ax.twinx()
    for run, row in runs:
        color = colors[id(run)]
        series = run.series
        metric_ax.plot(series["time_s"], series["value"], "--" if run.decentralized else "-", color=color,
                       linewidth=1.8, label=row.label)
        if not has_churn(run.results):
            continue
        online = online_series(run.results)
        end = series["time_s"][-1] if series["time_s"] else online[-1][0]
        online_ax.step([t for t, _ in online] + [end], [n for _, n in online] + [online[-1][1]], where="post",
                       color=color, linewidth=1.0, alpha=0.6, linestyle=":")
        for event, marker in _MARKERS.items():
            times = [float(t) for t, _, e in run.results.events if e == event]
            if times:
                metric_ax.plot(times, [0.02] * len(times), marker, color=color, markersize=5, alpha=0.7,
                               transform=metric_ax.get_xaxis_transform(), linestyle="none")
        sizes = samples_per_round(run.results)
        if sizes:
            rounds = sorted(sizes)
            size_ax.plot(rounds, [sizes[r][0] for r in rounds], "-", color=color, linewidth=1.4)
            size_ax.plot(rounds, [sizes[r][1] for r in rounds], ".", color=color, markersize=3, alpha=0.6)
    metric_ax.set_xlabel("Virtual time (s)")
    metric_ax.set_ylabel(_metric_name(comparison))
    metric_ax.grid(True, alpha=0.3)
    online_ax.set_ylabel("Nodes online (dotted)")
    online_ax.set_ylim(bottom=0)
    metric_ax.set_title("Over time; x crash, v leave, ^ join")
    size_ax.set_xlabel("Round")
    size_ax.set_ylabel("Nodes")
    size_ax.set_ylim(bottom=0)
    size_ax.grid(True, alpha=0.3)
    size_ax.set_title("Per round: sample size reached (line), models averaged (dots)")
    if joins is not None:
        join_run, _, joined = joins
        join_ax = axes[2]
        for position, (_, since, times) in enumerate(joined):
            join_ax.plot([since], [position], "^", color="black", markersize=7)
            join_ax.plot(times, [position] * len(times), "o", color=colors[id(join_run)], markersize=3)
        if len(joined) <= 20:
            join_ax.set_yticks(range(len(joined)), [f"node {node}" for node, _, _ in joined])
        else:
            join_ax.set_ylabel(f"the {len(joined)} nodes that joined, in order of joining")
            join_ax.set_yticks([])
        join_ax.invert_yaxis()
        join_ax.set_xlabel("Virtual time (s)")
        join_ax.grid(True, axis="x", alpha=0.3)
        join_ax.set_title("Nodes that joined (^) and the samples they were in (o)")
    handles, labels = metric_ax.get_legend_handles_labels()
    longest = max(len(label) for label in labels)
    columns = 1 if longest > 60 else 2 if longest > 35 else 4
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), columns), frameon=False)
    fig.suptitle("Churn", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * math.ceil(len(labels) / columns), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_lines(runs: Sequence[tuple[str, Results]]) -> list[str]:
    """Human-readable lines: one per run with churn."""
    lines = []
    for label, results in runs:
        report = churn_report(results)
        if report:
            parts = [f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in report.items()]
            lines.append(f"{label}: " + ", ".join(parts))
    return lines

"""Figures of a comparison, as PNG files (matplotlib, Agg backend: no display needed, safe on servers).

- ``convergence.png``: the Plexus paper's Figure 3 layout, the metric against virtual time, against
  communication volume (log) and against training resources (log), one line per run; a band of +/- one
  standard deviation where a run evaluates several node models (decentralized learning); the target dashed.
- ``round-durations.png``: the distribution of round durations per run (the paper's Figure 5), as a CDF and
  as box plots, since a protocol's speed comes from short *and* predictable rounds.
- ``churn.png`` (when a run had churn; :mod:`plexus.metrics.churn`): the metric over time with crashes, leaves and
  joins marked and the nodes online, the sample size each round reached, and when joined nodes were sampled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plexus.metrics.analysis import Comparison

CONVERGENCE_FILE = "convergence.png"
DURATIONS_FILE = "round-durations.png"

_PANELS = (
    ("time_s", "Virtual time (s)", False),
    ("bytes_total", "Communication volume (bytes, log scale)", True),
    ("train_seconds_total", "Training resources (s of training, all nodes; log scale)", True),
)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(count: int) -> list[str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    return [palette[i % len(palette)] for i in range(count)]


def _metric_name(comparison: Comparison) -> str:
    return {"accuracy": "Test accuracy", "rmse": "Test RMSE"}.get(comparison.metric, comparison.metric)


def _human(value: float, unit: str) -> str:
    """Tick labels people read at a glance: 20 MB rather than 2x10^7 bytes."""
    if unit == "s":
        if value < 1:
            return f"{value:g} s"
        if value < 1e4:
            return f"{value:,.0f} s"
        steps = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        scale, prefix = next((scale, prefix) for scale, prefix in steps if value >= scale)
        return f"{value / scale:g}{prefix} s"
    steps = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    for scale, prefix in steps:
        if abs(value) >= scale:
            return f"{value / scale:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _log_axis(ax, unit: str) -> None:  # type: ignore[no-untyped-def]
    """Log x axis with readable labels: ticks at 1, 2 and 5 per decade over short ranges (which would otherwise
    get one label or none), one per decade over long ones (where 1-2-5 labels collide). Call after plotting."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.autoscale_view()
    low, high = ax.get_xlim()
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,) if decades <= 8 else None
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs) if subs else LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _human(value, unit)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_convergence(comparison: Comparison, path: str | Path) -> Path:
    """Three panels sharing the metric axis; returns the PNG path."""
    plt = _pyplot()
    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), sharey=True)
    colors = _colors(len(comparison.runs))
    for run, row, color in zip(comparison.runs, comparison.rows, colors, strict=True):
        series = run.series
        style = "--" if run.decentralized else "-"
        for ax, (column, _, log) in zip(axes, _PANELS, strict=True):
            points = [(x, y, s) for x, y, s in zip(series[column], series["value"], series["std"], strict=True)
                      if math.isfinite(x) and (x > 0 or not log)]
            if not points:
                continue
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            stds = [p[2] for p in points]
            ax.plot(xs, ys, style, color=color, linewidth=1.8, label=row.label)
            if any(s > 0 for s in stds):
                ax.fill_between(xs, [y - s for y, s in zip(ys, stds, strict=True)],
                                [y + s for y, s in zip(ys, stds, strict=True)], color=color, alpha=0.15,
                                linewidth=0)
            reached = row.value({"time_s": "tta", "bytes_total": "cta", "train_seconds_total": "rta"}[column])
            if reached is not None and (reached > 0 or not log):
                ax.plot([reached], [comparison.target], "o", color=color, markersize=6,
                        markeredgecolor="black", markeredgewidth=0.6, zorder=5)
    for ax, (column, xlabel, log) in zip(axes, _PANELS, strict=True):
        if log:
            _log_axis(ax, "B" if column == "bytes_total" else "s")
        ax.set_xlabel(xlabel)
        ax.axhline(comparison.target, color="black", linestyle=":", linewidth=1.2)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(_metric_name(comparison))
    axes[0].set_title("vs. time")
    axes[1].set_title("vs. communication")
    axes[2].set_title("vs. training resources")
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2))
    labels.append(f"target {comparison.target:.4g}")
    if any(any(s > 0 for s in run.series["std"]) for run in comparison.runs):
        from matplotlib.patches import Patch

        handles.append(Patch(color="grey", alpha=0.25))
        labels.append("mean +/- std over evaluated nodes")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    direction = "higher is better" if comparison.higher_is_better else "lower is better"
    note = "; dashed lines: decentralized-learning baselines" if comparison.has_dl else ""
    fig.suptitle(f"{_metric_name(comparison)} ({direction}); dots: first evaluation reaching the target{note}",
                 fontsize=11)
    rows_of_legend = math.ceil(len(labels) / 5)
    fig.tight_layout(rect=(0, 0.05 + 0.04 * rows_of_legend, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_round_durations(comparison: Comparison, path: str | Path) -> Path | None:
    """CDF and box plots of round durations; None (no file) when no run recorded any round."""
    runs = [(run, row) for run, row in zip(comparison.runs, comparison.rows, strict=True) if run.durations]
    if not runs:
        return None
    plt = _pyplot()
    path = Path(path)
    fig, (cdf_ax, box_ax) = plt.subplots(1, 2, figsize=(14, 5.2),
                                         gridspec_kw={"width_ratios": [1.3, 1]})
    colors = _colors(len(comparison.runs))
    color_of = {id(run): color for run, color in zip(comparison.runs, colors, strict=True)}
    everything = []
    for run, row in runs:
        values = sorted(run.durations)
        everything += values
        n = len(values)
        fractions = [(i + 1) / n for i in range(n)]
        cdf_ax.step(values, fractions, where="post", color=color_of[id(run)], linewidth=1.8,
                    linestyle="--" if run.decentralized else "-", label=f"{row.label} (n={n})")
    positive = [v for v in everything if v > 0]
    wide = bool(positive) and max(positive) / min(positive) > 50
    if wide:
        _log_axis(cdf_ax, "s")
    cdf_ax.set_xlabel("Round duration (s" + (", log scale)" if wide else ")"))
    cdf_ax.set_ylabel("Fraction of rounds (CDF)")
    cdf_ax.set_ylim(0, 1.02)
    cdf_ax.grid(True, alpha=0.3)

    cdf_ax.set_title("Cumulative distribution")

    import matplotlib

    # matplotlib 3.10 renamed vert=False to orientation="horizontal" (and deprecated the former in 3.11)
    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    horizontal = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    box = box_ax.boxplot([run.durations for run, _ in runs], **horizontal, patch_artist=True, showfliers=True,
                         flierprops={"markersize": 3},
                         medianprops={"color": "black", "linewidth": 1.5})
    for patch, (run, _) in zip(box["boxes"], runs, strict=True):
        patch.set_facecolor(color_of[id(run)])
        patch.set_alpha(0.5)
    box_ax.set_yticks(range(1, len(runs) + 1), [row.label for _, row in runs])
    box_ax.invert_yaxis()
    if wide:
        _log_axis(box_ax, "s")
    box_ax.set_xlabel("Round duration (s" + (", log scale)" if wide else ")"))
    box_ax.grid(True, axis="x", alpha=0.3)
    box_ax.set_title("Median, quartiles, 1.5 IQR whiskers")
    missing = [row.label for run, row in zip(comparison.runs, comparison.rows, strict=True) if not run.durations]
    if missing:  # say so rather than let a run vanish silently from the figure
        fig.text(0.99, 0.01, f"no round durations recorded: {', '.join(missing)}", ha="right", va="bottom",
                 fontsize=9, color="dimgray")
    handles, labels = cdf_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle("Round durations (per round; per node and round for decentralized learning)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * math.ceil(len(labels) / 4), 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write every figure of ``comparison`` into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    written = [plot_convergence(comparison, out / CONVERGENCE_FILE)]
    durations = plot_round_durations(comparison, out / DURATIONS_FILE)
    if durations is not None:
        written.append(durations)
    from plexus.metrics.churn import CHURN_FILE, plot_churn

    churn = plot_churn(comparison, out / CHURN_FILE)  # runs with churn only
    if churn is not None:
        written.append(churn)
    return written

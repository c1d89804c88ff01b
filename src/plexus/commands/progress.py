"""Progress display and the final table of ``plexus simulate``."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from plexus.config import Config
from plexus.metrics.results import Results


class ProgressBar:
    """One updating line on a terminal (virtual time, round, last metric); a line per 10% otherwise."""

    def __init__(self, config: Config, enabled: bool = True, stream: TextIO | None = None, label: str = "") -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.rounds = config.rounds
        self.duration = config.duration
        self.label = label or f"{config.algorithm} on {config.task}"
        self.started = time.perf_counter()
        self._last_decile = -1
        self._dirty = False

    def fraction(self, row: dict[str, Any]) -> float:
        if self.rounds:
            return min(1.0, row["round"] / self.rounds)
        if self.duration:
            return min(1.0, row["time_s"] / self.duration)
        return 0.0

    def update(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        fraction = self.fraction(row)
        metric = next((k for k in row if k not in ("time_s", "round") and not k.endswith("_std")), "metric")
        value = row.get(metric, math.nan)
        width = 24
        filled = int(round(fraction * width))
        text = (
            f"[{self.label}] |{'#' * filled}{'.' * (width - filled)}| {fraction * 100:5.1f}%  "
            f"t={row['time_s']:.1f}s  round {row['round']}  {metric}={value:.4f}  "
            f"wall {time.perf_counter() - self.started:.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
            self.stream.flush()
            self._dirty = True
        else:
            decile = int(fraction * 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(text + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self._dirty:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty = False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_summary_table(runs: list[Results], stream: TextIO = sys.stdout) -> None:
    headers = ["algorithm", "task", "nodes", "rounds", "virtual s", "final", "best", "MB sent",
               "train s (all nodes)", "wall s", "results"]
    rows = []
    names = [result.summary["algorithm"] for result in runs]
    for result in runs:
        s = result.summary
        metric = s.get("metric", "accuracy")
        # two runs of one algorithm (e.g. D-PSGD on two topologies) are told apart by their folders
        label = s["algorithm"] if names.count(s["algorithm"]) == 1 else f"{s['algorithm']} ({result.directory.name})"
        rows.append([
            label, s["task"], s["nodes"], s["rounds_completed"], s["virtual_seconds"],
            f"{metric} {_fmt(s.get('final_' + metric, math.nan))}", _fmt(s.get("best_" + metric, math.nan)),
            s["bytes_total"] / 1e6, s["train_seconds_total"], s["wall_seconds"], str(result.directory),
        ])
    cells = [[_fmt(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    stream.write(line + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n")

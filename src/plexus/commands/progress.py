"""Progress display and the final table of ``plexus simulate``."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from plexus.config import Config
from plexus.metrics.results import Results


class ProgressBar:
    """Progress of one run on stderr.

    On a terminal, one line redrawn on the wall clock (twice a second) by a background thread, whatever the run
    is doing: the phase (loading data, building the model, writing results), then a bar with the round, virtual
    time, the last metric, rounds per second and an ETA, and "evaluating 37/100 models" or "evaluating 45%"
    while an evaluation is in progress. Elsewhere (a pipe, CI) plain lines: one per tenth of the run, plus one
    every ``heartbeat`` seconds while nothing else was printed (so a long step still shows it is alive).

    Call it (or :meth:`update`) with each metrics row; :func:`plexus.sim.simulation.run_simulation` also hands it
    the run's state through :meth:`attach` so it can follow the run between evaluations.
    """

    def __init__(
        self,
        config: Config,
        enabled: bool = True,
        stream: TextIO | None = None,
        label: str = "",
        refresh: float = 0.5,
        heartbeat: float = 30.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.rounds = config.rounds
        self.duration = config.duration
        self.label = label or f"{config.algorithm} on {config.task}"
        self.refresh = refresh
        self.heartbeat = heartbeat
        self.started = time.perf_counter()
        self._last_decile = -1
        self._last_line = time.perf_counter()
        self._dirty = False
        self._row: dict[str, Any] | None = None
        self._state: Any = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- following a run
    def __call__(self, row: dict[str, Any]) -> None:
        self.update(row)

    def attach(self, state: Any) -> None:
        """Follow a running simulation (its :class:`~plexus.sim.simulation.RunState`) on the wall clock."""
        self._state = state
        _ACTIVE.append(self)
        if not self.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="plexus-progress", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def _tick(self) -> None:
        period = self.refresh if self.tty else min(self.heartbeat, 5.0)
        while not self._stop.wait(period):
            try:
                if self.tty:
                    self._draw(self.line())
                elif time.perf_counter() - self._last_line >= self.heartbeat:
                    self._print(self.line())
            except Exception:  # a display must never break a run
                return

    # ----------------------------------------------------------------- what is shown
    def fraction(self, row: dict[str, Any] | None = None) -> float:
        """How far the run is: rounds done / rounds, virtual time / duration (the larger when both are set)."""
        state = self._state
        round_, now = None, None
        if row is not None:
            round_, now = row.get("round"), row.get("time_s")
        if state is not None and state.observer is not None and state.loop is not None:
            round_, now = state.observer.progress_round(), state.loop.now
        parts = []
        if self.rounds and round_ is not None:
            parts.append(min(1.0, float(round_) / self.rounds))
        if self.duration and now is not None:
            parts.append(min(1.0, float(now) / self.duration))
        return max(parts) if parts else 0.0

    def line(self) -> str:
        state = self._state
        wall = time.perf_counter() - self.started
        if state is not None and state.observer is None:  # loading data, building the model and the nodes
            since = time.perf_counter() - state.phase_started
            return f"[{self.label}] {state.phase}... {_clock(since)}"
        fraction = self.fraction(self._row)
        width = 24
        filled = int(round(fraction * width))
        parts = [f"[{self.label}] |{'#' * filled}{'.' * (width - filled)}| {fraction * 100:5.1f}%"]
        round_, now = None, None
        if state is not None and state.observer is not None:
            round_, now = state.observer.progress_round(), state.loop.now
        elif self._row is not None:
            round_, now = self._row.get("round"), self._row.get("time_s")
        if round_ is not None:
            parts.append(f"round {round_}" + (f"/{self.rounds}" if self.rounds else ""))
        if now is not None:
            parts.append(f"t={now:.1f}s")
        row = self._row
        if row is not None:
            metric = next((k for k in row if k not in ("time_s", "round") and not k.endswith("_std")), "metric")
            parts.append(f"{metric}={row.get(metric, math.nan):.4f}")
        running = time.perf_counter() - (state.loop_started or self.started) if state is not None else wall
        if round_ and running > 0:
            parts.append(f"{round_ / running:.2f} rounds/s")
        if 0 < fraction < 1 and running > 1:
            parts.append(f"ETA {_clock(running * (1 - fraction) / fraction)}")
        evaluating = _evaluating(state)
        if evaluating:
            parts.append(evaluating)
        parts.append(f"wall {_clock(wall)}")
        return "  ".join(parts)

    # ----------------------------------------------------------------- output
    def update(self, row: dict[str, Any]) -> None:
        self._row = row
        if not self.enabled:
            return
        if self.tty:
            self._draw(self.line())
        else:
            decile = int(self.fraction(row) * 10)
            if decile > self._last_decile:
                self._last_decile = decile
                self._print(self.line())

    def _draw(self, text: str) -> None:
        with self._lock:
            self.stream.write("\r" + text + "\033[K")
            self.stream.flush()
            self._dirty = True

    def _print(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_line = time.perf_counter()

    def message(self, text: str) -> None:
        """A line (a warning) printed above the bar, which is redrawn below it."""
        with self._lock:
            if self._dirty:
                self.stream.write("\r\033[K")
            self.stream.write(text + "\n")
            self.stream.flush()
            if self._dirty and self.enabled and self.tty:
                self.stream.write(self.line())
                self.stream.flush()

    def close(self) -> None:
        self.detach()
        with self._lock:
            if self._dirty:
                if self.tty and self.enabled:
                    self.stream.write("\r" + self.line() + "\033[K")
                self.stream.write("\n")
                self.stream.flush()
                self._dirty = False


_ACTIVE: list[ProgressBar] = []


def _evaluating(state: Any) -> str:
    observer = getattr(state, "observer", None)
    if observer is None or observer.evaluating is None:
        return ""
    done, total = observer.evaluating
    evaluator = getattr(state, "evaluator", None)
    inner = getattr(evaluator, "progress", None)
    if total > 1:
        return f"evaluating {done}/{total} models"
    if inner is not None and inner[1]:
        return f"evaluating {100 * inner[0] / inner[1]:.0f}%"
    return "evaluating"


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class WarningPrinter(logging.Handler):
    """Prints plexus's warnings and errors on stderr as ``plexus: warning: ...``, above a progress bar if one is
    drawn (they also go to the run's run.log)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kind = "warning" if record.levelno < logging.ERROR else "error"
            text = f"plexus: {kind}: {record.getMessage()}"
            if kind == "error":
                return  # errors reach the user through the exception the run raises
            if _ACTIVE:
                _ACTIVE[-1].message(text)
            else:
                stream = self.stream or sys.stderr
                stream.write(text + "\n")
                stream.flush()
        except Exception:
            self.handleError(record)


@contextmanager
def warnings_on_stderr(stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs, plexus's log warnings print on stderr (once: nested blocks add nothing)."""
    logger = logging.getLogger("plexus")
    if any(isinstance(h, WarningPrinter) for h in logger.handlers):
        yield
        return
    handler = WarningPrinter(stream)
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False  # not a second time through Python's last-resort handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


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
    from plexus.metrics.analysis import labels_for

    rows = []
    # the labels plexus compare gives these runs: D-PSGD names its topology, two runs of one algorithm show
    # what differs between them, a run that did not finish says so
    labels = labels_for(runs)
    for label, result in zip(labels, runs, strict=True):
        s = result.summary
        metric = s.get("metric", "accuracy")
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

"""``plexus traces inspect FILE``: what a trace file holds, before a run depends on it.

The kind of trace is detected from the content (``--kind`` overrides): a pickle or a CSV with computation and
communication columns is a **capacity** trace (:mod:`plexus.sim.traces.capacity`); a headerless N x N table of
numbers is a **latency** matrix (:mod:`plexus.sim.traces.latency`); a CSV with ``device,start,end`` columns, a
``{"devices": ...}`` JSON or a FLASH ``cached_timers.json`` is an **availability** trace
(:mod:`plexus.sim.traces.availability`), and so is a ``synthetic:...`` spec (generated for ``--nodes`` nodes
with ``--seed``). The statistics are computed from what the loaders return, i.e. after the same unit
conversions and repairs a simulation applies, so what is shown is what a run would use.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from plexus.errors import DataError

KINDS = ("capacity", "latency", "availability")
_CAPACITY_COLUMNS = {"computation", "communication", "computation_ms_per_sample", "communication_kbps"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "traces",
        help="inspect capacity, latency and availability traces",
        description="Inspect trace files (device capacities, latency matrices, availability).",
    )
    actions = parser.add_subparsers(dest="traces_command", metavar="ACTION", parser_class=type(parser))
    inspect = actions.add_parser(
        "inspect",
        help="detect a trace's kind and print summary statistics",
        description="Detect the kind of a trace file and print summary statistics (what a run would use).",
    )
    inspect.add_argument("file", metavar="FILE", help="trace file, or a synthetic:diurnal[:...] availability spec")
    inspect.add_argument("--kind", choices=KINDS, help="do not detect the kind; read the file as this kind")
    inspect.add_argument("--json", action="store_true", help="print the statistics as JSON")
    inspect.add_argument("--latency-values", choices=("rtt", "one-way"), default="rtt",
                         help="latency matrix entries: round-trip times (halved, the default) or one-way delays")
    inspect.add_argument("--nodes", type=int, default=100, help="synthetic availability: nodes to generate")
    inspect.add_argument("--seed", type=int, default=0, help="synthetic availability: seed")
    inspect.set_defaults(handler=run_inspect)
    parser.set_defaults(handler=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_inspect(args: argparse.Namespace) -> int:
    summary = inspect_trace(args.file, kind=args.kind, latency_values=args.latency_values, nodes=args.nodes,
                            seed=args.seed)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_summary(summary))
    return 0


def inspect_trace(
    target: str, kind: str | None = None, latency_values: str = "rtt", nodes: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Summary statistics of a trace file (or synthetic availability spec) as a JSON-ready dict."""
    from plexus.sim.traces.availability import is_synthetic_spec

    if is_synthetic_spec(target) and kind in (None, "availability"):
        from plexus.sim.traces.availability import build_availability

        if nodes < 1:
            raise DataError(f"--nodes {nodes}: need at least one node to generate {target}")
        return _availability_summary(build_availability(target, nodes, seed), target)
    path = Path(target)
    if not path.is_file():
        raise DataError(f"trace file {path} does not exist")
    kind = kind or detect_kind(path)
    if kind == "capacity":
        return _capacity_summary(path)
    if kind == "latency":
        return _latency_summary(path, latency_values)
    from plexus.sim.traces.availability import load_availability_trace

    return _availability_summary(load_availability_trace(path), str(path))


def detect_kind(path: Path) -> str:
    """capacity, latency or availability, from the file's first bytes / first line / JSON structure."""
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head[:1] == b"\x80":
        return "capacity"
    try:
        text = head.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # a multi-byte character cut at the end of the chunk is fine
            raise DataError(f"trace file {path} is neither a pickle nor UTF-8 text; give --kind") from None
        text = head[: error.start].decode("utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        from plexus.sim.traces.availability import availability_json_kind

        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"trace file {path} is not valid JSON: {error}") from None
        if availability_json_kind(document):
            return "availability"
        raise DataError(f"trace file {path}: JSON that is neither {{\"devices\": ...}} nor FLASH's cached timers "
                        "(capacity traces are pickles or CSV)")
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    cells = [cell.strip().lower() for cell in first.replace(";", ",").split(",")]
    if {"device", "start", "end"} <= set(cells):
        return "availability"
    if _CAPACITY_COLUMNS & set(cells):
        return "capacity"
    if first and all(_is_number(cell) or not cell for cell in cells):
        return "latency"
    raise DataError(f"trace file {path}: cannot tell its kind from the first line {first[:60]!r}; give --kind "
                    f"{'|'.join(KINDS)}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stats(values: np.ndarray, digits: int = 6) -> dict[str, float | None]:
    if values.size == 0:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {
        "min": round(float(values.min()), digits),
        "median": round(float(np.median(values)), digits),
        "mean": round(float(values.mean()), digits),
        "max": round(float(values.max()), digits),
    }


def _capacity_summary(path: Path) -> dict[str, Any]:
    from plexus.sim.traces.capacity import load_capacity_trace

    trace = load_capacity_trace(path)
    kbps = trace.communication_kbps
    return {
        "file": str(path),
        "kind": "capacity",
        "devices": len(trace),
        "compute_ms_per_sample": _stats(trace.compute_ms_per_sample),
        "bandwidth_kbps": _stats(kbps),
        "bandwidth_MBps": _stats(kbps * 1000.0 / 8.0 / 1e6),
    }


def count_missing_latencies(path: Path) -> int:
    """Entries the latency loader repairs: empty, non-numeric-finite or negative cells (e.g. WonderNetwork's -0.5)."""
    missing = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            for cell in line.strip().replace(";", ",").split(","):
                value = float(cell) if cell.strip() else -1.0
                missing += int(not (math.isfinite(value) and value >= 0))
    return missing


def _latency_summary(path: Path, values: str) -> dict[str, Any]:
    from plexus.sim.traces.latency import load_latency_matrix

    matrix = load_latency_matrix(path, values)
    sites = matrix.shape[0]
    off_diagonal = matrix[~np.eye(sites, dtype=bool)] * 1000.0 if sites > 1 else matrix.ravel() * 1000.0
    asymmetry = np.abs(matrix - matrix.T)[~np.eye(sites, dtype=bool)] * 1000.0 if sites > 1 else np.zeros(1)
    return {
        "file": str(path),
        "kind": "latency",
        "sites": sites,
        "values": values,
        "one_way_ms": _stats(off_diagonal, 4),
        "repaired_entries": count_missing_latencies(path),
        "mean_asymmetry_ms": round(float(asymmetry.mean()), 4),
    }


def _availability_summary(trace: Any, source: str) -> dict[str, Any]:
    shares = trace.online_shares()
    sessions = np.array([rows.shape[0] for rows in trace.intervals], dtype=np.float64)
    lengths = trace.session_lengths()
    percentiles = (5, 25, 50, 75, 95)
    if lengths.size:
        session_s: dict[str, float | None] = {
            f"p{q}": round(float(v), 3) for q, v in zip(percentiles, np.percentile(lengths, percentiles), strict=True)
        }
        session_s["mean"] = round(float(lengths.mean()), 3)
        session_s["max"] = round(float(lengths.max()), 3)
    else:
        session_s = {f"p{q}": None for q in percentiles} | {"mean": None, "max": None}
    periods = trace.window_end - trace.window_start
    return {
        "file": source,
        "kind": "availability",
        "devices": len(trace),
        "dropped_devices": trace.dropped,
        "horizon_s": round(trace.horizon, 3),
        "window_s": _stats(periods, 3),
        "repeat": trace.repeat,
        "online_share": _stats(shares, 4),
        "never_online": int((sessions == 0).sum()),
        "sessions_per_device": _stats(sessions, 3),
        "session_length_s": session_s,
    }


# ---------------------------------------------------------------------------------------------- text output
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e12:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    columns = list(rows[0][1])
    width = max(len(label) for label, _ in rows) + 2
    lines = [" " * width + "".join(f"{name:>12}" for name in columns)]
    for label, stats in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{_fmt(stats.get(name)):>12}" for name in columns))
    return "\n".join(lines) + "\n"


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable form of :func:`inspect_trace`'s dict."""
    kind = summary["kind"]
    if kind == "capacity":
        head = f"capacity trace {summary['file']}: {summary['devices']:,} devices\n"
        return head + _table([
            ("compute (ms/sample)", summary["compute_ms_per_sample"]),
            ("bandwidth (kbps)", summary["bandwidth_kbps"]),
            ("bandwidth (MB/s)", summary["bandwidth_MBps"]),
        ])
    if kind == "latency":
        head = (f"latency matrix {summary['file']}: {summary['sites']} sites, entries read as {summary['values']}, "
                f"{summary['repaired_entries']} missing or negative entries repaired, mean |m[i][j] - m[j][i]| "
                f"{summary['mean_asymmetry_ms']:.3g} ms (one way)\n")
        return head + _table([("one-way latency (ms)", summary["one_way_ms"])])
    dropped = f" ({summary['dropped_devices']} unusable devices left out)" if summary["dropped_devices"] else ""
    head = (f"availability trace {summary['file']}: {summary['devices']:,} devices{dropped}, horizon "
            f"{summary['horizon_s'] / 3600:,.1f} h, {'repeating' if summary['repeat'] else 'not repeating'}, "
            f"{summary['never_online']} never online\n")
    window_h = {k: (None if v is None else v / 3600) for k, v in summary["window_s"].items()}
    text = head + _table([
        ("online share", summary["online_share"]),
        ("sessions per device", summary["sessions_per_device"]),
        ("window (h)", window_h),
    ])
    lengths = summary["session_length_s"]
    text += "session length (s):  " + "  ".join(f"{k} {_fmt(v)}" for k, v in lengths.items()) + "\n"
    return text

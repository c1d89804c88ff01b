"""``plexus compare``: compare finished runs by time-, communication- and resources-to-accuracy.

Reads results folders only (see :mod:`plexus.metrics.analysis`), prints the table, and saves it with the
figures, so a comparison can be rebuilt at any time from the folders alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from plexus.errors import ConfigError

if TYPE_CHECKING:  # analysis (and matplotlib) load only when a comparison is actually made
    from plexus.metrics.analysis import Comparison


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare results folders (TTA, CTA, RTA, accuracy) and plot them",
        description=(
            "Compare finished runs: time, communication and training resources needed to reach a target "
            "accuracy, ratios against the best decentralized-learning run, accuracy against FedAvg. Writes "
            "comparison.csv, comparison.md, convergence.png and round-durations.png."
        ),
    )
    parser.add_argument("results", nargs="+", metavar="RESULT_DIR", help="results folders written by simulate")
    parser.add_argument("--target", metavar="X", default=None,
                        help="target value of the metric (default: the best value every run reaches)")
    parser.add_argument("--out", "-o", metavar="DIR", default=None,
                        help="where to write the table and figures (default: results/compare-<time>)")
    parser.add_argument("--no-figures", action="store_true", help="write the table only")
    parser.set_defaults(handler=run)


def parse_target(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--target {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"--target {text!r} must be a finite number")
    return value


def default_out_dir() -> Path:
    return Path("results") / f"compare-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def report(comparison: Comparison, out: Path, figures: bool = True, stream: TextIO | None = None) -> list[Path]:
    """Write the comparison into ``out`` and print the table (to stdout by default) plus where the files went."""
    stream = stream or sys.stdout
    written = comparison.write(out, figures=figures)
    stream.write(comparison.to_text())
    from plexus.metrics.churn import report_lines

    for line in report_lines([(row.label, run.results) for run, row in zip(comparison.runs, comparison.rows,
                                                                           strict=True)]):
        stream.write(f"churn: {line}\n")
    stream.write(f"wrote {', '.join(path.name for path in written)} to {out}\n")
    return written


def run(args: argparse.Namespace) -> int:
    from plexus.metrics.analysis import compare
    from plexus.metrics.results import prepare_folder

    target = parse_target(args.target)
    out = Path(args.out) if args.out else default_out_dir()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder path")
    comparison = compare(args.results, target=target)
    # an existing comparison folder is updated in place (a comparison is rebuilt from the results folders)
    prepare_folder(out, must_be_new=False, what="comparison folder")
    report(comparison, out, figures=not args.no_figures)
    return 0

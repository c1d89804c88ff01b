"""Run the churn scenarios of issue 10 on the embedded digits task and write their comparisons to ``docs/churn/``.

    .venv/bin/python examples/churn/churn_figures.py [--out docs/churn] [--flash PATH] [--flash-hours 24]

Scenarios (100 nodes, digits, the task's preset otherwise; Plexus with MoDeST's membership):

- ``crash``: MoDeST's 80-of-100 crash experiment (``--churn modest-crash``: 5 nodes every 60 s from 300 s) against
  the same run without churn, both for 2,400 virtual seconds;
- ``aggregator``: the aggregator of every 10th round crashes as it completes the round (``--churn
  crash-aggregator``), one aggregator per round, 100 rounds;
- ``join``: MoDeST's join experiment (``--churn modest-join``: 90 nodes start, 10 join one a minute), 1,200 s;
- ``flash``: every node follows a device of the FLASH / FLHetBench availability trace (``--availability-trace``),
  ``--flash-hours`` of virtual time (skipped when the trace is absent).

Each folder gets the comparison (``comparison.md``, ``convergence.png``, ``churn.png``) and its ``summary.md``;
the top ``summary.md`` gathers those present, the figures quoted in the README. Results folders go to ``--runs``
(default ``results/churn-figures``); ``--reuse`` rebuilds the figures from folders already there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import plexus
from plexus.metrics.analysis import compare
from plexus.metrics.churn import churn_report
from plexus.metrics.results import Results

ROOT = Path(__file__).resolve().parents[2]
FLASH = ROOT.parent / "shared" / "datasets" / "device-heterogeneity-flash-flhetbench" / "flhetbench_cached_timers.json"


REUSE = False


def simulate(runs: Path, name: str, **values: object) -> Results:
    folder = runs / name
    if REUSE and (folder / "summary.json").is_file():
        return Results.load(folder)
    print(f"running {name} ...", file=sys.stderr, flush=True)
    return plexus.simulate({"nodes": 100, "membership": "modest", "out": str(folder), **values})


def write(out: Path, name: str, results: list[Results]) -> list[str]:
    comparison = compare([r.directory for r in results])
    target = out / name
    comparison.write(target)
    lines = [f"## {name}", ""]
    for row, result in zip(comparison.rows, results, strict=True):
        summary = result.summary
        lines.append(f"- **{row.label}**: {summary['rounds_completed']} rounds in {summary['virtual_seconds']:.0f} s, "
                     f"final accuracy {summary['final_accuracy']:.4f} (best {summary['best_accuracy']:.4f}), "
                     f"stalled: {summary['stalled']}")
        report = churn_report(result)
        if report:
            lines.append("  - " + json.dumps(report, default=float))
    lines += ["", f"Figures: `{name}/churn.png`, `{name}/convergence.png`; table: `{name}/comparison.md`.", ""]
    return lines


def save(out: Path, name: str, lines: list[str]) -> None:
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "summary.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "churn"))
    parser.add_argument("--runs", default="results/churn-figures")
    parser.add_argument("--flash", default=str(FLASH))
    parser.add_argument("--flash-hours", type=float, default=24.0)
    parser.add_argument("--only", default="crash,aggregator,join,flash")
    parser.add_argument("--reuse", action="store_true", help="use results folders already in --runs")
    args = parser.parse_args()
    global REUSE
    REUSE = args.reuse
    out, runs = Path(args.out), Path(args.runs)
    only = set(args.only.split(","))
    if "crash" in only:
        crash = simulate(runs, "crash", duration=2400.0, churn="modest-crash")
        calm = simulate(runs, "no-churn", duration=2400.0)
        lines = write(out, "crash", [crash, calm])
        gap = calm.summary["final_accuracy"] - crash.summary["final_accuracy"]
        lines += [f"Final accuracy, no churn minus 80 crashed: {gap:+.4f} ({100 * gap:+.2f} points).", ""]
        save(out, "crash", lines)
    if "aggregator" in only:
        lost = simulate(runs, "aggregator-crash", rounds=100, churn="crash-aggregator")
        calm = simulate(runs, "aggregator-no-churn", rounds=100)
        save(out, "aggregator", write(out, "aggregator", [lost, calm]))
    if "join" in only:
        save(out, "join", write(out, "join", [simulate(runs, "join", duration=1200.0, churn="modest-join")]))
    if "flash" in only:
        if Path(args.flash).is_file():
            flash = simulate(runs, "flash", duration=args.flash_hours * 3600.0, availability_trace=args.flash,
                             eval_every=20)
            save(out, "flash", write(out, "flash", [flash]))
        else:
            print(f"skipping flash: {args.flash} does not exist", file=sys.stderr)
    lines = ["# Churn scenarios (generated by examples/churn/churn_figures.py)", ""]
    for name in ("crash", "aggregator", "join", "flash"):
        part = out / name / "summary.md"
        if part.is_file():
            lines.append(part.read_text(encoding="utf-8"))
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

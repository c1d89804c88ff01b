"""How much of a simulation's wall time goes to the simulator itself rather than to learning.

Runs Plexus with 1000 nodes, s = 13, 200 rounds on the embedded digits task, and prints the split of the event
loop's wall time between local training, evaluation and everything else (event handling, network model,
sampling, aggregation, bookkeeping). Last line: ``overhead_fraction=<x>``, the share outside training and
evaluation (target: below 0.10), the median of ``--repeat`` identical runs in this process: on a shared
machine one run's figure moves by about +-0.005. ``--profile`` prints where the overhead goes.

    .venv/bin/python bench/simulator_overhead.py [--nodes 1000 --rounds 200 --repeat 3 --profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
from typing import Any

import plexus


def run_once(config: dict[str, Any], profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        summary = plexus.simulate({**config, "out": out}).summary
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            print(text.getvalue())
    return summary


def report(summary: dict[str, Any]) -> None:
    loop = summary["loop_wall_seconds"]
    train = summary["wall_train_seconds"]
    evaluation = summary["wall_eval_seconds"]
    other = loop - train - evaluation
    print(f"setup (data, model, profiles) {summary['setup_wall_seconds']:.2f} s; event loop {loop:.2f} s")
    print(f"  training   {train:8.3f} s  ({train / loop:6.1%})")
    print(f"  evaluation {evaluation:8.3f} s  ({evaluation / loop:6.1%})")
    print(f"  simulator  {other:8.3f} s  ({other / loop:6.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--sample-size", type=int, default=13)
    parser.add_argument("--algorithm", default="plexus")
    parser.add_argument("--repeat", type=int, default=3, help="identical runs; the median fraction is reported")
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time (one run; "
                        "the profiler itself inflates the simulator's share)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    config = {"algorithm": args.algorithm, "nodes": args.nodes, "sample_size": args.sample_size,
              "rounds": args.rounds, "eval_every": 10}
    runs = 1 if args.profile else args.repeat
    summaries = []
    for index in range(runs):
        summary = run_once(config, args.profile)
        summaries.append(summary)
        if index == 0:
            print(f"{args.algorithm}: {args.nodes} nodes, s={args.sample_size}, {summary['rounds_completed']} "
                  f"rounds, {summary['events_processed']:,} events, {summary['training_jobs']:,} training jobs, "
                  f"final accuracy {summary['final_accuracy']:.4f}")
        print(f"run {index + 1}/{runs}: overhead {summary['overhead_fraction']:.4f}")
    fractions = [s["overhead_fraction"] for s in summaries]
    median = statistics.median(fractions)
    report(min(summaries, key=lambda s: abs(s["overhead_fraction"] - median)))
    print(f"overhead_fraction={median:.4f}")


if __name__ == "__main__":
    main()

"""How much of a simulation's wall time goes to the simulator itself rather than to learning.

Two scenarios, both at 1000 nodes (``--scenario plexus``, ``dpsgd`` or ``both``, the default):

- ``plexus``: Plexus, s = 13, 200 rounds on the embedded digits task (goal: overhead below 0.10);
- ``dpsgd``: D-PSGD on a random 10-regular graph, 10 rounds on Synthetic-IID (goal: below 0.15), where every
  node trains and sends ten models every round (about 135,000 events).

For each, it prints the split of the event loop's wall time between local training, evaluation and everything
else (event handling, network model, sampling, aggregation, bookkeeping), and ``overhead_fraction=<x>``: the
share outside training and evaluation, the median of ``--repeat`` identical runs in this process (on a shared
machine one run's figure moves by several hundredths). The CPU and the load average at the start and end are
printed with the figures, since other processes on the machine inflate both shares unevenly. ``--profile``
prints where the overhead goes (one run; the profiler itself inflates the simulator's share).

    .venv/bin/python bench/simulator_overhead.py [--scenario both --repeat 3 --profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import tempfile
from typing import Any

import plexus

SCENARIOS: dict[str, dict[str, Any]] = {
    "plexus": {"algorithm": "plexus", "task": "digits", "nodes": 1000, "sample_size": 13, "rounds": 200,
               "eval_every": 10, "goal": 0.10},
    "dpsgd": {"algorithm": "dpsgd", "task": "synthetic-iid", "nodes": 1000, "topology": "regular:10",
              "rounds": 10, "goal": 0.15},
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


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
    print(f"  setup (data, model, profiles) {summary['setup_wall_seconds']:.2f} s; event loop {loop:.2f} s")
    print(f"    training   {train:8.3f} s  ({train / loop:6.1%})")
    print(f"    evaluation {evaluation:8.3f} s  ({evaluation / loop:6.1%})")
    print(f"    simulator  {other:8.3f} s  ({other / loop:6.1%}; "
          f"{other / max(1, summary['events_processed']) * 1e6:.1f} us per event)")


def scenario(name: str, args: argparse.Namespace) -> float:
    settings = dict(SCENARIOS[name])
    goal = settings.pop("goal")
    if args.nodes:
        settings["nodes"] = args.nodes
    if args.rounds:
        settings["rounds"] = args.rounds
    runs = 1 if args.profile else args.repeat
    summaries = []
    for index in range(runs):
        summary = run_once(settings, args.profile)
        summaries.append(summary)
        if index == 0:
            print(f"{name}: {settings['algorithm']} on {settings['task']}, {settings['nodes']} nodes, "
                  f"{summary['rounds_completed']} rounds, {summary['events_processed']:,} events, "
                  f"{summary['training_jobs']:,} training jobs, final accuracy {summary['final_accuracy']:.4f}")
        print(f"  run {index + 1}/{runs}: overhead {summary['overhead_fraction']:.4f} "
              f"(loop {summary['loop_wall_seconds']:.2f} s)")
    fractions = [s["overhead_fraction"] for s in summaries]
    median = statistics.median(fractions)
    report(min(summaries, key=lambda s: abs(s["overhead_fraction"] - median)))
    verdict = "meets" if median < goal else "misses"
    print(f"{name}: overhead_fraction={median:.4f} (goal < {goal:.2f}: {verdict})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("plexus", "dpsgd", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=None, help="override the scenario's 1000 nodes")
    parser.add_argument("--rounds", type=int, default=None, help="override the scenario's rounds")
    parser.add_argument("--repeat", type=int, default=3, help="identical runs; the median fraction is reported")
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time (one run; "
                        "the profiler itself inflates the simulator's share)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    print(f"CPU: {cpu_name()}; load average at start: {load_average()}")
    names = ["plexus", "dpsgd"] if args.scenario == "both" else [args.scenario]
    results = {name: scenario(name, args) for name in names}
    print(f"load average at end: {load_average()}")
    print(" ".join(f"{name}_overhead_fraction={value:.4f}" for name, value in results.items()))


if __name__ == "__main__":
    main()

"""How much of a simulation's wall time goes to the simulator itself rather than to learning.

Runs Plexus with 1000 nodes, s = 13, 200 rounds on the embedded digits task, and prints the split of the event
loop's wall time between local training, evaluation and everything else (event handling, network model,
sampling, aggregation, bookkeeping). Last line: ``overhead_fraction=<x>``, the share outside training and
evaluation (target: below 0.10). ``--profile`` prints where the overhead goes.

    .venv/bin/python bench/simulator_overhead.py [--nodes 1000 --rounds 200 --profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile

import plexus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--sample-size", type=int, default=13)
    parser.add_argument("--algorithm", default="plexus")
    parser.add_argument("--profile", action="store_true", help="print the top functions by own time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = {"algorithm": args.algorithm, "nodes": args.nodes, "sample_size": args.sample_size,
                  "rounds": args.rounds, "eval_every": 10, "out": out}
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        summary = plexus.simulate(config).summary
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            print(text.getvalue())
    loop = summary["loop_wall_seconds"]
    train = summary["wall_train_seconds"]
    evaluation = summary["wall_eval_seconds"]
    other = loop - train - evaluation
    print(f"{args.algorithm}: {args.nodes} nodes, s={args.sample_size}, {summary['rounds_completed']} rounds, "
          f"{summary['events_processed']:,} events, {summary['training_jobs']:,} training jobs")
    print(f"setup (data, model, profiles) {summary['setup_wall_seconds']:.2f} s; event loop {loop:.2f} s")
    print(f"  training   {train:8.3f} s  ({train / loop:6.1%})")
    print(f"  evaluation {evaluation:8.3f} s  ({evaluation / loop:6.1%})")
    print(f"  simulator  {other:8.3f} s  ({other / loop:6.1%})")
    print(f"final accuracy {summary['final_accuracy']:.4f}")
    print(f"overhead_fraction={summary['overhead_fraction']:.4f}")


if __name__ == "__main__":
    main()

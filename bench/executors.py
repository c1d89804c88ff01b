"""Executors side by side on the same run: wall time of the event loop, and whether the metrics are identical.

Default: D-PSGD with 100 nodes on CIFAR-10 (GN-LeNet, 10-regular graph), 3 rounds, ``inline`` then ``pool``
(goal on 2 cores: pool at least 1.6x faster). ``--executors inline,ray`` compares a local Ray instance (needs
``plexus[ray]``); ``--executors inline,batched --device cuda`` the batched GPU executor. Every run after the first
is checked against the first: ``identical`` when metrics.csv and rounds.csv match byte for byte (inline, pool and
ray must), else the largest accuracy difference (batched is within floating-point tolerance).

The CPU and the load average are printed with the figures: other processes on the machine distort the ratio
(a pool of one worker per core competes with them for the same cores).

    .venv/bin/python bench/executors.py [--data ../shared/datasets/cifar10-jpg] [--executors inline,pool]
        [--rounds 3 --nodes 100 --workers N] [--eval-samples N --eval-nodes N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import plexus
from plexus.metrics.results import METRICS_FILE, ROUNDS_FILE

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg"


def main() -> None:
    from simulator_overhead import cpu_name, load_average  # type: ignore[import-not-found]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executors", default="inline,pool", help="comma list; ratios are against the first")
    parser.add_argument("--task", default="cifar10")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--algorithm", default="dpsgd")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--goal", type=float, default=1.6, help="speed-up the second executor should reach")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="evaluate on a fixed subset of this many test images (default: all 10,000, about 8 s "
                        "per node model on a quiet core)")
    parser.add_argument("--eval-nodes", type=int, default=None, help="node models evaluated (default: all 100)")
    args = parser.parse_args()
    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    config: dict[str, Any] = {"algorithm": args.algorithm, "task": args.task, "nodes": args.nodes,
                              "rounds": args.rounds, "eval_every": args.rounds}
    if args.task not in ("digits", "synthetic", "synthetic-iid"):
        config["data"] = args.data
    for name in ("eval_samples", "eval_nodes"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    print(f"CPU: {cpu_name()}; load average at start: {load_average()}")
    print(f"{args.algorithm} on {args.task}, {args.nodes} nodes, {args.rounds} rounds")
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        first: Path | None = None
        baseline: list[dict[str, Any]] = []
        for name in executors:
            extra: dict[str, Any] = {"executor": name}
            if name in ("pool", "ray") and args.workers:
                extra["workers"] = args.workers
            if name == "batched":
                extra["device"] = args.device
            started = time.perf_counter()
            result = plexus.simulate({**config, **extra, "out": os.path.join(out, name)})
            total = time.perf_counter() - started
            summary = result.summary
            walls[name] = summary["loop_wall_seconds"]
            line = (f"{name:8s} loop {summary['loop_wall_seconds']:8.2f} s  total {total:8.2f} s  "
                    f"training {summary['wall_train_seconds']:8.2f} s  eval {summary['wall_eval_seconds']:6.2f} s  "
                    f"final accuracy {summary['final_accuracy']:.4f}")
            directory = Path(out) / name
            if first is None:
                first = directory
                baseline = result.metrics
            else:
                same = all((directory / f).read_bytes() == (first / f).read_bytes()
                           for f in (METRICS_FILE, ROUNDS_FILE))
                if same:
                    line += "  identical"
                else:
                    metric = summary["metric"]
                    gap = max(abs(a[metric] - b[metric]) for a, b in zip(result.metrics, baseline, strict=False))
                    line += f"  differs (largest {metric} gap {gap:.4f})"
                line += f"  speed-up {walls[executors[0]] / walls[name]:.2f}x"
            print(line, flush=True)
    print(f"load average at end: {load_average()}")
    if len(executors) > 1:
        ratio = walls[executors[0]] / walls[executors[1]]
        verdict = "meets" if ratio >= args.goal else "misses"
        print(f"{executors[1]}_speedup={ratio:.2f} (goal >= {args.goal}: {verdict})")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE))
    main()

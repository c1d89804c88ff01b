"""The batched executor against inline on the paper's heaviest DL setting: D-PSGD, GN-LeNet, CIFAR-10.

Part 1 (``--compare``): one D-PSGD round with ``--nodes`` nodes (default 1000) on a 10-regular graph, trained
``inline`` (one model after another on the CPU) and ``batched`` on ``--device`` (every node's round trained as
stacked models in a few ``vmap`` passes); prints each round's wall time and the ratio (goal on a GPU: at least
20x). Part 2 (``--project``): the paper's Figure 3 setting (D-PSGD, 1000 nodes, CIFAR-10, ``--full-rounds``
rounds, default the task's preset of 1000) run batched for ``--budget`` wall seconds, then the measured seconds
per round and the projected wall time of the full run.

Without a GPU, ``--device cpu`` runs the same code on the CPU (slower; use fewer nodes: ``--nodes 50``), which
is how it is tested on machines without one.

    .venv/bin/python bench/gpu_batched.py --device cuda [--data ../shared/datasets/cifar10-jpg]
    .venv/bin/python bench/gpu_batched.py --device cpu --nodes 50 --budget 60
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import plexus

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpg"


def one_round(config: dict[str, Any], out: str) -> tuple[float, dict[str, Any]]:
    result = plexus.simulate({**config, "rounds": 1, "eval_every": 1, "out": out})
    summary = result.summary
    # evaluation of node models is part of the round's cost in both; setup (data, model) is not
    return summary["loop_wall_seconds"], summary


def main() -> None:
    sys.path.insert(0, str(HERE))
    from simulator_overhead import cpu_name, load_average  # type: ignore[import-not-found]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--batch-models", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=300.0, help="wall seconds for the projection run")
    parser.add_argument("--full-rounds", type=int, default=1000)
    parser.add_argument("--skip-inline", action="store_true", help="batched only (the inline round takes long)")
    parser.add_argument("--no-project", action="store_true")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"CPU: {cpu_name()}; GPU: {gpu}; load average at start: {load_average()}")
    config: dict[str, Any] = {"algorithm": "dpsgd", "task": "cifar10", "data": args.data, "nodes": args.nodes,
                              "topology": "regular:10"}
    with tempfile.TemporaryDirectory() as out:
        batched, summary = one_round({**config, "executor": "batched", "device": args.device,
                                      "batch_models": args.batch_models}, out + "/batched")
        print(f"batched ({args.device}): one round of {args.nodes} nodes {batched:.2f} s "
              f"(training {summary['wall_train_seconds']:.2f} s, evaluation {summary['wall_eval_seconds']:.2f} s)",
              flush=True)
        if not args.skip_inline:
            inline, summary = one_round(config, out + "/inline")
            print(f"inline (cpu): one round of {args.nodes} nodes {inline:.2f} s "
                  f"(training {summary['wall_train_seconds']:.2f} s)", flush=True)
            ratio = inline / batched
            print(f"batched_speedup={ratio:.1f} (goal on a GPU >= 20: {'meets' if ratio >= 20 else 'misses'})")
        if not args.no_project:
            # runs of 1, 2, 4, ... rounds until the wall budget would be exceeded; the longest gives the rate
            started = time.perf_counter()
            rounds, per_round = 1, math.nan
            while True:
                t0 = time.perf_counter()
                summary = plexus.simulate({**config, "executor": "batched", "device": args.device,
                                           "batch_models": args.batch_models, "rounds": rounds,
                                           "eval_every": 20, "out": out + f"/project{rounds}"}).summary
                per_round = summary["loop_wall_seconds"] / max(1, summary["rounds_completed"])
                print(f"  {summary['rounds_completed']} rounds: loop {summary['loop_wall_seconds']:.1f} s "
                      f"({per_round:.2f} s per round, accuracy {summary['final_accuracy']:.4f})", flush=True)
                if time.perf_counter() - started + 2.5 * (time.perf_counter() - t0) > args.budget:
                    break
                rounds *= 2
            total = per_round * args.full_rounds
            print(f"projected full run ({args.full_rounds} rounds of D-PSGD, {args.nodes} nodes, CIFAR-10, "
                  f"{args.device}): {total / 3600:.2f} h ({per_round:.2f} s per round)")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()

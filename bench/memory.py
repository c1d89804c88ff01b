"""Peak resident memory of the two largest decentralized settings, each in a fresh process.

- ``dpsgd-cifar``: D-PSGD, 1000 GN-LeNet nodes (85,354 parameters each) on a 10-regular graph, CIFAR-10
  (goal: under 4 GB);
- ``dpsgd-femnist``: D-PSGD, 355 nodes of the FEMNIST CNN (1,690,046 parameters each), LEAF's natural
  partition (goal: under 16 GB).

Node models are flat float32 vectors; a node holds its current model and, during a round, its trained model and
the models its neighbours sent (shared with the sender, never copied); optimizer state exists only inside a
training job. With ``--stand-in`` (or when the dataset is absent) the data are random tensors of the real
shapes and counts, which is what memory depends on. Each scenario runs ``--rounds`` rounds (default 1) in a
child process and reports its peak RSS (``ru_maxrss``).

    .venv/bin/python bench/memory.py [--scenario dpsgd-cifar|dpsgd-femnist|both] [--rounds 1] [--stand-in]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"
GOALS_GB = {"dpsgd-cifar": 4.0, "dpsgd-femnist": 16.0}
SCENARIOS: dict[str, dict[str, Any]] = {
    "dpsgd-cifar": {"algorithm": "dpsgd", "task": "cifar10", "nodes": 1000, "topology": "regular:10",
                    "data": str(DATASETS / "cifar10-jpg"), "shapes": ((3, 32, 32), 50_000, 10_000, 10)},
    "dpsgd-femnist": {"algorithm": "dpsgd", "task": "femnist", "nodes": 355, "topology": "regular:10",
                      "data": str(DATASETS / "leaf-femnist-niid-sf005"), "shapes": ((1, 28, 28), 35_000, 4_000, 62)},
}

CHILD = r"""
import json, resource, sys, tempfile
import numpy as np, torch
import plexus
from plexus.learning import tasks
from plexus.learning.tasks.base import TaskData, TensorDataset
settings = json.loads(sys.argv[1])
shapes = settings.pop("shapes")
stand_in = settings.pop("stand_in")
if stand_in:
    real = tasks.task_class(settings["task"])
    shape, train, test, classes = shapes
    nodes = settings["nodes"]

    class StandIn(real):
        def load(self, data_path, seed):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(train, *shape, generator=g)
            y = torch.randint(0, classes, (train,), generator=g)
            users = np.array_split(np.arange(train), nodes)
            return TaskData(TensorDataset(x, y), TensorDataset(torch.randn(test, *shape, generator=g),
                                                               torch.randint(0, classes, (test,), generator=g)),
                            labels=y.numpy(), users=users, info={"classes": classes})
    tasks.TASKS[settings["task"]] = StandIn
    settings.pop("data")
with tempfile.TemporaryDirectory() as out:
    summary = plexus.simulate({**settings, "out": out}).summary
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak, "rounds": summary["rounds_completed"],
                  "parameters": summary["model_parameters"], "loop_wall_seconds": summary["loop_wall_seconds"]}))
"""


def measure(name: str, rounds: int, stand_in: bool, python: str = sys.executable,
            nodes: int | None = None) -> dict[str, Any]:
    """Run one scenario in a child process; returns its peak RSS and what it ran."""
    settings = dict(SCENARIOS[name])
    settings.update(rounds=rounds, eval_every=rounds, stand_in=stand_in or not Path(settings["data"]).exists())
    if nodes is not None:
        settings["nodes"] = nodes
    completed = subprocess.run([python, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True,
                               check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["stand_in"] = settings["stand_in"]
    return result


def main() -> None:
    sys.path.insert(0, str(HERE))
    from simulator_overhead import cpu_name, load_average  # type: ignore[import-not-found]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "both"), default="both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stand-in", action="store_true", help="random tensors of the real shapes")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; load average at start: {load_average()}")
    names = list(SCENARIOS) if args.scenario == "both" else [args.scenario]
    for name in names:
        result = measure(name, args.rounds, args.stand_in)
        gb = result["peak_bytes"] / 2**30
        goal = GOALS_GB[name]
        data = "stand-in data" if result["stand_in"] else "real data"
        verdict = "meets" if result["peak_bytes"] < goal * 1e9 else "misses"
        print(f"{name}: {SCENARIOS[name]['nodes']} nodes x {result['parameters']:,} parameters, "
              f"{result['rounds']} round(s), {data}: peak RSS {gb:.2f} GiB (goal < {goal:g} GB: {verdict}; "
              f"loop {result['loop_wall_seconds']:.0f} s)", flush=True)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()

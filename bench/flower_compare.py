"""This simulator against Flower's simulation engine on the same FedAvg work, in one run.

Both run FedAvg with 100 clients, 13 per round, every selected client aggregated (sf = 1, uniform average),
5 local SGD steps of batch 20, on the same data, partition, initial model and trainer (Flower's clients call this
package's ``LocalTrainer``; see bench/flower_side.py), the same 13 clients sampled each round, and the global
model evaluated on the test set after every round. Two workloads: ``digits`` (the embedded task, a 4,810-parameter
MLP, 100 rounds) and ``cifar10`` (GN-LeNet, 85,354 parameters, ``--cifar-rounds`` rounds): Flower's per-round
cost is mostly its message polling, so the heavier model narrows the gap.

For each side it prints the wall time per round (median interval between two rounds' evaluations, so start-up
and the first round are left out on both sides), the end-to-end wall time
(process start to exit), the peak memory of the whole process tree (PSS: Ray's processes included, shared pages
counted once), and the accuracy at equal rounds: ``identical`` when every round's accuracy is equal, else the
largest difference. Ratios are Flower / this simulator.

Flower is installed only in the benchmark's own environment, ``bench/.flower-venv`` (``flwr[simulation]`` and this
package, created on first use with ``--setup``; it needs PyPI):

    .venv/bin/python bench/flower_compare.py --setup
    .venv/bin/python bench/flower_compare.py [--tasks digits,cifar10] [--cifar-rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".flower-venv"
FLOWER = "flwr[simulation]==1.42.0"
DEFAULT_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10-jpg"

PLEXUS_CHILD = r"""
import json, sys, tempfile, time
started = time.perf_counter()
import plexus
from plexus.config import config_from_mapping, resolve
from plexus.sim.simulation import run_simulation
settings = json.loads(sys.argv[1])
walls = []
with tempfile.TemporaryDirectory() as out:
    config = resolve(config_from_mapping({**settings, "algorithm": "fedavg", "success_fraction": 1.0,
                                          "eval_every": 1, "out": out}))
    result = run_simulation(config, progress=lambda row: walls.append(time.perf_counter() - started))
rows = [{"round": r["round"], "metric": r[result.metric], "loss": r["loss"], "wall": w}
        for r, w in zip(result.metrics, walls)]
print(json.dumps({"rows": rows, "loop": result.summary["loop_wall_seconds"],
                  "rounds": result.summary["rounds_completed"], "wall": time.perf_counter() - started}))
"""


def setup(venv: Path) -> None:
    """Create the benchmark's own environment: Flower with its Ray extra, this package and the same torch."""
    import torch

    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_requirement = f"torch=={torch.__version__.split('+')[0]}"
    subprocess.run([str(python), "-m", "pip", "install", "-q", torch_requirement, FLOWER, "-e", str(REPO)],
                   check=True)


def pss_of_tree(root: int) -> int:
    """PSS in bytes of ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def measured(command: list[str]) -> tuple[dict[str, Any], float, int]:
    """Run ``command`` (which prints one JSON line last), sampling its process tree's PSS; returns the JSON,
    the wall seconds and the peak PSS."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], pss_of_tree(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed ({process.returncode}):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), wall, peak[0]


def per_round(walls: list[float]) -> float:
    intervals = [b - a for a, b in zip(walls, walls[1:], strict=False)]
    return statistics.median(intervals) if intervals else (walls[0] if walls else float("nan"))


def compare(task: str, rounds: int, data: str | None, python: Path, executor: str = "inline") -> None:
    settings: dict[str, Any] = {"task": task, "nodes": 100, "sample_size": 13, "rounds": rounds, "seed": 0,
                                "local_steps": 5, "batch_size": 20}
    if data:
        settings["data"] = data
    ours, our_wall, our_pss = measured([sys.executable, "-c", PLEXUS_CHILD,
                                        json.dumps({**settings, "executor": executor})])
    our_round = per_round([row["wall"] for row in ours["rows"]])
    theirs, their_wall, their_pss = measured([str(python), str(HERE / "flower_side.py"), json.dumps(settings)])
    their_round = per_round([row["wall"] for row in theirs["rows"]])
    mine = {row["round"]: row["metric"] for row in ours["rows"]}
    flower = {row["round"]: row["metric"] for row in theirs["rows"]}
    common = sorted(set(mine) & set(flower))
    gaps = [abs(mine[r] - flower[r]) for r in common]
    same = bool(common) and max(gaps) == 0.0
    print(f"{task}: {rounds} rounds, 100 clients, 13 per round (plexus executor: {executor}; Flower: one Ray "
          f"actor per core)")
    print(f"  {'':8s} {'s/round':>9s} {'end-to-end s':>13s} {'peak PSS MB':>12s} {'final accuracy':>15s}")
    print(f"  {'plexus':8s} {our_round:9.4f} {our_wall:13.1f} {our_pss / 1e6:12.0f} {mine[max(mine)]:15.4f}")
    print(f"  {'flower':8s} {their_round:9.4f} {their_wall:13.1f} {their_pss / 1e6:12.0f} "
          f"{flower[max(flower)]:15.4f}")
    curves = "identical" if same else f"largest accuracy difference {max(gaps) if gaps else float('nan'):.4f}"
    print(f"  ratios (flower / plexus): per round {their_round / our_round:.1f}x, end to end "
          f"{their_wall / our_wall:.1f}x, memory {their_pss / max(1, our_pss):.1f}x; accuracy at equal rounds "
          f"({len(common)} rounds): {curves}", flush=True)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from simulator_overhead import cpu_name, load_average  # type: ignore[import-not-found]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help=f"create {VENV.name} (Flower and this package)")
    parser.add_argument("--venv", default=str(VENV), help="the benchmark's environment with Flower")
    parser.add_argument("--tasks", default="digits,cifar10")
    parser.add_argument("--digits-rounds", type=int, default=100)
    parser.add_argument("--cifar-rounds", type=int, default=20)
    parser.add_argument("--cifar-data", default=str(DEFAULT_CIFAR))
    parser.add_argument("--executor", default=None, help="this simulator's executor (default: inline on digits, "
                        "where a job takes about a millisecond, pool on CIFAR-10, like Flower's one Ray actor per "
                        "core)")
    args = parser.parse_args()
    venv = Path(args.venv)
    if args.setup:
        setup(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        parser.error(f"{venv} does not exist: run with --setup first (installs {FLOWER} there)")
    print(f"CPU: {cpu_name()}; load average at start: {load_average()}")
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        if task == "digits":
            compare("digits", args.digits_rounds, None, python, args.executor or "inline")
        elif task == "cifar10":
            compare("cifar10", args.cifar_rounds, args.cifar_data, python, args.executor or "pool")
        else:
            parser.error(f"unknown task {task!r} (digits or cifar10)")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()

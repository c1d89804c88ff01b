"""DivShare against AD-PSGD and Swift under communication stragglers (Biswas et al., WWW 2025, section 5).

60 nodes on CIFAR-10 (non-IID: 5 label-sorted shards per node, decentralizepy's GN-LeNet ``gn-lenet-dpy``, 89,834
parameters, plain SGD lr 0.05, batch 8), every node's links at 60 Mbit/s except the stragglers' at 10-13 Mbit/s,
first with 7 and then with 30 stragglers; DivShare (Omega 0.1, J 6), AD-PSGD (Lian et al.) and Swift (J 6) in
each. Then the three on MovieLens (ml-latest-small, matrix factorisation, RMSE; 60 nodes, 7 stragglers).

For every run it prints the time to the target accuracy (TTA, virtual seconds), the best accuracy (RMSE) and
more; per scenario the comparison tables and figures are written with ``plexus compare``'s machinery into
``--out``. The target is the highest accuracy every CIFAR-10 run reaches, unless ``--target`` is given. The last
line is ``divshare_tta_speedup_vs_adpsgd=<x>``: AD-PSGD's TTA over DivShare's, the largest over the straggler
scenarios (the paper's "up to 3.9x"; each scenario's own ratio is printed above it).

**What is scaled down, and why.** The machine this runs on trains GN-LeNet at 35-70 ms per SGD step of batch 8
(one core, shared), so the paper's 128 local steps per iteration, 1,000 iterations and evaluation of every node on
the whole test set would take days. By default each iteration trains ``--local-steps 2`` steps, runs last
``--duration 30`` virtual seconds, every ``--eval-interval 6`` s the observer evaluates ``--eval-nodes 6`` node
models (a fixed seeded sample) on ``--eval-samples 300`` test images (a fixed seeded subset). What is *kept* is the
paper's ratio of communication to computation: an iteration's compute takes ``--iteration-seconds 1.0`` virtual
seconds whatever the number of steps (the per-sample time is set from it), so a fast node can send its six models'
worth of fragments (2.2 MB) in about 0.3 s of its 1 s iteration and a straggler cannot (about 1.5 s at 11.5
Mbit/s). Learning per virtual second is therefore far slower than the paper's and accuracies stay low; TTA ratios
between algorithms, not absolute times, are what this measures. ``--paper`` runs the paper's settings (128 local
steps, 1,800 virtual seconds, all nodes on the whole test set every 60 s): days of CPU time.

    .venv/bin/python bench/divshare_stragglers.py [--stragglers 7,30] [--duration 30] [--paper] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import plexus
from plexus.metrics.analysis import compare

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PLEXUS_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
ALGORITHMS = ("divshare", "adpsgd", "swift")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scenario_config(args: argparse.Namespace, latency_file: Path) -> dict[str, Any]:
    """What every CIFAR-10 run shares."""
    steps = 128 if args.paper else args.local_steps
    batch = 8
    return {
        "task": "cifar10", "data": str(args.data), "model": "gn-lenet-dpy", "nodes": 60, "partition": "shards:5",
        "batch_size": batch, "lr": 0.05, "momentum": 0.0, "local_steps": steps,
        "sample_seconds": args.iteration_seconds / (steps * batch),
        "link_mbps": 60.0, "straggler_mbps": "10-13", "latency_matrix": str(latency_file),
        "latency_values": "one-way", "duration": 1800.0 if args.paper else args.duration,
        "eval_interval": 60.0 if args.paper else args.eval_interval,
        "eval_nodes": None if args.paper else args.eval_nodes,
        "eval_samples": None if args.paper else args.eval_samples,
        "seed": args.seed, "send_concurrency": args.send_concurrency, "stall_timeout": math.inf,
    }


ALGORITHM_OPTIONS: dict[str, dict[str, Any]] = {
    "divshare": {"fragment_fraction": 0.1, "degree": 6},
    "swift": {"degree": 6},
    "adpsgd": {},
}


def simulate(job: tuple[dict[str, Any], str, str]) -> tuple[str, dict[str, Any], float]:
    """One run (in this process or a worker): its folder, summary and wall seconds."""
    config, algorithm, out = job
    given = {**config, **ALGORITHM_OPTIONS.get(algorithm, {}), "algorithm": algorithm, "out": out}
    if algorithm == "adpsgd":
        given.pop("send_concurrency", None)
    started = time.perf_counter()
    summary = plexus.simulate(given).summary
    return out, summary, time.perf_counter() - started


def report(label: str, algorithm: str, summary: dict[str, Any], wall: float) -> None:
    metric = summary["metric"]
    counters = summary["counters"]
    dropped = counters.get("messages_dropped_unsent", 0)
    aborted = counters.get("messages_aborted_leaving", 0)
    queued = summary["messages_total"] + dropped
    lost = f"  unsent {dropped / queued:.0%} + cut {aborted / queued:.0%} of queued" if dropped else ""
    print(f"  {label:13s} {algorithm:15s} best {metric} {summary[f'best_{metric}']:.4f}  final "
          f"{summary[f'final_{metric}']:.4f}  iterations/node {summary['rounds_completed']}  MB sent "
          f"{summary['bytes_total'] / 1e6:,.0f}{lost}  wall {wall:.0f} s", flush=True)


def run_all(jobs: list[tuple[dict[str, Any], str, str]], workers: int,
            labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run every job (``workers`` at a time in separate processes); summaries by folder."""
    summaries: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for job in jobs:
            out, summary, wall = simulate(job)
            report(labels[out], job[1], summary, wall)
            summaries[out] = summary
        return summaries
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(simulate, job): job for job in jobs}
        for future in as_completed(futures):
            out, summary, wall = future.result()
            report(labels[out], futures[future][1], summary, wall)
            summaries[out] = summary
    return summaries


def tta_lines(table: Any, label: str) -> dict[str, float | None]:
    ttas: dict[str, float | None] = {}
    for row in table.rows:
        ttas[row.algorithm] = row.tta_s
        tta = "not reached" if row.tta_s is None else f"{row.tta_s:,.1f} s"
        print(f"  {label:13s} {row.algorithm:15s} TTA {tta:>12s}  best {table.metric} {row.best:.4f}  "
              f"final {row.final:.4f}")
    return ttas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10-jpg")
    parser.add_argument("--movielens-data", type=Path, default=SHARED / "movielens-latest-small")
    parser.add_argument("--stragglers", default="7,30", help="comma list of straggler counts (of 60 nodes)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help="comma list (also adpsgd-divshare, the DivShare artifact's AD-PSGD)")
    parser.add_argument("--duration", type=float, default=30.0, help="virtual seconds per CIFAR-10 run")
    parser.add_argument("--local-steps", type=int, default=2, help="SGD steps per iteration (paper: 128)")
    parser.add_argument("--iteration-seconds", type=float, default=1.0,
                        help="virtual compute time of one iteration, whatever its number of steps")
    parser.add_argument("--eval-interval", type=float, default=3.0)
    parser.add_argument("--eval-nodes", type=int, default=6)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--send-concurrency", type=int, default=1)
    parser.add_argument("--target", type=float, default=None, help="target accuracy (default: the highest "
                        "accuracy every DivShare and AD-PSGD run on CIFAR-10 reaches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paper", action="store_true", help="the paper's settings (128 local steps, 1,800 s, "
                        "every node on the whole test set): days of CPU time")
    parser.add_argument("--movielens-duration", type=float, default=30.0)
    parser.add_argument("--movielens-stragglers", default="7")
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, in separate processes (results are "
                        "the same; use the cores you have)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: a temporary one)")
    args = parser.parse_args()
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    counts = [int(c) for c in args.stragglers.split(",") if c.strip()]
    out = args.out or Path(tempfile.mkdtemp(prefix="divshare-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    latency_file = out / "switch-latency.csv"
    latency_file.write_text("2\n")  # the authors' star through one switch: 1 ms per link, 2 ms one way
    print(f"CPU: {cpu_name()}; Python {sys.version.split()[0]}; results in {out}")
    started = time.perf_counter()

    jobs: list[tuple[dict[str, Any], str, str]] = []
    labels: dict[str, str] = {}
    cifar: dict[int, list[str]] = {}
    if not args.skip_cifar:
        if not args.data.exists():
            sys.exit(f"CIFAR-10 not found at {args.data} (give --data)")
        config = scenario_config(args, latency_file)
        print(f"CIFAR-10: 60 nodes, shards:5, gn-lenet-dpy, batch 8, lr 0.05, {config['local_steps']} local steps "
              f"per iteration of {args.iteration_seconds:g} virtual s, {config['duration']:g} virtual s per run, "
              f"evaluation every {config['eval_interval']:g} s of {config['eval_nodes'] or 'all'} node models on "
              f"{config['eval_samples'] or 'all'} test images; links 60 Mbit/s, stragglers 10-13 Mbit/s; "
              f"send queues {args.send_concurrency} message(s) at a time")
        for count in counts:
            cifar[count] = []
            for algorithm in algorithms:
                folder = str(out / f"cifar-{count}" / algorithm)
                jobs.append(({**config, "stragglers": str(count)}, algorithm, folder))
                labels[folder] = f"{count} stragglers"
                cifar[count].append(folder)
    movielens_runs: list[str] = []
    if not args.skip_movielens:
        if not args.movielens_data.exists():
            print(f"MovieLens not found at {args.movielens_data}: skipped")
        else:
            steps = 128 if args.paper else 8
            movielens = {
                "task": "movielens", "data": str(args.movielens_data), "nodes": 60, "partition": "natural",
                "batch_size": 8, "lr": 0.2, "momentum": 0.0, "local_steps": steps,
                "sample_seconds": args.iteration_seconds / (steps * 8), "link_mbps": 60.0,
                "stragglers": args.movielens_stragglers, "straggler_mbps": "10-13",
                "latency_matrix": str(latency_file), "latency_values": "one-way",
                "duration": 1800.0 if args.paper else args.movielens_duration,
                "eval_interval": 60.0 if args.paper else args.movielens_duration / 10, "seed": args.seed,
                "eval_nodes": None if args.paper else 12,
                "send_concurrency": args.send_concurrency, "stall_timeout": math.inf,
            }
            print(f"MovieLens (ml-latest-small): 60 nodes, {args.movielens_stragglers} stragglers, matrix "
                  f"factorisation (dimension 20), batch 8, lr 0.2, {steps} local steps per iteration of "
                  f"{args.iteration_seconds:g} virtual s, {movielens['duration']:g} virtual s; RMSE, lower is better")
            for algorithm in algorithms:
                folder = str(out / "movielens" / algorithm)
                jobs.append((movielens, algorithm, folder))
                labels[folder] = "movielens"
                movielens_runs.append(folder)
    print("runs:", flush=True)
    run_all(jobs, args.jobs, labels)

    speedups: dict[int, float] = {}
    if cifar:
        pair = [f for folders in cifar.values() for f in folders if Path(f).name in ("divshare", "adpsgd")]
        target = args.target
        if target is None:
            target = compare(pair or [f for folders in cifar.values() for f in folders]).target
        how = "given" if args.target is not None else "the highest accuracy every DivShare and AD-PSGD run reaches"
        print(f"CIFAR-10, target accuracy {target:.4f} ({how}); TTA = first evaluation at or above it:")
        for count, folders in cifar.items():
            table = compare(folders, target=target)
            table.write(out / f"cifar-{count}" / "comparison")
            ttas = tta_lines(table, f"{count} stragglers")
            if ttas.get("divshare") and ttas.get("adpsgd"):
                speedups[count] = ttas["adpsgd"] / ttas["divshare"]  # type: ignore[operator]
                print(f"  {count} stragglers: divshare TTA speedup vs adpsgd {speedups[count]:.2f}x")
    if movielens_runs:
        table = compare(movielens_runs)
        table.write(out / "movielens" / "comparison")
        print(f"MovieLens, target RMSE {table.target:.4f} (the lowest every run reaches):")
        tta_lines(table, "movielens")
        best = {row.algorithm: row.best for row in table.rows}
        for other in (a for a in best if a != "divshare" and "divshare" in best):
            change = (best[other] - best["divshare"]) / best[other]
            print(f"  movielens: divshare's best RMSE is {change:.1%} lower than {other}'s")

    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    print(f"total wall {time.perf_counter() - started:.0f} s, CPU {cpu:.0f} s")
    if speedups:
        detail = ", ".join(f"{count} stragglers {value:.2f}x" for count, value in speedups.items())
        print(f"speedups by scenario: {detail}")
        print(f"divshare_tta_speedup_vs_adpsgd={max(speedups.values()):.3f}")
    elif cifar:
        print("divshare_tta_speedup_vs_adpsgd=nan")


if __name__ == "__main__":
    main()

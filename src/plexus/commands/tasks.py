"""``plexus tasks``: the registered learning tasks, their models and presets; ``tasks inspect``: a task's data.

``plexus tasks`` answers "what can I run and with which defaults" without loading any dataset: parameter counts
come from :meth:`plexus.learning.tasks.base.Task.nominal_parameters`. ``plexus tasks inspect TASK`` loads the
data and shows how the chosen partition spreads it over nodes, using the same seeded stream a simulation uses
(``(seed, "partition")``), so the counts are those a run with that seed would give its nodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch

from plexus.config import Config, task_options
from plexus.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tasks",
        help="list the learning tasks and their presets; inspect a task's data",
        description="List the registered learning tasks (model, parameters, the papers' hyperparameters).",
    )
    parser.add_argument("--json", dest="json_list", action="store_true", help="print the list as JSON")
    actions = parser.add_subparsers(dest="tasks_command", metavar="ACTION", parser_class=type(parser))
    listing = actions.add_parser("list", help="list the tasks (the default action)")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(handler=run_list)
    inspect = actions.add_parser(
        "inspect",
        help="load a task's data and show its partition over nodes",
        description="Load a task's data and show its sizes and the per-node sample counts of a partition.",
    )
    inspect.add_argument("task", metavar="TASK", help="task name (see plexus tasks)")
    inspect.add_argument("--data", metavar="PATH", help="path of the task's data (not needed for embedded data)")
    inspect.add_argument("--partition", metavar="SPEC", help="iid, dirichlet:ALPHA, shards:K or natural "
                         "(default: the task's preset)")
    inspect.add_argument("--nodes", type=int, metavar="N", help="number of nodes (default: the task's preset)")
    inspect.add_argument("--seed", type=int, default=0, metavar="S", help="experiment seed (default 0)")
    inspect.add_argument("--model", metavar="NAME", help="model variant, when the task has several")
    inspect.add_argument("--json", action="store_true", help="print the result as JSON")
    inspect.set_defaults(handler=run_inspect)
    parser.set_defaults(handler=run_list)


# ---------------------------------------------------------------------------------------------- list
def task_rows() -> list[dict[str, Any]]:
    """One dict per registered task: model, parameter count (None when it depends on data) and presets."""
    from plexus.learning.tasks import TASKS

    options = task_options(Config())
    rows = []
    for name in sorted(TASKS):
        cls = TASKS[name]
        try:
            parameters = cls(options).nominal_parameters()
        except Exception:  # a task that cannot even be constructed without data: report unknown
            parameters = None
        d = cls.defaults
        rows.append({
            "name": name,
            "description": cls.description,
            "model": cls.model_name,
            "parameters": parameters,
            "nodes": d.nodes,
            "lr": d.lr,
            "momentum": d.momentum,
            "batch_size": d.batch_size,
            "local_steps": d.local_steps,
            "sample_size": d.sample_size,
            "success_fraction": d.success_fraction,
            "partition": d.partition,
            "rounds": d.rounds,
            "metric": cls.metric,
            "needs_data": cls.needs_data,
        })
    return rows


def run_list(args: argparse.Namespace) -> int:
    rows = task_rows()
    if getattr(args, "json", False) or getattr(args, "json_list", False):
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    columns = [("task", "name"), ("model", "model"), ("params", "parameters"), ("nodes", "nodes"), ("lr", "lr"),
               ("mom", "momentum"), ("batch", "batch_size"), ("steps", "local_steps"), ("s", "sample_size"),
               ("sf", "success_fraction"), ("partition", "partition"), ("metric", "metric")]
    cells = [[_cell(row[key]) for _, key in columns] for row in rows]
    widths = [max([len(title)] + [len(line[i]) for line in cells]) for i, (title, _) in enumerate(columns)]
    out = ["  ".join(title.ljust(widths[i]) for i, (title, _) in enumerate(columns)).rstrip()]
    for line in cells:
        out.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip())
    out.append("params: '-' = depends on the data (see plexus tasks inspect). Every preset can be overridden.")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"{len(value):,} values: {', '.join(str(v) for v in value[:3])}, ..."
    return str(value)


# ---------------------------------------------------------------------------------------------- inspect
def inspect_task(
    name: str,
    data_path: str | None = None,
    partition_spec: str | None = None,
    nodes: int | None = None,
    seed: int = 0,
    model: str | None = None,
) -> dict[str, Any]:
    """Load a task's data and describe it and its partition over nodes (JSON-ready)."""
    from plexus.learning.partition import parse_partition, partition
    from plexus.learning.tasks import task_class
    from plexus.rng import stream

    cls = task_class(name)
    if nodes is not None and nodes < 1:
        raise ConfigError(f"--nodes {nodes}: need at least one node")
    spec = parse_partition(partition_spec or cls.defaults.partition)
    # generated tasks (synthetic) make as many users as the run has nodes: say how many
    task = cls(task_options(Config(task=name, model=model, nodes=nodes or cls.defaults.nodes)))
    data = task.load(data_path, seed)
    train = len(data.train)
    note = None
    if nodes is None:
        nodes = cls.defaults.nodes
        if spec.kind == "natural" and data.users is not None and len(data.users) < nodes:
            # a subset of the paper's data (e.g. a LEAF sample) has fewer users than the preset has nodes
            note = f"the preset's {nodes} nodes exceed the data's {len(data.users)} users: one node per user"
            nodes = len(data.users)
    with torch.random.fork_rng(devices=[]):
        parameters = int(sum(p.numel() for p in task.build_model(data).parameters()))
    parts = partition(spec, data.labels, train, nodes, stream(seed, "partition"), groups=data.users)
    counts = np.array([part.size for part in parts], dtype=np.int64)
    result: dict[str, Any] = {
        "task": name,
        "data": data_path,
        "train_samples": train,
        "test_samples": len(data.test),
        "parameters": parameters,
    }
    result.update({key: _plain(value) for key, value in data.info.items()})
    if data.users is not None:
        result.setdefault("users", len(data.users))
    result.update({
        "partition": str(spec),
        "nodes": nodes,
        "seed": seed,
        **({"note": note} if note else {}),
        "samples_per_node": _distribution(counts),
        "histogram": _histogram(counts),
        "counts": counts.tolist(),
    })
    if data.labels is not None:
        labels = np.asarray(data.labels)
        classes = np.array([np.unique(labels[part]).size for part in parts], dtype=np.int64)
        result["classes_per_node"] = _distribution(classes)
    return result


def _plain(value: Any) -> Any:
    """JSON-safe copies of TaskData.info values (numpy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _distribution(values: np.ndarray) -> dict[str, float]:
    q10, median, q90 = np.percentile(values, (10, 50, 90))
    return {
        "min": int(values.min()),
        "p10": round(float(q10), 3),
        "median": round(float(median), 3),
        "mean": round(float(values.mean()), 3),
        "p90": round(float(q90), 3),
        "max": int(values.max()),
        "std": round(float(values.std()), 3),
    }


def _histogram(values: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    low, high = int(values.min()), int(values.max())
    if low == high:
        return {"edges": [float(low), float(high)], "counts": [int(values.size)]}
    counts, edges = np.histogram(values, bins=min(bins, high - low + 1), range=(low, high + 1))
    return {"edges": [round(float(e), 3) for e in edges], "counts": counts.astype(int).tolist()}


def run_inspect(args: argparse.Namespace) -> int:
    result = inspect_task(args.task, args.data, args.partition, args.nodes, args.seed, args.model)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    skip = {"samples_per_node", "histogram", "counts", "classes_per_node"}
    lines = [f"{key:<16}{_cell(value)}" for key, value in result.items() if key not in skip]
    lines.append("")
    stats = ["min", "p10", "median", "mean", "p90", "max", "std"]
    lines.append(" " * 20 + "".join(f"{s:>10}" for s in stats))
    for label in ("samples_per_node", "classes_per_node"):
        if label in result:
            lines.append(f"{label.replace('_', ' '):<20}" + "".join(f"{_cell(result[label][s]):>10}" for s in stats))
    histogram = result["histogram"]
    lines.append("")
    lines.append("samples per node   nodes")
    peak = max(histogram["counts"]) or 1
    edges = histogram["edges"]
    for i, count in enumerate(histogram["counts"]):
        low, high = edges[i], edges[i + 1]
        label = f"[{low:g}, {high:g})"
        lines.append(f"{label:<19}{count:>6}  {'#' * round(40 * count / peak)}".rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
    return 0

"""The typed experiment configuration, TOML loading, and resolution against a task's paper defaults.

A config is one flat dataclass; each field belongs to a TOML section (for readability of ``config.toml``) and
has a CLI flag of the same name (underscores become dashes). Fields left as ``None`` take the task's preset
(the papers' hyperparameters) when the config is resolved; the resolved config is what a run writes to its
results folder, so a run can be repeated from that file alone: file paths (data, traces) are stored absolute,
so the replay works from any directory, and ``out`` is not stored, so a replay never writes into the folder
it was read from (it gets a new folder unless ``-o`` says otherwise).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from plexus.errors import ConfigError

SECTIONS = ("run", "task", "protocol", "system")
# algorithms for which "sample_size <= nodes" is not the right check: D-PSGD and gossip never use s, and EL uses
# it only as the default fanout, checked against nodes - 1 in _validate_decentralized
SAMPLE_FREE_ALGORITHMS = ("dpsgd", "gossip", "el-local", "el-oracle")


def _f(section: str, default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"section": section, "help": help, **extra})


@dataclass
class Config:
    # [run]
    algorithm: str = _f(
        "run", "plexus", "plexus, fedavg, dpsgd, gossip, el-local or el-oracle; a comma list runs a study"
    )
    seed: int = _f("run", 0, "experiment seed; every random choice derives from it")
    rounds: int | None = _f("run", None, "stop after this many rounds (default: the task's preset; with "
                            "--duration, whichever comes first)")
    duration: float | None = _f("run", None, "stop after this many virtual seconds (with --rounds, whichever "
                                "comes first)")
    eval_every: int | None = _f("run", None, "evaluate every N rounds (default: the task's preset, 5 for digits)")
    out: str | None = _f("run", None, "results folder, which must not exist or be empty (default: "
                         "results/<algorithm>-<task>-n<nodes>-s<seed>-<time>)", recorded=False)
    eval_nodes: int | None = _f("run", None, "decentralized learning: node models evaluated each time (default: "
                                "all up to 100 nodes, else 20)")
    eval_interval: float | None = _f("run", None, "decentralized learning: evaluate every X virtual seconds")
    eval_samples: int | None = _f("run", None, "evaluate on a fixed seeded subset of N test samples (default: "
                                  "the whole test set)")
    # [task]
    task: str = _f("task", "digits", "learning task")
    data: str | None = _f("task", None, "path of the task's data (not needed for digits and synthetic)")
    nodes: int | None = _f("task", None, "number of nodes")
    partition: str | None = _f("task", None, "iid, dirichlet:ALPHA, shards:K or natural")
    batch_size: int | None = _f("task", None, "minibatch size of local SGD")
    lr: float | None = _f("task", None, "learning rate of local SGD")
    momentum: float | None = _f("task", None, "momentum of local SGD (0 = plain SGD)")
    weight_decay: float = _f("task", 0.0, "L2 weight decay of local SGD")
    local_steps: int | None = _f("task", None, "local SGD steps per round")
    model: str | None = _f("task", None, "model variant, when a task has several (see plexus tasks)")
    download: bool = _f("task", False, "download the dataset if it is missing (needs internet)")
    alpha: float = _f("task", 1.0, "synthetic task: model heterogeneity alpha (Li et al., FedProx)")
    beta: float = _f("task", 1.0, "synthetic task: data heterogeneity beta (Li et al., FedProx)")
    # [protocol]
    sample_size: int | None = _f("protocol", None, "s: nodes sampled per round")
    success_fraction: float | None = _f("protocol", None, "sf: aggregate once ceil(s x sf) models arrived")
    aggregator_sample: str = _f(
        "protocol", "next", "take round k's aggregator from sample k+1 (next, as the paper's code) or k (current)"
    )
    weighting: str = _f("protocol", "uniform", "aggregation weights: uniform or samples (local dataset sizes)")
    server_bandwidth: float = _f("protocol", math.inf, "FedAvg server upload/download in bytes/s (inf allowed)")
    topology: str = _f("protocol", "regular:10", "D-PSGD topology: ring, regular:K, full or one-peer-exp")
    mixing: str = _f("protocol", "uniform", "D-PSGD mixing weights: uniform or metropolis-hastings")
    round_timeout: float = _f("protocol", 60.0, "Gossip Learning: seconds between a node's sends")
    fanout: int | None = _f("protocol", None, "Epidemic Learning: peers per round (default: sample_size)")
    # [system]
    capacity_trace: str | None = _f("system", None, "FedScale device-capacity trace (pickle or CSV)")
    latency_matrix: str | None = _f("system", None, "N x N CSV of round-trip times in ms between sites")
    latency_values: str = _f("system", "rtt", "entries of --latency-matrix: rtt (halved) or one-way")
    compute_factor: float = _f("system", 1.0, "multiplies training time; 3 reproduces FedScale / Plexus code")
    availability_trace: str | None = _f(
        "system", None, "per-node online intervals: a CSV, JSON or FLASH file, or synthetic[:diurnal[:share=0.25,...]]"
    )

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_toml(self) -> str:
        grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and f.metadata.get("recorded", True):
                grouped[f.metadata["section"]][f.name] = value
        return tomli_w.dumps({k: v for k, v in grouped.items() if v})


def field_types() -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in Config.field_names()}


def coerce(name: str, value: Any, source: str) -> Any:
    """Convert ``value`` to the type of field ``name``; errors name the source (file or flag)."""
    hint = field_types()[name]
    allowed = typing_args(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {name} cannot be empty")
    target = next(t for t in allowed if t is not type(None))
    try:
        if target is bool:
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if target is int:
            if isinstance(value, float) and value != int(value):
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if target is float:
            return float(value)
        if target is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} = {value!r} is not a valid {target.__name__}") from None
    return value


def typing_args(hint: Any) -> tuple[Any, ...]:
    import typing

    args = typing.get_args(hint)
    return args if args else (hint,)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file into {field: value}; sections are optional, unknown keys are errors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a file (give the .toml file inside it)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    known = set(Config.field_names())
    values: dict[str, Any] = {}

    def take(key: str, value: Any, where: str) -> None:
        if key not in known:
            raise ConfigError(f"config file {path}: unknown option {where}{key!r}")
        values[key] = coerce(key, value, f"config file {path}")

    for key, value in document.items():
        if isinstance(value, dict) and key in SECTIONS:
            for inner, inner_value in value.items():
                take(inner, inner_value, f"[{key}] ")
        elif isinstance(value, dict) and key == "runs":
            values["runs"] = value
        else:
            take(key, value, "")
    return values


def task_options(config: Config) -> dict[str, Any]:
    """The options a task's constructor receives."""
    return {"model": config.model, "download": config.download, "alpha": config.alpha, "beta": config.beta,
            "nodes": config.nodes}


def config_from_mapping(values: dict[str, Any], source: str = "config") -> Config:
    known = set(Config.field_names())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown option {unknown[0]!r}")
    return Config(**{k: coerce(k, v, source) for k, v in values.items()})


def resolve(config: Config) -> Config:
    """Fill unset fields from the task's preset and check every value; raises ConfigError naming the field."""
    from plexus.learning.partition import parse_partition
    from plexus.learning.tasks import task_class
    from plexus.protocol.registry import algorithm

    algorithm(config.algorithm)
    task = task_class(config.task)
    defaults = task.defaults
    filled: dict[str, Any] = {"model": task.check_model(config.model)}
    for name in ("nodes", "partition", "batch_size", "lr", "momentum", "local_steps", "sample_size",
                 "success_fraction", "eval_every", "eval_samples"):
        if getattr(config, name) is None:
            filled[name] = getattr(defaults, name)
    if config.rounds is None and config.duration is None:
        filled["rounds"] = defaults.rounds
    for name in PATH_FIELDS:
        filled[name] = absolute_path(name, getattr(config, name))
    resolved = config.replace(**filled)
    _validate(resolved)
    parse_partition(resolved.partition or "")
    return resolved


# options naming files: stored absolute in a resolved config (and so in config.toml)
PATH_FIELDS = ("data", "capacity_trace", "latency_matrix", "availability_trace")


def absolute_path(name: str, value: str | None) -> str | None:
    """``value`` as an absolute path (``~`` expanded), so a recorded config replays from any directory; a
    synthetic availability spec is not a path and stays as it is."""
    if value is None or value == "":
        return value
    if name == "availability_trace":
        from plexus.sim.traces.availability import is_synthetic_spec

        if is_synthetic_spec(value):
            return value
    return os.path.abspath(os.path.expanduser(value))


def config_warnings(config: Config) -> list[str]:
    """Options that have no effect on this run, one line each (a resolved config). The run logs them as
    warnings; algorithm-specific options are checked by the algorithm's own declarations."""
    from plexus.learning.tasks import task_class

    task = task_class(config.task)
    notes = []
    if config.data and not task.needs_data:
        notes.append(f"--data has no effect: task {config.task} makes its own data")
    if config.download and config.task not in ("cifar10", "mnist"):
        notes.append(f"--download has no effect: only cifar10 and mnist can be downloaded, not {config.task}")
    if config.task != "synthetic" and (config.alpha != 1.0 or config.beta != 1.0):
        notes.append(f"--alpha and --beta have no effect on task {config.task} (they shape the synthetic task)")
    if config.latency_values != "rtt" and not config.latency_matrix:
        notes.append("--latency-values has no effect without --latency-matrix")
    return notes


def _validate(c: Config) -> None:
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    need(c.seed >= 0, f"seed = {c.seed}: must be a non-negative integer")
    need(c.nodes is not None and c.nodes >= 1, f"nodes = {c.nodes}: need at least 1 node")
    need(c.sample_size is not None and c.sample_size >= 1, f"sample_size = {c.sample_size}: must be >= 1")
    need(
        c.sample_size is not None and c.nodes is not None
        and (c.sample_size <= c.nodes or c.algorithm in SAMPLE_FREE_ALGORITHMS),
        f"sample_size = {c.sample_size} exceeds nodes = {c.nodes} (s must be <= the number of nodes)",
    )
    sf = c.success_fraction
    need(sf is not None and 0 < sf <= 1, f"success_fraction = {sf}: must be in (0, 1]")
    need(c.local_steps is not None and c.local_steps >= 1, f"local_steps = {c.local_steps}: must be >= 1")
    need(c.batch_size is not None and c.batch_size >= 1, f"batch_size = {c.batch_size}: must be >= 1")
    need(c.lr is not None and c.lr > 0 and math.isfinite(c.lr), f"lr = {c.lr}: must be a positive number")
    need(c.momentum is not None and 0 <= c.momentum < 1, f"momentum = {c.momentum}: must be in [0, 1)")
    need(c.weight_decay >= 0, f"weight_decay = {c.weight_decay}: must be >= 0")
    need(c.rounds is None or c.rounds >= 1, f"rounds = {c.rounds}: must be >= 1")
    need(c.duration is None or (c.duration > 0 and math.isfinite(c.duration)),
         f"duration = {c.duration}: must be a positive number of seconds")
    need(c.eval_every is not None and c.eval_every >= 1, f"eval_every = {c.eval_every}: must be >= 1")
    need(c.aggregator_sample in ("next", "current"),
         f"aggregator_sample = {c.aggregator_sample!r}: must be 'next' or 'current'")
    need(c.weighting in ("uniform", "samples"), f"weighting = {c.weighting!r}: must be 'uniform' or 'samples'")
    need(c.server_bandwidth > 0, f"server_bandwidth = {c.server_bandwidth}: must be > 0 (inf allowed)")
    need(c.latency_values in ("rtt", "one-way"), f"latency_values = {c.latency_values!r}: must be rtt or one-way")
    need(c.compute_factor >= 0 and math.isfinite(c.compute_factor),
         f"compute_factor = {c.compute_factor}: must be a non-negative number")
    _validate_decentralized(c, need)
    for name in ("capacity_trace", "latency_matrix", "availability_trace"):
        path = getattr(c, name)
        if name == "availability_trace" and path is not None:
            from plexus.sim.traces.availability import is_synthetic_spec, parse_synthetic_spec

            if is_synthetic_spec(path):
                parse_synthetic_spec(path)  # raises ConfigError naming the bad parameter
                continue
        need(path is None or not Path(path).is_dir(), f"{name} = {path}: is a folder, not a file")
        need(path is None or Path(path).is_file(), f"{name} = {path}: file does not exist")


def _validate_decentralized(c: Config, need: Any) -> None:
    """The decentralized-learning baselines' options; graph feasibility only for the algorithm that uses it."""
    from plexus.protocol.topologies import build_topology, parse_topology

    spec = parse_topology(c.topology)  # raises ConfigError naming the bad value
    need(c.mixing in ("uniform", "metropolis-hastings"),
         f"mixing = {c.mixing!r}: must be 'uniform' or 'metropolis-hastings'")
    need(c.round_timeout > 0 and math.isfinite(c.round_timeout),
         f"round_timeout = {c.round_timeout}: must be a positive number of seconds")
    need(c.eval_nodes is None or c.eval_nodes >= 1, f"eval_nodes = {c.eval_nodes}: must be >= 1")
    need(c.eval_samples is None or c.eval_samples >= 1, f"eval_samples = {c.eval_samples}: must be >= 1")
    need(c.eval_interval is None or (c.eval_interval > 0 and math.isfinite(c.eval_interval)),
         f"eval_interval = {c.eval_interval}: must be a positive number of seconds")
    need(c.fanout is None or c.fanout >= 1, f"fanout = {c.fanout}: must be >= 1")
    assert c.nodes is not None
    if c.algorithm == "dpsgd":
        build_topology(spec, c.nodes, c.seed)  # raises ConfigError when no such graph exists (cached for the run)
    if c.algorithm in ("el-local", "el-oracle"):
        fanout = c.fanout if c.fanout is not None else c.sample_size
        source = "fanout" if c.fanout is not None else "fanout (default: sample_size)"
        need(fanout is not None and fanout <= c.nodes - 1,
             f"{source} = {fanout}: must be at most nodes - 1 = {c.nodes - 1} (a node sends to distinct others)")

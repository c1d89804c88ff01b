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
PROTOCOL = "protocol"  # the section of the chosen algorithm's options (declared by the algorithm itself)
CHURN = "churn"  # a table of its own in TOML: [churn] (see plexus.sim.churn)
COMPUTE_MODELS = ("per-sample", "per-step")


def _f(section: str, default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"section": section, "help": help, **extra})


@dataclass
class Config:
    """The experiment: run, task and system settings, plus ``protocol``, the algorithm's own options.

    ``protocol`` maps option names to values as given (``--sample-size``, ``[protocol] sample_size``); which
    names exist, their types, defaults and checks are declared by the algorithms (:mod:`plexus.protocol.registry`).
    After :func:`resolve` it holds every option of the chosen algorithm, presets and defaults filled in.
    """

    # [run]
    algorithm: str = _f("run", "plexus", "the algorithm (see plexus algorithms); a comma list runs a study")
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
    stall_timeout: float = _f("run", 3600.0, "report a stall and stop when no global model, node round or "
                              "training completes for this many virtual seconds")
    plugin: str | None = _f("run", None, "comma list of plug-in modules (or .py files) that register algorithms")
    eval_samples: int | None = _f("run", None, "evaluate on a fixed seeded subset of N test samples (default: "
                                  "the whole test set)")
    executor: str = _f("run", "inline", "where training and evaluation run: inline, pool (worker processes), "
                       "ray (plexus[ray]) or batched (torch.func vmap, for --device cuda); results do not depend "
                       "on it")
    workers: int | None = _f("run", None, "pool / ray: worker processes or actors (default: every core)")
    device: str = _f("run", "cpu", "batched executor: torch device (cpu, cuda, cuda:N)")
    ray_address: str | None = _f("run", None, "ray executor: address of a Ray cluster (default: a local instance)")
    batch_models: int = _f("run", 256, "batched executor: most models trained in one pass")
    checkpoint_every: float | None = _f("run", None, "write a resumable checkpoint every X wall seconds "
                                        "(plexus resume RESULT_DIR continues the run)")
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
    # [system]
    capacity_trace: str | None = _f("system", None, "FedScale device-capacity trace (pickle or CSV)")
    latency_matrix: str | None = _f("system", None, "N x N CSV of round-trip times in ms between sites")
    latency_values: str = _f("system", "rtt", "entries of --latency-matrix: rtt (halved) or one-way")
    compute_model: str = _f("system", "per-sample", "training time: per-sample = steps x batch x s/sample x "
                            "factor (FedScale); per-step = steps x s/sample x factor (the Plexus code, with 3)")
    compute_factor: float = _f("system", 1.0, "multiplies training time (3 reproduces FedScale and the Plexus code)")
    server_bandwidth: float = _f("system", math.inf, "upload/download of a server (FedAvg) in bytes/s (inf allowed)")
    availability_trace: str | None = _f(
        "system", None, "per-node online intervals: a CSV, JSON or FLASH file, or synthetic[:diurnal[:share=0.25,...]]"
    )
    # [churn]: a scenario name (modest-crash, modest-join, optionally :key=value,...), a TOML file holding a
    # [churn] table, or the table itself; resolve() turns it into the table (see plexus.sim.churn)
    churn: Any = _f(CHURN, None, "nodes that crash, leave and join: modest-crash, modest-join (MoDeST's "
                    "experiments) or crash-aggregator (every 10th round's aggregator crashes); :key=value,... "
                    "changes them; or a TOML file with a [churn] table")
    # [system]: link scenarios (plexus.sim.links)
    link_mbps: float | None = _f("system", None, "every node's uplink and downlink in Mbit/s (inf allowed), "
                                 "instead of the trace's or synthetic bandwidths")
    stragglers: str | None = _f("system", None, "nodes with slow links: a count (7) or a share of the "
                                "nodes (0.5); chosen by a seeded draw")
    straggler_mbps: str = _f("system", "10-13", "a straggler's uplink and downlink in Mbit/s: a value or a range "
                             "LOW-HIGH drawn per straggler")
    region_links: str | None = _f("system", None, "region-to-region link bandwidths: divshare-geo (10 regions, "
                                  "21-405 Mbit/s) or an R x R CSV in Mbit/s; nodes in contiguous blocks per region")
    sample_seconds: float | None = _f("system", None, "every node's training time per sample (homogeneous "
                                      "compute), instead of the trace's or synthetic speeds")
    # [protocol]: the algorithm's options
    protocol: dict[str, Any] = field(default_factory=dict, metadata={"section": PROTOCOL, "help": ""})

    # ------------------------------------------------------------------ helpers
    @classmethod
    def field_names(cls) -> list[str]:
        """The experiment's own settings (everything but the algorithm's options)."""
        return [f.name for f in fields(cls) if f.name != PROTOCOL]

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes``; names of algorithm options go into ``protocol``."""
        core = {k: v for k, v in changes.items() if k in _CORE or k == PROTOCOL}
        options = {k: v for k, v in changes.items() if k not in core}
        if options:
            core[PROTOCOL] = {**changes.get(PROTOCOL, self.protocol), **options}
        return dataclasses.replace(self, **core)

    def __getattr__(self, name: str) -> Any:
        # config.sample_size reads an algorithm option (only reached for names that are not fields)
        if name.startswith("__") or name == PROTOCOL:
            raise AttributeError(name)
        protocol = self.__dict__.get(PROTOCOL, {})
        if name in protocol:
            return protocol[name]
        raise AttributeError(f"Config has no setting {name!r}")

    def as_mapping(self) -> dict[str, Any]:
        """Every setting by name, algorithm options included (flat)."""
        values = {name: getattr(self, name) for name in self.field_names()}
        values.update(self.protocol)
        return values

    def to_toml(self) -> str:
        grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for f in fields(self):
            if f.name in (PROTOCOL, CHURN):
                continue
            value = getattr(self, f.name)
            if value is not None and f.metadata.get("recorded", True):
                grouped[f.metadata["section"]][f.name] = value
        grouped[PROTOCOL] = {k: v for k, v in self.protocol.items() if v is not None}
        if self.churn is not None:
            grouped[CHURN] = dict(self.churn) if isinstance(self.churn, dict) else {"scenario": str(self.churn)}
        return tomli_w.dumps({k: v for k, v in grouped.items() if v})


_CORE = frozenset(f.name for f in fields(Config) if f.name != PROTOCOL)


def field_types() -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in Config.field_names()}


def coerce(name: str, value: Any, source: str) -> Any:
    """Convert ``value`` to the type of setting ``name`` (an experiment field or any algorithm's option);
    errors name the source (file or flag)."""
    from plexus.protocol.options import coerce_value

    if name in _CORE:
        hint = field_types()[name]
        allowed = typing_args(hint)
        if value is None:
            if type(None) in allowed:
                return None
            raise ConfigError(f"{source}: {name} cannot be empty")
        target = next(t for t in allowed if t is not type(None))
    else:
        target = protocol_option_type(name, source)
    return coerce_value(name, target, value, source)


def protocol_option_type(name: str, source: str) -> type:
    """The type of algorithm option ``name``; unknown names are errors naming the source."""
    from plexus.protocol.registry import all_option_specs

    table = all_option_specs()
    if name not in table:
        raise ConfigError(f"{source}: unknown option {name!r}{_suggest(name, [*_CORE, *table])}")
    return table[name][0].type


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def typing_args(hint: Any) -> tuple[Any, ...]:
    import typing

    args = typing.get_args(hint)
    return args if args else (hint,)


def load_plugins(spec: str | None) -> None:
    """Import the plug-in modules named in a ``plugin`` setting (comma list) so their algorithms register."""
    if not spec:
        return
    from plexus.protocol.registry import load_plugin

    for item in str(spec).split(","):
        if item.strip():
            load_plugin(item.strip())


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file into {setting: value}; sections are optional, unknown keys are errors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a file (give the .toml file inside it)")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists()
                          else f"config file {path} is not a file")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    # plug-ins named in the file must register before their options can be recognised
    plugin = document.get("plugin", document.get("run", {}).get("plugin") if isinstance(document.get("run"), dict)
                          else None)
    load_plugins(plugin if isinstance(plugin, str) else None)
    values: dict[str, Any] = {}

    def take(key: str, value: Any, where: str) -> None:
        if isinstance(value, dict):
            raise ConfigError(f"config file {path}: {where}{key!r} is a table; expected a value")
        values[key] = coerce(key, value, f"config file {path}, {where}{key}")

    for key, value in document.items():
        if isinstance(value, dict) and key in SECTIONS:
            for inner, inner_value in value.items():
                take(inner, inner_value, f"[{key}] ")
        elif isinstance(value, dict) and key == "runs":
            values["runs"] = value
        elif isinstance(value, dict) and key == CHURN:
            values[CHURN] = value
        else:
            take(key, value, "")
    return values


def task_options(config: Config) -> dict[str, Any]:
    """The options a task's constructor receives."""
    return {"model": config.model, "download": config.download, "alpha": config.alpha, "beta": config.beta,
            "nodes": config.nodes}


def config_from_mapping(values: dict[str, Any], source: str = "config") -> Config:
    """A Config from flat settings: experiment fields by name, anything else an algorithm option."""
    values = dict(values)
    load_plugins(values.get("plugin"))
    protocol = dict(values.pop(PROTOCOL, None) or {})
    core: dict[str, Any] = {}
    for key, value in values.items():
        if key in _CORE:
            core[key] = coerce(key, value, source)
        else:
            protocol[key] = coerce(key, value, source)
    for key, value in list(protocol.items()):
        protocol[key] = coerce(key, value, source)
    return Config(**core, protocol=protocol)


def algorithm_options(config: Config) -> Any:
    """The chosen algorithm's options instance for a resolved config."""
    from plexus.protocol.options import build
    from plexus.protocol.registry import algorithm

    spec = algorithm(config.algorithm)
    experiment = {name: getattr(config, name) for name in config.field_names()}
    return build(spec.options, config.protocol, experiment, source=f"algorithm {config.algorithm}")


def resolve(config: Config, notes: list[str] | None = None) -> Config:
    """Fill unset settings from the task's preset and the algorithm's defaults, and check every value.

    Raises ConfigError naming the setting. Options that have no effect on this run are dropped from the result;
    with ``notes``, a sentence about each is appended to it (the run reports them as warnings). Paths are stored
    absolute, so a recorded config replays from any directory.
    """
    from plexus.learning.partition import parse_partition
    from plexus.learning.tasks import task_class
    from plexus.protocol.options import as_dict, build
    from plexus.protocol.registry import algorithm, all_option_specs

    load_plugins(config.plugin)
    spec = algorithm(config.algorithm)
    task = task_class(config.task)
    defaults = task.defaults
    filled: dict[str, Any] = {"model": task.check_model(config.model)}
    for name in ("nodes", "partition", "batch_size", "lr", "momentum", "local_steps", "eval_every", "eval_samples"):
        if getattr(config, name) is None:
            filled[name] = getattr(defaults, name)
    if config.rounds is None and config.duration is None:
        filled["rounds"] = defaults.rounds
    for name in PATH_FIELDS:
        filled[name] = absolute_path(name, getattr(config, name))
    resolved = dataclasses.replace(config, **filled)
    _validate(resolved)
    parse_partition(resolved.partition or "")
    resolved = dataclasses.replace(resolved, churn=_resolve_churn(resolved))
    own = {option.name for option in spec.option_specs()}
    table = all_option_specs()
    for name in sorted(set(resolved.protocol) - own):
        if name not in table:
            raise ConfigError(f"unknown option {name!r}{_suggest(name, [*_CORE, *table])}")
        if notes is not None and resolved.protocol[name] is not None:
            users = ", ".join(table[name][1])
            notes.append(f"option {name} = {resolved.protocol[name]!r} has no effect on {spec.name} "
                         f"(it applies to {users})")
    experiment = {name: getattr(resolved, name) for name in resolved.field_names()}
    presets = {name: getattr(defaults, name) for name in own if hasattr(defaults, name)}
    given = {k: v for k, v in resolved.protocol.items() if k in own}
    if isinstance(resolved.churn, dict):
        from plexus.sim.churn import scenario_options

        # a named scenario (MoDeST's experiments) selects what reacting to it needs, unless set otherwise
        for name, value in scenario_options(resolved.churn).items():
            if name in own and given.get(name) is None:
                given[name] = value
    options = build(spec.options, given, experiment, presets, source=f"algorithm {spec.name}")
    resolved = dataclasses.replace(resolved, protocol=as_dict(options))
    resolved = _stall_timeout_floor(resolved, spec, options, notes)
    if notes is not None:
        notes.extend(config_warnings(resolved))
        notes.extend(_no_effect(resolved, spec))
        ineffective = getattr(options, "ineffective", None)
        if callable(ineffective):
            notes.extend(ineffective())
        if (resolved.churn is not None or resolved.availability_trace) and not getattr(options, "reacts_to_churn",
                                                                                        False):
            notes.append(_cannot_react(spec, own))
    return resolved


STALL_MARGIN = 1.5  # the stall watchdog waits at least this many times a protocol's longest legitimate silence


def _stall_timeout_floor(c: Config, spec: Any, options: Any, notes: list[str] | None) -> Config:
    """Never let the stall watchdog stop a run that is only waiting as its protocol says it should, in simulation
    and live alike. Two floors: an algorithm without rounds must be given three of its periods (a gossip node may
    legitimately train nothing for a period or two), and options may name their longest legitimate silence
    (``longest_quiet()``, e.g. MoDeST's recovery from a dead aggregator), of which the watchdog waits
    ``STALL_MARGIN`` times. A shorter ``stall_timeout`` is raised to the higher floor, with a note."""
    floors: list[tuple[float, str]] = []
    if spec.traits.clock == "periods" and spec.period is not None:
        floors.append((3 * float(spec.period(options)), f"three of {spec.name}'s periods"))
    quiet = getattr(options, "longest_quiet", None)
    if callable(quiet):
        longest = float(quiet())
        # the waits are counted from the last progress, but transfers, training and (live) scheduling add to
        # them: a watchdog at exactly the sum races the recovery it should wait for
        floors.append((STALL_MARGIN * longest, f"{spec.name} may legitimately wait with these options ({longest:g}s: "
                                               f"a recovery, a timeout) with a margin"))
    floor, why = max(floors, default=(0.0, ""))
    if c.stall_timeout >= floor:
        return c
    if notes is not None:
        notes.append(f"stall_timeout = {c.stall_timeout:g}s is shorter than {why}; using {floor:g}s")
    return dataclasses.replace(c, stall_timeout=floor)


def _resolve_churn(c: Config) -> dict[str, Any] | None:
    """The churn setting as its checked ``[churn]`` table (None without churn)."""
    if c.churn is None:
        return None
    from plexus.sim.churn import churn_table, parse_churn

    table = churn_table(c.churn, "churn")
    if table is not None:
        assert c.nodes is not None
        parse_churn(table, c.nodes, "[churn]")
    return table


def _cannot_react(spec: Any, own: set[str]) -> str:
    if "membership" in own:
        how = "with membership = static a node that is gone stops it for good (use --membership modest)"
    elif "wait_timeout" in own:
        how = "its nodes wait forever for a neighbour that is gone (set --wait-timeout)"
    elif "aggregation_timeout" in own:
        how = "its server waits forever for clients that are gone (set --aggregation-timeout)"
    else:
        how = "it does not say that it reacts to churn (its options have no reacts_to_churn)"
    return f"churn is simulated but {spec.name} cannot react to it: {how}"


def _no_effect(c: Config, spec: Any) -> list[str]:
    """Experiment settings given a non-default value that the chosen algorithm does not use (by its traits)."""
    defaults = Config()
    notes = []

    def unused(name: str, why: str) -> None:
        if getattr(c, name) != getattr(defaults, name):
            notes.append(f"{name} = {getattr(c, name)!r} has no effect: {why}")

    if spec.traits.evaluation != "nodes":
        unused("eval_nodes", f"{spec.name} reports global models; node models are not evaluated")
        unused("eval_interval", f"{spec.name} is evaluated every eval_every rounds of global models")
    if not spec.traits.server:
        unused("server_bandwidth", f"{spec.name} has no server")
    return notes


# options naming files: stored absolute in a resolved config (and so in config.toml)
PATH_FIELDS = ("data", "capacity_trace", "latency_matrix", "availability_trace", "region_links")


def absolute_path(name: str, value: str | None) -> str | None:
    """``value`` as an absolute path (``~`` expanded), so a recorded config replays from any directory; a
    synthetic availability spec is not a path and stays as it is."""
    if value is None or value == "":
        return value
    if name == "region_links" and "/" not in value and not value.lower().endswith(".csv"):
        return value  # a named matrix shipped with plexus (divshare-geo)
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
    if config.stragglers is None and config.straggler_mbps != "10-13":
        notes.append(f"straggler_mbps = {config.straggler_mbps!r} has no effect: no stragglers are set "
                     f"(--stragglers)")
    return notes


def _validate(c: Config) -> None:
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    need(c.seed >= 0, f"seed = {c.seed}: must be a non-negative integer")
    need(c.nodes is not None and c.nodes >= 1, f"nodes = {c.nodes}: need at least 1 node")
    need(c.local_steps is not None and c.local_steps >= 1, f"local_steps = {c.local_steps}: must be >= 1")
    need(c.batch_size is not None and c.batch_size >= 1, f"batch_size = {c.batch_size}: must be >= 1")
    need(c.lr is not None and c.lr > 0 and math.isfinite(c.lr), f"lr = {c.lr}: must be a positive number")
    need(c.momentum is not None and 0 <= c.momentum < 1, f"momentum = {c.momentum}: must be in [0, 1)")
    need(c.weight_decay >= 0, f"weight_decay = {c.weight_decay}: must be >= 0")
    need(c.rounds is None or c.rounds >= 1, f"rounds = {c.rounds}: must be >= 1")
    need(c.duration is None or (c.duration > 0 and math.isfinite(c.duration)),
         f"duration = {c.duration}: must be a positive number of seconds")
    need(c.eval_every is not None and c.eval_every >= 1, f"eval_every = {c.eval_every}: must be >= 1")
    need(c.eval_nodes is None or c.eval_nodes >= 1, f"eval_nodes = {c.eval_nodes}: must be >= 1")
    need(c.eval_samples is None or c.eval_samples >= 1, f"eval_samples = {c.eval_samples}: must be >= 1")
    need(c.eval_interval is None or (c.eval_interval > 0 and math.isfinite(c.eval_interval)),
         f"eval_interval = {c.eval_interval}: must be a positive number of seconds")
    from plexus.learning.executors import ExecutorSettings

    ExecutorSettings(c.executor, c.workers, c.device, c.ray_address, c.batch_models).check()
    need(c.checkpoint_every is None or (c.checkpoint_every > 0 and math.isfinite(c.checkpoint_every)),
         f"checkpoint_every = {c.checkpoint_every}: must be a positive number of seconds")
    need(c.stall_timeout > 0, f"stall_timeout = {c.stall_timeout}: must be a positive number of seconds (inf allowed)")
    need(c.server_bandwidth > 0, f"server_bandwidth = {c.server_bandwidth}: must be > 0 (inf allowed)")
    need(c.latency_values in ("rtt", "one-way"), f"latency_values = {c.latency_values!r}: must be rtt or one-way")
    need(c.compute_model in COMPUTE_MODELS,
         f"compute_model = {c.compute_model!r}: must be one of {', '.join(COMPUTE_MODELS)}")
    need(c.compute_factor >= 0 and math.isfinite(c.compute_factor),
         f"compute_factor = {c.compute_factor}: must be a non-negative number")
    from plexus.sim.links import check as check_links

    check_links(c)
    for name in ("capacity_trace", "latency_matrix", "availability_trace"):
        path = getattr(c, name)
        if name == "availability_trace" and path is not None:
            from plexus.sim.traces.availability import is_synthetic_spec, parse_synthetic_spec

            if is_synthetic_spec(path):
                parse_synthetic_spec(path)  # raises ConfigError naming the bad parameter
                continue
        need(path is None or not Path(path).is_dir(), f"{name} = {path}: is a folder, not a file")
        need(path is None or Path(path).is_file(), f"{name} = {path}: file does not exist")

"""Studies: several runs on the same task, partition, traces and seed, then their comparison.

A study is how the papers' figures are made: every algorithm meets the same nodes, the same data split and
the same system traces, so differences come from the protocols alone. Two ways to describe one:

- lists on the command line: ``--algorithm plexus,fedavg,dpsgd`` makes one run per algorithm, and a list of
  topologies, ``--topology regular:10,one-peer-exp``, makes one run per topology *for the algorithms that use
  a topology* (D-PSGD); the other algorithms run once. Runs are named after the algorithm (``dpsgd``), or
  ``dpsgd-regular-10`` / ``dpsgd-one-peer-exp`` when several topologies are given;
- a TOML file with a ``[runs.NAME]`` table per run: the file's other options are shared, each table overrides
  some of them for its run, and NAME is the run's folder.

Command-line flags override the file in every run (so ``--rounds 10`` shortens a whole study). Each run writes
``<out>/<name>/`` (an ordinary results folder); the comparison goes to ``<out>/comparison/``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from plexus.config import SECTIONS, Config, coerce, config_from_mapping, resolve
from plexus.errors import ConfigError, PlexusError
from plexus.protocol.registry import algorithm

if TYPE_CHECKING:
    from plexus.metrics.analysis import Comparison
    from plexus.metrics.results import Results

log = logging.getLogger("plexus.study")
COMPARISON_DIR = "comparison"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _topology_algorithms() -> frozenset[str]:
    """The registered algorithms whose options include a topology (a topology list expands only them)."""
    from plexus.protocol.registry import algorithms

    return frozenset(name for name, spec in algorithms().items() if spec.traits.uses_topology)


@dataclass
class StudyRun:
    """One run of a study: its folder name and its resolved config (``out`` already points into the study)."""

    name: str
    config: Config


def split_list(text: Any, option: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty items and repeats are errors (they would make clashing folders)."""
    items = [item.strip() for item in str(text).split(",")]
    if any(not item for item in items):
        raise ConfigError(f"{option} {text!r}: empty item in the comma-separated list")
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ConfigError(f"{option} {text!r}: {repeated[0]!r} is listed twice")
    return items


def is_study(values: dict[str, Any]) -> bool:
    """Whether these options describe several runs (a runs table, or a list in --algorithm / --topology)."""
    if values.get("runs"):
        return True
    return any("," in str(values.get(name) or "") for name in ("algorithm", "topology"))


def slug(text: str) -> str:
    """A folder-safe form of an option value: ``regular:10`` -> ``regular-10``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def expand_lists(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One (name, options) pair per run, from comma lists in ``algorithm`` and ``topology``."""
    algorithms = split_list(values.get("algorithm") or Config.algorithm, "--algorithm")
    topology = values.get("topology")
    topologies = split_list(topology, "--topology") if topology is not None else []
    uses_topology = _topology_algorithms()
    if len(topologies) > 1 and not any(name in uses_topology for name in algorithms):
        raise ConfigError(
            f"--topology {topology!r}: several topologies need an algorithm that uses one "
            f"({', '.join(sorted(uses_topology))})"
        )
    runs: list[tuple[str, dict[str, Any]]] = []
    for name in algorithms:
        base = {**values, "algorithm": name}
        if len(topologies) > 1:
            if name in uses_topology:
                for graph in topologies:
                    runs.append((f"{name}-{slug(graph)}", {**base, "topology": graph}))
                continue
            base.pop("topology", None)  # irrelevant to this algorithm; keep its config.toml free of the list
        runs.append((name, base))
    return runs


def _flatten_run(name: str, table: Any, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: runs.{name} must be a table ([runs.{name}])")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in SECTIONS:
            flat.update(value)
        else:
            flat[key] = value
    for key in flat:
        coerce(key, flat[key], f"{source}: [runs.{name}]")  # unknown options and bad values fail here
    if "out" in flat:
        raise ConfigError(f"{source}: [runs.{name}] cannot set out (each run writes <out>/{name}/)")
    return flat


def plan_study(
    shared: dict[str, Any],
    runs: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    source: str = "config",
) -> list[StudyRun]:
    """Every run of a study, resolved and checked before any of them starts (a typo fails in seconds, not hours).

    ``shared`` are the options common to all runs (a file's options), ``runs`` the ``[runs.NAME]`` tables,
    ``overrides`` options that win over both (command-line flags). Output folders are set by :func:`run_study`.
    """
    overrides = dict(overrides or {})
    overrides.pop("out", None)
    if runs:
        for option in ("algorithm", "topology"):
            if "," in str(overrides.get(option) or ""):
                raise ConfigError(f"a list in --{option} cannot be combined with the [runs] tables of {source}")
        planned = []
        for name, table in runs.items():
            if not _NAME.match(name) or name == COMPARISON_DIR:
                raise ConfigError(f"{source}: run name {name!r} must be a folder name (letters, digits, . _ -) "
                                  f"other than {COMPARISON_DIR!r}")
            planned.append((name, {**shared, **_flatten_run(name, table, source), **overrides}))
    elif runs is not None:
        raise ConfigError(f"{source}: the [runs] table is empty")
    else:
        planned = expand_lists({**shared, **overrides})
    study = []
    own_tables = {name: _flatten_run(name, table, source) for name, table in (runs or {}).items()}
    shared_options: dict[str, Any] = {}
    used: set[str] = set()
    for name, values in planned:
        values.pop("out", None)
        config = config_from_mapping(values, f"{source}, run {name}")
        # options shared by the whole study apply to the runs whose algorithm has them; only an option a run
        # sets in its own table and cannot use is worth a warning from that run
        own = set(own_tables.get(name, {}))
        try:
            declared = {option.name for option in algorithm(config.algorithm).option_specs()}
        except ConfigError as error:
            raise ConfigError(f"run {name}: {error}") from None
        for key, value in config.protocol.items():
            if key not in own:
                shared_options[key] = value
        used |= declared & set(config.protocol)
        kept = {k: v for k, v in config.protocol.items() if k in declared or k in own}
        config = dataclasses.replace(config, protocol=kept)
        try:
            study.append(StudyRun(name, resolve(config)))
        except ConfigError as error:
            raise ConfigError(f"run {name}: {error}") from None
    for key in sorted(set(shared_options) - used):
        log.warning("option %s = %r has no effect: no run of the study uses it", key, shared_options[key])
    return study


def default_study_dir(study: Sequence[StudyRun]) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    first = study[0].config
    base = Path("results") / f"study-{first.task}-n{first.nodes}-s{first.seed}-{stamp}"
    path, count = base, 1
    while path.exists():  # two studies started in the same second
        count += 1
        path = base.with_name(f"{base.name}-{count}")
    return path


ProgressFactory = Callable[[int, StudyRun], Any]


def check_study(study: Sequence[StudyRun], stream: TextIO | None = None) -> None:
    """Check every run's data, partition and traces before the first starts (configs are checked when the
    study is planned): a bad ``data`` in the last run fails in seconds, not after the others have run. Loaded
    datasets stay shared for the runs (call inside :func:`plexus.sim.simulation.shared_data`). Runs whose
    nodes are fitted to the data (a preset larger than the data's users) get the fitted config."""
    from plexus.sim.simulation import preflight

    tty = stream is not None and getattr(stream, "isatty", lambda: False)()
    if stream is not None and not tty:
        stream.write(f"checking the data of {len(study)} runs\n")
        stream.flush()
    for planned in study:
        if tty:
            stream.write(f"\rchecking run {planned.name}...\033[K")  # type: ignore[union-attr]
            stream.flush()  # type: ignore[union-attr]
        try:
            planned.config = preflight(planned.config)
        except PlexusError as error:
            raise type(error)(f"run {planned.name}: {error}") from None
    if tty:
        stream.write("\r\033[K")  # type: ignore[union-attr]
        stream.flush()  # type: ignore[union-attr]


def run_study(
    study: Sequence[StudyRun],
    out: str | Path | None = None,
    progress: bool = False,
    stream: TextIO | None = None,
    target: float | None = None,
    overwrite: bool = False,
) -> tuple[list[Results], Comparison]:
    """Check every run, then run each into ``<out>/<name>/``, then compare them into ``<out>/comparison/``.

    The study folder is checked and created first (a non-empty one is refused unless ``overwrite``).
    ``<out>/study.json`` lists the runs and their status as the study goes. If the study is interrupted, the
    runs done so far and the partial one are kept and compared, and a line on stderr says which runs are
    complete; the KeyboardInterrupt then goes on. With ``progress`` a bar on stderr shows ``[run i/n: name]``;
    ``stream`` (if given) receives the summary and comparison tables.
    """
    from plexus.commands.progress import ProgressBar, print_summary_table
    from plexus.metrics.analysis import compare
    from plexus.metrics.results import prepare_folder
    from plexus.sim.simulation import run_simulation, shared_data

    if not study:
        raise ConfigError("a study needs at least one run")
    root = prepare_folder(Path(out) if out else default_study_dir(study), overwrite=overwrite,
                          what="study folder")
    results: list[Results] = []
    status = {planned.name: "not started" for planned in study}
    _write_study_file(root, study, status)
    with shared_data():
        check_study(study, sys.stderr if progress else None)
        for index, planned in enumerate(study, start=1):
            config = planned.config.replace(out=str(root / planned.name))
            bar = ProgressBar(config, enabled=progress, label=f"run {index}/{len(study)}: {planned.name}")
            status[planned.name] = "running"
            _write_study_file(root, study, status)
            try:
                results.append(run_simulation(config, progress=bar))
                status[planned.name] = str(results[-1].summary.get("status", "completed"))
            except KeyboardInterrupt:
                bar.close()
                status[planned.name] = "interrupted"
                _interrupted_study(root, study, status, target)
                raise
            except BaseException:
                status[planned.name] = "failed"
                _write_study_file(root, study, status)
                raise
            finally:
                bar.close()
            _write_study_file(root, study, status)
    comparison = compare([r.directory for r in results], target=target)
    written = comparison.write(root / COMPARISON_DIR)
    if stream is not None:
        print_summary_table(results, stream=stream)
        stream.write("\n" + comparison.to_text())
        stream.write(f"wrote {', '.join(p.name for p in written)} to {root / COMPARISON_DIR}\n")
    return results, comparison


def _write_study_file(root: Path, study: Sequence[StudyRun], status: dict[str, str]) -> None:
    from plexus.metrics.results import STUDY_FILE, write_json

    write_json(root / STUDY_FILE, {"runs": [{"name": p.name, "algorithm": p.config.algorithm,
                                             "status": status[p.name]} for p in study]})


def _interrupted_study(root: Path, study: Sequence[StudyRun], status: dict[str, str], target: float | None) -> None:
    """Say which runs of an interrupted study are complete, and compare what there is (best effort)."""
    from plexus.metrics.analysis import compare

    _write_study_file(root, study, status)
    done = [name for name, value in status.items() if value not in ("not started", "interrupted")]
    cut = [name for name, value in status.items() if value == "interrupted"]
    waiting = [name for name, value in status.items() if value == "not started"]
    parts = [f"complete: {', '.join(done) or 'none'}"]
    if cut:
        parts.append(f"interrupted (partial results kept): {', '.join(cut)}")
    if waiting:
        parts.append(f"not started: {', '.join(waiting)}")
    note = ""
    try:
        folders = [root / name for name in done + cut]
        if folders:
            compare(folders, target=target).write(root / COMPARISON_DIR)
            note = f"; comparison of these runs in {root / COMPARISON_DIR}"
    except Exception:  # nothing comparable yet (no evaluation): the runs' folders are what matters
        pass
    sys.stderr.write(f"plexus: study {root} interrupted; {'; '.join(parts)}{note}\n")
    sys.stderr.flush()


def study(
    config: Config | dict[str, Any] | str | Path,
    algorithms: Sequence[str] | None = None,
    topologies: Sequence[str] | None = None,
    runs: dict[str, dict[str, Any]] | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> list[Results]:
    """Python entry point of a study; returns each run's :class:`Results` (the comparison is on disk).

    ``config`` gives the shared options (a Config, a dict, or a TOML file, whose ``[runs.NAME]`` tables are
    used unless ``runs`` is given); ``algorithms`` / ``topologies`` expand as the CLI's comma lists do.
    """
    from plexus.config import load_toml

    if isinstance(config, (str, Path)):
        source = str(config)
        shared = load_toml(config)
        file_runs = shared.pop("runs", None)
        runs = runs if runs is not None else file_runs
    else:
        source = "config"
        shared = dataclasses.asdict(config) if isinstance(config, Config) else dict(config)
    shared = {k: v for k, v in shared.items() if v is not None}
    if algorithms is not None:
        overrides["algorithm"] = ",".join(algorithms)
    if topologies is not None:
        overrides["topology"] = ",".join(topologies)
    out = out if out is not None else shared.pop("out", None)
    shared.pop("out", None)
    planned = plan_study(shared, runs, overrides, source)
    results, _ = run_study(planned, out, progress=progress, stream=sys.stderr if progress else None,
                           overwrite=overwrite)
    return results

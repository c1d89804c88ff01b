"""``plexus simulate``: run an experiment in virtual time, or a study of several.

Options come from a TOML file (``--config``) overridden by flags; every field of
:class:`plexus.config.Config` has a flag of the same name, and so does every option an algorithm declares
(generated from the registry, plug-ins included). A comma list in ``--algorithm`` or ``--topology``,
or ``[runs.NAME]`` tables in the file, make a study (see :mod:`plexus.studies`): the runs go to
``<out>/<name>/`` and their comparison to ``<out>/comparison/``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from plexus.commands.progress import ProgressBar, print_summary_table, warnings_on_stderr
from plexus.config import PROTOCOL, Config, coerce, config_from_mapping, field_types, load_toml, typing_args
from plexus.protocol.registry import all_option_specs
from plexus.studies import is_study

FLAG_ALIASES = {"out": ["-o"]}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a simulation in virtual time",
        description="Run an experiment in virtual time. Unset options take the task's preset from the papers.",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file; flags override it")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results folder (-o) if it already holds results (never recorded in "
                             "config.toml)")
    types = field_types()
    for f in Config.__dataclass_fields__.values():
        if f.name == PROTOCOL:
            continue
        target = next(t for t in typing_args(types[f.name]) if t is not type(None))
        _add_flag(parser, f.name, target, f.metadata["help"])
    group = parser.add_argument_group(
        "algorithm options", "declared by the algorithms (see plexus algorithms); [used by] lists who reads each")
    for name, (option, users) in all_option_specs().items():
        choices = f" ({' | '.join(map(str, option.choices))})" if option.choices else ""
        default = "" if option.default is None else f"; default {option.default}"
        _add_flag(group, name, option.type, f"{option.help}{choices}{default} [{', '.join(users)}]")
    parser.set_defaults(handler=run)


def _add_flag(parser: Any, name: str, target: type, help: str) -> None:
    metavar = {int: "N", float: "X", str: "TEXT"}.get(target, "VALUE")
    flags = [f"--{name.replace('_', '-')}", *FLAG_ALIASES.get(name, [])]
    if target is bool:
        parser.add_argument(*flags, dest=name, default=None, action="store_const", const=True, help=help)
    else:
        parser.add_argument(*flags, dest=name, default=None, metavar=metavar, help=help)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options given as flags, converted to their fields' types."""
    values: dict[str, Any] = {}
    for name in [*Config.field_names(), *all_option_specs()]:
        raw = getattr(args, name, None)
        if raw is not None:
            values[name] = coerce(name, raw, f"--{name.replace('_', '-')}")
    return values


def run(args: argparse.Namespace) -> int:
    from plexus.config import resolve
    from plexus.sim.simulation import run_simulation

    file_values: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags = flag_values(args)
    with warnings_on_stderr():
        if is_study({**file_values, **flags}):
            return run_study_command(args, file_values, flags)
        single = {key: value for key, value in file_values.items() if key != "runs"}
        given = config_from_mapping({**single, **flags}, args.config or "command line")
        # the bar needs the resolved stop condition; the run resolves the config itself, so that what resolving
        # drops or ignores (another algorithm's options, ...) is reported as warnings
        bar = ProgressBar(resolve(given), enabled=not args.quiet)
        try:
            results = run_simulation(given, progress=bar, overwrite=args.overwrite)
        finally:
            bar.close()
    print_summary_table([results], stream=sys.stdout)
    return exit_status([results])


EXIT_STALLED = 3


def exit_status(results: list[Any]) -> int:
    """0, or EXIT_STALLED (3) when a run stalled: no progress was possible before its stop condition."""
    stalled = [r for r in results if r.summary.get("stalled")]
    for result in stalled:
        where = result.summary.get("stalled_at", {})
        print(f"plexus: {result.directory}: the run stalled at t={where.get('time_s', float('nan')):.1f}s "
              f"(round {where.get('round', '?')}): {where.get('reason', '')}", file=sys.stderr)
    return EXIT_STALLED if stalled else 0


def run_study_command(args: argparse.Namespace, file_values: dict[str, Any], flags: dict[str, Any]) -> int:
    """Several runs: plan (and check) them all, run each, then print and save their comparison."""
    from plexus.studies import plan_study, run_study

    runs = file_values.pop("runs", None)
    source = args.config or "command line"
    study = plan_study(file_values, runs, flags, source)
    out = flags.get("out") or file_values.get("out")
    if not args.quiet:
        names = ", ".join(run.name for run in study)
        print(f"study of {len(study)} runs: {names}", file=sys.stderr)
    results, _ = run_study(study, out, progress=not args.quiet, stream=sys.stdout, overwrite=args.overwrite)
    return exit_status(results)

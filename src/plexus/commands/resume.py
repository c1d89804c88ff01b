"""``plexus resume RESULT_DIR``: continue a run from the checkpoint in its results folder.

A run writes ``checkpoint.pkl`` every ``--checkpoint-every`` wall seconds and when interrupted with Ctrl-C (see
:mod:`plexus.sim.checkpoint`); resuming it gives the same metrics as if it had never stopped. How training is
executed may change on resume (``--executor``, ``--workers``, ``--device``, ``--ray-address``,
``--batch-models``), as may ``--checkpoint-every``; nothing else.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

OVERRIDES = {
    "executor": "inline, pool, ray or batched (results do not depend on it)",
    "workers": "pool / ray: worker processes or actors",
    "device": "batched executor: torch device",
    "ray_address": "ray executor: address of a Ray cluster",
    "batch_models": "batched executor: most models per pass",
    "checkpoint_every": "write a checkpoint every X wall seconds",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resume",
        help="continue an interrupted run from its checkpoint",
        description="Continue a run from RESULT_DIR/checkpoint.pkl (written by --checkpoint-every or on Ctrl-C); "
                    "the results are the same as an uninterrupted run's.",
    )
    parser.add_argument("directory", metavar="RESULT_DIR", help="the interrupted run's results folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, help in OVERRIDES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=help)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plexus.commands.progress import ProgressBar, print_summary_table
    from plexus.commands.simulate import exit_status
    from plexus.sim.checkpoint import read_header, resume_simulation

    header = read_header(_path(args.directory))
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    bar = ProgressBar(header["config"], enabled=not args.quiet)
    results = resume_simulation(args.directory, progress=bar.update, overrides=overrides)
    bar.close()
    print_summary_table([results], stream=sys.stdout)
    return exit_status([results])


def _path(text: str) -> Any:
    from pathlib import Path

    from plexus.errors import ConfigError

    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"{text}: no such results folder")
    return path

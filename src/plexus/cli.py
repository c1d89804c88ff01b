"""The ``plexus`` command. Each subcommand lives in :mod:`plexus.commands` and registers itself here.

User errors (bad options, missing files, malformed data) print one line naming the problem and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from plexus import __version__
from plexus.commands import SUBCOMMANDS
from plexus.errors import PlexusError


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print only the error line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"plexus: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="plexus",
        description="Federated learning without a server: simulate Plexus and its baselines in virtual time.",
    )
    parser.add_argument("--version", action="version", version=f"plexus {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PlexusError as error:
        print(f"plexus: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plexus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `plexus tasks --json | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

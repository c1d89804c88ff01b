"""The ``plexus`` command. Each subcommand lives in :mod:`plexus.commands` and registers itself here.

User errors (bad options, missing files, malformed data) print one line naming the problem and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
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


class _WarningLine(logging.Handler):
    """Warnings of plexus's loggers, one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"plexus: warning: {record.getMessage()}", file=sys.stderr)


def _early_plugins(argv: Sequence[str]) -> None:
    """Load ``--plugin`` modules (and those a ``--config`` file names) before the parser is built, so that
    their algorithms' options get flags."""
    from plexus.config import load_plugins

    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            load_plugins(argv[i + 1])
        elif arg.startswith("--plugin="):
            load_plugins(arg.split("=", 1)[1])
        elif arg == "--config" and i + 1 < len(argv) or arg.startswith("--config="):
            path = argv[i + 1] if arg == "--config" else arg.split("=", 1)[1]
            try:
                import tomllib

                with open(path, "rb") as handle:
                    document = tomllib.load(handle)
            except (OSError, ValueError):
                continue  # reported properly when the command reads the file
            run = document.get("run")
            plugin = document.get("plugin") or (run.get("plugin") if isinstance(run, dict) else None)
            if isinstance(plugin, str):
                load_plugins(plugin)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings = _WarningLine(logging.WARNING)
    logger = logging.getLogger("plexus")
    logger.addHandler(warnings)
    try:
        return _main(argv)
    finally:
        logger.removeHandler(warnings)


def _main(argv: list[str]) -> int:
    try:
        _early_plugins(argv)
    except PlexusError as error:
        print(f"plexus: error: {error}", file=sys.stderr)
        return 2
    from plexus.protocol.registry import plugin_warnings

    for warning in plugin_warnings():
        print(f"plexus: warning: {warning}", file=sys.stderr)
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

"""The ``plexus`` command. Each subcommand lives in :mod:`plexus.commands` and registers itself here.

User errors (bad options, missing files, malformed data) print one line naming the problem and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
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
    _remember_parsers(parser)
    return parser


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
def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser records itself in ``args.parser``, so errors can name its own --help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(parser=child)
                _remember_parsers(child)


def main(argv: Sequence[str] | None = None) -> int:
    from plexus.commands.progress import warnings_on_stderr

    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings_on_stderr():  # every command's warnings, one line each on stderr
        return _main(argv)


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
    args, extra = parser.parse_known_args(argv)
    if extra:
        # name the subcommand's help, where its options are listed, rather than the top-level one
        owner = getattr(args, "parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PlexusError as error:
        print(f"plexus: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        where = getattr(interrupt, "results_dir", None)
        kept = f"; what was done is in {where} (summary.json status: interrupted)" if where else ""
        print(f"plexus: interrupted{kept}", file=sys.stderr)
        name = getattr(interrupt, "signal_name", "SIGINT")
        return 128 + int(getattr(signal, name, signal.SIGINT))  # the shell's convention: 130 Ctrl-C, 143 SIGTERM
    except BrokenPipeError:
        # the reader went away (e.g. `plexus tasks --json | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

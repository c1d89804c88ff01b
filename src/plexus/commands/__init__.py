"""Subcommands of the ``plexus`` CLI; each module has ``register(subparsers)`` that sets ``handler``."""

from plexus.commands import algorithms, compare, resume, simulate, tasks, traces

SUBCOMMANDS = [simulate, resume, compare, algorithms, traces, tasks]

"""Subcommands of the ``plexus`` CLI; each module has ``register(subparsers)`` that sets ``handler``."""

from plexus.commands import algorithms, compare, live, simulate, tasks, traces

SUBCOMMANDS = [simulate, compare, algorithms, traces, tasks, live]

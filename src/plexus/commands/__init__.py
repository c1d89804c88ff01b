from plexus.commands import algorithms, compare, live, resume, simulate, tasks, traces

SUBCOMMANDS = [simulate, resume, compare, algorithms, traces, tasks, live]

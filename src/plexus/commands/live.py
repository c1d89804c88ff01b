"""The live commands: ``plexus keygen``, ``plexus node``, ``plexus observe`` and ``plexus launch``.

``node`` and ``observe`` read the run's config from a TOML file (the same format as ``plexus simulate``); ``launch``
takes every option ``plexus simulate`` takes (a file and flags), and runs the experiment as one process per node on
this machine's loopback instead of in virtual time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from plexus.commands.progress import ProgressBar, print_summary_table
from plexus.config import PROTOCOL, Config, config_from_mapping, field_types, load_toml, typing_args
from plexus.protocol.registry import all_option_specs

# how the simulator executes training (plexus.learning.executors) and checkpoints: no meaning for live nodes, which
# train in their own processes (launch's own --device says where)
SIMULATOR_ONLY = frozenset({"executor", "workers", "device", "ray_address", "batch_models", "checkpoint_every"})


def register(subparsers: Any) -> None:
    keygen = subparsers.add_parser("keygen", help="create a node's Ed25519 key (its id in live runs)",
                                   description="Create an Ed25519 key file (mode 0600) and FILE.pub holding the node "
                                   "id (64 hex digits) that goes into peers files.")
    keygen.add_argument("--out", "-o", required=True, metavar="FILE", help="where to write the private key")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")
    keygen.set_defaults(handler=run_keygen)

    node = subparsers.add_parser("node", help="run one live node until it is told to stop",
                                 description="Run one node of a live run: it listens, waits for the start, runs the "
                                 "algorithm of the config over signed TCP, and stops on its stop condition, the "
                                 "observer's stop or SIGINT/SIGTERM (saving its state; rerun to resume).")
    _common(node)
    node.add_argument("--state", metavar="DIR", help="state folder (saved model/round/view, events.csv, node.log); "
                      "default plexus-node-<id>")
    node.add_argument("--device", default="cpu", help="where to train: cpu or cuda (default cpu)")
    node.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads for training (default 1)")
    node.set_defaults(handler=run_node_command)

    observe = subparsers.add_parser("observe", help="observe a live run: evaluate models, stop the run",
                                    description="Run the observer of a live run (the [observer] of the peers file): "
                                    "it holds the test set, evaluates the models nodes report, starts and stops the "
                                    "run, and writes a results folder.")
    _common(observe)
    observe.add_argument("--out", "-o", required=True, metavar="DIR", help="results folder")
    observe.add_argument("--timeout", type=float, default=86400.0, metavar="S", help="stop the run after S seconds")
    observe.add_argument("--quiet", action="store_true", help="no progress bar")
    observe.set_defaults(handler=run_observe_command)

    launch = subparsers.add_parser("launch", help="run an experiment live: N node processes on loopback",
                                   description="Run an experiment live on this machine: one process per node on "
                                   "loopback, signed TCP between them, an observer, and a results folder in the "
                                   "simulator's format (plus events.csv), comparable with plexus compare.")
    launch.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file; flags override it")
    launch.add_argument("--quiet", action="store_true", help="no progress bar")
    launch.add_argument("--host", default="127.0.0.1", help="loopback address to use (default 127.0.0.1; ::1 for IPv6)")
    launch.add_argument("--device", dest="live_device", default="cpu",
                        help="where nodes train: cpu or cuda (default cpu)")
    launch.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                        help="stop the run after S wall seconds (default 3600)")
    launch.add_argument("--ready-timeout", type=float, default=300.0, metavar="S",
                        help="give up when the nodes are not all listening after S seconds (default 300)")
    from plexus.commands.simulate import _add_flag

    types = field_types()
    for f in Config.__dataclass_fields__.values():
        if f.name == PROTOCOL or f.name in SIMULATOR_ONLY:
            continue
        target = next(t for t in typing_args(types[f.name]) if t is not type(None))
        _add_flag(launch, f.name, target, f.metadata["help"])
    group = launch.add_argument_group("algorithm options", "as in plexus simulate")
    for name, (option, users) in all_option_specs().items():
        _add_flag(group, name, option.type, f"{option.help} [{', '.join(users)}]")
    launch.set_defaults(handler=run_launch_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE.toml", help="the run's config (as plexus simulate)")
    parser.add_argument("--key", required=True, metavar="FILE", help="this participant's key (plexus keygen)")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on")
    parser.add_argument("--peers", required=True, metavar="FILE", help="the run's peers file (TOML)")
    parser.add_argument("--data", metavar="PATH", help="the task's data (overrides the config's data)")


def _config(args: argparse.Namespace) -> Config:
    values = load_toml(args.config)
    values.pop("runs", None)
    if getattr(args, "data", None):
        values["data"] = args.data
    return config_from_mapping(values, args.config)


def run_keygen(args: argparse.Namespace) -> int:
    from plexus.live.keys import Identity, write_key

    identity = Identity.generate()
    path = write_key(args.out, identity, force=args.force)
    print(identity.hex)
    print(f"plexus: wrote {path} (private, mode 0600) and {path}.pub", file=sys.stderr)
    return 0


def run_node_command(args: argparse.Namespace) -> int:
    from plexus.live.process import run_node

    return run_node(_config(args), args.key, args.listen, args.peers, args.state, args.device, args.threads)


def run_observe_command(args: argparse.Namespace) -> int:
    from plexus.commands.simulate import exit_status
    from plexus.live.process import run_observer

    config = _config(args)
    bar = ProgressBar(config, enabled=not args.quiet, label=f"live {config.algorithm}")
    results = run_observer(config, args.key, args.listen, args.peers, args.out, timeout=args.timeout,
                           on_row=bar.update)
    bar.close()
    print_summary_table([results], stream=sys.stdout)
    return exit_status([results])


def run_launch_command(args: argparse.Namespace) -> int:
    from plexus.commands.simulate import exit_status, flag_values
    from plexus.config import resolve
    from plexus.live.launch import launch

    file_values: dict[str, Any] = load_toml(args.config) if args.config else {}
    if "runs" in file_values:
        from plexus.errors import ConfigError

        raise ConfigError(f"{args.config}: plexus launch runs one experiment; [runs.*] tables are for simulations")
    config = resolve(config_from_mapping({**file_values, **flag_values(args)}, args.config or "command line"))
    if config.out:
        out = Path(config.out)
    else:
        from plexus.sim.simulation import default_out_dir

        default = default_out_dir(config)
        out = default.with_name("live-" + default.name)
    bar = ProgressBar(config, enabled=not args.quiet, label=f"live {config.algorithm} on {config.task}")
    results = launch(config, out, host=args.host, device=args.live_device, timeout=args.timeout,
                     ready_timeout=args.ready_timeout, on_row=bar.update)
    bar.close()
    print_summary_table([results], stream=sys.stdout)
    return exit_status([results])

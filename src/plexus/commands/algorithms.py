"""``plexus algorithms``: every registered algorithm (shipped and plug-in) with its traits and options.

Everything printed comes from what the algorithm modules declare (:mod:`plexus.protocol.registry`), so a plug-in
shows up here, with its own options, as soon as it is installed (entry point) or named with ``--plugin``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "algorithms",
        help="list the algorithms, their traits and options",
        description="List every registered algorithm (plug-ins included): description, traits, options with "
                    "their defaults, and the message types it sends.",
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--plugin", metavar="MODULE", help="also load this plug-in module (or .py file)")
    parser.set_defaults(handler=run)


def algorithm_rows() -> list[dict[str, Any]]:
    from plexus.protocol.registry import algorithms

    rows = []
    for name, spec in sorted(algorithms().items()):
        rows.append({
            "name": name,
            "description": spec.description,
            "module": spec.module,
            "traits": spec.traits.as_dict(),
            "options": [
                {"name": option.name, "flag": option.flag, "type": option.type.__name__,
                 "default": _json_value(option.default), "choices": list(option.choices or []) or None,
                 "help": option.help}
                for option in spec.option_specs()
            ],
            "messages": [{"kind": m.kind, "name": m.__name__} for m in spec.message_types()],
        })
    return rows


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def run(args: argparse.Namespace) -> int:
    if args.plugin:
        from plexus.config import load_plugins

        load_plugins(args.plugin)
    rows = algorithm_rows()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    for row in rows:
        traits = row["traits"]
        kind = "decentralized learning" if traits["decentralized"] else "federated"
        features = [kind, f"evaluates {'node models' if traits['evaluation'] == 'nodes' else 'global models'}",
                    "rounds" if traits["clock"] == "rounds" else "time periods"]
        if traits["server"]:
            features.append("with a server")
        out.write(f"{row['name']}: {row['description']}\n")
        out.write(f"  traits: {', '.join(features)}   [{row['module']}]\n")
        for option in row["options"]:
            choices = f" ({' | '.join(map(str, option['choices']))})" if option["choices"] else ""
            out.write(f"  {option['flag']:<22} {option['type']:<5} default {option['default']!s:<10} "
                      f"{option['help']}{choices}\n")
        messages = ", ".join(f"{m['name']} ({m['kind']})" for m in row["messages"])
        out.write(f"  messages: {messages}\n\n")
    return 0

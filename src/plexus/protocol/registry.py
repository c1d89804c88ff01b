"""The algorithm registry: every algorithm registers itself, shipped or plug-in, and everything else derives
from what it declares (CLI flags, TOML keys, ``plexus algorithms``, studies, the traits a results folder records).

An algorithm is one module: its node class, decorated with :func:`register`, its options dataclass
(:mod:`plexus.protocol.options`) and its message types (:mod:`plexus.protocol.messages`)::

    @register("my-fl", description="my federated algorithm", options=MyOptions, server=MyServer)
    class MyClient(Node): ...

Outside packages are found through the ``plexus.algorithms`` entry-point group (the entry point names a module;
importing it registers its algorithms) or loaded by name with :func:`load_plugin` (``--plugin MODULE``, which also
accepts the path of a ``.py`` file).

**Traits** describe how the rest of the system must treat an algorithm:

- ``decentralized``: a decentralized-learning baseline (the group ``plexus compare`` computes ratios against);
- ``evaluation``: ``"global"`` when nodes report global models (``metrics.global_model``), ``"nodes"`` when
  there is none and the observer evaluates node models;
- ``clock``: ``"rounds"`` (nodes report rounds) or ``"periods"`` (no rounds; a round is ``period`` seconds);
- ``uses_sample_size`` / ``uses_topology``: whether ``sample_size`` / ``topology`` are among its options;
- ``server``: whether a participant without data (a server) is added to the nodes.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from plexus.errors import ConfigError
from plexus.protocol.node import Node
from plexus.protocol.options import OptionSpec, field_type, protocol_fields, specs

ENTRY_POINT_GROUP = "plexus.algorithms"
BUILTIN_MODULES = (
    "plexus.protocol.plexus",
    "plexus.protocol.modest",
    "plexus.protocol.fedavg",
    "plexus.protocol.dpsgd",
    "plexus.protocol.gossip",
    "plexus.protocol.epidemic",
    "plexus.protocol.divshare",
    "plexus.protocol.swift",
    "plexus.protocol.adpsgd",
    "plexus.protocol.adpsgd_divshare",
)
EVALUATIONS = ("global", "nodes")
CLOCKS = ("rounds", "periods")


@dataclass(frozen=True)
class Traits:
    decentralized: bool
    evaluation: str
    clock: str
    uses_sample_size: bool
    uses_topology: bool
    server: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Algorithm:
    name: str
    description: str
    node: Callable[..., Node]
    options: type
    traits: Traits
    server: Callable[..., Node] | None = None
    period: Callable[[Any], float] | None = None  # seconds per round for clock = "periods"
    module: str = ""

    def option_specs(self) -> list[OptionSpec]:
        return specs(self.options)

    def message_types(self) -> list[type]:
        """Every message type the algorithm's nodes take: its node class, the variants that class declares (a class
        may build a subclass of itself from its options, e.g. Plexus with MoDeST's membership) and its server."""
        kinds = list(getattr(self.node, "handlers", {}))
        for variant in (*getattr(self.node, "variants", ()), self.server):
            if variant is not None:
                kinds += [k for k in getattr(variant, "handlers", {}) if k not in kinds]
        return kinds


_ALGORITHMS: dict[str, Algorithm] = {}
_OPTION_OWNERS: dict[str, tuple[type, str]] = {}  # option name -> (type, first algorithm declaring it)
_loaded = False
_plugin_warnings: list[str] = []
N = TypeVar("N", bound=type)


def register(
    name: str,
    *,
    description: str,
    options: type,
    decentralized: bool = False,
    evaluation: str = "global",
    clock: str = "rounds",
    period: Callable[[Any], float] | None = None,
    server: Callable[..., Node] | None = None,
) -> Callable[[N], N]:
    """Class decorator registering a node class as algorithm ``name`` (see the module docstring)."""
    if not name or not all(c.isalnum() or c in "-_" for c in name) or name != name.lower():
        raise ValueError(f"algorithm name {name!r}: use lower-case letters, digits, '-' and '_'")
    if evaluation not in EVALUATIONS:
        raise ValueError(f"algorithm {name}: evaluation must be one of {EVALUATIONS}, got {evaluation!r}")
    if clock not in CLOCKS:
        raise ValueError(f"algorithm {name}: clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "periods" and period is None:
        raise ValueError(f"algorithm {name}: clock 'periods' needs period(options) -> seconds")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"algorithm {name}: options must be a dataclass, got {options!r}")

    def decorate(node: N) -> N:
        if not (isinstance(node, type) and issubclass(node, Node)):
            raise TypeError(f"algorithm {name}: {node!r} is not a plexus.protocol.node.Node subclass")
        module = getattr(node, "__module__", "")
        existing = _ALGORITHMS.get(name)
        if existing is not None and existing.module != module:
            raise ValueError(f"algorithm {name!r} of {module} is already registered by {existing.module}")
        names = {f.name for f in protocol_fields(options)}
        for option_name in names:
            target = field_type(options, option_name)
            owner = _OPTION_OWNERS.get(option_name)
            if owner is not None and owner[0] is not target and owner[1] != name:
                raise TypeError(f"algorithm {name}: option {option_name} is a {target.__name__}, but algorithm "
                                f"{owner[1]} declares it as a {owner[0].__name__} (one flag has one type)")
        for option_name in names:
            _OPTION_OWNERS.setdefault(option_name, (field_type(options, option_name), name))
        traits = Traits(
            decentralized=decentralized,
            evaluation=evaluation,
            clock=clock,
            uses_sample_size="sample_size" in names,
            uses_topology="topology" in names,
            server=server is not None,
        )
        _ALGORITHMS[name] = Algorithm(name, description, node, options, traits, server, period, module)
        return node

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a broken third-party plug-in must not take plexus down with it
            _plugin_warnings.append(f"plug-in {entry.name} ({entry.value}) could not be loaded: {error}")


def plugin_warnings() -> list[str]:
    """Problems met while loading entry-point plug-ins (reported by the CLI)."""
    _load()
    return list(_plugin_warnings)


def algorithms() -> dict[str, Algorithm]:
    """Every registered algorithm, by name (the shipped ones, then entry-point and --plugin ones)."""
    _load()
    return dict(_ALGORITHMS)


def algorithm(name: str) -> Algorithm:
    _load()
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r}; choose from {', '.join(sorted(_ALGORITHMS))} "
                          f"(plug-ins: --plugin MODULE or the {ENTRY_POINT_GROUP} entry point)") from None


def load_plugin(spec: str) -> None:
    """Import a plug-in module by name, or a ``.py`` file by path; importing it registers its algorithms."""
    _load()
    spec = spec.strip()
    if not spec:
        raise ConfigError("--plugin: empty module name")
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"--plugin {spec}: file does not exist")
        name = f"plexus_plugin_{path.stem}"
        if name in sys.modules:
            return
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"--plugin {spec}: not a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ConfigError(f"--plugin {spec}: importing it failed: {type(error).__name__}: {error}") from None
        return
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as error:
        if error.name and spec.startswith(error.name):
            raise ConfigError(f"--plugin {spec}: no such module (is it installed, or on PYTHONPATH?)") from None
        raise ConfigError(f"--plugin {spec}: importing it failed: {error}") from None
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"--plugin {spec}: importing it failed: {type(error).__name__}: {error}") from None


def all_option_specs() -> dict[str, tuple[OptionSpec, list[str]]]:
    """Every protocol option of every registered algorithm: its spec (from the first algorithm declaring it)
    and the algorithms that use it."""
    table: dict[str, tuple[OptionSpec, list[str]]] = {}
    for name, spec in sorted(algorithms().items()):
        for option in spec.option_specs():
            if option.name in table:
                table[option.name][1].append(name)
            else:
                table[option.name] = (option, [name])
    return table

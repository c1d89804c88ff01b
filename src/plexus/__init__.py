"""plexus: federated learning without a server, and the decentralized-learning baselines it is compared with.

Notebook entry point::

    import plexus
    results = plexus.simulate({"algorithm": "plexus", "task": "digits", "nodes": 100, "rounds": 50})
    results.summary["final_accuracy"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from plexus.config import Config
    from plexus.metrics.results import Results


def simulate(config: Config | dict[str, Any] | str | Path, **overrides: Any) -> Results:
    """Run one simulation. ``config`` is a :class:`Config`, a dict of options, or a TOML file's path."""
    from plexus.config import config_from_mapping, load_toml
    from plexus.sim.simulation import run_simulation

    if isinstance(config, (str, Path)):
        values = load_toml(config)
        values.pop("runs", None)
        config = config_from_mapping(values, str(config))
    elif isinstance(config, dict):
        config = config_from_mapping(config)
    if overrides:
        config = config.replace(**overrides)
    return run_simulation(config)


__all__ = ["__version__", "simulate"]

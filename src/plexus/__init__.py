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
    from plexus.metrics.analysis import Comparison
    from plexus.metrics.results import Results


def simulate(config: Config | dict[str, Any] | str | Path, overwrite: bool = False, **overrides: Any) -> Results:
    """Run one simulation. ``config`` is a :class:`Config`, a dict of options, or a TOML file's path.

    The results folder (``out``) must not hold results yet, unless ``overwrite`` is True."""
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
    return run_simulation(config, overwrite=overwrite)


def study(
    config: Config | dict[str, Any] | str | Path,
    algorithms: list[str] | None = None,
    topologies: list[str] | None = None,
    **options: Any,
) -> list[Results]:
    """Run several algorithms (or D-PSGD topologies, or a TOML's ``[runs.NAME]`` tables) on the same task,
    partition, traces and seed, into ``<out>/<name>/``, and write their comparison to ``<out>/comparison/``.

    ``options`` are ``runs``, ``out``, ``progress`` and config overrides; see :func:`plexus.studies.study`.
    """
    from plexus.studies import study as run

    return run(config, algorithms=algorithms, topologies=topologies, **options)


def compare(directories: list[str | Path], target: float | None = None, out: str | Path | None = None) -> Comparison:
    """Compare results folders (TTA, CTA, RTA, accuracy); with ``out``, also write the table and figures there."""
    from plexus.metrics.analysis import compare as build

    comparison = build(directories, target=target)
    if out is not None:
        comparison.write(out)
    return comparison


__all__ = ["__version__", "compare", "simulate", "study"]

"""An algorithm's options: a dataclass whose fields carry their help text and their checks.

::

    @dataclass(frozen=True)
    class PlexusOptions:
        local_steps: int = inherited("local SGD steps per round")
        sample_size: int = option(13, "s: nodes sampled per round", minimum=1)
        aggregator_sample: str = option("next", "where the aggregator comes from", choices=("next", "current"))

        def check(self) -> None:          # optional: checks that involve several fields
            ...

        def ineffective(self) -> list[str]:   # optional: options set to a value this configuration never reads
            ...

        def longest_quiet(self) -> float:     # optional: seconds a run may legitimately show no progress
            ...

The CLI flag ``--sample-size`` and the TOML key ``sample_size`` (in ``[protocol]``) are generated from the field.
An :func:`inherited` field is not a protocol option: its value is the experiment's setting of the same name
(``local_steps``, ``seed``, ``nodes``, ...), so algorithms read everything they need from their options alone.
A field left unset takes the task's preset when the task has one of that name (the papers' s and sf), else the
field's default. Every problem raises :class:`OptionError` naming the field and the value. ``ineffective()``
sentences are reported as warnings; a ``stall_timeout`` shorter than 1.5 times ``longest_quiet()`` is raised to
that, with a warning (:func:`plexus.config.resolve`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from plexus.errors import ConfigError


class OptionError(ConfigError):
    """An option has an impossible value; the message names the option and the value."""


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    finite: bool = False,
) -> Any:
    """A protocol option with its help text and simple checks (inclusive ``minimum``/``maximum``, exclusive
    ``above``/``below``, ``choices``, ``finite``). ``None`` as a default means "unset" (the algorithm decides)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above, "below": below,
        "finite": finite, "inherited": False,
    })


def inherited(help: str = "", default: Any = MISSING) -> Any:
    """A field filled from the experiment's setting of the same name (not settable as a protocol option)."""
    return dataclasses.field(default=default, metadata={"help": help, "inherited": True})


@dataclass(frozen=True)
class OptionSpec:
    """One protocol option as the CLI and TOML see it."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def field_type(options: type, name: str) -> type:
    """The concrete type of a field (``int | None`` -> ``int``)."""
    hint = typing.get_type_hints(options)[name]
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


def protocol_fields(options: type) -> list[dataclasses.Field[Any]]:
    """The fields that are protocol options (not inherited)."""
    return [f for f in dataclasses.fields(options) if not f.metadata.get("inherited", False)]


def inherited_fields(options: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(options) if f.metadata.get("inherited", False)]


def specs(options: type) -> list[OptionSpec]:
    return [OptionSpec(f.name, field_type(options, f.name), None if f.default is MISSING else f.default,
                       f.metadata.get("help", ""), f.metadata.get("choices")) for f in protocol_fields(options)]


def coerce_value(name: str, target: type, value: Any, source: str) -> Any:
    """Convert a value read from TOML or a flag to ``target``; errors name the source and option."""
    if value is None:
        return None
    try:
        if target is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise ValueError
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and value != int(value)):
                raise ValueError
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
                return math.inf
            return float(value)
        if target is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise OptionError(f"{source}: {name} = {value!r} is not a valid {target.__name__}") from None
    return value


def _check_field(f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise OptionError(f"{f.name} = {value!r}: must be one of {', '.join(map(repr, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            raise OptionError(f"{f.name} = {value!r}: must be a number")
        if meta.get("finite") and not math.isfinite(number):
            raise OptionError(f"{f.name} = {value!r}: must be finite")
        bounds: list[tuple[str, Callable[[float, float], bool], str]] = [
            ("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
            ("above", lambda v, b: v > b, ">"), ("below", lambda v, b: v < b, "<"),
        ]
        for key, ok, symbol in bounds:
            bound = meta.get(key)
            if bound is not None and not ok(number, bound):
                raise OptionError(f"{f.name} = {_plain(value)}: must be {symbol} {_plain(bound)}")


def _plain(value: Any) -> str:
    """A number as a person writes it (no numpy reprs, 10 rather than 10.0)."""
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def build(
    options: type,
    given: Mapping[str, Any],
    experiment: Mapping[str, Any],
    presets: Mapping[str, Any] | None = None,
    source: str = "options",
) -> Any:
    """An instance of ``options``: protocol fields from ``given``, else ``presets``, else their defaults;
    inherited fields from ``experiment``. Checks every field, then the dataclass's ``check()``."""
    presets = presets or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        if f.metadata.get("inherited", False):
            if f.name in experiment and experiment[f.name] is not None:
                values[f.name] = experiment[f.name]
            elif f.default is MISSING:
                raise OptionError(f"{source}: the experiment does not set {f.name}, which this algorithm needs")
            continue
        target = field_type(options, f.name)
        if f.name in given and given[f.name] is not None:
            values[f.name] = coerce_value(f.name, target, given[f.name], source)
        elif f.name in presets and presets[f.name] is not None:
            values[f.name] = coerce_value(f.name, target, presets[f.name], source)
        elif f.default is MISSING:
            raise OptionError(f"{source}: option {f.name} has no default and must be given")
        for_check = values.get(f.name, f.default)
        _check_field(f, for_check)
    try:
        instance = options(**values)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise OptionError(f"{source}: {error}") from None
    check = getattr(instance, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError:
            raise
        except ValueError as error:
            raise OptionError(str(error)) from None
    return instance


def as_dict(instance: Any) -> dict[str, Any]:
    """The protocol options of an options instance (inherited fields left out), for config.toml."""
    return {f.name: getattr(instance, f.name) for f in protocol_fields(type(instance))}

"""Typed messages, their registry and their wire encoding.

An algorithm declares each message it sends as a class decorated with :func:`message`, which gives the class a
*kind* id (unique across every algorithm loaded in the process; a clash is refused at definition), turns it into
an immutable slotted dataclass, and derives its encoder from the field annotations:

===============  =================================================================================
annotation       on the wire (big-endian, in declaration order, after the common header)
===============  =================================================================================
``int``          signed 64-bit integer
``float``        IEEE 754 double
``bool``         one byte, 0 or 1
``bytes``        32-bit length, then the bytes (at most ``MAX_FIELD_BYTES``)
``str``          32-bit length, then UTF-8 (at most ``MAX_FIELD_BYTES``)
``Params``       the model: a 32-bit parameter count, then that many little-endian float32 values;
                 at most one such field per message, always encoded last
===============  =================================================================================

The common header is ``b"PX"``, a version byte and the 16-bit kind. :attr:`Message.wire_size` is the exact length
of :func:`encode`'s output, computed without encoding, so the simulator charges the bytes the live runtime sends.

Decoding treats its input as hostile: the kind must be registered, every length is checked against what is left
(and against the limits) before anything is allocated, the model must have the expected parameter count when one
is given, and its values must be finite. Any problem raises :class:`MalformedMessage` naming it.

Kind ids 1-999 are reserved for the algorithms shipped with plexus (modules under ``plexus.``); plug-ins take
ids from 1000 to 65535, which is enforced.

Building a message checks and normalises its fields (an ``int`` field refuses 1.5; numpy scalars become Python
numbers), so a message the simulator carries is always one the live runtime can encode. The model array is not
copied: it is made read-only through a view, and the sender must not modify the array it passed afterwards
(algorithms pass freshly trained or averaged arrays).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

MAGIC = b"PX"
VERSION = 2
_HEADER = struct.Struct(">2sBH")  # magic, version, kind
HEADER_BYTES = _HEADER.size
_COUNT = struct.Struct(">I")
MAX_PARAMETERS = 1 << 30
MAX_FIELD_BYTES = 1 << 24
BUILTIN_KINDS = range(1, 1000)
PLUGIN_KINDS = range(1000, 1 << 16)


class Params(np.ndarray):
    """Annotation of a message's model field: a read-only 1-D float32 vector (never instantiated)."""


class MalformedMessage(ValueError):
    """Bytes that are not a valid message; the text names what is wrong."""


_SCALARS = {int: "q", float: "d", bool: "B"}
_VARIABLE = (bytes, str)


class Message:
    """Base of every message class (see the module docstring); subclasses are made by :func:`message`.

    ``wire_size`` is the length of :func:`encode`'s output, set when the message is built. A message is
    immutable and its model read-only, so one instance can be sent to many receivers.
    """

    __slots__ = ("wire_size",)
    wire_size: int
    kind: ClassVar[int]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled (simulation checkpoints) as a constructor call, which re-checks, re-freezes the model and
        # recomputes wire_size (a slotted frozen dataclass's own pickling would drop wire_size)
        return type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    _fixed: ClassVar[struct.Struct]
    _scalar_names: ClassVar[tuple[str, ...]]
    _scalar_types: ClassVar[tuple[tuple[str, type], ...]]
    _variable_names: ClassVar[tuple[tuple[str, type], ...]]
    _params_name: ClassVar[str | None]


_REGISTRY: dict[int, type[Message]] = {}
M = TypeVar("M", bound=type)


def message(kind: int) -> Callable[[M], M]:
    """Class decorator: register a message type under ``kind`` and derive its encoding from its annotations."""
    if isinstance(kind, bool) or not isinstance(kind, int) or not 1 <= kind < (1 << 16):
        raise ValueError(f"message kind must be an integer in [1, 65535], got {kind!r}")

    def decorate(cls: M) -> M:
        if not issubclass(cls, Message):
            raise TypeError(f"{cls.__name__} must subclass plexus.protocol.messages.Message")
        if cls.__module__.split(".")[0] != "plexus" and kind not in PLUGIN_KINDS:
            raise ValueError(f"{_qualified(cls)}: kind {kind} is reserved for plexus's own messages; plug-ins use "
                             f"{PLUGIN_KINDS.start}-{PLUGIN_KINDS.stop - 1}")
        existing = _REGISTRY.get(kind)
        if existing is not None and _qualified(existing) != _qualified(cls):
            raise ValueError(f"message kind {kind} of {_qualified(cls)} is already taken by {_qualified(existing)}")
        hints = typing.get_type_hints(cls)
        own = [name for name in cls.__dict__.get("__annotations__", {}) if not _is_classvar(hints.get(name))]
        scalars: list[str] = []
        formats: list[str] = []
        variable: list[tuple[str, type]] = []
        params_name: str | None = None
        for name in own:
            hint = hints[name]
            if hint in _SCALARS:
                scalars.append(name)
                formats.append(_SCALARS[hint])
            elif hint in _VARIABLE:
                variable.append((name, hint))
            elif hint is Params:
                if name != "params":
                    raise TypeError(f"{cls.__name__}: the model field must be named 'params', not {name!r}")
                params_name = name
            else:
                raise TypeError(f"{cls.__name__}.{name}: unsupported field type {hint!r} "
                                f"(int, float, bool, bytes, str or Params)")
        fixed = struct.Struct(">" + "".join(formats))
        base = HEADER_BYTES + fixed.size + 4 * len(variable) + (_COUNT.size if params_name else 0)
        scalar_types = tuple((name, hints[name]) for name in scalars)
        cls.__post_init__ = _post_init(base, scalar_types, tuple(variable),  # type: ignore[attr-defined]
                                       params_name is not None)
        made = dataclasses.dataclass(frozen=True, slots=True, eq=False, repr=False)(cls)
        made.kind = kind
        made._fixed = fixed
        made._scalar_names = tuple(scalars)
        made._scalar_types = scalar_types
        made._variable_names = tuple(variable)
        made._params_name = params_name
        made.__repr__ = _repr
        _REGISTRY[kind] = made
        return made  # type: ignore[return-value]

    return decorate


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_classvar(hint: Any) -> bool:
    return hint is ClassVar or typing.get_origin(hint) is ClassVar


_FLOAT32 = np.dtype(np.float32)


def _frozen_params(params: Any) -> np.ndarray:
    # one message per model sent: the common case (a flat float32 array) costs three identity tests
    if type(params) is not np.ndarray or (params.dtype is not _FLOAT32 and params.dtype != _FLOAT32) \
            or params.ndim != 1:
        params = np.ascontiguousarray(params, dtype=np.float32).reshape(-1)
    if params.flags.writeable:
        params = params.view()
        params.setflags(write=False)
    return params


def _scalar(cls_name: str, name: str, kind: type, value: Any) -> Any:
    """A scalar field's value as the encoder needs it, or TypeError naming the field."""
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif kind is int:
        if not isinstance(value, (bool, np.bool_, float, np.floating)):
            try:
                number = operator.index(value)
            except TypeError:
                pass
            else:
                if -(1 << 63) <= number < (1 << 63):
                    return number
                raise TypeError(f"{cls_name}.{name} = {number} does not fit in 64 bits")
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise TypeError(f"{cls_name}.{name} must be {kind.__name__}, got {type(value).__name__} {value!r}")


def _post_init(
    base: int, scalars: tuple[tuple[str, type], ...], variable: tuple[tuple[str, type], ...], has_params: bool
) -> Callable[[Any], None]:
    """Every message checks its fields, freezes its model and learns its wire size as soon as it exists."""
    setattr_ = object.__setattr__

    def post_init(self: Any) -> None:
        cls_name = type(self).__name__
        for name, kind in scalars:
            value = getattr(self, name)
            if type(value) is not kind:  # the common case (a Python int for an int field) costs one test
                setattr_(self, name, _scalar(cls_name, name, kind, value))
        size = base
        for name, kind in variable:
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise TypeError(f"{cls_name}.{name} must be {kind.__name__}, got {type(value).__name__}")
            size += len(value.encode() if kind is str else value)
        if has_params:
            params = _frozen_params(self.params)
            setattr_(self, "params", params)
            size += 4 * params.size
        setattr_(self, "wire_size", size)

    return post_init


def _repr(self: Message) -> str:
    parts = [f"{name}={getattr(self, name)!r}" for name in self._scalar_names]
    parts += [f"{name}=<{len(getattr(self, name))} {kind.__name__}>" for name, kind in self._variable_names]
    if self._params_name is not None:
        parts.append(f"params=<{self.params.size} floats>")  # type: ignore[attr-defined]
    return f"{type(self).__name__}({', '.join(parts)})"


def registered() -> dict[int, type[Message]]:
    """Every message type known to this process, by kind (a copy)."""
    return dict(_REGISTRY)


def message_type(kind: int) -> type[Message]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise MalformedMessage(f"unknown message kind {kind}") from None


def encode(msg: Message) -> bytes:
    cls = type(msg)
    parts = [_HEADER.pack(MAGIC, VERSION, cls.kind)]
    if cls._scalar_names:
        parts.append(cls._fixed.pack(*(int(v) if isinstance(v, bool) else v
                                       for v in (getattr(msg, name) for name in cls._scalar_names))))
    for name, kind in cls._variable_names:
        value = getattr(msg, name)
        raw = value.encode() if kind is str else value
        parts.append(_COUNT.pack(len(raw)))
        parts.append(raw)
    if cls._params_name is not None:
        params = msg.params  # type: ignore[attr-defined]
        parts.append(_COUNT.pack(params.size))
        parts.append(params.astype("<f4", copy=False).tobytes())
    return b"".join(parts)


def decode(
    data: bytes | bytearray | memoryview,
    max_parameters: int = MAX_PARAMETERS,
    expected_size: int | None = None,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> Message:
    """Parse and validate one message; raises :class:`MalformedMessage` naming what is wrong."""
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    total = len(data)
    if total < HEADER_BYTES:
        raise MalformedMessage(f"message of {total} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, kind = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise MalformedMessage(f"unsupported message version {version} (this plexus speaks {VERSION})")
    cls = message_type(kind)
    offset = HEADER_BYTES
    values: dict[str, Any] = {}
    fixed = cls._fixed
    if offset + fixed.size > total:
        raise MalformedMessage(f"{cls.__name__}: truncated fields ({total} bytes)")
    for (name, kind), value in zip(cls._scalar_types, fixed.unpack_from(data, offset), strict=True):
        if kind is bool:
            if value > 1:
                raise MalformedMessage(f"{cls.__name__}.{name}: boolean byte {value} (must be 0 or 1)")
            value = bool(value)
        elif kind is float and math.isnan(value):
            raise MalformedMessage(f"{cls.__name__}.{name}: NaN")
        values[name] = value
    offset += fixed.size
    for name, field_type in cls._variable_names:
        if offset + 4 > total:
            raise MalformedMessage(f"{cls.__name__}.{name}: truncated length")
        (length,) = _COUNT.unpack_from(data, offset)
        offset += 4
        if length > max_field_bytes:
            raise MalformedMessage(f"{cls.__name__}.{name}: {length} bytes, more than the limit {max_field_bytes}")
        if offset + length > total:
            raise MalformedMessage(f"{cls.__name__}.{name}: announces {length} bytes, {total - offset} left")
        raw = bytes(data[offset:offset + length])
        offset += length
        if field_type is str:
            try:
                values[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedMessage(f"{cls.__name__}.{name}: not UTF-8") from None
        else:
            values[name] = raw
    if cls._params_name is not None:
        if offset + 4 > total:
            raise MalformedMessage(f"{cls.__name__}: truncated parameter count")
        (count,) = _COUNT.unpack_from(data, offset)
        offset += 4
        if count > max_parameters:
            raise MalformedMessage(f"message announces {count} parameters, more than the limit {max_parameters}")
        if expected_size is not None and count != expected_size:
            raise MalformedMessage(f"message carries {count} parameters, expected {expected_size}")
        if total != offset + 4 * count:
            raise MalformedMessage(f"message is {total} bytes, its header announces {offset + 4 * count}")
        params = np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float32)
        if not np.isfinite(params).all():
            raise MalformedMessage("model contains NaN or infinite values")
        values["params"] = params
    elif offset != total:
        raise MalformedMessage(f"{cls.__name__}: {total - offset} unexpected trailing bytes")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise MalformedMessage(f"{cls.__name__}: {error}") from None

"""Errors a user can act on.

A :class:`PlexusError` carries one line that names the problem (the file, field or value) and is printed by the
CLI without a traceback, with exit code 2. Anything else escaping is a bug and keeps its traceback.
"""


class PlexusError(Exception):
    """A user-facing error: bad configuration, missing or malformed input files."""


class ConfigError(PlexusError):
    """An option has an impossible value or an unknown name."""


class DataError(PlexusError):
    """A data or trace file is absent, truncated, or not in the expected format."""

"""Checks shared by the loaders of comma- (or tab-) separated text files: a file cut short, a row with too
few or too many fields. Each error is a one-line :class:`~plexus.errors.DataError` naming the file and line.

A file written by a program ends with a newline; one that does not was almost always cut mid-row (an
interrupted download or copy), which would otherwise pass as a shorter but valid last row.
"""

from __future__ import annotations

from pathlib import Path

from plexus.errors import DataError


def require_complete(text: str, path: str | Path, what: str) -> None:
    """Refuse ``text`` whose last line has no newline: the file ends mid-row."""
    if text and not text.endswith(("\n", "\r")):
        line = text.count("\n") + 1
        raise DataError(f"{what} {path}, line {line}: the file ends mid-row (no final newline), so it looks "
                        "truncated; copy or download it again")


def require_fields(path: str | Path, number: int, found: int, expected: int, what: str, columns: str = "") -> None:
    """Refuse a row of ``found`` fields where ``expected`` are needed."""
    if found != expected:
        names = f" ({columns})" if columns else ""
        kind = "truncated or short" if found < expected else "too long"
        raise DataError(f"{what} {path}, line {number}: {found} field{'s' if found != 1 else ''}, expected "
                        f"{expected}{names}: the row is {kind}")

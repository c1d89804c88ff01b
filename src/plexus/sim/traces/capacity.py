"""Device-capacity traces: per device, compute speed and bandwidth.

FedScale's ``client_device_capacity`` is a pickle of ``{client id: {"computation": ms per sample,
"communication": kbps}}``. A CSV with a header is accepted too, with columns ``computation`` and
``communication`` (or ``computation_ms_per_sample`` and ``communication_kbps``, as in the 10k-device subset
shipped with the project's test data). Conversions (documented in the README):

- seconds per sample = computation / 1000
- bandwidth in bytes/s = communication x 1000 / 8, used for both upload and download, as FedScale and the
  Plexus authors do.

Trace rows are dealt to nodes after a seeded shuffle (rows in such files are often sorted), cycling when the
trace has fewer rows than there are nodes.
"""

from __future__ import annotations

import csv
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plexus.errors import DataError
from plexus.textrows import require_complete, require_fields

_COMPUTE_COLUMNS = ("computation", "computation_ms_per_sample")
_COMM_COLUMNS = ("communication", "communication_kbps")


@dataclass(frozen=True)
class CapacityTrace:
    """One row per device: compute time per sample (ms) and bandwidth (kbps)."""

    compute_ms_per_sample: np.ndarray
    communication_kbps: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.compute_ms_per_sample.size)

    def assign(self, nodes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(seconds per sample, bytes per second) for ``nodes`` nodes."""
        order = rng.permutation(len(self))
        rows = order[np.arange(nodes) % len(self)]
        seconds = self.compute_ms_per_sample[rows] / 1000.0
        bandwidth = self.communication_kbps[rows] * 1000.0 / 8.0
        return seconds, bandwidth


class _DataOnlyUnpickler(pickle.Unpickler):
    """Capacity pickles hold only dicts, ints and floats: refuse anything that would import code."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a capacity trace holds plain data only")


def load_capacity_trace(path: str | Path) -> CapacityTrace:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"capacity trace {path} does not exist; FedScale's trace is "
            "benchmark/dataset/data/device_info/client_device_capacity in github.com/SymbioticLab/FedScale"
        )
    raw = path.read_bytes()
    if raw[:1] == b"\x80":
        compute, comm = _from_pickle(raw, path)
    else:
        compute, comm = _from_csv(raw, path)
    if compute.size == 0:
        raise DataError(f"capacity trace {path} holds no devices")
    bad = ~(np.isfinite(compute) & np.isfinite(comm)) | (compute < 0) | (comm <= 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"capacity trace {path}: device #{index} has computation={float(compute[index])!r} ms/sample, "
            f"communication={float(comm[index])!r} kbps (need computation >= 0 and communication > 0)"
        )
    return CapacityTrace(compute, comm, str(path))


def _from_pickle(raw: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = _DataOnlyUnpickler(io.BytesIO(raw)).load()
    except Exception as error:
        raise DataError(f"capacity trace {path} is not a readable pickle: {error}") from None
    if not isinstance(table, dict):
        raise DataError(f"capacity trace {path}: expected a dict of client id -> capacities, got {type(table)}")
    compute, comm = [], []
    for client in sorted(table, key=lambda key: (str(type(key)), key)):
        entry = table[client]
        if not isinstance(entry, dict) or "computation" not in entry or "communication" not in entry:
            raise DataError(
                f"capacity trace {path}: client {client!r} lacks 'computation' and 'communication' fields"
            )
        compute.append(_number(entry["computation"], path, client, "computation"))
        comm.append(_number(entry["communication"], path, client, "communication"))
    return np.array(compute, dtype=np.float64), np.array(comm, dtype=np.float64)


def _from_csv(raw: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"capacity trace {path} is neither a pickle nor UTF-8 CSV") from None
    require_complete(text, path, "capacity trace")
    rows = list(csv.reader(io.StringIO(text)))
    fields = [name.strip() for name in rows[0]] if rows else []
    compute_col = next((c for c in _COMPUTE_COLUMNS if c in fields), None)
    comm_col = next((c for c in _COMM_COLUMNS if c in fields), None)
    if compute_col is None or comm_col is None:
        raise DataError(
            f"capacity trace {path}: CSV header {_brief(fields)} lacks a computation column "
            f"({' or '.join(_COMPUTE_COLUMNS)}) and a communication column ({' or '.join(_COMM_COLUMNS)})"
        )
    compute_at, comm_at = fields.index(compute_col), fields.index(comm_col)
    compute, comm = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        require_fields(path, line, len(row), len(fields), "capacity trace", ",".join(fields))
        compute.append(_number(row[compute_at], path, f"line {line}", compute_col))
        comm.append(_number(row[comm_at], path, f"line {line}", comm_col))
    return np.array(compute, dtype=np.float64), np.array(comm, dtype=np.float64)


def _brief(fields: list[str], limit: int = 6) -> str:
    """A header for an error message: a few names, not hundreds (a latency matrix given as a capacity trace)."""
    shown = ", ".join(repr(name) for name in fields[:limit])
    return f"[{shown}, ... {len(fields)} fields in all]" if len(fields) > limit else f"[{shown}]"


def _number(value: object, path: Path, where: object, field: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"capacity trace {path}, {where}: field {field}={value!r} is not a number") from None
    if math.isnan(number):
        raise DataError(f"capacity trace {path}, {where}: field {field} is NaN")
    return number

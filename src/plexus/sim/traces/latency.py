"""Pairwise one-way latency between nodes.

Two sources:

- A latency matrix file: an N x N CSV of round-trip times in milliseconds between N sites (for example the
  227-city WonderNetwork ping matrix). One-way delay = RTT / 2 (or the entry itself with
  ``values = "one-way"``). Node i sits at site ``i mod N`` (round robin). Entries that are negative or missing
  are replaced by the symmetric entry when that one is valid, otherwise by the median of all valid
  off-diagonal entries.
- The synthetic default: nodes placed uniformly at random on the globe; one-way delay = 1 ms + great-circle
  distance / 200,000 km/s (the speed of light in fibre). Median about 51 ms one way; real paths are slower
  than fibre in a straight line but WonderNetwork's sites cluster in Europe and North America (median one-way
  33 ms), so the two are of the same order.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from plexus.errors import DataError
from plexus.textrows import require_complete

EARTH_RADIUS_KM = 6371.0
FIBRE_KM_PER_S = 200_000.0
BASE_DELAY_S = 0.001


class LatencyModel:
    """One-way latency in seconds between node ``u`` and node ``v`` via their sites."""

    def __init__(self, site_of_node: np.ndarray, site_delay_s: np.ndarray, description: str) -> None:
        self.site_of_node = np.asarray(site_of_node, dtype=np.int64)
        self.site_delay_s = np.asarray(site_delay_s, dtype=np.float64)
        self.description = description
        # Python lists make the per-message lookup cheap
        self._sites = self.site_of_node.tolist()
        self._rows = self.site_delay_s.tolist()

    def __call__(self, u: int, v: int) -> float:
        return self._rows[self._sites[u]][self._sites[v]]

    def median(self) -> float:
        """Median one-way delay between distinct sites (used for an FL server's links)."""
        matrix = self.site_delay_s
        if matrix.shape[0] < 2:
            return float(matrix[0, 0])
        mask = ~np.eye(matrix.shape[0], dtype=bool)
        return float(np.median(matrix[mask]))


def load_latency_matrix(path: str | Path, values: str = "rtt") -> np.ndarray:
    """A square matrix of one-way delays in seconds, with missing entries repaired."""
    path = Path(path)
    if values not in ("rtt", "one-way"):
        raise DataError(f"latency matrix values must be 'rtt' or 'one-way', got {values!r}")
    if not path.is_file():
        raise DataError(
            f"latency matrix {path} does not exist; the WonderNetwork matrix is data/latencies.txt in "
            "github.com/sacs-epfl/plexus"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"latency matrix {path} is not a text file (a CSV of round-trip times in ms)") from None
    require_complete(text, path, "latency matrix")
    rows: list[list[float]] = []
    numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        cells = line.replace(";", ",").split(",")
        try:
            rows.append([float(cell) if cell.strip() else -1.0 for cell in cells])
        except ValueError:
            raise DataError(
                f"latency matrix {path}, line {number}: not a comma-separated row of numbers"
            ) from None
        numbers.append(number)
    size = len(rows)
    if size == 0:
        raise DataError(f"latency matrix {path} is empty")
    for number, row in zip(numbers, rows, strict=True):
        if len(row) != size:
            kind = "truncated or short" if len(row) < size else "too long"
            raise DataError(f"latency matrix {path}, line {number}: {len(row)} entries, expected {size} (an N x N "
                            f"matrix has {size} rows): the row is {kind}")
    matrix = np.array(rows, dtype=np.float64)
    matrix[~np.isfinite(matrix)] = -1.0
    missing = matrix < 0
    symmetric = matrix.T
    use_symmetric = missing & (symmetric >= 0)
    matrix[use_symmetric] = symmetric[use_symmetric]
    still = matrix < 0
    if still.any():
        valid = matrix[(matrix >= 0) & ~np.eye(size, dtype=bool)]
        if valid.size == 0:
            raise DataError(f"latency matrix {path} holds no valid off-diagonal entry")
        matrix[still] = float(np.median(valid))
    scale = 0.5 if values == "rtt" else 1.0
    return matrix * scale / 1000.0


def matrix_latency(nodes: int, delay_s: np.ndarray, description: str) -> LatencyModel:
    sites = np.arange(nodes) % delay_s.shape[0]
    return LatencyModel(sites, delay_s, description)


MAX_SYNTHETIC_SITES = 1024


def synthetic_latency(nodes: int, rng: np.random.Generator) -> LatencyModel:
    """Nodes uniformly on the globe; fibre-speed delays (see the module docstring).

    Up to 1,024 nodes each get their own location; larger populations share 1,024 random locations (nodes
    dealt round robin) so the delay table stays small.
    """
    sites = min(nodes, MAX_SYNTHETIC_SITES)
    z = rng.uniform(-1.0, 1.0, sites)
    lon = rng.uniform(-math.pi, math.pi, sites)
    lat = np.arcsin(z)
    cos_lat = np.cos(lat)
    xyz = np.stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), z], axis=1)
    cosine = np.clip(xyz @ xyz.T, -1.0, 1.0)
    distance_km = np.arccos(cosine) * EARTH_RADIUS_KM
    delay = BASE_DELAY_S + distance_km / FIBRE_KM_PER_S
    return LatencyModel(np.arange(nodes) % sites, delay, "synthetic: uniform on the globe, fibre speed")

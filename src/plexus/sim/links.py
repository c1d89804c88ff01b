"""Link scenarios on top of the system profiles: uniform links, communication stragglers, pairwise region links,
and a uniform compute speed ([system] options).

- ``link_mbps``: every node's uplink and downlink, in Mbit/s (``inf`` allowed), instead of the bandwidths drawn
  from the capacity trace or the synthetic default (compute speeds still come from them).
- ``stragglers``: how many nodes have slow links, a count (``7``) or a share of the nodes (``0.5`` or ``50%``);
  which nodes is a seeded draw (stream ``stragglers``). ``straggler_mbps`` is their uplink and downlink in Mbit/s,
  one value (``10``) or a range (``10-13``) drawn uniformly per straggler. The DivShare set-up is
  ``link_mbps = 60``, ``stragglers = 7`` (up to 30 of 60), ``straggler_mbps = "10-13"``.
- ``region_links``: a region-to-region bandwidth matrix in Mbit/s, ``divshare-geo`` (the DivShare authors'
  10 regions, 21-405 Mbit/s, shipped in ``traces/data/divshare-geo.csv``) or the path of a CSV in the same format:
  optional ``#`` comment lines, an optional header row (a first cell that is not a number, then the region names),
  then one row per region, optionally starting with its name, of R numbers (row: from, column: to; an empty cell
  or ``inf`` is an unlimited link). Nodes are dealt to regions in contiguous blocks as even as possible (node i in
  region floor(i x R / n): 60 nodes in 10 regions are 6 per region). Every ordered pair of nodes gets its own
  link of the matrix's capacity, a third resource of its flows in the network model, shared max-min fairly
  (the authors' emulator gives each pair of containers its own path); node uplinks and downlinks still apply.
- ``sample_seconds``: every node's training time per sample (per step with ``compute_model = "per-step"``),
  instead of the trace's or the synthetic draw: homogeneous compute, so that only links differ.

Every bad value is a one-line :class:`~plexus.errors.ConfigError` or :class:`~plexus.errors.DataError` naming it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plexus.errors import ConfigError, DataError
from plexus.rng import stream
from plexus.sim.profiles import SystemProfiles

DATA = Path(__file__).resolve().parent / "traces" / "data"
BUILTIN_REGIONS = {"divshare-geo": DATA / "divshare-geo.csv"}
MBPS = 1e6 / 8.0  # bytes per second in one Mbit/s


@dataclass(frozen=True)
class RegionLinks:
    """Directed pair capacities from a region matrix: ``capacity(u, v)`` in bytes/s (inf beyond ``nodes``)."""

    names: tuple[str, ...]
    matrix_mbps: np.ndarray
    region_of: np.ndarray
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", (self.matrix_mbps * MBPS).tolist())
        object.__setattr__(self, "_regions", self.region_of.tolist())

    def capacity(self, u: int, v: int) -> float:
        regions: list[int] = self._regions  # type: ignore[attr-defined]
        if u >= len(regions) or v >= len(regions):
            return math.inf  # a server's links are not part of the matrix
        return self._rows[regions[u]][regions[v]]  # type: ignore[attr-defined,no-any-return]

    def describe(self) -> str:
        finite = self.matrix_mbps[np.isfinite(self.matrix_mbps)]
        span = f"{finite.min():g}-{finite.max():g} Mbit/s" if finite.size else "unlimited"
        return f"region links {self.source} ({len(self.names)} regions, {span})"


# --------------------------------------------------------------------------------------------- parsing
def parse_stragglers(value: Any, nodes: int) -> int:
    """How many of ``nodes`` straggle: a count, a share in (0, 1) or a percentage; ConfigError otherwise."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
            count = None
        elif re.fullmatch(r"\d+", text):
            share, count = None, int(text)
        else:
            share, count = float(text), None
    except ValueError:
        raise ConfigError(f"stragglers = {value!r}: give a count (7), a share (0.5) or a percentage (50%)") from None
    if count is None:
        assert share is not None
        if not 0 <= share <= 1 or math.isnan(share):
            raise ConfigError(f"stragglers = {value!r}: a share must be between 0 and 1 (0% to 100%)")
        count = int(round(share * nodes))
    if count > nodes:
        raise ConfigError(f"stragglers = {value!r}: more stragglers than the {nodes} nodes")
    return count


def parse_mbps_range(value: Any, name: str = "straggler_mbps") -> tuple[float, float]:
    """``"10"`` or ``"10-13"`` as (low, high) in Mbit/s; ConfigError naming ``name`` otherwise."""
    text = str(value).strip()
    parts = text.split("-") if "-" in text[1:] else [text]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or any(not math.isfinite(n) or n <= 0 for n in numbers):
        raise ConfigError(f"{name} = {value!r}: give a positive rate in Mbit/s (10) or a range (10-13)")
    low, high = numbers[0], numbers[-1]
    if low > high:
        raise ConfigError(f"{name} = {value!r}: the range's low end exceeds its high end")
    return low, high


def load_region_matrix(spec: str) -> tuple[tuple[str, ...], np.ndarray, str]:
    """(region names, R x R Mbit/s matrix with inf for unlimited links, source) of a built-in name or CSV file."""
    path = BUILTIN_REGIONS.get(spec)
    source = spec if path is not None else str(spec)
    if path is None:
        path = Path(spec).expanduser()
        if not path.is_file():
            known = ", ".join(sorted(BUILTIN_REGIONS))
            raise DataError(f"region_links = {spec}: no such file (or give a built-in matrix: {known})")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"region links {path}: cannot read it as text: {error}") from None
    header: list[str] | None = None
    names: list[str | None] = []
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if header is None and not rows and not _is_number(cells[0]):
            if all(not _is_number(cell) for cell in cells[1:]):  # a header row: region names only
                header = cells[1:]
                continue
        name = None
        if cells[0] and not _is_number(cells[0]):
            name, cells = cells[0], cells[1:]
        values = []
        for column, cell in enumerate(cells, start=1):
            if cell == "" or cell.lower() in ("inf", "infinity"):
                values.append(math.inf)
                continue
            try:
                rate = float(cell)
            except ValueError:
                raise DataError(f"region links {path}, line {number}, column {column}: {cell!r} is not a number "
                                f"of Mbit/s") from None
            if not rate > 0:
                raise DataError(f"region links {path}, line {number}, column {column}: {cell!r} must be > 0 "
                                f"(leave it empty for an unlimited link)")
            values.append(rate)
        names.append(name)
        rows.append(values)
    size = len(rows)
    if size == 0:
        raise DataError(f"region links {path}: no rows of bandwidths")
    for index, row in enumerate(rows):
        if len(row) != size:
            raise DataError(f"region links {path}: row {index + 1} has {len(row)} entries, expected {size} "
                            f"(an R x R matrix)")
    if header is not None:
        if len(header) != size:
            raise DataError(f"region links {path}: the header names {len(header)} regions, the matrix has {size}")
        for index, name in enumerate(names):
            if name is not None and name != header[index]:
                raise DataError(f"region links {path}: row {index + 1} is {name!r} but column {index + 1} is "
                                f"{header[index]!r} (rows and columns must list the regions in one order)")
    labels = header if header is not None else [name or f"region{i}" for i, name in enumerate(names)]
    return tuple(labels), np.array(rows, dtype=np.float64), source


def _is_number(text: str) -> bool:
    if text.lower() in ("inf", "infinity"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def regions_of(nodes: int, regions: int) -> np.ndarray:
    """Node i's region: floor(i x R / n), contiguous blocks as even as possible."""
    return (np.arange(nodes, dtype=np.int64) * regions) // max(1, nodes)


# --------------------------------------------------------------------------------------------- applying
def check(options: Any) -> None:
    """Check the link options of a config (anything with the attributes) without building anything."""
    nodes = options.nodes or 1
    link = options.link_mbps
    if link is not None and (math.isnan(link) or link <= 0):
        raise ConfigError(f"link_mbps = {link}: must be a positive number of Mbit/s (inf allowed)")
    if options.stragglers is not None:
        parse_stragglers(options.stragglers, nodes)
    parse_mbps_range(options.straggler_mbps)
    if options.region_links is not None:
        names, _, _ = load_region_matrix(options.region_links)
        if len(names) > nodes:
            raise ConfigError(f"region_links = {options.region_links}: {len(names)} regions for {nodes} nodes "
                              f"(every region needs at least one node)")
    seconds = options.sample_seconds
    if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
        raise ConfigError(f"sample_seconds = {seconds}: must be a non-negative number of seconds")


def apply(
    profiles: SystemProfiles, options: Any, nodes: int, seed: int
) -> tuple[SystemProfiles, Callable[[int, int], float] | None, list[str]]:
    """The profiles with the link options applied, the pair-capacity function (None without region links) and
    lines describing what was applied (for the run's log)."""
    lines: list[str] = []
    upload = profiles.upload_bps.copy()
    download = profiles.download_bps.copy()
    seconds = profiles.seconds_per_sample
    if options.link_mbps is not None:
        upload[:] = options.link_mbps * MBPS
        download[:] = options.link_mbps * MBPS
        lines.append(f"every node's links at {options.link_mbps:g} Mbit/s")
    count = parse_stragglers(options.stragglers, nodes) if options.stragglers is not None else 0
    if count:
        low, high = parse_mbps_range(options.straggler_mbps)
        rng = stream(seed, "stragglers")
        chosen = np.sort(rng.choice(nodes, size=count, replace=False))
        rates = rng.uniform(low, high, size=count) if high > low else np.full(count, low)
        upload[chosen] = rates * MBPS
        download[chosen] = rates * MBPS
        span = f"{low:g}" if high == low else f"{low:g}-{high:g}"
        lines.append(f"{count} stragglers at {span} Mbit/s: nodes {', '.join(map(str, chosen.tolist()))}")
    if options.sample_seconds is not None:
        seconds = np.full(nodes, float(options.sample_seconds))
        lines.append(f"every node trains at {options.sample_seconds:g} s per sample")
    pair: Callable[[int, int], float] | None = None
    if options.region_links is not None:
        names, matrix, source = load_region_matrix(options.region_links)
        links = RegionLinks(names, matrix, regions_of(nodes, len(names)), source)
        pair = links.capacity
        lines.append(links.describe())
    description = profiles.description + "".join(f"; {line}" for line in lines)
    changed = dataclasses.replace(profiles, upload_bps=upload, download_bps=download, seconds_per_sample=seconds,
                                  description=description)
    return changed, pair, lines

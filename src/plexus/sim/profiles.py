"""Per-node system profiles (compute speed, bandwidth, latency), from traces or the synthetic default.

The synthetic default imitates FedScale's device-capacity trace, whose figures are (ms per sample)
median 41, 90th percentile 175, range 15-199 and (kbps) median 6,207, 90th percentile 32,546, range
1,017-204,057:

- seconds per sample ~ LogNormal(median 41 ms, sigma 1.13), clipped to [15, 200] ms;
- bandwidth ~ LogNormal(median 6,207 kbps, sigma 1.29), clipped to [1,017, 204,057] kbps, converted to bytes/s
  (x 1000 / 8) and used for both upload and download;
- latency: see :mod:`plexus.sim.traces.latency`.

The sigmas put each 90th percentile at FedScale's. Every draw comes from its own named seeded stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plexus.rng import stream
from plexus.sim.traces.capacity import load_capacity_trace
from plexus.sim.traces.latency import LatencyModel, load_latency_matrix, matrix_latency, synthetic_latency

COMPUTE_MEDIAN_S = 0.041
COMPUTE_SIGMA = math.log(175 / 41) / 1.2816
COMPUTE_RANGE_S = (0.015, 0.200)
BANDWIDTH_MEDIAN_KBPS = 6206.6
BANDWIDTH_SIGMA = math.log(32545.6 / 6206.6) / 1.2816
BANDWIDTH_RANGE_KBPS = (1016.9, 204056.7)


@dataclass(frozen=True)
class SystemProfiles:
    seconds_per_sample: np.ndarray
    upload_bps: np.ndarray
    download_bps: np.ndarray
    latency: LatencyModel
    description: str


def build_profiles(
    nodes: int,
    seed: int,
    capacity_trace: str | None = None,
    latency_matrix: str | None = None,
    latency_values: str = "rtt",
) -> SystemProfiles:
    if capacity_trace:
        trace = load_capacity_trace(capacity_trace)
        seconds, bandwidth = trace.assign(nodes, stream(seed, "capacity-assignment"))
        capacity_text = f"capacity trace {capacity_trace} ({len(trace)} devices)"
    else:
        seconds = _clipped_lognormal(stream(seed, "compute-speed"), nodes, COMPUTE_MEDIAN_S, COMPUTE_SIGMA,
                                     COMPUTE_RANGE_S)
        kbps = _clipped_lognormal(stream(seed, "bandwidth"), nodes, BANDWIDTH_MEDIAN_KBPS, BANDWIDTH_SIGMA,
                                  BANDWIDTH_RANGE_KBPS)
        bandwidth = kbps * 1000.0 / 8.0
        capacity_text = "synthetic FedScale-like capacities"
    if latency_matrix:
        delays = load_latency_matrix(latency_matrix, latency_values)
        latency = matrix_latency(nodes, delays, f"latency matrix {latency_matrix} ({delays.shape[0]} sites)")
    else:
        latency = synthetic_latency(nodes, stream(seed, "latency-sites"))
    return SystemProfiles(
        seconds_per_sample=seconds,
        upload_bps=bandwidth.copy(),
        download_bps=bandwidth.copy(),
        latency=latency,
        description=f"{capacity_text}; {latency.description}",
    )


def _clipped_lognormal(
    rng: np.random.Generator, size: int, median: float, sigma: float, bounds: tuple[float, float]
) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(median), sigma, size), *bounds)

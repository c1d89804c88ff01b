"""Capacity traces and latency matrices: formats, unit conversions, repair of missing entries."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_dataset
from plexus.errors import DataError
from plexus.sim.profiles import build_profiles
from plexus.sim.traces.capacity import load_capacity_trace
from plexus.sim.traces.latency import load_latency_matrix, matrix_latency


def test_fedscale_pickle_is_read_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "client_device_capacity"
    path.write_bytes(pickle.dumps({1: {"computation": 40.0, "communication": 8000.0},
                                   2: {"computation": 20, "communication": 800}}))
    trace = load_capacity_trace(path)
    assert len(trace) == 2
    seconds, bandwidth = trace.assign(4, np.random.default_rng(0))
    assert sorted(set(seconds.tolist())) == [0.02, 0.04]
    assert sorted(set(bandwidth.tolist())) == [800 * 1000 / 8, 8000 * 1000 / 8]


def test_pickle_that_would_import_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({1: Path("/")}))
    with pytest.raises(DataError, match="refusing"):
        load_capacity_trace(path)


def test_csv_with_fedscale_columns_and_bad_rows(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("client,computation,communication\n0,10,1000\n1,30,2000\n")
    assert load_capacity_trace(good).compute_ms_per_sample.tolist() == [10.0, 30.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("client,computation,communication\n0,10,abc\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2: field communication='abc'"):
        load_capacity_trace(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks a computation column"):
        load_capacity_trace(wrong)


def test_real_fedscale_subset_matches_its_manifest() -> None:
    path = shared_dataset("fedscale-device-capacity-10k") / "client_device_capacity_10k.csv"
    trace = load_capacity_trace(path)
    assert len(trace) == 10_000
    assert trace.compute_ms_per_sample.min() == 15 and trace.compute_ms_per_sample.max() == 199
    assert np.median(trace.compute_ms_per_sample) == 41
    assert trace.communication_kbps.min() == pytest.approx(1016.9, abs=0.1)


def test_latency_matrix_halves_rtt_and_repairs_missing_entries(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,10,-0.5\n12,0,30\n40,-1,0\n")
    one_way = load_latency_matrix(path)
    assert one_way[0, 1] == pytest.approx(0.005)
    assert one_way[0, 2] == pytest.approx(0.020)  # symmetric entry 40 ms RTT
    assert one_way[2, 1] == pytest.approx(0.015)  # symmetric entry 30 ms RTT
    assert load_latency_matrix(path, "one-way")[0, 1] == pytest.approx(0.010)


def test_latency_matrix_falls_back_to_the_median_when_both_directions_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,-1,20\n-1,0,40\n20,40,0\n")
    assert load_latency_matrix(path)[0, 1] == pytest.approx(np.median([20, 40, 20, 40]) / 2000)


def test_non_square_matrix_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,1\n1,0,3\n")
    with pytest.raises(DataError, match="line 2: 3 entries, expected 2"):
        load_latency_matrix(path)


def test_nodes_are_assigned_to_sites_round_robin(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,100\n100,0\n")
    latency = matrix_latency(5, load_latency_matrix(path), "test")
    assert latency(0, 1) == pytest.approx(0.05)
    assert latency(0, 2) == pytest.approx(0.0)
    assert latency(3, 4) == pytest.approx(0.05)


def test_real_wondernetwork_matrix_loads_with_its_missing_entries_repaired() -> None:
    path = shared_dataset("wondernetwork-latencies") / "latencies.txt"
    delays = load_latency_matrix(path)
    assert delays.shape == (227, 227)
    assert (delays >= 0).all()
    off = delays[~np.eye(227, dtype=bool)]
    assert 0.025 < np.median(off) < 0.045  # median RTT 67 ms -> about 33 ms one way


def test_synthetic_profiles_follow_the_documented_fedscale_like_figures() -> None:
    profiles = build_profiles(5000, seed=1)
    ms = profiles.seconds_per_sample * 1000
    kbps = profiles.upload_bps * 8 / 1000
    assert 35 < np.median(ms) < 47 and ms.min() >= 15 and ms.max() <= 200
    assert 5500 < np.median(kbps) < 7000 and np.percentile(kbps, 90) == pytest.approx(32545, rel=0.15)
    latency = profiles.latency
    sample = [latency(i, (i * 7 + 1) % 1000) for i in range(1000)]
    assert 0.03 < float(np.median(sample)) < 0.07
    assert all(math.isfinite(x) for x in sample)


def test_trace_driven_simulation_runs(tmp_path: Path) -> None:
    import plexus

    capacity = shared_dataset("fedscale-device-capacity-10k") / "client_device_capacity_10k.csv"
    latency = shared_dataset("wondernetwork-latencies") / "latencies.txt"
    results = plexus.simulate({"nodes": 40, "sample_size": 5, "rounds": 3, "capacity_trace": str(capacity),
                               "latency_matrix": str(latency), "compute_factor": 3.0,
                               "out": str(tmp_path / "r")})
    assert results.summary["rounds_completed"] == 3

"""``plexus traces inspect``: kind detection, statistics checked against independent readings, one-line errors."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_dataset
from plexus.cli import main


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["traces", "inspect", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_real_fedscale_capacity_csv(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_dataset("fedscale-device-capacity-10k") / "client_device_capacity_10k.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    compute = np.array([float(r["computation_ms_per_sample"]) for r in rows])
    kbps = np.array([float(r["communication_kbps"]) for r in rows])
    summary = _inspect(capsys, str(path))
    assert summary["kind"] == "capacity" and summary["devices"] == len(rows) == 10_000
    for key, values in (("compute_ms_per_sample", compute), ("bandwidth_kbps", kbps),
                        ("bandwidth_MBps", kbps / 8000.0)):
        got = summary[key]
        assert got["min"] == pytest.approx(values.min(), rel=1e-6)
        assert got["median"] == pytest.approx(np.median(values), rel=1e-6)
        assert got["max"] == pytest.approx(values.max(), rel=1e-6)
    assert summary["compute_ms_per_sample"]["median"] == 41.0  # FedScale's published median
    assert main(["traces", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "10,000 devices" in text and "bandwidth (MB/s)" in text


def test_real_wondernetwork_latency_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_dataset("wondernetwork-latencies") / "latencies.txt"
    raw = np.loadtxt(path, delimiter=",")
    missing = raw < 0
    repaired = raw.copy()
    use_mirror = missing & (raw.T >= 0)
    repaired[use_mirror] = raw.T[use_mirror]
    off = ~np.eye(raw.shape[0], dtype=bool)
    repaired[repaired < 0] = np.median(repaired[(repaired >= 0) & off])
    one_way_ms = repaired[off] / 2.0
    summary = _inspect(capsys, str(path))
    assert summary["kind"] == "latency" and summary["sites"] == 227
    assert summary["repaired_entries"] == int(missing.sum()) == 51
    assert summary["one_way_ms"]["min"] == pytest.approx(one_way_ms.min(), abs=1e-4)
    assert summary["one_way_ms"]["median"] == pytest.approx(np.median(one_way_ms), abs=1e-4)
    assert summary["one_way_ms"]["max"] == pytest.approx(one_way_ms.max(), abs=1e-4)
    as_one_way = _inspect(capsys, str(path), "--latency-values", "one-way")
    assert as_one_way["one_way_ms"]["median"] == pytest.approx(2 * summary["one_way_ms"]["median"], abs=1e-3)


def test_real_flhetbench_availability(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_dataset("device-heterogeneity-flash-flhetbench") / "flhetbench_cached_timers.json"
    raw = [v for v in json.loads(path.read_text()).values() if v["isSuccess"]]
    shares = np.array([sum(b - a for a, b in v["ready_time"]) / (v["trace_end"] - v["trace_start"]) for v in raw])
    sessions = np.array([sum(b > a for a, b in v["ready_time"]) for v in raw])
    lengths = np.array([b - a for v in raw for a, b in v["ready_time"] if b > a])
    summary = _inspect(capsys, str(path))
    assert summary["kind"] == "availability"
    assert summary["devices"] == 710 and summary["dropped_devices"] == 290
    assert summary["online_share"]["mean"] == pytest.approx(shares.mean(), abs=1e-4)
    assert summary["online_share"]["median"] == pytest.approx(np.median(shares), abs=1e-4)
    assert summary["online_share"]["max"] == pytest.approx(shares.max(), abs=1e-4)
    assert summary["sessions_per_device"]["median"] == np.median(sessions)
    assert summary["sessions_per_device"]["max"] == sessions.max()
    assert summary["session_length_s"]["p50"] == pytest.approx(np.percentile(lengths, 50))
    assert summary["session_length_s"]["p95"] == pytest.approx(np.percentile(lengths, 95))
    assert summary["never_online"] == int((sessions == 0).sum())


def test_detection_on_small_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pickled = tmp_path / "client_device_capacity"
    pickled.write_bytes(pickle.dumps({0: {"computation": 10.0, "communication": 800.0},
                                      1: {"computation": 30.0, "communication": 1600.0}}))
    summary = _inspect(capsys, str(pickled))
    assert summary["kind"] == "capacity" and summary["bandwidth_MBps"]["max"] == 0.2
    matrix = tmp_path / "m.txt"
    matrix.write_text("0,10,-0.5\n10,0,30\n20,30,0\n")
    summary = _inspect(capsys, str(matrix))
    assert summary["kind"] == "latency" and summary["repaired_entries"] == 1
    assert summary["one_way_ms"]["max"] == 15.0
    availability = tmp_path / "a.csv"
    availability.write_text("device,start,end\nx,0,30\nx,60,70\ny,0,100\n")
    summary = _inspect(capsys, str(availability))
    assert summary["kind"] == "availability" and summary["devices"] == 2
    assert summary["online_share"]["mean"] == pytest.approx((0.4 + 1.0) / 2)
    assert summary["sessions_per_device"]["max"] == 2
    synthetic = _inspect(capsys, "synthetic:diurnal:share=0.5", "--nodes", "40", "--seed", "3")
    assert synthetic["devices"] == 40 and synthetic["online_share"]["mean"] == pytest.approx(0.5, abs=0.05)


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "does not exist" in _error_line(capsys, ["traces", "inspect", str(tmp_path / "none.csv")])
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": [1, 2]}')
    assert "neither" in _error_line(capsys, ["traces", "inspect", str(odd)])
    prose = tmp_path / "notes.txt"
    prose.write_text("some words, here\n")
    assert "--kind" in _error_line(capsys, ["traces", "inspect", str(prose)])
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("0,1\n1,0,2\n")
    assert "N x N" in _error_line(capsys, ["traces", "inspect", str(ragged)])
    bad = tmp_path / "bad.csv"
    bad.write_text("device,start,end\nphone,9,3\n")
    line = _error_line(capsys, ["traces", "inspect", str(bad), "--kind", "availability"])
    assert str(bad) in line and "phone" in line and "start" in line
    line = _error_line(capsys, ["traces", "inspect", str(bad), "--kind", "capacity"])
    assert "capacity trace" in line
    assert "share" in _error_line(capsys, ["traces", "inspect", "synthetic:diurnal:share=3"])
    with pytest.raises(SystemExit) as exit_info:
        main(["traces", "inspect", str(bad), "--kind", "weather"])
    assert exit_info.value.code == 2

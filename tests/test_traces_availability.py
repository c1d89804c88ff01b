"""Availability traces: the CSV, JSON and FLASH formats, validation, queries, synthetic traces, config and run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_dataset
from plexus.config import Config, resolve
from plexus.errors import ConfigError, DataError
from plexus.sim.traces.availability import (
    DAY_S,
    AvailabilityTrace,
    build_availability,
    load_availability_trace,
    merge_intervals,
    parse_synthetic_spec,
    synthetic_diurnal,
)

FLASH = "device-heterogeneity-flash-flhetbench"


def _one_line_error(error: pytest.ExceptionInfo[DataError], *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_csv_with_comments_unsorted_and_overlapping_rows(tmp_path: Path) -> None:
    path = tmp_path / "avail.csv"
    path.write_text("# online intervals\ndevice,start,end\nb,50,60\na,30,40\na,0,10\na,5,20\n# tail\na,20,25\n")
    trace = load_availability_trace(path)
    assert trace.devices == ("b", "a")
    assert trace.horizon == 60.0
    a = trace.devices.index("a")
    # [0,10) + [5,20) + [20,25) merge (overlapping and touching) into [0,25)
    assert trace.intervals[a].tolist() == [[0.0, 25.0], [30.0, 40.0]]
    assert trace.is_online(a, 0.0) and trace.is_online(a, 24.9) and not trace.is_online(a, 25.0)
    assert trace.next_change(a, 0.0) == 25.0
    assert trace.next_change(a, 26.0) == 30.0
    assert trace.online_share(a) == pytest.approx(35 / 60)
    # the pattern repeats with the horizon as period
    assert trace.is_online(a, 60.0 + 31.0) and not trace.is_online(a, 120.0 + 45.0)
    assert trace.next_change(a, 45.0) == 60.0  # the next period starts online
    assert trace.next_change(a, 60.0) == 85.0


@pytest.mark.parametrize(
    "body, parts",
    [
        ("dev,start,end\na,0,1\n", ["lacks the columns device,start,end"]),
        ("device,start,end\na,0,x\n", ["line 2", "'a'", "end='x'"]),
        ("device,start,end\na,0,1\nb,5,5\n", ["line 3", "'b'", "start=5.0 must be < end=5.0"]),
        ("device,start,end\na,-3,1\n", ["'a'", "field start='-3'"]),
        ("device,start,end\na,0,inf\n", ["field end='inf'"]),
        ("device,start,end\n,0,1\n", ["line 2", "field device is empty"]),
        ("device,start,end\n", ["holds no intervals"]),
    ],
)
def test_malformed_csv_names_file_device_and_field(tmp_path: Path, body: str, parts: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(DataError) as error:
        load_availability_trace(path)
    _one_line_error(error, str(path), *parts)


def test_json_format_with_horizon_and_a_device_never_online(tmp_path: Path) -> None:
    path = tmp_path / "avail.json"
    path.write_text(json.dumps({"horizon": 100, "devices": {"x": [[10, 20], [15, 30]], "y": []}}))
    trace = load_availability_trace(path)
    assert trace.horizon == 100.0
    assert trace.intervals[0].tolist() == [[10.0, 30.0]]
    assert trace.online_shares().tolist() == [0.2, 0.0]
    assert not trace.is_online(1, 50.0) and trace.next_change(1, 50.0) == math.inf
    # without a horizon, the last end is the horizon
    path.write_text(json.dumps({"devices": {"x": [[10, 20]]}}))
    assert load_availability_trace(path).horizon == 20.0


@pytest.mark.parametrize(
    "document, parts",
    [
        ({"horizon": 10, "devices": {"x": [[0, 20]]}}, ["horizon=10.0 is before the last interval end 20.0"]),
        ({"devices": {"x": [[5, 1]]}}, ["device 'x'", "intervals[0] start=5.0 must be < end=1.0"]),
        ({"devices": {"x": [[0, "soon"]]}}, ["device 'x'", "intervals[0] end='soon' is not a number"]),
        ({"devices": {"x": [[0, 1, 2]]}}, ["device 'x'", "intervals[0]=[0, 1, 2] is not [start, end]"]),
        ({"devices": {"x": {"a": 1}}}, ["device 'x'", "field intervals is not a list"]),
        ({"devices": {"x": [[0, 1]]}, "extra": 1}, ["unknown top-level key 'extra'"]),
        ({"nodes": [1, 2]}, ["unknown JSON structure"]),
        ({"devices": {"x": [[0, None]]}}, ["device 'x'", "end=None"]),
    ],
)
def test_malformed_json_names_file_device_and_field(tmp_path: Path, document: object, parts: list[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError) as error:
        load_availability_trace(path)
    _one_line_error(error, str(path), *parts)


def test_truncated_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"devices": {"x": [[0, 1]')
    with pytest.raises(DataError) as error:
        load_availability_trace(path)
    _one_line_error(error, str(path), "not valid JSON")
    with pytest.raises(DataError, match="does not exist"):
        load_availability_trace(tmp_path / "absent.csv")


def _flash(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "cached_timers.json"
    path.write_text(json.dumps(document))
    return path


def test_flash_format_shift_drop_and_windows(tmp_path: Path) -> None:
    day = DAY_S
    path = _flash(tmp_path, {
        "1": {"isSuccess": True, "trace_start": 3 * day + 500, "trace_end": 4 * day + 500,
              "ready_time": [[3 * day + 600, 3 * day + 700], [3 * day + 800, 3 * day + 800],
                             [3 * day + 650, 3 * day + 900]]},
        "2": {"isSuccess": False, "trace_start": None, "trace_end": None, "ready_time": []},
        "3": {"isSuccess": True, "trace_start": 5 * day, "trace_end": 7 * day, "ready_time": []},
    })
    trace = load_availability_trace(path)
    assert trace.devices == ("1", "3") and trace.dropped == 1
    # origin = the earliest trace_start floored to a day (3 days): time of day is kept
    assert trace.window_start.tolist() == [500.0, 2 * day]
    assert trace.window_end.tolist() == [day + 500, 4 * day]
    assert trace.horizon == 4 * day
    # zero-length [800, 800] dropped, overlaps merged
    assert trace.intervals[0].tolist() == [[600.0, 900.0]]
    assert trace.online_share(0) == pytest.approx(300 / day)
    # repeating with the window's length (a whole day) keeps the time of day, before the window too
    assert trace.is_online(0, 650.0) and trace.is_online(0, 5 * day + 650.0) and not trace.is_online(0, 100.0)
    assert trace.online_share(1) == 0.0


@pytest.mark.parametrize(
    "entry, parts",
    [
        ({"isSuccess": "yes", "trace_start": 0, "trace_end": 10, "ready_time": []}, ["device '7'", "isSuccess"]),
        ({"isSuccess": True, "trace_start": None, "trace_end": 10, "ready_time": []}, ["device '7'", "trace_start"]),
        ({"isSuccess": True, "trace_start": 20, "trace_end": 10, "ready_time": []}, ["device '7'", "trace_start"]),
        ({"isSuccess": True, "trace_start": 0, "trace_end": 10, "ready_time": [[5, 50]]},
         ["device '7'", "ready_time", "outside"]),
        ({"isSuccess": True, "trace_start": 0, "trace_end": 10, "ready_time": [[5, 2]]},
         ["device '7'", "ready_time[0] start=5.0 must be <= end=2.0"]),
        ({"isSuccess": True, "trace_start": 0, "trace_end": 10, "ready_time": "none"}, ["device '7'", "ready_time"]),
    ],
)
def test_malformed_flash_entries(tmp_path: Path, entry: dict[str, object], parts: list[str]) -> None:
    path = _flash(tmp_path, {"7": entry})
    with pytest.raises(DataError) as error:
        load_availability_trace(path)
    _one_line_error(error, str(path), *parts)


def test_real_flhetbench_trace_matches_a_direct_reading() -> None:
    path = shared_dataset(FLASH) / "flhetbench_cached_timers.json"
    raw = json.loads(path.read_text())
    trace = load_availability_trace(path)
    good = {k: v for k, v in raw.items() if v["isSuccess"]}
    assert len(trace) == len(good) == 710 and trace.dropped == 290
    expected = {
        k: sum(max(b - a, 0.0) for a, b in v["ready_time"]) / (v["trace_end"] - v["trace_start"])
        for k, v in good.items()
    }
    shares = dict(zip(trace.devices, trace.online_shares().tolist(), strict=True))
    assert shares == pytest.approx(expected)
    origin = math.floor(min(v["trace_start"] for v in good.values()) / DAY_S) * DAY_S
    assert trace.horizon == max(v["trace_end"] for v in good.values()) - origin
    # every window is a whole number of days, so repeating keeps the time of day
    periods = trace.window_end - trace.window_start
    assert np.all(periods % DAY_S == 0)


def _random_trace(rng: np.random.Generator, repeat: bool) -> AvailabilityTrace:
    rows = merge_intervals(np.sort(rng.uniform(10, 990, 40)).reshape(-1, 2))
    if rng.random() < 0.5:  # online across the wrap
        rows = merge_intervals(np.vstack([[[10.0, 12.0]], rows, [[995.0, 1010.0]]]))
    return AvailabilityTrace(("d",), (rows,), np.array([10.0]), np.array([1010.0]), "random", repeat=repeat)


def _unrolled(trace: AvailabilityTrace) -> list[tuple[float, float]]:
    """The device's intervals written out period by period over [-3000, 6000): an independent reading."""
    rows = trace.intervals[0].tolist()
    period = trace.period(0)
    shifts = range(-3, 6) if trace.repeat else range(1)
    return [(a + k * period, b + k * period) for k in shifts for a, b in rows]


@pytest.mark.parametrize("repeat", [True, False])
def test_next_change_online_time_and_is_online_agree(repeat: bool) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        trace = _random_trace(rng, repeat)
        unrolled = _unrolled(trace)
        for t in rng.uniform(-1400, 3400, 30):
            assert trace.is_online(0, t) == any(a <= t < b for a, b in unrolled)
        a, b = sorted(rng.uniform(-1500, 3500, 2))
        expected = sum(max(0.0, min(b, e) - max(a, s)) for s, e in unrolled)
        assert trace.online_time(0, a, b) == pytest.approx(expected, abs=1e-6)
        boundaries = sorted({x for pair in unrolled for x in pair})
        state_at = {x: any(a <= x < b for a, b in unrolled) for x in boundaries}
        for t in rng.uniform(-1400, 3400, 30):
            change = trace.next_change(0, t)
            now = trace.is_online(0, t)
            later = next((x for x in boundaries if x > t and state_at[x] != now), math.inf)
            assert change == pytest.approx(later, abs=1e-6)


def test_no_change_when_always_online_or_never() -> None:
    always = AvailabilityTrace(("a",), (np.array([[0.0, 100.0]]),), np.array([0.0]), np.array([100.0]), "x")
    assert always.is_online(0, 12345.0) and always.next_change(0, 5.0) == math.inf
    assert always.online_time(0, -50, 250) == 300
    once = AvailabilityTrace(("a",), (np.array([[0.0, 100.0]]),), np.array([0.0]), np.array([200.0]), "x",
                             repeat=False)
    assert once.next_change(0, -10.0) == 0.0 and once.next_change(0, 50.0) == 100.0
    assert once.next_change(0, 150.0) == math.inf and not once.is_online(0, 250.0)


def test_assign_shuffles_with_the_seed_and_cycles(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"devices": {str(i): [[i, i + 1]] for i in range(5)}}))
    trace = load_availability_trace(path)
    first = trace.assign(12, np.random.default_rng(3))
    again = trace.assign(12, np.random.default_rng(3))
    assert len(first) == 12 and first.devices == again.devices
    assert set(first.devices[:5]) == set(trace.devices)  # every device before any repeats
    assert first.devices[5:10] == first.devices[:5]
    assert first.devices != trace.assign(12, np.random.default_rng(4)).devices


def test_synthetic_is_deterministic_and_its_share_is_near_the_parameter() -> None:
    one = synthetic_diurnal(300, seed=5, parameters=parse_synthetic_spec("synthetic:diurnal:share=0.3"))
    two = build_availability("synthetic:diurnal:share=0.3", 300, 5)
    assert all(np.array_equal(a, b) for a, b in zip(one.intervals, two.intervals, strict=True))
    other = build_availability("synthetic:diurnal:share=0.3", 300, 6)
    assert not all(np.array_equal(a, b) for a, b in zip(one.intervals, other.intervals, strict=True))
    assert one.online_shares().mean() == pytest.approx(0.3, abs=0.015)
    assert one.horizon == 7 * DAY_S and len(one) == 300
    low = build_availability("synthetic:diurnal:share=0.05,days=2", 300, 0)
    assert low.online_shares().mean() == pytest.approx(0.05, abs=0.005)
    everyone = build_availability("synthetic:diurnal:share=1", 10, 0)
    assert everyone.online_shares().tolist() == [1.0] * 10


def test_synthetic_is_diurnal_in_local_time() -> None:
    # one time zone, no jitter: every node is online around 02:00 and offline around 14:00
    trace = build_availability("synthetic:diurnal:share=0.2,spread=0,jitter=0,gap=0", 50, 0)
    assert all(trace.is_online(d, 2 * 3600.0 + DAY_S) for d in range(50))
    assert not any(trace.is_online(d, 14 * 3600.0 + DAY_S) for d in range(50))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:weekly", "unknown synthetic model 'weekly'"),
        ("synthetic:diurnal:share=0", "share=0.0 must be in (0, 1]"),
        ("synthetic:diurnal:days=1.5", "days=1.5"),
        ("synthetic:diurnal:colour=3", "'colour=3' is not one of"),
        ("synthetic:diurnal:share=lots", "share='lots' is not a number"),
    ],
)
def test_bad_synthetic_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="availability spec") as error:
        parse_synthetic_spec(spec)
    assert message in str(error.value)


def test_config_accepts_synthetic_specs_and_checks_files(tmp_path: Path) -> None:
    assert resolve(Config(availability_trace="synthetic:diurnal:share=0.4")).availability_trace
    assert resolve(Config(availability_trace="synthetic")).availability_trace == "synthetic"
    with pytest.raises(ConfigError, match="share"):
        resolve(Config(availability_trace="synthetic:diurnal:share=7"))
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(Config(availability_trace=str(tmp_path / "synthetic.csv")))


def test_a_run_fails_fast_on_a_bad_trace_and_logs_a_good_one(tmp_path: Path) -> None:
    from plexus.sim.simulation import run_simulation

    bad = tmp_path / "bad.csv"
    bad.write_text("device,start,end\nphone,10,5\n")
    base = Config(nodes=6, rounds=1, eval_every=1).replace(sample_size=3)
    with pytest.raises(DataError, match="phone"):
        run_simulation(base.replace(availability_trace=str(bad), out=str(tmp_path / "bad")))
    good = tmp_path / "good.csv"
    good.write_text("device,start,end\nphone,0,5\nother,2,10\n")
    run_simulation(base.replace(availability_trace=str(good), out=str(tmp_path / "good")))
    log = next((tmp_path / "good").glob("*.log")).read_text()
    assert "availability" in log and "2 devices" not in log and "6 devices" in log

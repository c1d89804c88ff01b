"""Link scenarios ([system] options): uniform links, communication stragglers, region-to-region pairwise links and
uniform compute; their speeds honoured by the network model (hand-computed completion times); one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from plexus.config import config_from_mapping, resolve
from plexus.errors import ConfigError, DataError
from plexus.sim import links
from plexus.sim.engine import EventLoop
from plexus.sim.network import Network
from plexus.sim.profiles import build_profiles

MBIT = 1e6 / 8


def options(**given: object) -> SimpleNamespace:
    values: dict[str, object] = {"nodes": 60, "link_mbps": None, "stragglers": None, "straggler_mbps": "10-13",
                                 "region_links": None, "sample_seconds": None}
    values.update(given)
    return SimpleNamespace(**values)


def applied(nodes: int = 60, seed: int = 0, **given: object):  # type: ignore[no-untyped-def]
    profiles = build_profiles(nodes, seed)
    return links.apply(profiles, options(nodes=nodes, **given), nodes, seed)


# ------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(("value", "count"), [("7", 7), (7, 7), ("0", 0), ("0.5", 30), ("50%", 30), ("100%", 60),
                                              (0.25, 15), ("60", 60)])
def test_stragglers_as_a_count_a_share_or_a_percentage(value: object, count: int) -> None:
    assert links.parse_stragglers(value, 60) == count


@pytest.mark.parametrize(("value", "message"), [("61", "more stragglers than the 60 nodes"),
                                                ("1.5", "a share must be between 0 and 1"),
                                                ("-3", "a share must be between 0 and 1"),
                                                ("some", "give a count (7), a share (0.5)")])
def test_bad_straggler_counts_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re_escape(f"stragglers = {value!r}: ") + ".*" + re_escape(message)):
        links.parse_stragglers(value, 60)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_straggler_rates_as_a_value_or_a_range() -> None:
    assert links.parse_mbps_range("10-13") == (10.0, 13.0)
    assert links.parse_mbps_range(" 12 ") == (12.0, 12.0)
    assert links.parse_mbps_range("0.5-2.5") == (0.5, 2.5)
    for bad in ("13-10", "0", "-5", "x", "1-2-3", "inf"):
        with pytest.raises(ConfigError, match="straggler_mbps"):
            links.parse_mbps_range(bad)


def test_the_divshare_region_matrix_is_the_authors() -> None:
    names, matrix, source = links.load_region_matrix("divshare-geo")
    assert source == "divshare-geo" and len(names) == 10 and names[0] == "capetown" and names[-1] == "oregon"
    off = matrix[~np.eye(10, dtype=bool)]
    assert off.min() == 21 and off.max() == 405 and np.isinf(np.diag(matrix)).all()
    assert np.array_equal(matrix, matrix.T)
    index = {name: i for i, name in enumerate(names)}
    assert matrix[index["capetown"], index["sydney"]] == 21 and matrix[index["stockholm"], index["milan"]] == 405
    assert matrix[index["mumbai"], index["bahrain"]] == 336 and matrix[index["tokyo"], index["sydney"]] == 112


def test_region_matrix_files_with_or_without_names(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("# a comment\n,5\n7.5,inf\n")
    names, matrix, _ = links.load_region_matrix(str(plain))
    assert names == ("region0", "region1") and matrix.tolist() == [[math.inf, 5.0], [7.5, math.inf]]
    named = tmp_path / "named.csv"
    named.write_text("from,a,b\na,,5\nb,7.5,\n")
    names, matrix, _ = links.load_region_matrix(str(named))
    assert names == ("a", "b") and matrix[1, 0] == 7.5


@pytest.mark.parametrize(("text", "message"), [
    ("a,b\na,,5\nb,7\n", "row 2 has 1 entries, expected 2"),
    ("r,a,b\na,,5\nb,x,\n", "line 3, column 1: 'x' is not a number"),
    ("r,a,b\na,,0\nb,1,\n", "line 2, column 2: '0' must be > 0"),
    ("r,a,b\nb,,5\na,1,\n", "row 1 is 'b' but column 1 is 'a'"),
    ("r,a,b,c\na,,5\nb,1,\n", "the header names 3 regions, the matrix has 2"),
    ("# nothing\n", "no rows of bandwidths"),
])
def test_bad_region_matrices_are_refused_naming_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=re_escape(f"region links {path}") + ".*" + re_escape(message)):
        links.load_region_matrix(str(path))
    with pytest.raises(DataError, match="no such file"):
        links.load_region_matrix(str(tmp_path / "absent.csv"))


# ------------------------------------------------------------------------------------------------ applying
def test_stragglers_get_slow_links_and_the_others_the_uniform_rate() -> None:
    profiles, pair, lines = applied(link_mbps=60.0, stragglers="7")
    rates = profiles.upload_bps / MBIT
    slow = np.flatnonzero(rates < 60)
    assert slow.size == 7 and ((rates[slow] >= 10) & (rates[slow] <= 13)).all()
    assert (rates[rates >= 60] == 60).all() and np.array_equal(profiles.upload_bps, profiles.download_bps)
    assert pair is None and "7 stragglers at 10-13 Mbit/s: nodes" in lines[-1]
    again, _, _ = applied(link_mbps=60.0, stragglers="7")
    other, _, _ = applied(seed=1, link_mbps=60.0, stragglers="7")
    assert np.array_equal(again.upload_bps, profiles.upload_bps)  # a seeded draw
    assert not np.array_equal(other.upload_bps, profiles.upload_bps)
    thirty, _, _ = applied(link_mbps=60.0, stragglers="50%", straggler_mbps="10")
    assert (thirty.upload_bps / MBIT == 10).sum() == 30


def test_uniform_compute_and_untouched_profiles() -> None:
    profiles, _, _ = applied(nodes=5, sample_seconds=0.004)
    assert profiles.seconds_per_sample.tolist() == [0.004] * 5
    base = build_profiles(5, 0)
    same, pair, lines = applied(nodes=5)
    assert lines == [] and pair is None and same.description == base.description
    assert np.array_equal(same.upload_bps, base.upload_bps)
    assert np.array_equal(same.seconds_per_sample, base.seconds_per_sample)


def test_region_links_give_each_pair_of_nodes_its_regions_capacity() -> None:
    _, pair, lines = applied(link_mbps=math.inf, region_links="divshare-geo")
    assert pair is not None and "divshare-geo (10 regions, 21-405 Mbit/s)" in lines[-1]
    assert links.regions_of(60, 10).tolist() == [r for r in range(10) for _ in range(6)]
    assert pair(0, 6) == 26 * MBIT and pair(6, 0) == 26 * MBIT  # capetown <-> tokyo
    assert pair(0, 18) == 21 * MBIT  # capetown -> sydney
    assert pair(24, 30) == 405 * MBIT  # stockholm -> milan
    assert pair(0, 5) == math.inf  # inside a region: unlimited
    assert pair(0, 60) == math.inf  # a server beyond the nodes
    assert links.regions_of(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_the_network_honours_straggler_and_region_speeds() -> None:
    profiles, _, _ = applied(nodes=60, link_mbps=60.0, stragglers="7", straggler_mbps="10")
    slow = int(np.flatnonzero(profiles.upload_bps < 60 * MBIT)[0])
    fast = [i for i in range(60) if profiles.upload_bps[i] == 60 * MBIT][:3]
    loop = EventLoop()
    network = Network(loop, profiles.upload_bps, profiles.download_bps, lambda u, v: 0.001)
    done: dict[str, float] = {}
    # both into one fast node's 7.5 MB/s downlink: 1.25 MB from a 10 Mbit/s straggler go at its uplink's
    # 1.25 MB/s: 1 s (+ 1 ms latency); the other flow gets the downlink's remaining 6.25 MB/s: 0.2 s (+ 1 ms)
    network.transfer(slow, fast[0], 1_250_000, lambda: done.setdefault("straggler", loop.now))
    network.transfer(fast[1], fast[0], 1_250_000, lambda: done.setdefault("fast", loop.now))
    loop.run()
    assert done == {"straggler": pytest.approx(1.001), "fast": pytest.approx(0.201)}
    network.transfer(fast[2], slow, 1_250_000, lambda: done.setdefault("into straggler", loop.now))
    start = loop.now
    loop.run()
    assert done["into straggler"] - start == pytest.approx(1.001)  # the straggler's downlink is slow too

    _, pair, _ = applied(nodes=60, link_mbps=60.0, region_links="divshare-geo")
    loop = EventLoop()
    network = Network(loop, np.full(60, 60 * MBIT), np.full(60, 60 * MBIT), lambda u, v: 0.0, pair)
    # capetown -> sydney at 21 Mbit/s: 2.625 MB in 1 s; capetown -> capetown: the 60 Mbit/s node links, 0.35 s;
    # stockholm -> milan: 405 Mbit/s, but the nodes' 60 Mbit/s links cap it: 0.35 s
    network.transfer(0, 18, 2_625_000, lambda: done.setdefault("capetown-sydney", loop.now))
    network.transfer(1, 2, 2_625_000, lambda: done.setdefault("capetown-capetown", loop.now))
    network.transfer(24, 30, 2_625_000, lambda: done.setdefault("stockholm-milan", loop.now))
    loop.run()
    assert done["capetown-sydney"] == pytest.approx(1.0)
    assert done["capetown-capetown"] == pytest.approx(0.35) and done["stockholm-milan"] == pytest.approx(0.35)


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(("given", "message"), [
    ({"stragglers": "70"}, "stragglers = '70': more stragglers than the 60 nodes"),
    ({"straggler_mbps": "13-10", "stragglers": "3"}, "straggler_mbps = '13-10'"),
    ({"link_mbps": 0}, "link_mbps = 0"),
    ({"link_mbps": -5}, "link_mbps = -5"),
    ({"sample_seconds": -1}, "sample_seconds = -1"),
    ({"region_links": "nowhere.csv"}, "nowhere.csv: no such file"),
    ({"eval_samples": 0}, "eval_samples = 0"),
    ({"eval_nodes": 0}, "eval_nodes = 0"),
])
def test_bad_system_options_are_one_line_errors(given: dict[str, object], message: str) -> None:
    with pytest.raises((ConfigError, DataError), match=re_escape(message)):
        resolve(config_from_mapping({"algorithm": "divshare", "nodes": 60, **given}))


def test_the_cli_reports_bad_link_options_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "plexus.cli", "simulate", "--nodes", "12", "--stragglers", "13"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "plexus: error: stragglers = '13': more stragglers than the 12 nodes"


def test_straggler_rates_without_stragglers_warn() -> None:
    notes: list[str] = []
    resolve(config_from_mapping({"algorithm": "divshare", "nodes": 12, "straggler_mbps": "5"}), notes)
    assert any("straggler_mbps = '5' has no effect" in note for note in notes)


def test_a_run_with_the_divshare_set_up_evaluates_a_subset(tmp_path: Path) -> None:
    from plexus.sim.simulation import run_simulation

    config = config_from_mapping({"algorithm": "swift", "nodes": 12, "duration": 4.0, "eval_interval": 2.0,
                                  "local_steps": 1, "link_mbps": 60, "stragglers": "25%", "sample_seconds": 0.01,
                                  "region_links": "divshare-geo", "eval_nodes": 4, "eval_samples": 100,
                                  "out": str(tmp_path)})
    results = run_simulation(config)
    assert results.summary["evaluated_nodes"] == 4
    log = (tmp_path / "run.log").read_text()
    assert "evaluating on 100 of the 359 test samples" in log
    assert "3 stragglers at 10-13 Mbit/s" in log and "region links divshare-geo" in log
    assert len(results.metrics) == 2

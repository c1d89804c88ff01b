"""CSV loaders refuse truncated files and short rows, naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from plexus.errors import DataError
from plexus.learning.tasks.movielens import MovieLensTask
from plexus.sim.traces.availability import load_availability_trace
from plexus.sim.traces.capacity import load_capacity_trace
from plexus.sim.traces.latency import load_latency_matrix

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,3.5,964982224\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (RATINGS[:-8], r"line 4: the file ends mid-row"),  # cut inside the last timestamp
        (RATINGS + "2,3\n", r"line 5: 2 fields, expected 4 \(user, item, rating, timestamp\): the row is truncated"),
        (RATINGS.replace("1,3,4.0,964981247", "1,3,4.0"), r"line 3: 3 fields, expected 4"),
        (RATINGS + "2,3,4.0,1,9\n", r"line 5: 5 fields, expected 4.*too long"),
        ("userId,movieId,timestamp\n1,1,964982703\n2,1,964982224\n", r"line 1: the header .* has no rating column"),
    ],
)
def test_movielens_ratings_cut_or_short_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ratings.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        MovieLensTask().load(str(tmp_path), seed=0)


def test_a_complete_ratings_file_with_crlf_lines_loads(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_bytes(RATINGS.replace("\n", "\r\n").encode())
    data = MovieLensTask().load(str(tmp_path), seed=0)
    assert data.info["ratings"] == 3


def test_ml100k_rows_missing_a_column_are_refused(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t4\t881250949\n2\t1\t3\n")
    with pytest.raises(DataError, match=r"u.data, line 2: 3 fields, expected 4"):
        MovieLensTask().load(str(tmp_path), seed=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("computation,communication\n20,5000\n40,80", r"line 3: the file ends mid-row"),
        ("computation,communication\n20,5000\n40\n", r"line 3: 1 field, expected 2"),
        ("computation,communication\n20,5000,7\n", r"line 2: 3 fields, expected 2"),
    ],
)
def test_capacity_csv_cut_or_short_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "capacity.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_capacity_trace(path)


def test_capacity_errors_show_plain_numbers_and_a_short_header(tmp_path: Path) -> None:
    path = tmp_path / "capacity.csv"
    path.write_text("computation,communication\n-10,5000\n")
    with pytest.raises(DataError, match=r"computation=-10.0 ms/sample") as caught:
        load_capacity_trace(path)
    assert "np.float64" not in str(caught.value)
    path.write_text(",".join(str(i) for i in range(227)) + "\n" + ",".join("1" for _ in range(227)) + "\n")
    with pytest.raises(DataError, match=r"227 fields in all") as caught:
        load_capacity_trace(path)
    assert len(str(caught.value)) < 400


def test_latency_matrix_cut_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,10,20\n10,0,30\n20,30")
    with pytest.raises(DataError, match=r"line 3: the file ends mid-row"):
        load_latency_matrix(path)
    path.write_text("0,10,20\n10,0,30\n20\n")
    with pytest.raises(DataError, match=r"line 3: 1 entries, expected 3.*truncated"):
        load_latency_matrix(path)


def test_availability_csv_cut_or_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("device,start,end\nphone,0,100\nphone,200")
    with pytest.raises(DataError, match=r"line 3: the file ends mid-row"):
        load_availability_trace(path)
    path.write_text("device,start,end\nphone,0,100\nphone,200\n")
    with pytest.raises(DataError, match=r"line 3: 2 fields, expected 3"):
        load_availability_trace(path)

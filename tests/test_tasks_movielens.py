"""MovieLens: the three ratings formats, the per-user 70/30 split, the model's size, RMSE in the results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import plexus
from conftest import shared_dataset
from plexus.errors import DataError
from plexus.learning.models_recsys import MatrixFactorization
from plexus.learning.params import FlatModel, count_parameters
from plexus.learning.partition import natural_partition
from plexus.learning.tasks import task_class
from plexus.learning.tasks.movielens import MovieLensTask, split_by_user

# (user id, item id, rating): ids deliberately sparse and unsorted, as in the real files
RATINGS = [(u, i, float(1 + (u * 7 + i) % 5)) for u in (3, 10, 42) for i in (5, 17, 99, 1000, 7, 250, 31, 64, 8, 2)]


def write_latest(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r},{964982703 + n}" for n, (u, i, r) in
                                                   enumerate(RATINGS)]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{i}\t{int(r)}\t{881250949 + n}" for n, (u, i, r) in enumerate(RATINGS)]
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{i}::{int(r)}::{978300760 + n}" for n, (u, i, r) in enumerate(RATINGS)]
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("writer", [write_latest, write_100k, write_1m])
def test_formats_reindex_and_split(tmp_path: Path, writer: object) -> None:
    folder = writer(tmp_path / "ml")  # type: ignore[operator]
    data = MovieLensTask().load(str(folder), seed=0)
    assert data.info["users"] == 3 and data.info["items"] == 10
    assert len(data.train) == 3 * 7 and len(data.test) == 3 * 3  # 70/30 of 10 ratings per user
    assert data.train.x.dtype == torch.int64 and data.train.y.dtype == torch.float32
    assert data.users is not None and [len(g) for g in data.users] == [7, 7, 7]
    for user, group in enumerate(data.users):
        assert set(data.train.x[torch.from_numpy(group), 0].tolist()) == {user}
    # dense ids in increasing original-id order: user 42 -> 2, item 1000 -> 9
    originals = {(u, i): r for u, i, r in RATINGS}
    users, items = [3, 10, 42], sorted({i for _, i, _ in RATINGS})
    for (u, i), r in zip(data.train.x.tolist() + data.test.x.tolist(),
                         data.train.y.tolist() + data.test.y.tolist(), strict=True):
        assert originals[(users[u], items[i])] == r
    # train and test of a user do not overlap
    pairs = {tuple(p) for p in data.train.x.tolist()}
    assert not pairs & {tuple(p) for p in data.test.x.tolist()}


def test_ratings_file_itself_can_be_given(tmp_path: Path) -> None:
    folder = write_latest(tmp_path / "ml")
    assert len(MovieLensTask().load(str(folder / "ratings.csv"), seed=0).train) == 21


def test_split_is_fixed_whatever_the_seed(tmp_path: Path) -> None:
    folder = write_latest(tmp_path / "ml")
    a = MovieLensTask().load(str(folder), seed=0)
    b = MovieLensTask().load(str(folder), seed=99)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)


def test_split_keeps_at_least_one_training_rating_per_user() -> None:
    users = np.array([0, 1, 1, 2, 2, 2])
    mask = split_by_user(users, 0.7, 0)
    assert [int(mask[users == u].sum()) for u in range(3)] == [1, 1, 2]


def test_missing_or_malformed_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ml-latest-small.zip"):
        MovieLensTask().load(None, seed=0)
    with pytest.raises(DataError, match="does not exist.*ml-latest-small.zip"):
        MovieLensTask().load(str(tmp_path / "nope"), seed=0)
    with pytest.raises(DataError, match="no ratings.csv"):
        MovieLensTask().load(str(tmp_path), seed=0)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="ratings.csv, line 2: 2 fields, expected 4"):
        MovieLensTask().load(str(tmp_path), seed=0)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no ratings"):
        MovieLensTask().load(str(tmp_path), seed=0)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1.5,2,3,4\n", encoding="utf-8")
    with pytest.raises(DataError, match="whole numbers"):
        MovieLensTask().load(str(tmp_path), seed=0)


def test_model_is_a_dot_product_without_biases() -> None:
    model = MatrixFactorization(4, 6, dim=20)
    assert count_parameters(model) == (4 + 6) * 20
    x = torch.tensor([[0, 1], [3, 5]])
    expected = (model.user_factors.weight[x[:, 0]] * model.item_factors.weight[x[:, 1]]).sum(1)
    assert torch.allclose(model(x), expected)
    assert model(x).shape == (2,)
    FlatModel(model)
    # initial predictions sit near the mean rating
    big = MatrixFactorization(200, 300, mean_rating=3.5)
    pairs = torch.stack([torch.randint(0, 200, (500,)), torch.randint(0, 300, (500,))], dim=1)
    assert abs(float(big(pairs).detach().mean()) - 3.5) < 0.5


def test_task_declares_rmse() -> None:
    cls = task_class("movielens")
    assert cls.metric == "rmse" and cls.higher_is_better is False
    assert cls.defaults.partition == "natural" and cls.defaults.nodes == 610
    assert (cls.defaults.batch_size, cls.defaults.local_steps) == (20, 5)


def test_run_on_a_fixture_writes_rmse(tmp_path: Path) -> None:
    folder = write_latest(tmp_path / "ml")
    plexus.simulate({"task": "movielens", "data": str(folder), "nodes": 3, "sample_size": 2,
                     "rounds": 3, "eval_every": 1, "out": str(tmp_path / "run")})
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert rows and "rmse" in rows[0] and "accuracy" not in rows[0]
    assert float(rows[-1]["rmse"]) > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "rmse" and summary["higher_is_better"] is False
    assert summary["model_parameters"] == (3 + 10) * 20


# ----------------------------------------------------------------------------------------------- real data


def test_real_ml_latest_small() -> None:
    root = shared_dataset("movielens-latest-small")
    task = MovieLensTask()
    data = task.load(str(root), seed=0)
    assert data.info["users"] == 610 and data.info["items"] == 9_724 and data.info["ratings"] == 100_836
    assert count_parameters(task.build_model(data)) == 206_680
    assert len(data.train) + len(data.test) == 100_836
    assert 0.69 < len(data.train) / 100_836 < 0.71
    assert data.users is not None and len(data.users) == 610
    one_each = natural_partition(data.users, 610)
    assert all(len(np.unique(data.train.x[torch.from_numpy(p), 0])) == 1 for p in one_each)


def test_real_movielens_run_learns(tmp_path: Path) -> None:
    root = shared_dataset("movielens-latest-small")
    results = plexus.simulate({"task": "movielens", "data": str(root), "rounds": 30, "eval_every": 10,
                               "out": str(tmp_path / "r")})
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    rmse = [float(row["rmse"]) for row in rows]
    assert len(rmse) == 3 and all(np.isfinite(rmse)) and rmse[-1] < 1.2
    assert results.summary["model_parameters"] == 206_680
    assert results.summary["best_rmse"] == min(rmse)

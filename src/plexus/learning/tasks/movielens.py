"""MovieLens rating prediction with matrix factorisation (the decentralizepy / DivShare MovieLens task).

``--data`` is the unzipped GroupLens folder or the ratings file itself:

- ml-latest-small (and the other ml-latest releases): ``ratings.csv``, header ``userId,movieId,rating,timestamp``;
- ml-100k: ``u.data``, tab-separated ``user item rating timestamp``, no header;
- ml-1m / ml-10m: ``ratings.dat``, ``user::item::rating::timestamp``.

User and item ids are re-indexed densely in increasing id order (ml-latest-small: 610 users, 9,724 rated
items). Each user's ratings are split 70/30 into train and test by a fixed shuffle (seed 0, whatever the
experiment seed, as the digits task does) so that runs with different seeds are scored on the same test set.
Training rows are grouped by user, and each user is one natural group: ``--partition natural`` (the preset)
gives every node whole users, dealt contiguously; with 610 nodes each node is one user.

Inputs are rows (user index, item index); targets are float32 ratings; the metric is the test RMSE (lower is
better).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plexus.errors import DataError
from plexus.learning.models_recsys import MatrixFactorization
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset
from plexus.rng import stream
from plexus.textrows import require_complete, require_fields

ML_LATEST_SMALL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
RATING_FILES = ("ratings.csv", "u.data", "ratings.dat")
TRAIN_FRACTION = 0.7
SPLIT_SEED = 0
EMBEDDING_DIM = 20


def find_ratings(data_path: str | None, hint: str) -> Path:
    """The ratings file: ``--data`` itself or the first of ratings.csv, u.data, ratings.dat inside it."""
    if not data_path:
        raise DataError(f"task movielens needs --data DIR (the unzipped ml-latest-small folder); {hint}")
    path = Path(data_path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(f"{path} does not exist; {hint}")
    for name in RATING_FILES:
        if (path / name).is_file():
            return path / name
    raise DataError(f"{path}: no ratings.csv (ml-latest-small), u.data (ml-100k) or ratings.dat (ml-1m); {hint}")


def read_ratings(path: Path, hint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, ratings) of a MovieLens ratings file, whichever of the three formats it is in."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error}); {hint}") from None
    require_complete(text, path, "MovieLens ratings file")
    first = text.split("\n", 1)[0]
    skip = 1 if first.lower().startswith("userid") else 0
    if "::" in first:
        text, delimiter = text.replace("::", "\t"), "\t"
    elif "\t" in first:
        delimiter = "\t"
    else:
        delimiter = ","
    # every row has the four fields (user, item, rating, timestamp): a row cut short or missing a column would
    # otherwise be read as a valid rating, or fail with a message that names no line
    expected = first.count(delimiter) + 1 if skip else 4
    columns = (0, 1, 2)
    if skip:  # a header names the columns: use them by name, and refuse a file that lacks one
        names = [name.strip().lower() for name in first.split(delimiter)]
        missing = [name for name in ("userid", "movieid", "rating") if name not in names]
        if missing:
            raise DataError(f"{path}: line 1: the header {first.strip()!r} has no {', '.join(missing)} column "
                            f"(a MovieLens ratings.csv starts with userId,movieId,rating,timestamp)")
        columns = (names.index("userid"), names.index("movieid"), names.index("rating"))
    for number, line in enumerate(text.splitlines(), start=1):
        if number > skip and line.strip():
            require_fields(path, number, line.count(delimiter) + 1, expected, "MovieLens ratings file",
                           "user, item, rating, timestamp")
    try:
        with warnings.catch_warnings():  # an empty file is reported below, as a DataError
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(io.StringIO(text), delimiter=delimiter, skiprows=skip, usecols=columns, ndmin=2)
    except (ValueError, IndexError) as error:
        raise DataError(f"{path}: not a MovieLens ratings file (user, item, rating, timestamp): {error}") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: holds no ratings; {hint}")
    users, items, ratings = table[:, 0], table[:, 1], table[:, 2]
    if not (np.all(users == np.floor(users)) and np.all(items == np.floor(items))):
        raise DataError(f"{path}: user and item ids must be whole numbers")
    if not np.all(np.isfinite(ratings)):
        raise DataError(f"{path}: ratings must be finite numbers")
    return users.astype(np.int64), items.astype(np.int64), ratings.astype(np.float32)


def split_by_user(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean training mask over the rows: for each user, a seeded random ``fraction`` of its ratings
    (rounded down, at least one). Vectorised: rows are ranked within their user by a random key."""
    keys = stream(seed, "movielens-split").random(users.size)
    order = np.lexsort((keys, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, users.size])
    rank = np.arange(users.size) - np.repeat(starts, counts)
    keep = np.maximum(1, np.floor(counts * fraction).astype(np.int64))
    train = np.zeros(users.size, dtype=bool)
    train[order] = rank < np.repeat(keep, counts)
    return train


class MovieLensTask(Task):
    """Rating prediction on MovieLens; one natural user per MovieLens user."""

    name = "movielens"
    models = ("mf",)
    description = "MovieLens ratings (ml-latest-small, ml-100k), matrix factorisation, RMSE (--data DIR)"
    model_name = "matrix factorisation, dimension 20 (ml-latest-small: 206,680 parameters)"
    metric = "rmse"
    higher_is_better = False
    parameters = 206_680  # on ml-latest-small (610 users + 9,724 items) x 20; other releases differ
    # lr 0.2: with one user per node, all 20 ratings of a batch move the same user row, by about
    # 2 x lr x |item|^2 x error (|item|^2 is about the mean rating, 3.5), which overshoots and diverges from
    # lr of about 0.3 (0.5 drives the test RMSE up to 1.65; 2.0 gives NaN); 0.2 is the fastest stable choice
    # measured (RMSE 1.06 -> 1.01 in 100 rounds of the preset; 0.05: 1.03).
    defaults = TaskDefaults(nodes=610, lr=0.2, partition="natural")
    data_hint = f"get it with: curl -LO {ML_LATEST_SMALL_URL} && unzip ml-latest-small.zip, then --data ml-latest-small"

    def load(self, data_path: str | None, seed: int) -> TaskData:
        path = find_ratings(data_path, self.data_hint)
        user_ids, item_ids, ratings = read_ratings(path, self.data_hint)
        _, users = np.unique(user_ids, return_inverse=True)
        _, items = np.unique(item_ids, return_inverse=True)
        users, items = users.reshape(-1), items.reshape(-1)
        train = split_by_user(users, TRAIN_FRACTION, SPLIT_SEED)
        # training rows grouped by user (stable, so each user's rows keep file order)
        train_rows = np.flatnonzero(train)
        train_rows = train_rows[np.argsort(users[train_rows], kind="stable")]
        test_rows = np.flatnonzero(~train)
        x = np.column_stack([users, items]).astype(np.int64)
        train_users = users[train_rows]
        n_users = int(users.max()) + 1
        starts = np.searchsorted(train_users, np.arange(n_users + 1))
        groups = [np.arange(starts[u], starts[u + 1]) for u in range(n_users)]
        return TaskData(
            train=TensorDataset(torch.from_numpy(x[train_rows]), torch.from_numpy(ratings[train_rows])),
            test=TensorDataset(torch.from_numpy(x[test_rows]), torch.from_numpy(ratings[test_rows])),
            labels=None,
            users=groups,
            info={
                "users": n_users,
                "items": int(items.max()) + 1,
                "ratings": int(ratings.size),
                "mean_rating": float(ratings[train_rows].mean()),
                "source": str(path),
            },
        )

    def build_model(self, data: TaskData) -> nn.Module:
        return MatrixFactorization(
            int(data.info["users"]), int(data.info["items"]), EMBEDDING_DIM, float(data.info.get("mean_rating", 3.5))
        )

"""The embedded default task: scikit-learn's handwritten digits (8x8 images, 10 classes, 1,797 samples).

It ships inside scikit-learn, so the default run needs no download. The train/test split is fixed (seed 0,
stratified, 20% test) so that runs with different experiment seeds are evaluated on the same test set.
The model is a small multilayer perceptron (64 -> 64 -> 10, 4,810 parameters) trained with plain SGD.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plexus.errors import DataError
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _read_digits_table() -> np.ndarray:
    """scikit-learn's bundled digits.csv.gz, read directly: importing sklearn.datasets costs over a second."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits task needs scikit-learn (pip install scikit-learn)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return np.column_stack([digits.data, digits.target])
    with gzip.open(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=",")


class DigitsTask(Task):
    name = "digits"
    models = ("mlp",)
    description = "scikit-learn digits, 8x8 grey images, 10 classes (embedded, no download)"
    model_name = "MLP 64-64-10"
    defaults = TaskDefaults(nodes=100, lr=0.1, momentum=0.0, rounds=100, eval_every=5)
    needs_data = False

    def load(self, data_path: str | None, seed: int) -> TaskData:
        table = _read_digits_table()
        x = (table[:, :-1] / 16.0).astype(np.float32)
        y = table[:, -1].astype(np.int64)
        rng = np.random.default_rng(SPLIT_SEED)
        test_idx: list[int] = []
        for cls in range(10):
            members = rng.permutation(np.flatnonzero(y == cls))
            test_idx.extend(members[: int(round(members.size * TEST_FRACTION))].tolist())
        test = np.zeros(y.size, dtype=bool)
        test[test_idx] = True
        train_x, train_y = x[~test], y[~test]
        return TaskData(
            train=TensorDataset(torch.from_numpy(train_x), torch.from_numpy(train_y)),
            test=TensorDataset(torch.from_numpy(x[test]), torch.from_numpy(y[test])),
            labels=train_y,
            info={"classes": 10},
        )

    def build_model(self, data: TaskData) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

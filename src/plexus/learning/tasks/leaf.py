"""The LEAF tasks: FEMNIST, CelebA and Shakespeare, read from LEAF's JSON shards.

LEAF (Caldas et al. 2018, github.com/TalwalkarLab/leaf) ships each dataset as JSON shards, one folder per split::

    DIR/train/*.json[.gz]   {"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y": [...]}}}
    DIR/test/*.json[.gz]    the same users' held-out samples

``--data DIR`` names the folder holding ``train/`` and ``test/`` (LEAF's ``data/<dataset>/data`` folder, or its
parent ``data/<dataset>``). Shards may be gzip-compressed. Files are read in name order and users in each
file's ``users`` order, so the user order (and hence which node gets which user) is deterministic.

The natural partition gives each LEAF user (a FEMNIST writer, a CelebA celebrity, a Shakespeare character) to
one node; with fewer nodes than users, users are dealt contiguously and evenly (see
:func:`plexus.learning.partition.natural_partition`). Users with no training sample are dropped from the
partition (a node with no data cannot train); their test samples still count. The test set is the union of
all users' test samples.

Parsing FEMNIST's 95 MB of JSON takes seconds, so the decoded arrays of the last dataset read are kept in
memory, keyed by the files' paths, sizes and modification times: a sweep or a test suite that runs several
simulations on the same data in one process parses it once; :func:`clear_cache` releases them.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
import zlib
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plexus.errors import DataError
from plexus.learning.models_leaf import CELEBA_IMAGE_SIZE, CelebaCNN, CharLSTM, FemnistCNN
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset

LEAF_REPO = "https://github.com/TalwalkarLab/leaf"
SPLITS = ("train", "test")

# LEAF's Shakespeare vocabulary (language_utils.ALL_LETTERS): 80 characters, a character's index is its class.
ALL_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
SEQUENCE_LENGTH = 80
_UNKNOWN = 255
_LETTER_INDEX = np.full(128, _UNKNOWN, dtype=np.uint8)
_LETTER_INDEX[[ord(c) for c in ALL_LETTERS]] = np.arange(len(ALL_LETTERS), dtype=np.uint8)


def leaf_hint(dataset: str, arguments: str) -> str:
    """How to produce a LEAF dataset, for error messages."""
    return (
        f"get it with: git clone {LEAF_REPO} && cd leaf/data/{dataset} && ./preprocess.sh {arguments}, "
        f"then pass --data leaf/data/{dataset}/data"
    )


@dataclass
class LeafUser:
    """One user's raw samples as LEAF stores them, and the file they came from (for error messages)."""

    name: str
    x: list[Any]
    y: list[Any]
    source: Path


def leaf_files(folder: Path) -> list[Path]:
    """The JSON shards of one split, in name order."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".json", ".json.gz")))


def _read_json(path: Path) -> Any:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return json.load(handle)
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable LEAF JSON file ({error})") from None


def read_leaf_file(path: Path, exact_counts: bool = True) -> list[LeafUser]:
    """The users of one LEAF shard, validated: keys present, counts matching, x and y of equal length.

    ``exact_counts=False`` accepts fewer samples than ``num_samples`` says: LEAF's split script for Shakespeare
    drops the 79 test windows that overlap a user's training text but writes the count from before the drop.
    """
    document = _read_json(path)
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a JSON object with users, num_samples and user_data")
    missing = [key for key in ("users", "num_samples", "user_data") if key not in document]
    if missing:
        raise DataError(f"{path}: not a LEAF file, missing key(s) {', '.join(missing)}")
    names, counts, data = document["users"], document["num_samples"], document["user_data"]
    if not isinstance(names, list) or not isinstance(counts, list) or not isinstance(data, dict):
        raise DataError(f"{path}: users and num_samples must be lists and user_data an object")
    if len(names) != len(counts):
        raise DataError(f"{path}: {len(names)} users but {len(counts)} num_samples entries")
    users: list[LeafUser] = []
    for name, count in zip(names, counts, strict=True):
        record = data.get(name) if isinstance(name, str) else None
        if not isinstance(record, dict):
            raise DataError(f"{path}: user {name!r} is listed in users but has no entry in user_data")
        if "x" not in record or "y" not in record:
            raise DataError(f"{path}: user {name!r} has no 'x' or no 'y' in user_data")
        x, y = record["x"], record["y"]
        if not isinstance(x, list) or not isinstance(y, list):
            raise DataError(f"{path}: user {name!r}: x and y must be lists")
        if len(x) != len(y):
            raise DataError(f"{path}: user {name!r} has {len(x)} x but {len(y)} y")
        if not isinstance(count, int) or (count != len(x) if exact_counts else count < len(x)):
            raise DataError(f"{path}: user {name!r}: num_samples says {count} but user_data holds {len(x)}")
        users.append(LeafUser(name, x, y, path))
    return users


def read_leaf_folder(folder: Path, hint: str, exact_counts: bool = True) -> list[LeafUser]:
    """Every user of one split, across its shards; a user appearing in two shards is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist; {hint}")
    files = leaf_files(folder)
    if not files:
        raise DataError(f"{folder} holds no LEAF .json or .json.gz files; {hint}")
    users: list[LeafUser] = []
    seen: dict[str, Path] = {}
    for path in files:
        for user in read_leaf_file(path, exact_counts):
            if user.name in seen:
                raise DataError(f"{path}: user {user.name!r} also appears in {seen[user.name]}")
            seen[user.name] = path
            users.append(user)
    return users


def find_leaf_root(data_path: str | None, task: str, hint: str) -> Path:
    """The folder holding train/ and test/: ``--data`` itself or its ``data/`` subfolder (LEAF's layout)."""
    if not data_path:
        raise DataError(f"task {task} needs --data DIR (a LEAF folder with train/ and test/); {hint}")
    path = Path(data_path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; {hint}")
    for root in (path, path / "data"):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    raise DataError(f"{path}: expected train/ and test/ folders of LEAF JSON shards; {hint}")


def _signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in paths:
        stat = path.stat()
        out.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


@dataclass
class _Arrays:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    groups: list[np.ndarray]
    user_names: list[str]


_CACHE: dict[Any, _Arrays] = {}


def clear_cache() -> None:
    """Forget the decoded arrays kept from the last load (they can be gigabytes for the full CelebA)."""
    _CACHE.clear()


def _cached(key: Any, build: Any) -> _Arrays:
    """Single-entry memo of decoded arrays (see the module docstring)."""
    if key not in _CACHE:
        arrays = build()
        _CACHE.clear()
        _CACHE[key] = arrays
    return _CACHE[key]


def _class_labels(user: LeafUser, classes: int) -> np.ndarray:
    try:
        y = np.asarray(user.y)
    except (TypeError, ValueError):
        y = np.asarray([], dtype=object)
    if y.size and (y.dtype.kind not in "iub" or y.min() < 0 or y.max() >= classes):
        raise DataError(f"{user.source}: user {user.name!r}: y must be class numbers 0..{classes - 1}")
    return y.astype(np.int64).reshape(-1)


class LeafTask(Task):
    """Shared loading of LEAF JSON: subclasses turn one user's raw x and y into arrays."""

    leaf_name: str = ""  # LEAF's folder name under leaf/data/
    classes: int = 0
    exact_test_counts: bool = True  # False: test users may hold fewer samples than num_samples says

    def load(self, data_path: str | None, seed: int) -> TaskData:
        root = self.find_root(data_path)
        files = {split: leaf_files(root / split) for split in SPLITS}
        key = (self.name, _signature(files["train"] + files["test"]), self.cache_extra(root))
        arrays = _cached(key, lambda: self.read(root))
        return self.task_data(arrays)

    def find_root(self, data_path: str | None) -> Path:
        return find_leaf_root(data_path, self.name, self.data_hint)

    def cache_extra(self, root: Path) -> Any:
        return None

    def read(self, root: Path) -> _Arrays:
        train = read_leaf_folder(root / "train", self.data_hint)
        test = read_leaf_folder(root / "test", self.data_hint, self.exact_test_counts)
        train_x, train_y, sizes = self.stack(train)
        test_x, test_y, _ = self.stack(test)
        if train_y.size == 0:
            raise DataError(f"{root / 'train'}: the LEAF shards hold no training samples; {self.data_hint}")
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        groups = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(sizes)) if sizes[i] > 0]
        names = [user.name for user, size in zip(train, sizes, strict=True) if size > 0]
        return _Arrays(train_x, train_y, test_x, test_y, groups, names)

    def stack(self, users: list[LeafUser]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """All users' samples as one x array and one y array, plus each user's sample count."""
        xs, ys = [], []
        for user in users:
            x, y = self.convert(user)
            xs.append(x)
            ys.append(y)
        x_all = self.finish_x(np.concatenate(xs) if xs else np.empty((0,)), users)
        y_all = np.concatenate(ys) if ys else np.empty((0,), dtype=np.int64)
        return x_all, y_all, [len(y) for y in ys]

    @abstractmethod
    def convert(self, user: LeafUser) -> tuple[np.ndarray, np.ndarray]:
        """One user's (x, y) as arrays; raise DataError naming ``user.source`` and ``user.name``."""

    def finish_x(self, x: np.ndarray, users: list[LeafUser]) -> np.ndarray:
        """Turn the concatenated x into model inputs (CelebA reads its images here)."""
        return x

    def task_data(self, arrays: _Arrays) -> TaskData:
        return TaskData(
            train=TensorDataset(torch.from_numpy(arrays.train_x), torch.from_numpy(arrays.train_y)),
            test=TensorDataset(torch.from_numpy(arrays.test_x), torch.from_numpy(arrays.test_y)),
            labels=arrays.train_y,
            users=list(arrays.groups),
            info={"classes": self.classes, "users": len(arrays.groups), "user_names": list(arrays.user_names)},
        )


# --------------------------------------------------------------------------------------------------- FEMNIST
class FemnistTask(LeafTask):
    """LEAF FEMNIST: 28x28 handwritten characters of 3,500 writers, 62 classes (digits, upper, lower case).

    Pixels are kept as LEAF stores them (floats in [0, 1], 1.0 = white background), as LEAF's and decentralizepy's
    loaders feed them to the network.
    """

    name = "femnist"
    models = ("cnn",)
    leaf_name = "femnist"
    classes = 62
    description = "LEAF FEMNIST, 28x28 handwritten characters, 62 classes, one writer per user (--data DIR)"
    model_name = "CNN conv5x5(32)-conv5x5(64)-fc512-fc62 (1,690,046 parameters)"
    defaults = TaskDefaults(nodes=355, lr=0.004, partition="natural")
    data_hint = leaf_hint("femnist", "-s niid --sf 0.05 -k 0 -t sample")

    def convert(self, user: LeafUser) -> tuple[np.ndarray, np.ndarray]:
        try:
            x = np.asarray(user.x, dtype=np.float32)
        except (TypeError, ValueError):
            x = np.empty(0, dtype=np.float32)
        if len(user.x) and (x.ndim != 2 or x.shape[1] != 28 * 28):
            raise DataError(f"{user.source}: user {user.name!r}: every x must be a list of 784 pixel values")
        return x.reshape(-1, 1, 28, 28), _class_labels(user, self.classes)

    def build_model(self, data: TaskData) -> nn.Module:
        return FemnistCNN(self.classes)


# ---------------------------------------------------------------------------------------------------- CelebA
def find_celeba_images(root: Path) -> Path:
    """LEAF keeps the images in ``data/celeba/data/raw/img_align_celeba``; a flat ``img_align_celeba`` works too."""
    candidates = (root / "raw" / "img_align_celeba", root / "img_align_celeba")
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DataError(
        f"{root}: CelebA images not found in {candidates[0]} or {candidates[1]}; download img_align_celeba.zip "
        f"from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into leaf/data/celeba/data/raw/ as LEAF's "
        f"README says"
    )


def load_celeba_image(path: Path) -> np.ndarray:
    """One image as LEAF prepares it (resized to 84x84 RGB, aspect not kept), channels first, uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise DataError(f"{path}: image named in the LEAF JSON does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


class CelebaTask(LeafTask):
    """LEAF CelebA: is the celebrity smiling? One celebrity per user; images resized to 84x84 RGB.

    LEAF's JSON holds image file names (x) and 0/1 labels (y); the images themselves are read from the
    ``img_align_celeba`` folder (see :func:`find_celeba_images`). Pixels are stored as uint8 (a quarter of
    float32's memory) and scaled to [0, 1] inside the model.
    """

    name = "celeba"
    models = ("cnn",)
    leaf_name = "celeba"
    classes = 2
    description = "LEAF CelebA, 84x84 RGB faces, smiling or not, one celebrity per user (--data DIR)"
    model_name = "CNN 4 x (conv3x3(32), maxpool, ReLU), fc 800-2 (30,242 parameters)"
    defaults = TaskDefaults(nodes=500, lr=0.001, partition="natural")
    data_hint = leaf_hint("celeba", "-s niid --sf 1.0 -k 5 -t sample") + " (with raw/img_align_celeba/ beside it)"

    def find_root(self, data_path: str | None) -> Path:
        root = super().find_root(data_path)
        find_celeba_images(root)
        return root

    def cache_extra(self, root: Path) -> Any:
        # the folder's own stat changes when images are added, removed or renamed (not when one is rewritten
        # in place); stat-ing 200,000 images on every load would cost more than it saves
        images = find_celeba_images(root)
        return str(images.resolve()), images.stat().st_mtime_ns

    def read(self, root: Path) -> _Arrays:
        self._images = find_celeba_images(root)
        return super().read(root)

    def convert(self, user: LeafUser) -> tuple[np.ndarray, np.ndarray]:
        if not all(isinstance(name, str) and name for name in user.x):
            raise DataError(f"{user.source}: user {user.name!r}: every x must be an image file name")
        return np.asarray(user.x, dtype=object), _class_labels(user, self.classes)

    def finish_x(self, x: np.ndarray, users: list[LeafUser]) -> np.ndarray:
        images = self._images
        out = np.empty((len(x), 3, CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE), dtype=np.uint8)
        if len(x) == 0:
            return out
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without holding the GIL
            for i, pixels in enumerate(pool.map(lambda name: load_celeba_image(images / name), x.tolist())):
                out[i] = pixels
        return out

    def build_model(self, data: TaskData) -> nn.Module:
        return CelebaCNN(self.classes)


# ----------------------------------------------------------------------------------------------- Shakespeare
def encode_letters(text: str) -> np.ndarray:
    """Indices of ``text``'s characters in LEAF's vocabulary (255 for characters outside it)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    out = np.full(codes.shape, _UNKNOWN, dtype=np.uint8)
    ascii_ = codes < 128
    out[ascii_] = _LETTER_INDEX[codes[ascii_]]
    return out


def clean_play_text(text: str) -> str:
    """LEAF's cleaning of a character's lines before windowing: newlines become spaces, space runs collapse."""
    return re.sub(r"  +", " ", text.replace("\n", " "))


def shakespeare_windows(text: str, length: int = SEQUENCE_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Every ``length``-character window of ``text`` (x) and the character after it (y), as vocabulary indices.

    Characters outside LEAF's vocabulary become spaces (LEAF's own lookup would give -1 and fail).
    """
    codes = encode_letters(text)
    codes[codes == _UNKNOWN] = ALL_LETTERS.index(" ")
    if codes.size <= length:
        return np.empty((0, length), dtype=np.uint8), np.empty((0,), dtype=np.int64)
    x = np.lib.stride_tricks.sliding_window_view(codes, length)[:-1].copy()
    return x, codes[length:].astype(np.int64)


def read_play_texts(path: Path) -> list[tuple[str, str]]:
    """(user, text) of each ``<PLAY>_<CHARACTER>.txt`` in a folder or a tar archive, in name order."""
    texts: list[tuple[str, str]] = []
    try:
        if path.is_dir():
            for file in sorted(path.glob("*.txt")):
                texts.append((file.stem, file.read_text(encoding="utf-8", errors="replace")))
        else:
            with tarfile.open(path, "r:*") as archive:
                members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".txt")),
                                 key=lambda m: m.name)
                for member in members:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        texts.append((Path(member.name).stem, handle.read().decode("utf-8", errors="replace")))
    except (OSError, tarfile.TarError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read the per-character texts ({error})") from None
    return texts


_SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]*[A-Za-z]):$")


def split_speakers(text: str) -> list[tuple[str, str]] | None:
    """A play text in char-rnn's format (turns ``SPEAKER:`` then lines, separated by blank lines, as in
    tinyshakespeare's ``input.txt``) as (speaker, their lines) in order of first appearance; None when the text
    is not in that format (most blocks must start with a speaker line, and there must be two speakers).

    The same role name in different plays is one speaker (the format does not mark plays)."""
    blocks = [block.strip("\n") for block in re.split(r"\n\s*\n", text) if block.strip()]
    speakers: dict[str, list[str]] = {}
    labelled = 0
    for block in blocks:
        first, _, rest = block.partition("\n")
        match = _SPEAKER.match(first.strip())
        if match is None:
            continue
        labelled += 1
        speakers.setdefault(match.group(1), []).append(rest)
    if len(speakers) < 2 or labelled < 0.5 * len(blocks):
        return None
    return [(name, "\n".join(turns)) for name, turns in speakers.items()]


class ShakespeareTask(LeafTask):
    """LEAF Shakespeare: next-character prediction, one speaking role (play, character) per user.

    ``--data`` is either a LEAF folder (train/ and test/ JSON: x = 80-character strings, y = the next character)
    or LEAF's intermediate ``by_play_and_character`` folder or ``.tar.gz`` (one text file per role), or a play
    text in char-rnn's format (``tinyshakespeare/input.txt``, or its folder: turns ``SPEAKER:`` then lines),
    split into one user per speaker. From raw texts the samples are built here: every 80-character window of a
    role's cleaned text and the character after it; the first 90% of a role's windows train and the rest test,
    less the 79 windows after the cut that overlap the training text (the split LEAF's own shards show:
    contiguous, so test text comes after training text).
    Roles with fewer than two windows are skipped. Characters are stored as uint8 vocabulary indices.

    The learning rate 0.8 (plain SGD) is LEAF's Shakespeare setting (Caldas et al. 2018, section 4).
    """

    name = "shakespeare"
    models = ("lstm",)
    leaf_name = "shakespeare"
    classes = len(ALL_LETTERS)
    description = "LEAF Shakespeare, next character from 80, one role per user (--data DIR or raw .tar.gz)"
    model_name = "character LSTM, embedding 8, 2 x LSTM(256), fc 256-80 (819,920 parameters)"
    # the test sets of the raw texts hold 85,000 (tinyshakespeare) to 181,000 (by_play_and_character) windows,
    # and the LSTM costs about 4 CPU-seconds per 1,000 of them: the preset evaluates on a fixed seeded 2,000
    # (a standard error of about 1 point of accuracy), a few seconds per evaluation
    defaults = TaskDefaults(nodes=100, lr=0.8, partition="natural", eval_samples=2_000)
    data_hint = leaf_hint("shakespeare", "-s niid --sf 0.2 -k 0 -t sample -tf 0.8")
    train_fraction = 0.9
    exact_test_counts = False

    def find_root(self, data_path: str | None) -> Path:
        raw = self._raw_source(data_path)
        return raw if raw is not None else super().find_root(data_path)

    @staticmethod
    def _raw_source(data_path: str | None) -> Path | None:
        if not data_path:
            return None
        path = Path(data_path).expanduser()
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar", ".txt")):
            return path
        if path.is_dir() and not (path / "train").is_dir() and not (path / "data" / "train").is_dir():
            if path.name == "by_play_and_character" or any(path.glob("*.txt")):
                return path
        return None

    def load(self, data_path: str | None, seed: int) -> TaskData:
        raw = self._raw_source(data_path)
        if raw is None:
            return super().load(data_path, seed)
        return self.task_data(_cached((self.name, _signature([raw])), lambda: self.read_raw(raw)))

    def read_raw(self, source: Path) -> _Arrays:
        if source.is_file() and source.name.endswith(".txt"):
            try:
                texts = [(source.stem, source.read_text(encoding="utf-8", errors="replace"))]
            except OSError as error:
                raise DataError(f"{source}: cannot read ({error})") from None
        else:
            texts = read_play_texts(source)
        if len(texts) == 1:
            speakers = split_speakers(texts[0][1])
            if speakers is not None:
                texts = speakers
        train_x, train_y, test_x, test_y, sizes, names = [], [], [], [], [], []
        for user, text in texts:
            x, y = shakespeare_windows(clean_play_text(text))
            if len(y) < 2:
                continue
            cut = max(1, int(self.train_fraction * len(y)))
            train_x.append(x[:cut])
            train_y.append(y[:cut])
            test_x.append(x[cut + SEQUENCE_LENGTH - 1 :])
            test_y.append(y[cut + SEQUENCE_LENGTH - 1 :])
            sizes.append(cut)
            names.append(user)
        if not sizes:
            raise DataError(f"{source}: no role has 81 or more characters of text; {self.data_hint}")
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        groups = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(sizes))]
        return _Arrays(np.concatenate(train_x), np.concatenate(train_y), np.concatenate(test_x),
                       np.concatenate(test_y), groups, names)

    def convert(self, user: LeafUser) -> tuple[np.ndarray, np.ndarray]:
        where = f"{user.source}: user {user.name!r}"
        if not all(isinstance(s, str) and len(s) == SEQUENCE_LENGTH for s in user.x):
            raise DataError(f"{where}: every x must be a string of {SEQUENCE_LENGTH} characters")
        if not all(isinstance(c, str) and len(c) == 1 for c in user.y):
            raise DataError(f"{where}: every y must be a single character")
        x = encode_letters("".join(user.x)).reshape(-1, SEQUENCE_LENGTH)
        y = encode_letters("".join(user.y)).astype(np.int64)
        if (x == _UNKNOWN).any() or (y == _UNKNOWN).any():
            text = "".join(user.x) + "".join(user.y)
            bad = sorted({c for c in text if c not in ALL_LETTERS})
            raise DataError(f"{where}: characters outside LEAF's 80-letter vocabulary: {''.join(bad)!r}")
        return x, y

    def build_model(self, data: TaskData) -> nn.Module:
        return CharLSTM(len(ALL_LETTERS))

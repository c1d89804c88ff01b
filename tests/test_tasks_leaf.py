"""The LEAF tasks: reader and validation on generated fixtures, models' parameter counts, real data when present."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import plexus
from conftest import shared_dataset
from plexus.errors import ConfigError, DataError
from plexus.learning.models_leaf import CelebaCNN, CharLSTM, FemnistCNN
from plexus.learning.params import FlatModel, count_parameters
from plexus.learning.partition import natural_partition, parse_partition, partition
from plexus.learning.tasks import task_class
from plexus.learning.tasks.leaf import (
    ALL_LETTERS,
    CelebaTask,
    FemnistTask,
    ShakespeareTask,
    clean_play_text,
    encode_letters,
    read_leaf_file,
    shakespeare_windows,
)

# ----------------------------------------------------------------------------------------------- fixtures


def write_shard(
    path: Path, entries: dict[str, tuple[list[Any], list[Any]]], overrides: dict[str, Any] | None = None
) -> Path:
    """A LEAF JSON shard (gzip-compressed when ``path`` ends in .gz); ``overrides`` replace top-level keys."""
    document: dict[str, Any] = {
        "users": list(entries),
        "num_samples": [len(x) for x, _ in entries.values()],
        "user_data": {name: {"x": x, "y": y} for name, (x, y) in entries.items()},
    }
    document.update(overrides or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def femnist_user(rng: np.random.Generator, n: int, label: int) -> tuple[list[Any], list[Any]]:
    return rng.random((n, 784)).round(3).tolist(), [label] * n


def femnist_fixture(root: Path, sizes: tuple[int, ...] = (4, 3, 5, 2, 6)) -> Path:
    """LEAF FEMNIST layout: users split over a plain and a gzipped shard in each of train/ and test/."""
    rng = np.random.default_rng(0)
    names = [f"f{i:04d}_00" for i in range(len(sizes))]
    half = len(names) // 2
    for split, scale in (("train", 1), ("test", 0)):
        users = {name: femnist_user(rng, size if scale else 1 + i % 2, i) for i, (name, size) in
                 enumerate(zip(names, sizes, strict=True))}
        first = {k: users[k] for k in names[:half]}
        second = {k: users[k] for k in names[half:]}
        write_shard(root / split / f"all_data_0_{split}.json", first)
        write_shard(root / split / f"all_data_1_{split}.json.gz", second)
    return root


def shakespeare_fixture(root: Path) -> Path:
    text = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer. " * 3
    users: dict[str, tuple[list[Any], list[Any]]] = {}
    for u, name in enumerate(("PLAY_HAMLET", "PLAY_OPHELIA", "PLAY_GHOST")):
        starts = range(u, u + 12)
        users[name] = ([text[i : i + 80] for i in starts], [text[i + 80] for i in starts])
    write_shard(root / "train" / "shard_train.json.gz", users)
    test = {name: (x[:2], y[:2]) for name, (x, y) in users.items()}
    write_shard(root / "test" / "shard_test.json", test)
    return root


def celeba_fixture(root: Path, users: int = 3, per_user: int = 3) -> Path:
    """LEAF CelebA layout: JSON naming JPEGs, the JPEGs (odd sizes, as the real 178x218) in raw/img_align_celeba."""
    from PIL import Image

    images = root / "raw" / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train: dict[str, tuple[list[Any], list[Any]]] = {}
    test: dict[str, tuple[list[Any], list[Any]]] = {}
    count = 0
    for u in range(users):
        names = []
        for _ in range(per_user + 1):
            count += 1
            name = f"{count:06d}.jpg"
            pixels = rng.integers(0, 256, (22, 18, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / name, quality=90)
            names.append(name)
        labels = [int(i % 2) for i in range(per_user + 1)]
        train[str(u)] = (names[:per_user], labels[:per_user])
        test[str(u)] = (names[per_user:], labels[per_user:])
    write_shard(root / "train" / "all_data_train.json", train)
    write_shard(root / "test" / "all_data_test.json", test)
    return root


# ----------------------------------------------------------------------------------------------- models


def test_parameter_counts_match_the_papers() -> None:
    assert count_parameters(FemnistCNN()) == 1_690_046
    assert count_parameters(CelebaCNN()) == 30_242
    assert count_parameters(CharLSTM()) == 819_920


def test_models_output_shapes_and_flatten() -> None:
    assert FemnistCNN()(torch.zeros(2, 1, 28, 28)).shape == (2, 62)
    assert CelebaCNN()(torch.zeros(2, 3, 84, 84, dtype=torch.uint8)).shape == (2, 2)
    assert CharLSTM()(torch.zeros(2, 80, dtype=torch.uint8)).shape == (2, 80)
    for module in (FemnistCNN(), CelebaCNN(), CharLSTM()):
        FlatModel(module)  # no buffers: the whole model is its parameter vector


def test_char_lstm_trains_through_the_flat_vector() -> None:
    model = FlatModel(CharLSTM())
    x = torch.randint(0, 80, (8, 80), dtype=torch.uint8)
    y = torch.randint(0, 80, (8,))
    before = model.vector()
    model.grad.zero_()
    torch.nn.functional.cross_entropy(model.module(x), y).backward()
    assert float(model.grad.abs().sum()) > 0
    with torch.no_grad():
        model.flat.add_(model.grad, alpha=-0.5)
    assert not np.array_equal(before, model.vector())


# ----------------------------------------------------------------------------------------------- reader


def test_femnist_fixture_loads_plain_and_gz(tmp_path: Path) -> None:
    root = femnist_fixture(tmp_path / "femnist")
    data = FemnistTask().load(str(root), seed=0)
    sizes = (4, 3, 5, 2, 6)
    assert len(data.train) == sum(sizes)
    assert data.train.x.shape == (sum(sizes), 1, 28, 28)
    assert data.train.x.dtype == torch.float32
    assert len(data.test) == sum(1 + i % 2 for i in range(5))  # the union of the users' test data
    assert data.users is not None and [len(g) for g in data.users] == list(sizes)
    # users in file-name order, then each file's user order; labels follow the users
    assert data.info["user_names"] == [f"f{i:04d}_00" for i in range(5)]
    for user, group in enumerate(data.users):
        assert set(data.train.y[torch.from_numpy(group)].tolist()) == {user}
    assert data.info["users"] == 5 and data.info["classes"] == 62


def test_leaf_folder_can_be_leafs_dataset_folder(tmp_path: Path) -> None:
    femnist_fixture(tmp_path / "femnist" / "data")
    data = FemnistTask().load(str(tmp_path / "femnist"), seed=0)  # leaf/data/femnist, holding data/train
    assert len(data.train) == 20


def test_natural_partition_deals_users_evenly_and_deterministically(tmp_path: Path) -> None:
    data = FemnistTask().load(str(femnist_fixture(tmp_path / "f")), seed=0)
    assert data.users is not None
    parts = partition(parse_partition("natural"), data.labels, len(data.train), 2, np.random.default_rng(5),
                      groups=data.users)
    assert all(np.array_equal(a, b) for a, b in zip(parts, natural_partition(data.users, 2), strict=True))
    # 5 users on 2 nodes: users 0-2 on node 0, users 3-4 on node 1 (contiguous, independent of the rng)
    assert np.array_equal(parts[0], np.concatenate(data.users[:3]))
    assert np.array_equal(parts[1], np.concatenate(data.users[3:]))
    one_each = natural_partition(data.users, 5)
    assert all(np.array_equal(a, b) for a, b in zip(one_each, data.users, strict=True))
    with pytest.raises(ConfigError, match="5 users"):
        natural_partition(data.users, 6)


def test_users_without_training_samples_are_left_out_of_the_partition(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "train" / "a.json", {"u1": femnist_user(rng, 3, 1), "u2": ([], [])})
    write_shard(tmp_path / "test" / "a.json", {"u1": femnist_user(rng, 1, 1), "u2": femnist_user(rng, 2, 2)})
    data = FemnistTask().load(str(tmp_path), seed=0)
    assert data.users is not None and len(data.users) == 1
    assert len(data.test) == 3


def _one_user(tmp_path: Path) -> dict[str, tuple[list[Any], list[Any]]]:
    return {"w1": femnist_user(np.random.default_rng(0), 2, 3)}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_key", "missing key"),
        ("count", "num_samples says 5"),
        ("xy", "2 x but 1 y"),
        ("no_user_data", "no entry in user_data"),
        ("counts_length", "1 users but 2 num_samples"),
        ("width", "784 pixel values"),
        ("label", "class numbers 0..61"),
    ],
)
def test_malformed_leaf_json_names_file_and_user(tmp_path: Path, case: str, message: str) -> None:
    users = _one_user(tmp_path)
    x, y = users["w1"]
    overrides: dict[str, Any] = {}
    if case == "missing_key":
        overrides = {"num_samples": None}
    elif case == "count":
        overrides = {"num_samples": [5]}
    elif case == "xy":
        users = {"w1": (x, y[:1])}
        overrides = {"num_samples": [2]}
    elif case == "no_user_data":
        overrides = {"users": ["w1"], "user_data": {"other": {"x": x, "y": y}}}
    elif case == "counts_length":
        overrides = {"num_samples": [2, 2]}
    elif case == "width":
        users = {"w1": ([row[:100] for row in x], y)}
    elif case == "label":
        users = {"w1": (x, [0, 62])}
    bad = write_shard(tmp_path / "train" / "bad.json.gz", users, overrides)
    if case == "missing_key":
        document = json.loads(gzip.open(bad, "rt").read())
        del document["num_samples"]
        with gzip.open(bad, "wt") as handle:
            handle.write(json.dumps(document))
    write_shard(tmp_path / "test" / "ok.json", _one_user(tmp_path))
    with pytest.raises(DataError, match=message) as error:
        FemnistTask().load(str(tmp_path), seed=0)
    assert "bad.json.gz" in str(error.value)
    if case not in ("missing_key", "counts_length"):
        assert "w1" in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_json_and_gzip_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="a.json"):
        read_leaf_file(tmp_path / "a.json")
    (tmp_path / "b.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="b.json.gz"):
        read_leaf_file(tmp_path / "b.json.gz")
    (tmp_path / "c.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="c.json"):
        read_leaf_file(tmp_path / "c.json")


def test_duplicate_user_across_shards_is_an_error(tmp_path: Path) -> None:
    write_shard(tmp_path / "train" / "a.json", _one_user(tmp_path))
    write_shard(tmp_path / "train" / "b.json", _one_user(tmp_path))
    write_shard(tmp_path / "test" / "a.json", _one_user(tmp_path))
    with pytest.raises(DataError, match="also appears in"):
        FemnistTask().load(str(tmp_path), seed=0)


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="preprocess.sh"):
        FemnistTask().load(None, seed=0)
    with pytest.raises(DataError, match="does not exist.*TalwalkarLab/leaf"):
        FemnistTask().load(str(tmp_path / "nowhere"), seed=0)
    with pytest.raises(DataError, match="train/ and test/"):
        FemnistTask().load(str(tmp_path), seed=0)
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no LEAF .json"):
        FemnistTask().load(str(tmp_path), seed=0)
    for name in ("femnist", "celeba", "shakespeare"):
        assert "TalwalkarLab/leaf" in task_class(name).data_hint


def test_tasks_are_registered_with_the_papers_presets() -> None:
    femnist = task_class("femnist").defaults
    assert (femnist.nodes, femnist.lr, femnist.batch_size, femnist.local_steps) == (355, 0.004, 20, 5)
    assert (femnist.sample_size, femnist.success_fraction, femnist.partition) == (13, 0.8, "natural")
    celeba = task_class("celeba").defaults
    assert (celeba.nodes, celeba.lr, celeba.partition) == (500, 0.001, "natural")
    shakespeare = task_class("shakespeare").defaults
    assert (shakespeare.lr, shakespeare.partition) == (0.8, "natural")


def test_femnist_run_end_to_end_on_a_fixture(tmp_path: Path) -> None:
    root = femnist_fixture(tmp_path / "femnist")
    results = plexus.simulate({"task": "femnist", "data": str(root), "nodes": 5, "sample_size": 2, "rounds": 2,
                               "eval_every": 1, "out": str(tmp_path / "run")})
    assert results.summary["model_parameters"] == 1_690_046
    assert results.summary["rounds_completed"] == 2
    with pytest.raises(ConfigError, match="5 users"):
        plexus.simulate({"task": "femnist", "data": str(root), "nodes": 6, "sample_size": 2, "rounds": 1,
                         "out": str(tmp_path / "too-many")})


# ----------------------------------------------------------------------------------------------- Shakespeare


def test_vocabulary_is_leafs() -> None:
    assert len(ALL_LETTERS) == 80 and len(set(ALL_LETTERS)) == 80
    assert encode_letters("\n A}").tolist() == [0, 1, ALL_LETTERS.index("A"), 79]
    assert encode_letters("é").tolist() == [255]


def test_shakespeare_fixture_loads_as_indices(tmp_path: Path) -> None:
    root = shakespeare_fixture(tmp_path / "sh")
    data = ShakespeareTask().load(str(root), seed=0)
    assert data.train.x.shape == (36, 80) and data.train.x.dtype == torch.uint8
    assert len(data.test) == 6
    assert data.users is not None and [len(g) for g in data.users] == [12, 12, 12]
    text = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer. " * 3
    assert "".join(ALL_LETTERS[i] for i in data.train.x[0].tolist()) == text[:80]
    assert ALL_LETTERS[int(data.train.y[0])] == text[80]
    model = ShakespeareTask().build_model(data)
    assert model(data.train.x[:4]).shape == (4, 80)


def test_shakespeare_validation(tmp_path: Path) -> None:
    write_shard(tmp_path / "train" / "t.json", {"r1": (["x" * 79], ["a"])})
    write_shard(tmp_path / "test" / "t.json", {"r1": (["x" * 80], ["a"])})
    with pytest.raises(DataError, match="r1.*80 characters"):
        ShakespeareTask().load(str(tmp_path), seed=0)
    write_shard(tmp_path / "train" / "t.json", {"r1": (["x" * 79 + "é"], ["a"])})
    with pytest.raises(DataError, match="outside LEAF's 80-letter vocabulary: 'é'"):
        ShakespeareTask().load(str(tmp_path), seed=0)
    write_shard(tmp_path / "train" / "t.json", {"r1": (["x" * 80], ["ab"])})
    with pytest.raises(DataError, match="single character"):
        ShakespeareTask().load(str(tmp_path), seed=0)


def test_shakespeare_test_counts_may_be_lower_than_num_samples(tmp_path: Path) -> None:
    """LEAF's split drops the test windows overlapping training text but keeps the old num_samples."""
    root = shakespeare_fixture(tmp_path)
    document = json.loads((root / "test" / "shard_test.json").read_text())
    document["num_samples"] = [81, 81, 81]
    (root / "test" / "shard_test.json").write_text(json.dumps(document))
    assert len(ShakespeareTask().load(str(root), seed=0).test) == 6
    document["num_samples"] = [1, 2, 2]  # fewer than held: still an error
    (root / "test" / "shard_test.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match="num_samples says 1"):
        ShakespeareTask().load(str(root), seed=0)


def test_shakespeare_windows_and_raw_archive(tmp_path: Path) -> None:
    assert clean_play_text("a\nb    c") == "a b c"
    x, y = shakespeare_windows("abcdefghij" * 9)
    assert x.shape == (10, 80) and y.shape == (10,)
    assert y[0] == ALL_LETTERS.index("a") and x[1, 0] == ALL_LETTERS.index("b")
    texts = {"PLAY_A": "Now is the winter of our discontent\n" * 30, "PLAY_B": "Hi.", "PLAY_C": "Alas, poor. " * 40}
    archive = tmp_path / "by_play_and_character.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in texts.items():
            blob = text.encode()
            info = tarfile.TarInfo(f"by_play_and_character/{name}.txt")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    data = ShakespeareTask().load(str(archive), seed=0)
    assert data.info["user_names"] == ["PLAY_A", "PLAY_C"]  # PLAY_B is too short for one window
    windows = [len(clean_play_text(texts[name])) - 80 for name in ("PLAY_A", "PLAY_C")]
    cuts = [int(0.9 * n) for n in windows]
    assert data.users is not None and [len(g) for g in data.users] == cuts
    # the test windows follow the training ones, less the 79 that overlap the training text (as in LEAF)
    assert len(data.test) == sum(max(0, n - cut - 79) for n, cut in zip(windows, cuts, strict=True))


def test_shakespeare_run_end_to_end_on_a_fixture(tmp_path: Path) -> None:
    root = shakespeare_fixture(tmp_path / "sh")
    results = plexus.simulate({"task": "shakespeare", "data": str(root), "nodes": 3, "sample_size": 2,
                               "rounds": 2, "out": str(tmp_path / "run")})
    assert results.summary["model_parameters"] == 819_920
    assert 0.0 <= results.summary["final_accuracy"] <= 1.0


# ----------------------------------------------------------------------------------------------- CelebA


def test_celeba_fixture_loads_images(tmp_path: Path) -> None:
    root = celeba_fixture(tmp_path / "celeba")
    task = CelebaTask()
    data = task.load(str(root), seed=0)
    assert data.train.x.shape == (9, 3, 84, 84) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (3, 3, 84, 84)
    assert data.train.y.tolist() == [0, 1, 0] * 3
    assert data.users is not None and [len(g) for g in data.users] == [3, 3, 3]
    assert int(data.train.x.max()) > 100  # real pixels, not zeros
    assert task.build_model(data)(data.train.x).shape == (9, 2)


def test_celeba_missing_images_are_data_errors(tmp_path: Path) -> None:
    root = celeba_fixture(tmp_path / "celeba")
    (root / "raw" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="000002.jpg"):
        CelebaTask().load(str(root), seed=0)
    other = celeba_fixture(tmp_path / "other")
    for image in (other / "raw" / "img_align_celeba").iterdir():
        image.unlink()
    (other / "raw" / "img_align_celeba").rmdir()
    with pytest.raises(DataError, match="img_align_celeba"):
        CelebaTask().load(str(other), seed=0)


def test_celeba_flat_image_folder_and_bad_image(tmp_path: Path) -> None:
    root = celeba_fixture(tmp_path / "celeba", users=2, per_user=2)
    (root / "raw" / "img_align_celeba").rename(root / "img_align_celeba")
    (root / "raw").rmdir()
    assert len(CelebaTask().load(str(root), seed=0).train) == 4
    bad = celeba_fixture(tmp_path / "bad", users=2, per_user=2)
    (bad / "raw" / "img_align_celeba" / "000001.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="000001.jpg.*not a readable image"):
        CelebaTask().load(str(bad), seed=0)


def test_celeba_run_end_to_end_on_a_fixture(tmp_path: Path) -> None:
    root = celeba_fixture(tmp_path / "celeba")
    results = plexus.simulate({"task": "celeba", "data": str(root), "nodes": 3, "sample_size": 2, "rounds": 2,
                               "out": str(tmp_path / "run")})
    assert results.summary["model_parameters"] == 30_242
    assert results.summary["rounds_completed"] == 2


# ----------------------------------------------------------------------------------------------- real data


def test_real_femnist_subset() -> None:
    root = shared_dataset("leaf-femnist-niid-sf005")
    data = FemnistTask().load(str(root), seed=0)
    assert len(data.train) == 14_708 and len(data.test) == 1_685
    assert data.users is not None and len(data.users) == 105
    assert int(data.train.y.max()) <= 61
    assert float(data.train.x.max()) == 1.0  # LEAF's white background


def test_real_femnist_run(tmp_path: Path) -> None:
    root = shared_dataset("leaf-femnist-niid-sf005")
    results = plexus.simulate({"task": "femnist", "data": str(root), "nodes": 20, "sample_size": 3, "rounds": 2,
                               "out": str(tmp_path / "r")})
    assert results.summary["rounds_completed"] == 2
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert rows and "accuracy" in rows[0]


def test_real_shakespeare_shard() -> None:
    root = shared_dataset("leaf-shakespeare")
    data = ShakespeareTask().load(str(root), seed=0)
    assert len(data.train) == 41_990
    assert data.users is not None and len(data.users) == 10


def test_real_shakespeare_raw_archive() -> None:
    root = shared_dataset("leaf-shakespeare")
    data = ShakespeareTask().load(str(root / "by_play_and_character.tar.gz"), seed=0)
    assert data.users is not None and 500 <= len(data.users) <= 572
    assert len(data.train) > 1_500_000


@pytest.mark.slow
def test_real_shakespeare_run(tmp_path: Path) -> None:
    root = shared_dataset("leaf-shakespeare")
    results = plexus.simulate({"task": "shakespeare", "data": str(root), "nodes": 10, "sample_size": 3,
                               "rounds": 2, "out": str(tmp_path / "r")})
    assert results.summary["rounds_completed"] == 2


def test_decoded_arrays_are_reused_until_the_files_change(tmp_path: Path) -> None:
    from plexus.learning.tasks import leaf

    root = femnist_fixture(tmp_path / "f")
    first = FemnistTask().load(str(root), seed=0)
    again = FemnistTask().load(str(root), seed=1)
    assert again.train.x.data_ptr() == first.train.x.data_ptr()  # parsed once
    rng = np.random.default_rng(3)
    write_shard(root / "train" / "all_data_0_train.json", {"f0000_00": femnist_user(rng, 9, 0),
                                                           "f0001_00": femnist_user(rng, 3, 1)})
    assert len(FemnistTask().load(str(root), seed=0).train) == 9 + 3 + 5 + 2 + 6
    leaf.clear_cache()
    assert not leaf._CACHE

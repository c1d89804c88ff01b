"""``plexus tasks`` lists the registered tasks with model sizes and presets; ``tasks inspect`` shows the data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_dataset
from plexus.cli import main
from plexus.learning.partition import parse_partition, partition
from plexus.learning.tasks import TASKS
from plexus.learning.tasks.digits import DigitsTask
from plexus.rng import stream

# parameter counts stated in DESIGN.md (checked when those tasks are registered)
PAPER_COUNTS = {"digits": 4_810, "cifar10": 85_354, "femnist": 1_690_046, "celeba": 30_242}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_tasks_json_lists_every_registered_task(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, ["tasks", "--json"])
    assert isinstance(rows, list)
    assert [row["name"] for row in rows] == sorted(TASKS)
    for row in rows:
        assert {"name", "model", "parameters", "nodes", "lr", "momentum", "batch_size", "local_steps",
                "sample_size", "success_fraction", "partition", "metric"} <= set(row)
        assert row["parameters"] is None or row["parameters"] > 0
        defaults = TASKS[row["name"]].defaults
        assert (row["nodes"], row["lr"], row["partition"]) == (defaults.nodes, defaults.lr, defaults.partition)
    by_name = {row["name"]: row for row in rows}
    assert by_name["digits"]["parameters"] == 4_810 and by_name["digits"]["nodes"] == 100
    for name, count in PAPER_COUNTS.items():
        if name in by_name:
            assert by_name[name]["parameters"] == count, name
    assert _json(capsys, ["tasks", "list", "--json"]) == rows


def test_tasks_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["task", "model", "params"]
    digits = next(line for line in out.splitlines() if line.startswith("digits"))
    assert "4,810" in digits and "iid" in digits


def test_nominal_parameters_default_hook() -> None:
    assert DigitsTask().nominal_parameters() == 4_810

    class NeedsData(DigitsTask):
        parameters = 1234

        def build_model(self, data):  # type: ignore[no-untyped-def]
            return super().build_model(data) if data is not None else data.missing

    assert NeedsData().nominal_parameters() == 1234
    NeedsData.parameters = None  # type: ignore[assignment]
    assert NeedsData().nominal_parameters() is None


def test_inspect_digits_dirichlet_counts_sum_to_the_training_set(capsys: pytest.CaptureFixture[str]) -> None:
    result = _json(capsys, ["tasks", "inspect", "digits", "--json", "--partition", "dirichlet:0.3"])
    assert isinstance(result, dict)
    counts = result["counts"]
    assert result["nodes"] == len(counts) == 100 and result["partition"] == "dirichlet:0.3"
    assert sum(counts) == result["train_samples"] == 1_438
    assert result["test_samples"] == 359 and result["classes"] == 10 and result["parameters"] == 4_810
    assert result["samples_per_node"]["min"] == min(counts) >= 1
    assert result["samples_per_node"]["max"] == max(counts)
    assert result["samples_per_node"]["mean"] == pytest.approx(1_438 / 100)
    assert sum(result["histogram"]["counts"]) == 100
    # the counts are those a simulation with seed 0 gives its nodes
    data = DigitsTask().load(None, 0)
    parts = partition(parse_partition("dirichlet:0.3"), data.labels, len(data.train), 100, stream(0, "partition"))
    assert counts == [part.size for part in parts]
    other = _json(capsys, ["tasks", "inspect", "digits", "--json", "--partition", "dirichlet:0.3", "--seed", "1"])
    assert other["counts"] != counts and sum(other["counts"]) == 1_438


def test_inspect_text_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "inspect", "digits", "--nodes", "7"]) == 0
    out = capsys.readouterr().out
    assert "train_samples   1,438" in out and "samples per node" in out
    for argv, message in ((["tasks", "inspect", "nope"], "unknown task 'nope'"),
                          (["tasks", "inspect", "digits", "--partition", "natural"], "natural"),
                          (["tasks", "inspect", "digits", "--nodes", "0"], "--nodes 0")):
        assert main(argv) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0]


def test_inspect_movielens_reports_users_and_items(capsys: pytest.CaptureFixture[str]) -> None:
    if "movielens" not in TASKS:
        pytest.skip("the movielens task is not registered")
    path = shared_dataset("movielens-latest-small")
    result = _json(capsys, ["tasks", "inspect", "movielens", "--data", str(path), "--json"])
    assert result["users"] == 610 and result["items"] == 9_724 and result["parameters"] == 206_680
    assert sum(result["counts"]) == result["train_samples"]
    assert np.min(result["counts"]) >= 1

"""Presets run on the data users have: a preset node count larger than the data's natural users is capped to
them (with a warning), and Shakespeare reads a char-rnn play text as one user per speaker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import shared_dataset
from plexus.config import Config
from plexus.errors import ConfigError
from plexus.learning.tasks.leaf import ShakespeareTask, split_speakers
from plexus.sim.simulation import preflight

PLAY = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

MENENIUS:
What work's, my countrymen, in hand? where go you
With bats and clubs? The matter? speak, I pray you.
"""


def test_a_char_rnn_play_is_split_by_speaker() -> None:
    speakers = dict(split_speakers(PLAY) or [])
    assert list(speakers) == ["First Citizen", "All", "MENENIUS"]
    assert speakers["First Citizen"] == ("Before we proceed any further, hear me speak.\n"
                                         "You are all resolved rather to die than to famish?")
    assert split_speakers("just some prose\n\nwithout speakers\n") is None


def test_a_play_text_file_gives_one_user_per_speaker(tmp_path: Path) -> None:
    names = ["HAMLET", "OPHELIA", "HORATIO", "LAERTES", "GERTRUDE", "First Gravedigger", "POLONIUS"]
    lines = "\n\n".join(f"{names[i % 7]}:\n" + "To be or not to be, that is the question. " * 3 for i in range(40))
    (tmp_path / "input.txt").write_text(lines + "\n")
    for path in (tmp_path, tmp_path / "input.txt"):
        data = ShakespeareTask().load(str(path), seed=0)
        assert data.users is not None and len(data.users) == 7


def test_the_femnist_preset_is_capped_to_the_writers_in_the_data(caplog: pytest.LogCaptureFixture) -> None:
    root = shared_dataset("leaf-femnist-niid-sf005")
    with caplog.at_level(logging.WARNING, logger="plexus"):
        config = preflight(Config(task="femnist", data=str(root)))
    assert config.nodes == 105 and config.sample_size == 13
    assert "the femnist preset's 355 nodes exceed the 105 users in the data" in caplog.text
    with pytest.raises(ConfigError, match="105 users, fewer than the 200 nodes"):
        preflight(Config(task="femnist", data=str(root), nodes=200))


def test_the_shakespeare_preset_runs_on_each_shared_text() -> None:
    root = shared_dataset("leaf-shakespeare")
    shard = preflight(Config(task="shakespeare", data=str(root)))
    assert (shard.nodes, shard.sample_size) == (10, 10)  # LEAF's 10-user shard: nodes and s capped
    raw = preflight(Config(task="shakespeare", data=str(root / "by_play_and_character.tar.gz")))
    assert raw.nodes == 100 and raw.eval_samples == 2_000
    tiny = preflight(Config(task="shakespeare", data=str(shared_dataset("tinyshakespeare"))))
    assert tiny.nodes == 100


def test_a_run_on_the_leaf_shakespeare_shard_uses_the_capped_sample_size(tmp_path: Path) -> None:
    """The preset's 100 nodes and s = 13 are capped to the shard's 10 roles before the nodes are built (they
    once kept s = 13 and failed: 'sample size 13 exceeds the 10 known nodes')."""
    import plexus

    root = shared_dataset("leaf-shakespeare")
    results = plexus.simulate({"task": "shakespeare", "data": str(root), "rounds": 1, "local_steps": 1,
                               "batch_size": 2, "eval_samples": 20, "out": str(tmp_path / "r")})
    assert results.summary["status"] == "completed" and results.summary["nodes"] == 10
    assert results.summary["rounds_completed"] == 1

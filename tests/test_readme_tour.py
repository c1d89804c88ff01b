"""Every command of the README's tour runs (with short rounds), so the tour cannot drift from the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATASETS
from plexus.cli import main

SHORT = ["--rounds", "2", "--eval-samples", "200", "--quiet"]


def tour_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## A tour of the CLI"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the tour's bash block is missing"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def test_the_tour_names_only_files_that_exist() -> None:
    for command in tour_commands():
        for word in shlex.split(command):
            if word.startswith(("examples/", "scripts/")):
                assert (REPO / word).exists(), f"{word} in: {command}"
            if word.startswith("../shared/datasets/") and SHARED_DATASETS.is_dir():
                name = word[len("../shared/datasets/"):]
                assert (SHARED_DATASETS / name).exists(), f"{word} in: {command}"


def test_every_tour_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "examples").symlink_to(REPO / "examples")
    if SHARED_DATASETS.is_dir():
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "datasets").symlink_to(SHARED_DATASETS)
    monkeypatch.chdir(repo)
    ran, skipped = 0, []
    for command in tour_commands():
        words = shlex.split(command)
        if words[0] != "plexus":
            assert command == "source .venv/bin/activate", command
            continue
        if any(w.startswith("../shared/") for w in words) and not SHARED_DATASETS.is_dir():
            skipped.append(command)
            continue
        argv = words[1:]
        if argv[:1] == ["simulate"] and "--help" not in argv:
            argv += SHORT
        if "--help" in argv:
            with pytest.raises(SystemExit) as done:
                main(argv)
            assert done.value.code == 0
        else:
            assert main(argv) == 0, f"{command}\n{capsys.readouterr().err}"
        ran += 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ran >= 12, (ran, skipped)
    assert (repo / "results" / "study" / "comparison" / "comparison.csv").is_file()

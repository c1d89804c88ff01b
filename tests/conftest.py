"""Shared test fixtures.

Real datasets live in ../shared/datasets beside the repository (never copied into it); tests that need them
skip with a clear reason when that folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("PLEXUS_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    """Path of ../shared/datasets/NAME, or skip the test when it is not there."""
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found at {path} (../shared/datasets is absent on this machine)")
    return path


@pytest.fixture
def datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"../shared/datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS

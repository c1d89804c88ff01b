"""Resident memory at scale: D-PSGD with 1000 GN-LeNet nodes stays under 4 GB (bench/memory.py, slow suite)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


@pytest.mark.slow
def test_dpsgd_with_a_thousand_gn_lenet_nodes_stays_under_4_gb() -> None:
    from memory import measure  # type: ignore[import-not-found]

    result = measure("dpsgd-cifar", rounds=1, stand_in=True)
    assert result["parameters"] == 85_354 and result["rounds"] == 1
    assert result["peak_bytes"] < 4e9, f"peak RSS {result['peak_bytes'] / 2**30:.2f} GiB"

"""The compute model: per-sample (steps x batch x s/sample x factor, FedScale) and per-step (steps x s/sample x
factor, the Plexus authors' code), one job at a time per node, and the same formula end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import plexus
from plexus.protocol.sampling import derive_sample
from plexus.sim.compute import ComputeModel
from plexus.sim.profiles import build_profiles


def test_per_sample_and_per_step_durations() -> None:
    seconds = np.array([0.01, 0.002])
    per_sample = ComputeModel(seconds, batch_size=20, factor=3.0)
    per_step = ComputeModel(seconds, batch_size=20, factor=3.0, per_step=True)
    assert per_sample.duration(0, 5) == pytest.approx(5 * 20 * 0.01 * 3)
    assert per_step.duration(0, 5) == pytest.approx(5 * 0.01 * 3)  # the batch size plays no part
    assert per_step.duration(1, 5) == pytest.approx(5 * 0.002 * 3)
    assert ComputeModel(seconds, batch_size=20).duration(1, 2) == pytest.approx(2 * 20 * 0.002)


def test_a_node_trains_one_job_at_a_time_and_release_frees_it() -> None:
    model = ComputeModel(np.array([1.0]), batch_size=1)
    assert model.reserve(0, 0.0, 4) == (0.0, 4.0)
    assert model.reserve(0, 1.0, 2) == (4.0, 6.0)  # queued behind the first
    model.release(0, 3.0, 6.0)  # the last job is abandoned at t=3: the node is free from then
    assert model.reserve(0, 3.0, 1) == (3.0, 4.0)
    model.release(0, 3.5, 99.0)  # not the last job: nothing changes
    assert model.reserve(0, 3.5, 1) == (4.0, 5.0)


def test_bad_compute_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="finite and non-negative"):
        ComputeModel(np.array([-1.0]), 20)
    with pytest.raises(ValueError, match="finite and non-negative"):
        ComputeModel(np.array([np.inf]), 20)
    with pytest.raises(ValueError, match="non-negative"):
        ComputeModel(np.array([1.0]), 20, factor=-1.0)


@pytest.mark.parametrize("compute_model, factor, samples_per_step", [("per-sample", 1.0, 20), ("per-step", 3.0, 1)])
def test_a_run_charges_the_chosen_formula(tmp_path: Path, compute_model: str, factor: float,
                                          samples_per_step: int) -> None:
    nodes, s, rounds, steps = 20, 4, 2, 3
    results = plexus.simulate({"nodes": nodes, "sample_size": s, "success_fraction": 1.0, "rounds": rounds,
                               "eval_every": 1, "local_steps": steps, "batch_size": 20, "seed": 1,
                               "compute_model": compute_model, "compute_factor": factor,
                               "out": str(tmp_path / compute_model)})
    # with sf = 1 every member of S_1 and S_2 trains exactly once per round and nothing is abandoned
    seconds = build_profiles(nodes, seed=1).seconds_per_sample
    ids = [str(i).encode() for i in range(nodes)]
    trained = [int(node) for k in range(1, rounds + 1) for node in derive_sample(ids, k, s)]
    expected = sum(steps * samples_per_step * float(seconds[i]) * factor for i in trained)
    assert results.summary["rounds_completed"] == rounds
    assert results.summary["training_jobs"] == len(trained)
    assert results.summary["train_seconds_total"] == pytest.approx(expected, rel=1e-9)
    assert results.metrics[-1]["train_seconds_total"] == pytest.approx(expected, rel=1e-9)

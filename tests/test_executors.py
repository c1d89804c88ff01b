"""Executors change where training runs, never what a run computes: inline, pool and ray give byte-identical
metrics; batched agrees within its stated tolerance; abandoned jobs change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import plexus
from plexus.errors import ConfigError
from plexus.learning.batched import BatchedExecutor
from plexus.learning.executors import InlineExecutor, PoolExecutor, TrainerSpec, shared_data
from plexus.learning.params import FlatModel
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset
from plexus.learning.trainer import Evaluator, LocalTrainer, SGDSettings, TrainJob
from plexus.metrics.results import METRICS_FILE, ROUNDS_FILE


def run(tmp_path: Path, name: str, **config: Any) -> plexus.metrics.results.Results:
    return plexus.simulate({**config, "out": str(tmp_path / name)})


def files(result: Any) -> tuple[bytes, bytes]:
    return (result.directory / METRICS_FILE).read_bytes(), (result.directory / ROUNDS_FILE).read_bytes()


# ---------------------------------------------------------------------------------------------- whole runs
def test_pool_gives_byte_identical_metrics_to_inline_with_abandoned_training(tmp_path: Path) -> None:
    # FedAvg with sf = 0.5: clients still training when the next round's model comes abandon their job, so the
    # pool trains jobs whose results are thrown away
    config = {"algorithm": "fedavg", "nodes": 12, "sample_size": 6, "success_fraction": 0.5, "rounds": 6,
              "eval_every": 2, "seed": 3}
    inline = run(tmp_path, "inline", **config)
    pool = run(tmp_path, "pool", executor="pool", workers=2, **config)
    assert inline.summary["counters"]["stale_training_abandoned"] > 0
    assert files(pool) == files(inline)
    assert pool.summary["executor"] == "pool"
    assert pool.summary["bytes_total"] == inline.summary["bytes_total"]


@pytest.mark.slow
def test_pool_evaluates_node_models_like_inline(tmp_path: Path) -> None:
    config = {"algorithm": "dpsgd", "nodes": 10, "topology": "regular:3", "rounds": 4, "eval_every": 2}
    assert files(run(tmp_path, "pool", executor="pool", workers=2, **config)) == files(run(tmp_path, "inline",
                                                                                           **config))


def test_batched_on_cpu_follows_inline_within_tolerance(tmp_path: Path) -> None:
    config = {"algorithm": "dpsgd", "nodes": 12, "topology": "regular:4", "rounds": 6, "eval_every": 3}
    inline = run(tmp_path, "inline", **config)
    batched = run(tmp_path, "batched", executor="batched", **config)
    assert batched.summary["executor"] == "batched"
    assert [row["round"] for row in batched.metrics] == [row["round"] for row in inline.metrics]
    assert [row["time_s"] for row in batched.metrics] == [row["time_s"] for row in inline.metrics]
    for a, b in zip(batched.metrics, inline.metrics, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


# ---------------------------------------------------------------------------------------------- unit level
class TinyImages(Task):
    """Random 3x32x32 images with GN-LeNet: the batched executor's convolution path, without CIFAR-10."""

    name = "tiny-images"
    defaults = TaskDefaults(nodes=4, lr=0.01, momentum=0.9)
    needs_data = False

    def load(self, data_path: str | None, seed: int) -> TaskData:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(120, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (120,), generator=generator)
        return TaskData(TensorDataset(x[:100], y[:100]), TensorDataset(x[100:], y[100:]))

    def build_model(self, data: TaskData) -> nn.Module:
        from plexus.learning.models import gn_lenet

        return gn_lenet()


def tiny_trainer(momentum: float = 0.9, weight_decay: float = 0.0) -> tuple[LocalTrainer, Evaluator]:
    task = TinyImages()
    data = task.load(None, 0)
    torch.manual_seed(0)
    model = FlatModel(task.build_model(data))
    parts = [np.arange(i * 25, (i + 1) * 25) for i in range(4)]
    trainer = LocalTrainer(task, data, parts, SGDSettings(8, 0.01, momentum, weight_decay), 0, model)
    return trainer, Evaluator(task, data, model)


def jobs(trainer: LocalTrainer, count: int = 4) -> list[TrainJob]:
    """Call before training anything: the shared model template still holds the initial model."""
    start = trainer.model.vector()
    return [TrainJob(node % 4, node, start + 0.01 * node, 3) for node in range(count)]


def test_batched_training_matches_the_trainer_per_job_on_gn_lenet() -> None:
    trainer, evaluator = tiny_trainer(momentum=0.9, weight_decay=1e-4)
    all_jobs = jobs(trainer)
    expected = [trainer.run(job) for job in all_jobs]
    executor = BatchedExecutor(trainer, evaluator, "cpu", batch_models=3)  # two passes: 3 + 1 models
    tickets = [executor.submit(job, float(i)) for i, job in enumerate(all_jobs)]
    outputs = [executor.result(ticket) for ticket in tickets]
    assert executor.passes == 2
    for got, want in zip(outputs, expected, strict=True):
        scale = np.abs(want.params).max()
        assert np.abs(got.params - want.params).max() <= 1e-4 * scale
        assert got.loss == pytest.approx(want.loss, rel=1e-4)
        assert got.samples == want.samples


def test_batched_evaluation_matches_the_evaluator() -> None:
    trainer, evaluator = tiny_trainer()
    models = [job.params for job in jobs(trainer, 3)]
    expected = [evaluator.evaluate(params) for params in models]
    got = BatchedExecutor(trainer, evaluator, "cpu").evaluate_many(models)
    for a, b in zip(got, expected, strict=True):
        assert a.metric == pytest.approx(b.metric, abs=1e-9)
        assert a.loss == pytest.approx(b.loss, rel=1e-4)


def test_cancelled_jobs_are_not_trained_and_do_not_disturb_the_others() -> None:
    trainer, evaluator = tiny_trainer()
    all_jobs = jobs(trainer)
    expected = trainer.run(all_jobs[2])
    for executor in (InlineExecutor(trainer, evaluator), BatchedExecutor(trainer, evaluator, "cpu")):
        before = trainer.jobs
        tickets = [executor.submit(job, 1.0) for job in all_jobs]
        for ticket in tickets[:2] + tickets[3:]:
            executor.cancel(ticket)
        np.testing.assert_array_equal(executor.result(tickets[2]).params, expected.params) if isinstance(
            executor, InlineExecutor) else np.testing.assert_allclose(executor.result(tickets[2]).params,
                                                                       expected.params, rtol=0, atol=1e-5)
        assert executor.jobs == 1
        if isinstance(executor, InlineExecutor):
            assert trainer.jobs == before + 1  # the three cancelled jobs never ran


def test_pool_workers_return_bit_identical_models_and_take_over_cancelled_slots() -> None:
    trainer, evaluator = tiny_trainer()
    all_jobs = jobs(trainer, 6)
    expected = [trainer.run(job) for job in all_jobs]
    spec = TrainerSpec(TinyImages, {}, shared_data(trainer.data), trainer.node_indices, trainer.sgd, 0)
    pool = PoolExecutor(trainer, evaluator, spec, trainer.model.size, workers=2)
    try:
        tickets = [pool.submit(job, float(i)) for i, job in enumerate(all_jobs)]
        pool.cancel(tickets[1])
        for i in (0, 2, 3, 4, 5):
            output = pool.result(tickets[i])
            np.testing.assert_array_equal(output.params, expected[i].params)
            assert output.loss == expected[i].loss
        evaluations = pool.evaluate_many([job.params for job in all_jobs])
        assert evaluations == [evaluator.evaluate(job.params) for job in all_jobs]
    finally:
        pool.close()


@pytest.fixture(autouse=True)
def _tiny_task(monkeypatch: pytest.MonkeyPatch) -> Any:
    from plexus.learning import tasks

    monkeypatch.setitem(tasks.TASKS, "tiny-images", TinyImages)
    # bit-identical results need the same intra-op thread count everywhere (simulations use one; so do workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_executor_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="executor = 'gpu'"):
        plexus.simulate({"executor": "gpu", "rounds": 1})
    with pytest.raises(ConfigError, match="needs --executor batched"):
        plexus.simulate({"device": "cuda", "rounds": 1})
    with pytest.raises(ConfigError, match="workers = 0"):
        plexus.simulate({"executor": "pool", "workers": 0, "rounds": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_batched_on_cuda_follows_inline(tmp_path: Path) -> None:
    config = {"algorithm": "dpsgd", "nodes": 12, "topology": "regular:4", "rounds": 4, "eval_every": 2}
    inline = run(tmp_path, "inline", **config)
    cuda = run(tmp_path, "cuda", executor="batched", device="cuda", **config)
    for a, b in zip(cuda.metrics, inline.metrics, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)


@pytest.mark.slow
def test_ray_gives_byte_identical_metrics_on_a_local_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional extra plexus[ray]")
    config = {"algorithm": "fedavg", "nodes": 12, "sample_size": 6, "success_fraction": 0.5, "rounds": 4,
              "eval_every": 2, "seed": 3}
    inline = run(tmp_path, "inline", **config)
    ray = run(tmp_path, "ray", executor="ray", workers=2, **config)
    assert files(ray) == files(inline)
    dl = {"algorithm": "dpsgd", "nodes": 10, "topology": "regular:3", "rounds": 3, "eval_every": 1}
    assert files(run(tmp_path, "ray-dl", executor="ray", workers=2, **dl)) == files(run(tmp_path, "inline-dl", **dl))

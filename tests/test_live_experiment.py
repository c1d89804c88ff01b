"""What a live node builds from a config: its shard only, the simulator's initial model, and a device trainer that
trains exactly like the simulator's trainer."""

from __future__ import annotations

import numpy as np
import pytest

from plexus.config import Config, resolve
from plexus.errors import ConfigError
from plexus.learning.trainer import SGDSettings, TrainJob
from plexus.live.experiment import DeviceTrainer, check_device, prepare


def test_a_node_keeps_only_its_own_shard_of_the_simulators_partition() -> None:
    config = resolve(Config(nodes=5, seed=3, protocol={"sample_size": 3}))
    full = prepare(config)
    mine = prepare(config)
    mine.keep_only(2)
    assert np.array_equal(mine.parts[2], full.parts[2]) and mine.parts[2].size > 0
    assert all(part.size == 0 for i, part in enumerate(mine.parts) if i != 2)
    assert np.array_equal(mine.initial, full.initial) and not mine.initial.flags.writeable


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_device_trainer_takes_the_same_steps_as_the_simulators_trainer(momentum: float) -> None:
    config = resolve(Config(nodes=4, seed=1, momentum=momentum, weight_decay=0.01, protocol={"sample_size": 3}))
    experiment = prepare(config)
    reference = experiment.trainer("cpu")
    assert config.batch_size is not None and config.lr is not None
    device = DeviceTrainer(experiment, SGDSettings(config.batch_size, config.lr, momentum, 0.01), "cpu")
    for job in range(3):
        a = reference.run(TrainJob(1, job, experiment.initial, 5))
        b = device.run(TrainJob(1, job, experiment.initial, 5))
        assert np.allclose(a.params, b.params, atol=1e-6) and a.samples == b.samples
        assert a.loss == pytest.approx(b.loss, rel=1e-5)


def test_an_unavailable_device_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="choose cpu or cuda"):
        check_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check_device("cuda")

"""The papers' models, grouped by task, and the ``--model`` variant lookup.

Every model keeps all its state in parameters (GroupNorm, never BatchNorm with running statistics), because a
model travels as one flat vector (:class:`plexus.learning.params.FlatModel` refuses buffers). Parameter counts
from DESIGN.md are checked by the tests; each variant's docstring states its count.

To add a model: write its builder in the task's section and add it to that task's variants table, which the
task hands to :func:`select_model`. The first entry of a table is the task's default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from plexus.errors import ConfigError

ModelBuilder = Callable[[], nn.Module]


def select_model(task: str, requested: str | None, variants: Mapping[str, ModelBuilder]) -> ModelBuilder:
    """The builder named by ``--model`` (None = the task's default, the first variant).

    An unknown name is a user error: it names the valid variants so the fix is one edit away.
    """
    if requested is None or requested == "":
        return next(iter(variants.values()))
    try:
        return variants[requested]
    except KeyError:
        raise ConfigError(
            f"unknown model {requested!r} for task {task}; choose from {', '.join(variants)}"
        ) from None


# --------------------------------------------------------------------------------------------------- CIFAR-10
class GNLeNet(nn.Module):
    """GN-LeNet (Hsieh et al., 2020): LeNet-style CNN with GroupNorm instead of BatchNorm, for 32x32 RGB.

    Three blocks of conv 5x5 (padding 2; 32, 32, 64 channels) -> max-pool -> GroupNorm(2 groups) -> ReLU, then
    one linear layer. GroupNorm normalises within a sample, so the model has no running statistics and works
    with non-IID data and flat-vector averaging. ``pool`` and ``stride`` choose the variant (see the builders).
    """

    def __init__(self, pool: int, stride: int, classes: int = 10, size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 32, 32, 64]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=5, padding=2),
                nn.MaxPool2d(kernel_size=pool, stride=stride),
                nn.GroupNorm(2, c_out),
                nn.ReLU(),
            ]
            size = (size - pool) // stride + 1
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels[-1] * size * size, classes)

    def forward(self, x):  # noqa: ANN001, ANN201 - torch convention
        return self.classifier(self.features(x).flatten(1))


def gn_lenet() -> nn.Module:
    """The Plexus paper's GN-LeNet: 3x3 max-pool, stride 2 (32 -> 15 -> 7 -> 3), linear 576 -> 10: 85,354."""
    return GNLeNet(pool=3, stride=2)


def gn_lenet_dpy() -> nn.Module:
    """decentralizepy's / DivShare's GN-LeNet: 2x2 max-pool (32 -> 16 -> 8 -> 4), linear 1024 -> 10: 89,834."""
    return GNLeNet(pool=2, stride=2)


CIFAR10_MODELS: dict[str, ModelBuilder] = {
    "gn-lenet": gn_lenet,
    "gn-lenet-dpy": gn_lenet_dpy,
}


# ------------------------------------------------------------------------------------------------------ MNIST
def mnist_cnn() -> nn.Module:
    """A LeNet-style CNN for 28x28 grey digits: conv5x5 1->10, max-pool 2, ReLU; conv5x5 10->20, max-pool 2,
    ReLU; linear 320 -> 50, ReLU; linear 50 -> 10: 21,840 parameters. Chosen over wider padded CNNs because
    it costs about 0.5 M multiply-adds per image, so evaluating 10,000 test images and training 100+
    simulated nodes stay cheap on one CPU core, while still reaching ~97% test accuracy."""
    return nn.Sequential(
        nn.Conv2d(1, 10, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(10, 20, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(20 * 4 * 4, 50),
        nn.ReLU(),
        nn.Linear(50, 10),
    )


def mnist_mlp() -> nn.Module:
    """McMahan et al.'s "2NN": 784 -> 200 -> 200 -> 10 with ReLU: 199,210 parameters."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


MNIST_MODELS: dict[str, ModelBuilder] = {
    "cnn": mnist_cnn,
    "mlp": mnist_mlp,
}

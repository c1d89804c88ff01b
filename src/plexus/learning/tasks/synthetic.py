"""Synthetic(alpha, beta): Li et al.'s heterogeneous logistic-regression data (FedProx, MLSys 2020; also in LEAF).

Each node k draws its own model and its own feature distribution:

- model heterogeneity: u_k ~ N(0, alpha), W_k ~ N(u_k, 1) (10 x 60), b_k ~ N(u_k, 1) (10);
- data heterogeneity: B_k ~ N(0, beta), v_k ~ N(B_k, 1) (60), features x ~ N(v_k, Sigma) with Sigma diagonal,
  Sigma_jj = j^(-1.2) (j = 1..60);
- labels y = argmax(softmax(W_k x + b_k)) (10 classes);
- sample counts follow the FedProx code's power law: floor(lognormal(4, 2)) + 50, capped here at 10,000 so that
  a rare heavy-tailed draw cannot dominate memory (1000 nodes hold about 300,000 samples in all).

As in FedProx's generator, alpha and beta are the standard deviations of the normal draws; Synthetic(0, 0) is
the mildest setting, Synthetic(1, 1) the most heterogeneous one in the paper. Every node draws from its own
stream (seed, "synthetic", k), so node k's data depends only on the seed, k, alpha and beta, not on how many
nodes the run has. Each node's samples are split 80/20 into train and test; the test set is the union.

The natural partition (the preset) is one generated user per node: the task generates exactly as many users as
the run has nodes (the ``nodes`` option, which the config passes in). Nothing is downloaded, and 1000 nodes
load in well under a second, which makes this the task for 1000+ node runs on a laptop. The model is
multinomial logistic regression (linear 60 -> 10, 610 parameters); lr 0.01 is FedProx's setting.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from plexus.errors import ConfigError
from plexus.learning.tasks.base import Task, TaskData, TaskDefaults, TensorDataset
from plexus.rng import stream

FEATURES = 60
CLASSES = 10
MIN_SAMPLES = 50
MAX_SAMPLES = 10_000
TRAIN_FRACTION = 0.8
_SCALE = (np.power(np.arange(1, FEATURES + 1, dtype=np.float64), -1.2) ** 0.5).astype(np.float32)  # sqrt(Sigma_jj)


def generate_node(
    seed: int, node: int, alpha: float, beta: float, shared: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Node ``node``'s samples (features float32 (n, 60), labels int64 (n,)) under Synthetic(alpha, beta).

    With ``shared = (W, b)`` every node labels with that one model and draws features around 0: FedProx's
    Synthetic-IID.
    """
    rng = stream(seed, "synthetic", node)
    count = min(MAX_SAMPLES, int(rng.lognormal(4.0, 2.0)) + MIN_SAMPLES)
    if shared is None:
        u = rng.normal(0.0, alpha)
        w = rng.normal(u, 1.0, (CLASSES, FEATURES))
        b = rng.normal(u, 1.0, CLASSES)
        centre = rng.normal(0.0, beta)
        v = rng.normal(centre, 1.0, FEATURES)
    else:
        w, b = shared
        v = np.zeros(FEATURES)
    # float32 throughout: drawing the features is most of the task's load time
    x = rng.standard_normal((count, FEATURES), dtype=np.float32)
    x *= _SCALE
    x += v.astype(np.float32)
    y = np.argmax(x @ w.T.astype(np.float32) + b.astype(np.float32), axis=1)
    return x, y.astype(np.int64)


class SyntheticTask(Task):
    name = "synthetic"
    models = ("logreg",)
    description = "Synthetic(alpha, beta) of FedProx: heterogeneous logistic regression, one user per node"
    model_name = "multinomial logistic regression 60-10 (610 parameters)"
    defaults = TaskDefaults(nodes=1000, lr=0.01, partition="natural")
    needs_data = False

    def load(self, data_path: str | None, seed: int) -> TaskData:
        alpha = float(self.options.get("alpha", 1.0) if self.options.get("alpha") is not None else 1.0)
        beta = float(self.options.get("beta", 1.0) if self.options.get("beta") is not None else 1.0)
        nodes = int(self.options.get("nodes") or self.defaults.nodes)
        if alpha < 0 or beta < 0 or not np.isfinite(alpha + beta):
            raise ConfigError(f"synthetic task: alpha = {alpha} and beta = {beta} must be finite and >= 0")
        if nodes < 1:
            raise ConfigError(f"synthetic task: need at least one node, got {nodes}")
        train_x, train_y, test_x, test_y, sizes = [], [], [], [], []
        shared = self.shared_model(seed)
        for node in range(nodes):
            x, y = generate_node(seed, node, alpha, beta, shared)
            cut = int(round(TRAIN_FRACTION * len(y)))
            train_x.append(x[:cut])
            train_y.append(y[:cut])
            test_x.append(x[cut:])
            test_y.append(y[cut:])
            sizes.append(cut)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        labels = np.concatenate(train_y)
        return TaskData(
            train=TensorDataset(torch.from_numpy(np.concatenate(train_x)), torch.from_numpy(labels)),
            test=TensorDataset(torch.from_numpy(np.concatenate(test_x)), torch.from_numpy(np.concatenate(test_y))),
            labels=labels,
            users=[np.arange(offsets[i], offsets[i + 1]) for i in range(nodes)],
            info={"classes": CLASSES, "users": nodes, "alpha": alpha, "beta": beta},
        )

    def shared_model(self, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The labelling model all nodes share, or None when each node has its own."""
        return None

    def build_model(self, data: TaskData) -> nn.Module:
        return nn.Linear(FEATURES, CLASSES)


class SyntheticIIDTask(SyntheticTask):
    """FedProx's Synthetic-IID: one labelling model W, b ~ N(0, 1) for every node, features x ~ N(0, Sigma).

    Node sample counts keep the same power law, so nodes differ in size but not in distribution: a single
    global model can fit everyone, which makes it the task for checking how fast algorithms converge at scale
    (Synthetic(alpha, beta) measures how they cope with heterogeneity, where one global model fits no node
    well). ``--alpha`` and ``--beta`` do not apply. Features are small (Sigma_jj = j^-1.2), hence the large preset
    learning rate (1.0: Plexus with 1000 nodes reaches about 0.85 test accuracy in 200 rounds).
    """

    name = "synthetic-iid"
    description = "Synthetic-IID of FedProx: one shared logistic-regression labeller, power-law node sizes"
    defaults = TaskDefaults(nodes=1000, lr=1.0, partition="natural")

    def shared_model(self, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        rng = stream(seed, "synthetic-iid-model")
        return rng.normal(0.0, 1.0, (CLASSES, FEATURES)), rng.normal(0.0, 1.0, CLASSES)

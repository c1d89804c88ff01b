"""Recommendation models: matrix factorisation for MovieLens.

The model is the one decentralizepy and the Plexus/DivShare experiments use: a user and an item embedding of
dimension 20, no biases, prediction = their dot product, trained with the MSE loss (ml-latest-small: 610 users
and 9,724 items give (610 + 9,724) x 20 = 206,680 parameters).

Initialisation: with no bias terms the dot product must carry the whole rating (mean about 3.5 stars), and
with PyTorch's default N(0, 1) embeddings a 20-dimensional dot product starts with a spread of about +-4.5,
which plain SGD takes many rounds to undo. Entries are drawn from N(sqrt(mean / dim), 0.1) instead, so every
initial prediction is close to the mean rating (``mean`` defaults to 3.5; the task passes the training mean).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MatrixFactorization(nn.Module):
    """Prediction for input rows (user index, item index): <user embedding, item embedding>, shape (batch,)."""

    def __init__(self, users: int, items: int, dim: int = 20, mean_rating: float = 3.5) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(users, dim)
        self.item_factors = nn.Embedding(items, dim)
        centre = math.sqrt(max(mean_rating, 0.0) / dim)
        with torch.no_grad():
            self.user_factors.weight.normal_(centre, 0.1)
            self.item_factors.weight.normal_(centre, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.user_factors(x[:, 0]) * self.item_factors(x[:, 1])).sum(dim=1)

"""Models of the LEAF tasks (FEMNIST, CelebA, Shakespeare), as the Plexus paper and LEAF define them.

Every model keeps all of its state in parameters (no BatchNorm running statistics), because a model travels as
one flat vector (see :mod:`plexus.learning.params`). Inputs stored compactly by the tasks (CelebA images as
uint8, Shakespeare characters as uint8 indices) are converted inside ``forward``, so the training tensors stay
small: the full LEAF CelebA is 4.2 GB as uint8 but would be 17 GB as float32.

Parameter counts (checked by the tests):

- :class:`FemnistCNN`: 1,690,046 (conv5x5 1->32, pool, conv5x5 32->64, pool, linear 3136->512->62).
- :class:`CelebaCNN`: 30,242 (four blocks conv3x3 'same' -> max-pool 2 -> ReLU; 84 -> 42 -> 21 -> 10 -> 5,
  so the last feature map is 32 x 5 x 5 = 800; linear 800 -> 2). LEAF's TensorFlow model also has a
  BatchNorm in each block; it is left out here because a model must be its parameter vector.
- :class:`CharLSTM`: 819,920 (embedding 80x8 = 640; LSTM 8->256: 272,384; LSTM 256->256: 526,336;
  linear 256->80: 20,560). PyTorch's LSTM has two bias vectors per layer where TensorFlow's has one, so the
  same architecture in LEAF's TensorFlow code has 2,048 fewer parameters (817,872).
"""

from __future__ import annotations

import torch
from torch import nn

FEMNIST_CLASSES = 62
CELEBA_IMAGE_SIZE = 84
SHAKESPEARE_VOCAB = 80


class FemnistCNN(nn.Module):
    """The Plexus paper's FEMNIST network (LEAF's CNN); input (batch, 1, 28, 28) floats in [0, 1]."""

    def __init__(self, classes: int = FEMNIST_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(7 * 7 * 64, 512), nn.ReLU(), nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CelebaCNN(nn.Module):
    """The Plexus paper's CelebA network; input (batch, 3, 84, 84), uint8 pixels (scaled here) or floats."""

    def __init__(self, classes: int = 2, channels: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for _ in range(4):
            layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
            in_channels = channels
        self.features = nn.Sequential(*layers)
        side = CELEBA_IMAGE_SIZE
        for _ in range(4):
            side //= 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return self.classifier(self.features(x))


class CharLSTM(nn.Module):
    """LEAF's Shakespeare model: next-character prediction from 80 characters (indices into the vocabulary)."""

    def __init__(self, vocab: int = SHAKESPEARE_VOCAB, embedding: int = 8, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.output = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x.long()))
        return self.output(out[:, -1])

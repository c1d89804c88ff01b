"""Models as flat float32 vectors.

A model's parameters live in one contiguous tensor and every ``nn.Parameter`` is a view into it, so loading a
node's vector into the shared model and reading it back are single copies, and an SGD step is one fused
update on the flat tensor. Models must keep all their state in parameters (no buffers such as BatchNorm
running statistics): the vector is the whole model, which is what travels on the wire.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class FlatModel:
    """A module whose parameters (and gradients) are views of two flat tensors."""

    def __init__(self, module: nn.Module) -> None:
        buffers = [name for name, _ in module.named_buffers()]
        if buffers:
            raise ValueError(f"models must hold all state in parameters; found buffers {buffers}")
        params = [p for p in module.parameters() if p.requires_grad]
        total = sum(p.numel() for p in params)
        self.module = module
        self.size = total
        self.layout = tuple(int(p.numel()) for p in params)  # tensor sizes in flat-vector order
        self.flat = torch.zeros(total, dtype=torch.float32)
        self.grad = torch.zeros(total, dtype=torch.float32)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.detach().reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                p.grad = self.grad[offset : offset + n].view_as(p)
                offset += n

    def load(self, vector: np.ndarray) -> None:
        if vector.shape != (self.size,):
            raise ValueError(f"model vector has shape {vector.shape}, expected ({self.size},)")
        self.flat.numpy()[:] = vector

    def vector(self) -> np.ndarray:
        return self.flat.numpy().copy()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

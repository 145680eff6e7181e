"""Per-step loss functions in the shape the engine wants: ``(y, targets) -> (B, L)``.

>>> import torch
>>> cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)).shape
torch.Size([2, 3])
>>> mse(torch.zeros(2, 3, 1), torch.ones(2, 3, 1))
tensor([[1., 1., 1.],
        [1., 1., 1.]])
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """logits (B, L, V), integer targets (B, L) -> (B, L) in nats."""
    flat = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    return flat.view(targets.shape)  # contiguous (B*L, V) rows: faster than a transposed input


def mse(y: Tensor, targets: Tensor) -> Tensor:
    """(B, L, ...) -> (B, L): squared error averaged over the feature dims."""
    err = F.mse_loss(y, targets, reduction="none")
    return err.flatten(2).mean(-1) if err.dim() > 2 else err


def mae(y: Tensor, targets: Tensor) -> Tensor:
    """(B, L, ...) -> (B, L): absolute error averaged over the feature dims."""
    err = (y - targets).abs()
    return err.flatten(2).mean(-1) if err.dim() > 2 else err

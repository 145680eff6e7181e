"""Optimizer helpers for the rules that ask for a per-update learning rate.

:class:`tbptt.truncation.VariableLength` (AWD-LSTM, Merity et al. 2017) returns
``Update.lr_scale = seq_len / bptt``; apply it to that one step and restore the rate exactly:

>>> import torch
>>> w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
>>> opt = torch.optim.SGD([w], lr=0.1)
>>> w.grad = torch.ones(1, dtype=torch.float64)
>>> with scaled_lr(opt, 0.5):                       # e.g. update.lr_scale
...     opt.step()
>>> w.item(), opt.param_groups[0]["lr"]             # stepped with lr 0.05, 0.1 restored
(-0.05, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from tbptt.truncation import is_real


@contextmanager
def scaled_lr(optimizer: torch.optim.Optimizer, factor: float) -> Iterator[torch.optim.Optimizer]:
    """Multiply every param group's ``lr`` by ``factor`` inside the block, then put back the
    exact values it had (the same objects, so no rounding drift), even if the block raises.

    Use it around ``optimizer.step()`` only: a learning-rate scheduler stepped inside the block
    would have its change undone on exit; step schedulers outside it.

    Args:
        optimizer: any ``torch.optim.Optimizer`` whose param groups have an ``lr``.
        factor: a finite number ``>= 0`` (``Update.lr_scale``).
    """
    if not is_real(factor) or not (math.isfinite(factor) and factor >= 0):  # numpy too
        raise ValueError(
            f"factor must be a finite number >= 0, got {factor!r}. Pass update.lr_scale."
        )
    groups = getattr(optimizer, "param_groups", None)
    if groups is None or any("lr" not in g for g in groups):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer whose param groups have an 'lr', got "
            f"{type(optimizer).__name__}."
        )
    saved: list[Any] = [g["lr"] for g in groups]
    try:
        for g, lr in zip(groups, saved):
            g["lr"] = lr * factor
        yield optimizer
    finally:
        for g, lr in zip(groups, saved):
            g["lr"] = lr

"""The unit of data the engine consumes: a piece of B parallel streams.

Row ``b`` of one chunk continues row ``b`` of the previous chunk (stateful streams). Inside a
chunk, ``reset[b, t]`` marks the first step of a true sequence (the state is re-initialised
before step ``t``) and ``mask[b, t]`` marks the steps whose loss counts (padding is False).

>>> import torch
>>> c = Chunk(torch.zeros(2, 5, 1), torch.zeros(2, 5, 1))
>>> c = c.filled()
>>> tuple(c.reset.shape), bool(c.mask.all()), bool(c.reset.any())
((2, 5), True, False)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Chunk(NamedTuple):
    inputs: Tensor  # (B, T, ...) model inputs
    targets: Tensor  # (B, T, ...) whatever the loss function compares the outputs with
    reset: Tensor | None = None  # (B, T) bool: a new sequence starts at this step
    mask: Tensor | None = None  # (B, T) bool: this step's loss counts

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def length(self) -> int:
        return int(self.inputs.shape[1])

    def filled(self) -> Chunk:
        """The same chunk with ``reset`` (all False) and ``mask`` (all True) made explicit."""
        bt = self.inputs.shape[:2]
        dev = self.inputs.device
        reset = (
            self.reset if self.reset is not None else torch.zeros(bt, dtype=torch.bool, device=dev)
        )
        mask = self.mask if self.mask is not None else torch.ones(bt, dtype=torch.bool, device=dev)
        return Chunk(self.inputs, self.targets, reset, mask)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Chunk:
        """Move every tensor to ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        inputs, targets = (
            self.inputs.to(device, non_blocking=non_blocking),
            self.targets.to(device, non_blocking=non_blocking),
        )
        return Chunk(inputs, targets, move(self.reset), move(self.mask))

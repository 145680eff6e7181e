"""Will a run fit in memory? A rough estimate of the activations a run keeps for its backward,
checked before training starts, so that an absurd ``--batch-size`` or full BPTT over a long
corpus fails at once with the flags to change, not with an out-of-memory crash minutes later.

The estimate counts, per batch row and per step kept for the backward, the values autograd saves:
for each recurrent layer its input and about seven hidden-sized vectors (an LSTM's four gates,
the cell, its tanh and the output), for each linear layer about three times its output (the
logits, their softmax and its gradient), for each embedding its output. It is a lower bound of the
truth within a small factor; runs are refused only when it alone exceeds the memory there is.

>>> from torch import nn
>>> floats_per_step(nn.LSTM(8, 16))   # input 8 + 7 x hidden 16
120
"""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["available_bytes", "check_fits", "floats_per_step"]


def floats_per_step(model: nn.Module) -> int:
    """Values saved for the backward per batch row and step (see the module docstring)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            directions = 2 if m.bidirectional else 1
            total += (m.input_size + 7 * m.hidden_size * directions) * m.num_layers
        elif isinstance(m, (nn.RNNCellBase,)):
            total += m.input_size + 7 * m.hidden_size
        elif isinstance(m, nn.Linear):
            total += 3 * m.out_features
        elif isinstance(m, nn.Embedding):
            total += m.embedding_dim
    return total


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's free memory, or the machine's available RAM (Linux's
    ``MemAvailable``, else physical pages); ``None`` when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(
    model: nn.Module, batch: int, steps: int, device: torch.device, bytes_per_value: int = 4
) -> None:
    """Raise ``ValueError`` naming ``--batch-size`` and the length flags when the activations of
    ``batch`` rows x ``steps`` steps alone exceed the free memory of ``device``."""
    need = floats_per_step(model) * batch * steps * bytes_per_value
    free = available_bytes(device)
    if free is None or need <= free:
        return
    raise ValueError(
        f"--batch-size {batch} with {steps:,} steps kept for each backward needs about "
        f"{need / 2**30:,.1f} GiB for activations, and {device} has {free / 2**30:,.1f} GiB free. "
        "Lower --batch-size, --k2 or --chunk-len (with --rule bptt: use --rule tbptt, or "
        "--activation-checkpointing sqrt)."
    )

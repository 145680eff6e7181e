"""The checks of :class:`tbptt.Engine`'s arguments and of every piece fed to it: one clear
ValueError/TypeError naming the argument, the value received and the fix."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.truncation import TruncationRule, is_int

__all__ = ["check_options", "check_piece"]


def check_options(
    model: Any,
    loss_fn: Any,
    rule: TruncationRule,
    mode: str,
    checkpoint: Any,
    reduction: str,
    zero_grad: Any,
    check_inputs: Any,
) -> int | Literal["sqrt"] | None:
    """The Engine's arguments checked (one ValueError/TypeError naming the argument); the
    checkpoint setting normalised (numpy integers become ints)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    if mode not in ("stored", "recompute"):
        raise ValueError(f"mode must be 'stored' or 'recompute', got {mode!r}.")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable as loss_fn(y, targets) -> (B, L), got {loss_fn!r}."
        )
    if not isinstance(rule, TruncationRule):
        raise TypeError(
            f"rule must be a truncation rule such as TBPTT(k1, k2) or BPTT(), got {rule!r}."
        )
    if getattr(rule, "needs_sum_reduction", False) and reduction != "sum":
        raise ValueError(
            f"{type(rule).__name__} is unbiased only with reduction='sum' (its chunks have "
            f"random lengths, so a mean over each chunk would weight the steps unequally), got "
            f"reduction={reduction!r}. Pass Engine(..., reduction='sum') and set the learning "
            "rate for a sum of losses."
        )
    if checkpoint is not None and not (
        (isinstance(checkpoint, str) and checkpoint == "sqrt")
        or (is_int(checkpoint) and checkpoint >= 1)
    ):
        raise ValueError(
            f"checkpoint must be None, 'sqrt' or a positive number of steps, got {checkpoint!r}."
        )
    if is_int(checkpoint):
        checkpoint = int(checkpoint)
    for flag, value in (("zero_grad", zero_grad), ("check_inputs", check_inputs)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}.")
    if mode == "stored" and rule.lookback and checkpoint is not None:
        raise ValueError(
            f"checkpoint={checkpoint!r} cannot be combined with mode='stored' and k2 > k1: the "
            "retained windows would be recomputed with weights the optimizer has changed since. "
            "Use mode='recompute' (which already keeps only one state per window) with checkpoint."
        )
    if mode == "stored" and rule.lookback and not isinstance(model, nn.Module):
        raise TypeError(
            "mode='stored' with k2 > k1 needs the model as an nn.Module (to keep each chunk's "
            "parameters while the optimizer changes them); wrap your function in an "
            "nn.Module or use mode='recompute'."
        )
    return checkpoint


def check_piece(chunk: Chunk, batch_size: int | None, check_inputs: bool) -> Chunk:
    """A fed piece checked against the stream (``batch_size``: its rows, None before the first
    piece), with ``reset``/``mask`` as None where they change nothing and NaN targets zeroed on
    masked steps."""
    x, y, reset, mask = chunk
    if not isinstance(x, Tensor) or x.dim() < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"inputs must be a tensor of shape (B, T, ...), got {got}. For one sequence use "
            "x.unsqueeze(0); for one step per row use x.unsqueeze(1)."
        )
    bt = tuple(x.shape[:2])
    if not isinstance(y, Tensor) or tuple(y.shape[:2]) != bt:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"targets must start with the inputs' (B, T) = {bt}, got {got}. Give one target "
            "per step (mask the steps without one)."
        )
    for name, m in (("reset", reset), ("mask", mask)):
        if m is not None and (not isinstance(m, Tensor) or tuple(m.shape) != bt):
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"{name} must be a (B, T) = {bt} bool tensor, got {got}.")
        if m is not None and not _is_flags(m):
            raise TypeError(
                f"{name} must be a bool tensor (or integers 0/1), got dtype {m.dtype}"
                f"{'' if m.dtype.is_floating_point else ' with other values'}. Convert it: "
                f"{name} > 0.5 for a float {name}, {name} != 0 for counts."
            )
    if batch_size is not None and bt[0] != batch_size:
        raise ValueError(
            f"inputs has {bt[0]} rows but this stream has {batch_size}: row b of each "
            "piece continues row b of the previous one. Call engine.flush() (or "
            "reset_stream()) before changing the batch size."
        )
    if check_inputs and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(
            "inputs contains NaN or inf; clean the data (e.g. torch.nan_to_num) before feeding."
        )
    if bt[1]:  # an empty piece does not fix the stream's batch size
        batch_size = bt[0]
    # None stands for "no resets" / "every step counts": the update then skips the masking
    # arithmetic and the unroller skips looking for resets (one check per feed, not per run)
    reset = None if reset is None or not bool(reset.any()) else reset.to(torch.bool)
    mask = None if mask is None or bool(mask.all()) else mask.to(torch.bool)
    if (
        mask is not None
        and check_inputs
        and y.is_floating_point()
        and not bool(torch.isfinite(y).all())
    ):
        # NaN targets on padding would still reach the gradient (NaN * 0): zero them there
        padding = ~mask.view(*bt, *([1] * (y.dim() - 2)))
        y = torch.where(padding, torch.zeros((), dtype=y.dtype, device=y.device), y)
    return Chunk(x, y, reset, mask)


def _is_flags(m: Tensor) -> bool:
    """A reset/mask tensor: bool, or integers that are all 0 or 1."""
    if m.dtype == torch.bool:
        return True
    if m.is_floating_point() or m.is_complex():
        return False
    return bool(((m == 0) | (m == 1)).all())

"""Evaluation: run a model over a stream without gradients, the state carried from chunk to
chunk, and report the task's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.engine import Engine, Update
from tbptt.train.metrics import Metrics
from tbptt.truncation import TBPTT

__all__ = ["evaluate", "resolve_device"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None``: CUDA when available, else the CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:1'."
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'.")
    return dev


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    stream: Iterable[Chunk],
    *,
    metrics: Metrics | None = None,
    device: str | torch.device | None = "auto",
    amp_dtype: torch.dtype | None = None,
    max_chunks: int | None = None,
) -> dict[str, float]:
    """Run ``model`` over ``stream`` without gradients, carrying the state from chunk to chunk
    (row b of each chunk continues row b of the previous one; resets and masks as in training),
    and return the mean loss over the unmasked steps with the task's metrics
    (``metrics.from_loss`` and ``metrics.summary``) and ``tokens``, the steps counted.
    """
    metrics = metrics or Metrics()
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    metrics.reset()
    total, count = 0.0, 0
    engine: Engine | None = None
    targets: list[Tensor] = []  # fed, not yet covered by an update: (B, n, ...) pieces
    masks: list[Tensor] = []

    def consume(updates: Iterator[Update]) -> None:
        nonlocal total, count
        while True:
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                u = next(updates, None)
            if u is None:
                return
            n = u.stop - u.start
            t, m = _take(targets, n), _take(masks, n)
            total += float(u.report_sum)
            count += int(u.report_count)
            metrics.accumulate(u.outputs, t, m)

    try:
        for i, chunk in enumerate(stream):
            if max_chunks is not None and i >= max_chunks:
                break
            chunk = chunk.to(dev).filled()
            if engine is None:
                engine = Engine(
                    model, loss_fn, TBPTT(chunk.length), zero_grad=False, check_inputs=False
                )
            assert chunk.mask is not None
            targets.append(chunk.targets)
            masks.append(chunk.mask)
            consume(engine.feed(*chunk))
        if engine is not None:
            consume(engine.flush())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation stream has no unmasked step; pass a non-empty stream.")
    out = metrics.from_loss(total / count)
    out.update(metrics.summary())
    out["tokens"] = float(count)
    return out


def _take(pieces: list[Tensor], n: int) -> Tensor:
    """Pop the first ``n`` steps (dim 1) of a queue of pieces."""
    got, out = 0, []
    while got < n:
        p = pieces.pop(0)
        if got + p.shape[1] > n:
            k = n - got
            pieces.insert(0, p[:, k:])
            p = p[:, :k]
        out.append(p)
        got += p.shape[1]
    return out[0] if len(out) == 1 else torch.cat(out, 1)

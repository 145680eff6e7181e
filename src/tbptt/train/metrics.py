"""Metrics: what a loss means for a task, and the run's metrics log (JSON lines, CSV, TensorBoard).

- :class:`Metrics`: the mean loss only.
- :class:`TokenMetrics`: cross-entropy in nats -> bits per token (``bpc`` for characters) and
  perplexity.
- :class:`SeriesMetrics`: squared error on standardised values -> MSE, RMSE and MAE in the data's
  units (MAE needs the outputs, so it is computed in evaluation only).

>>> m = TokenMetrics()
>>> round(m.from_loss(math.log(2))["bpc"], 6), round(m.from_loss(math.log(2))["ppl"], 6)
(1.0, 2.0)
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Metrics",
    "MetricsLog",
    "SeriesMetrics",
    "TokenMetrics",
    "peak_memory_mb",
    "read_jsonl",
    "write_csv",
]


class Metrics:
    """Turn a mean loss into the numbers a task reports; accumulate extra ones in evaluation.

    ``from_loss(mean_loss)`` works for training updates and evaluation alike;
    ``accumulate(outputs, targets, mask)`` / ``summary()`` add what needs the model's outputs
    (evaluation only; ``outputs`` (B, L, ...), ``targets`` (B, L, ...), ``mask`` (B, L) bool).
    """

    name = "loss"  # the headline metric shown in the progress bar

    def from_loss(self, loss: float) -> dict[str, float]:
        return {"loss": loss}

    def reset(self) -> None:
        """Start a new evaluation."""

    def accumulate(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> None:
        """Add one piece of an evaluation stream."""

    def summary(self) -> dict[str, float]:
        """The accumulated extra metrics."""
        return {}


class TokenMetrics(Metrics):
    """Cross-entropy (nats) -> ``bpc`` (bits per token) and ``ppl`` (perplexity)."""

    name = "bpc"

    def from_loss(self, loss: float) -> dict[str, float]:
        return {
            "loss": loss,
            "bpc": loss / math.log(2),
            "ppl": math.exp(min(loss, 700.0)),
        }


class SeriesMetrics(Metrics):
    """Squared error on values standardised as ``(v - mean) / scale``: ``mse``/``rmse``/``mae`` in
    the data's units."""

    name = "rmse"

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (the data's standard deviation), got {scale!r}.")
        self.scale = float(scale)
        self.reset()

    def from_loss(self, loss: float) -> dict[str, float]:
        mse = loss * self.scale**2
        return {"loss": loss, "mse": mse, "rmse": math.sqrt(max(mse, 0.0))}

    def reset(self) -> None:
        self._abs = 0.0
        self._count = 0

    def accumulate(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> None:
        err = (outputs.float() - targets.float()).abs()  # (B, L, ...)
        err = err.flatten(2).mean(-1) if err.dim() > 2 else err  # (B, L)
        self._abs += float((err * mask).sum()) * self.scale
        self._count += int(mask.sum())

    def summary(self) -> dict[str, float]:
        return {"mae": self._abs / self._count} if self._count else {}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far in MiB: allocated tensors on CUDA, the process's peak RSS elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class MetricsLog:
    """Append records to ``metrics.jsonl`` (one JSON object per line) and, when TensorBoard is
    installed and ``tensorboard`` is not False, to ``tb/``.

    Each record has ``kind`` ("train" or "val"), ``update`` and ``time`` (seconds of the run) and
    the metrics. ``truncate(update)`` drops records after ``update`` (used when resuming from a
    checkpoint older than the log).
    """

    def __init__(self, folder: str | Path, tensorboard: bool | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metrics.jsonl"
        self._tb: Any = None
        if tensorboard is not False:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if tensorboard:
                    raise ModuleNotFoundError(
                        "tensorboard=True needs the 'tensorboard' package: pip install tensorboard"
                    ) from None
            else:
                self._tb = SummaryWriter(str(self.folder / "tb"))

    def truncate(self, update: int) -> None:
        """Keep only the records with ``update <= update`` (atomically)."""
        if not self.path.exists():
            return
        keep = [r for r in read_jsonl(self.path) if r.get("update", 0) <= update]
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record``; a failed write (a full disk) raises
        :class:`~tbptt.train.checkpoint.CheckpointWriteError` naming the log (a torn last line
        is skipped on reading, and a resume truncates the log to its checkpoint)."""
        from tbptt.train.checkpoint import CheckpointWriteError

        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise CheckpointWriteError(self.path, e, what="the metrics log") from e
        if self._tb is not None:
            kind, step = record.get("kind", "train"), int(record.get("update", 0))
            for k, v in record.items():
                if k not in ("kind", "update") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (a torn last line, from a killed run, is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def write_csv(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write records as CSV, one column per key seen (in order of first appearance)."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)

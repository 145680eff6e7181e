"""What the training loop records: its counters and result, the callbacks, the log records and
the evaluations (the :class:`Trainer`'s bookkeeping, kept apart from the loop itself)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.engine import Update
from tbptt.train.evaluation import evaluate
from tbptt.train.metrics import peak_memory_mb

if TYPE_CHECKING:
    from tbptt.engine import Engine
    from tbptt.train.loop import Trainer
    from tbptt.train.metrics import Metrics, MetricsLog
    from tbptt.train.progress import Progress
    from tbptt.train.run import RunFolder
    from tbptt.train.trainer_state import DataCursor

__all__ = ["Callback", "Counters", "FitResult", "NonFiniteError", "TrainingInterrupted"]


class NonFiniteError(RuntimeError):
    """Training stopped: too many updates in a row had a NaN/inf loss or gradient."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved (``.checkpoint``) before stopping."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint."""

    updates: int = 0  # engine updates (skipped ones included)
    steps: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    chunks: int = 0  # chunks consumed in the current epoch
    tokens: int = 0  # unmasked steps seen in training (summed over rows)
    elapsed: float = 0.0  # seconds of training sessions before the current one
    skipped: int = 0  # non-finite updates skipped in all
    skipped_in_row: int = 0
    amp_overflows: int = 0  # fp16 updates the GradScaler skipped (not counted as non-finite)
    last_eval: int = 0  # update of the last periodic evaluation
    last_checkpoint: int = 0  # update of the last checkpoint
    best_val: float | None = None
    best_update: int | None = None  # the update of the best validation (keep_best)
    best_metrics: dict[str, float] | None = None
    evals_since_best: int = 0


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did."""

    updates: int
    steps: int
    epochs: int
    tokens: int
    seconds: float
    skipped: int
    stop_reason: str  # "updates", "minutes", "epochs", "callback", "early_stopping"
    train: dict[str, float] = field(default_factory=dict)  # the last logging window
    val: dict[str, float] | None = None  # the final evaluation (of the best weights: keep_best)
    checkpoint: Path | None = None  # the final checkpoint
    best_update: int | None = None  # keep_best: the update whose weights the model now holds


class Callback:
    """Hooks into :meth:`Trainer.fit`; override the ones you need. Set ``trainer.should_stop =
    True`` to end training after the current feed."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_update(self, trainer: Trainer, update: Update, stepped: bool) -> None: ...

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None: ...

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None: ...


class LogWindow:
    """Sums over the updates since the last log record."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.loss_sum = 0.0
        self.count = 0
        self.tokens = 0
        self.norm_sum = 0.0
        self.updates = 0

    def add(self, loss_sum: float, count: int, grad_norm: float) -> None:
        self.loss_sum += loss_sum
        self.count += count
        self.norm_sum += grad_norm
        self.updates += 1

    def partial(self, now: float) -> dict[str, float]:
        if not self.count:
            return {}
        dt = max(now - self.start, 1e-9)
        return {
            "loss": self.loss_sum / self.count,
            "grad_norm": self.norm_sum / max(self.updates, 1),
            "tokens_per_s": self.tokens / dt,
        }


class TrainerFields:
    """What the :class:`~tbptt.train.loop.Trainer`'s parts (its loop, its optimizer step, its
    records, its state on disk) share: set by ``Trainer.__init__``, declared here for the type
    checker."""

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    engine: Engine
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    device: torch.device
    amp_dtype: torch.dtype | None
    clip: float | None
    metrics: Metrics
    callbacks: list[Callback]
    counters: Counters
    config: dict[str, Any]
    extra: dict[str, Any]
    run: RunFolder | None
    run_dir: Path | None
    keep_best: bool
    keep_checkpoints: int
    log_every: int
    progress: Progress
    history: list[dict[str, Any]]
    resume_may_change: frozenset[str]
    _best_weights: dict[str, Tensor] | None
    _cursor: DataCursor | None
    _loss_scale: float
    _log: MetricsLog | None
    _window: LogWindow
    _last_train: dict[str, float]
    _last_val: tuple[int, dict[str, float]] | None
    _session_start: float

    def _notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` (a :class:`Callback` method name) of every callback."""
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    if TYPE_CHECKING:  # defined by the other parts

        def elapsed(self) -> float: ...

        def _keep_best(self, key: str, metrics: dict[str, float]) -> None: ...

        def _log_train(self) -> None: ...

        def _live(self) -> dict[str, float]: ...


class RecordsMixin(TrainerFields):
    def _live(self) -> dict[str, float]:
        info = dict(self._last_train)
        now = self._window.partial(time.perf_counter())
        if now:
            info.update(self.metrics.from_loss(now["loss"]))
            info["tokens_per_s"] = now["tokens_per_s"]
        if self.counters.best_val is not None:
            info["val"] = self.counters.best_val
        info["skipped"] = self.counters.skipped
        return info

    def _log_train(self) -> None:
        c = self.counters
        now = time.perf_counter()
        w = self._window.partial(now)
        record: dict[str, Any] = {"kind": "train", "update": c.updates, "epoch": c.epoch}
        record["time"] = round(self.elapsed(), 3)
        if w:
            record.update(self.metrics.from_loss(w["loss"]))
            record["grad_norm"] = w["grad_norm"]
            record["tokens_per_s"] = w["tokens_per_s"]
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["skipped"] = c.skipped
        record["peak_mem_mb"] = round(peak_memory_mb(self.device), 1)
        self._last_train = {
            k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "update"
        }
        self._write(record)
        self._window = LogWindow(now)
        info = dict(self._last_train)
        if c.best_val is not None:
            info["val"] = c.best_val
        self.progress.update(c.updates, self.elapsed(), info, log=True)

    def _write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self._log is not None:
            self._log.write(record)
        self._notify("on_log", record)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, stream: Iterable[Chunk], max_chunks: int | None = None) -> dict[str, float]:
        """Metrics of the model on ``stream`` (state carried across chunks, no gradients)."""
        return evaluate(
            self.model,
            self.loss_fn,
            stream,
            metrics=self.metrics,
            device=self.device,
            amp_dtype=self.amp_dtype,
            max_chunks=max_chunks,
        )

    def _evaluate_and_log(self, val: Iterable[Chunk]) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = self.evaluate(val)
        took = time.perf_counter() - t0
        self._window.start += took  # speed counts training time only
        c = self.counters
        key = self.metrics.name if self.metrics.name in metrics else "loss"
        if c.best_val is None or metrics[key] < c.best_val:
            c.best_val = metrics[key]
            self._keep_best(key, metrics)
        else:
            c.evals_since_best += 1
        record = {"kind": "val", "update": c.updates, "epoch": c.epoch}
        record.update({"time": round(self.elapsed(), 3), **metrics, "eval_seconds": round(took, 2)})
        self._write(record)
        self.progress.message(
            f"validation at update {c.updates}: "
            + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "tokens")
        )
        self._last_val = (c.updates, metrics)
        self._notify("on_evaluate", metrics)
        return metrics

"""The training loop: a thin layer over :class:`tbptt.Engine`.

The engine runs the model and the backward of each update; this loop steps the optimizer and
the learning-rate schedule, clips gradients, skips non-finite updates, scales the learning rate
when the rule asks (variable-length BPTT), runs mixed precision on CUDA, evaluates on a
validation stream, logs metrics, shows progress and saves checkpoints it can resume exactly.

>>> import torch
>>> from tbptt import TBPTT, losses
>>> from tbptt.models import SeriesRNN
>>> torch.manual_seed(0) and None
>>> x = torch.sin(torch.linspace(0, 30, 201)).view(1, -1, 1)           # (B=1, T=201, F=1)
>>> chunks = [Chunk(x[:, a : a + 20], x[:, a + 1 : a + 21]) for a in range(0, 200, 20)]
>>> result = fit(SeriesRNN(hidden=8), losses.mse, chunks, rule=TBPTT(20), updates=30,
...              progress=False, device="cpu")
>>> result.updates, result.stop_reason
(30, 'updates')
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.engine import Engine
from tbptt.train.checkpoint import latest_checkpoint
from tbptt.train.evaluation import evaluate, resolve_device
from tbptt.train.metrics import Metrics, MetricsLog
from tbptt.train.progress import Progress
from tbptt.train.records import (
    Callback,
    Counters,
    FitResult,
    LogWindow,
    NonFiniteError,
    RecordsMixin,
    TrainingInterrupted,
)
from tbptt.train.run import RunFolder
from tbptt.train.step import StepMixin, amp_dtype_for
from tbptt.train.trainer_state import DataCursor, StateMixin
from tbptt.truncation import TruncationRule

__all__ = [
    "Callback",
    "Counters",
    "FitResult",
    "NonFiniteError",
    "Trainer",
    "TrainingInterrupted",
    "evaluate",
    "fit",
    "resolve_device",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
SCHEDULES = ("constant", "cosine", "linear")


class Trainer(StepMixin, RecordsMixin, StateMixin):
    """Fit a recurrent model with a truncation rule, in a loop you could have written yourself.

    Args:
        model: ``model(x, state) -> (y, state)`` (see :class:`tbptt.Engine`); moved to ``device``.
        loss_fn: per-step losses ``(y, targets) -> (B, L)`` (:mod:`tbptt.losses`).
        rule: ``TBPTT(k1, k2)``, ``BPTT()`` or another truncation rule.
        optimizer: default ``Adam(lr, weight_decay)`` (``AdamW`` when weight_decay > 0).
        lr, weight_decay: for the default optimizer.
        schedule: ``"constant"``, ``"cosine"`` or ``"linear"`` decay to ``min_lr_ratio`` x lr over
            the budget (updates, else minutes, else epochs), after ``warmup`` updates of linear
            warm-up; or your own ``torch.optim.lr_scheduler.LRScheduler`` (stepped per update).
        clip: clip the gradient norm to this (``None``: no clipping; the norm is still logged).
        amp: ``"auto"`` (fp16 with a GradScaler on CUDA, off elsewhere), ``"off"``, ``"fp16"``,
            ``"bf16"``.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
        mode: the engine's mode for k2 > k1: ``"stored"`` or ``"recompute"``.
        engine_options: more :class:`tbptt.Engine` arguments (``checkpoint``, ``path``,
            ``reduction``, ``init_state``, ...).
        metrics: what the loss means (:class:`~tbptt.train.metrics.TokenMetrics` for language
            models, :class:`~tbptt.train.metrics.SeriesMetrics` for series).
        callbacks: :class:`Callback` objects.
        run_dir: the run folder (:class:`~tbptt.train.run.RunFolder`, or its path) for
            ``metrics.jsonl``, ``checkpoints/`` and TensorBoard's ``tb/`` (``None``: no files).
            A new run claims the folder; one that already holds a run is refused unless
            :meth:`fit` is asked to ``resume`` it or to ``restart`` it.
        checkpoint_every: save a checkpoint every this many updates (and always at the end).
        keep_checkpoints: how many recent checkpoints of the run to keep.
        keep_best: keep the weights of the best validation (also as ``checkpoints/best-*.pt``)
            and end :meth:`fit` with the model holding them (early stopping's model selection).
        patience: stop after this many evaluations in a row without a better validation.
        max_nonfinite: stop (:class:`NonFiniteError`) after this many non-finite updates in a row.
        log_every: write a training record (and a progress line) every this many updates.
        progress: ``None`` (a rich bar on a terminal, else lines), ``True`` or ``False``.
        tensorboard: ``None`` (when installed), ``True`` or ``False``.
        config: a plain dict describing the run, saved in checkpoints; on resume, the keys not in
            ``resume_may_change`` must match.
        extra: more plain data saved in checkpoints (e.g. a vocabulary).
        handle_signals: on SIGINT/SIGTERM, save a checkpoint and raise
            :class:`TrainingInterrupted` (main thread only).
    """

    resume_may_change = frozenset(
        {
            "updates",
            "minutes",
            "epochs",
            "eval_every",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
            "max_nonfinite",
            "progress",
            "tensorboard",
            "device",
            "threads",
            "sample_chars",
            "temperature",
            "prompt",
            "resume",
            "config",
            "name",
            "runs_dir",
            "run_dir",
        }
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        rule: TruncationRule,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        schedule: str | torch.optim.lr_scheduler.LRScheduler = "constant",
        warmup: int = 0,
        min_lr_ratio: float = 0.1,
        clip: float | None = 1.0,
        amp: str = "auto",
        device: str | torch.device | None = "auto",
        mode: str = "stored",
        engine_options: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | RunFolder | None = None,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 2,
        keep_best: bool = False,
        patience: int | None = None,
        max_nonfinite: int = 10,
        log_every: int = 50,
        progress: bool | None = None,
        tensorboard: bool | None = None,
        config: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        handle_signals: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
        for name, value, low in (
            ("lr", lr, 0.0),
            ("clip", clip, 0.0),
        ):
            if value is not None and not (isinstance(value, (int, float)) and value > low):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name, ivalue, lo in (
            ("checkpoint_every", checkpoint_every, 1),
            ("keep_checkpoints", keep_checkpoints, 1),
            ("max_nonfinite", max_nonfinite, 1),
            ("log_every", log_every, 1),
            ("patience", patience, 1),
            ("warmup", warmup, 0),
        ):
            if ivalue is not None and (
                isinstance(ivalue, bool) or not isinstance(ivalue, int) or ivalue < lo
            ):
                raise ValueError(f"{name} must be an integer >= {lo}, got {ivalue!r}.")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}.")
        self.counters = Counters()
        self._budget: tuple[int | None, float | None, int | None] = (None, None, None)
        self._session_start = time.perf_counter()
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.rule = rule
        self.amp_dtype = amp_dtype_for(amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        # the engine runs the backward: with fp16 its loss is multiplied by the scaler's scale
        self._loss_scale = float(self.scaler.get_scale()) if self.scaler is not None else 1.0
        engine_loss = self._scaled_loss if self.scaler is not None else loss_fn
        self.engine = Engine(model, engine_loss, rule, mode=mode, **(engine_options or {}))  # type: ignore[arg-type]
        if optimizer is None:
            params = [p for p in model.parameters() if p.requires_grad]
            opt_cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
            optimizer = opt_cls(params, lr=lr, weight_decay=weight_decay)
        self.optimizer = optimizer
        self.schedule_name = schedule if isinstance(schedule, str) else "custom"
        self.warmup, self.min_lr_ratio = warmup, min_lr_ratio
        if isinstance(schedule, str):
            if schedule not in SCHEDULES:
                raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
            self.scheduler: torch.optim.lr_scheduler.LRScheduler = (
                torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
            )
        else:
            self.scheduler = schedule
        self.clip = clip
        self.metrics = metrics or Metrics()
        self.callbacks = list(callbacks)
        self.run = run_dir if isinstance(run_dir, RunFolder) else None
        self.run_dir = self.run.path if self.run is not None else None
        if run_dir is not None and self.run is None:
            self.run_dir = Path(run_dir)  # type: ignore[arg-type]
        self.keep_best, self.patience = keep_best, patience
        self._best_weights: dict[str, Tensor] | None = None
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.max_nonfinite = max_nonfinite
        self.log_every = log_every
        self.progress = Progress(progress)
        self.tensorboard = tensorboard
        self.config = dict(config or {})
        self.extra = dict(extra or {})
        self.handle_signals = handle_signals
        self.should_stop = False
        self.history: list[dict[str, Any]] = []  # the records written this session
        self._signal: str | None = None
        self._log: MetricsLog | None = None
        self._window = LogWindow()
        self._last_train: dict[str, float] = {}
        self._last_val: tuple[int, dict[str, float]] | None = None
        self._cursor: DataCursor | None = None
        self._eval_every: int | None = None

    # -- learning rate -------------------------------------------------------------------------
    def progress_fraction(self) -> float:
        """How far through the budget training is, in [0, 1] (0 with no budget)."""
        updates, minutes, epochs = self._budget
        c = self.counters
        if updates:
            return min(1.0, c.updates / updates)
        if minutes:
            return min(1.0, self.elapsed() / (minutes * 60))
        if epochs:
            return min(1.0, c.epoch / epochs)
        return 0.0

    def _lr_factor(self, _: int) -> float:
        if self.warmup and self.counters.updates < self.warmup:
            warm = (self.counters.updates + 1) / self.warmup
        else:
            warm = 1.0
        p, r = self.progress_fraction(), self.min_lr_ratio
        if self.schedule_name == "cosine":
            return warm * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))
        if self.schedule_name == "linear":
            return warm * (1 - (1 - r) * p)
        return warm

    def elapsed(self) -> float:
        """Seconds of training, this session and the ones before it (resumed runs)."""
        return self.counters.elapsed + time.perf_counter() - self._session_start

    # -- the loop --------------------------------------------------------------------------------
    def fit(
        self,
        train: Iterable[Chunk],
        val: Iterable[Chunk] | None = None,
        *,
        updates: int | None = None,
        minutes: float | None = None,
        epochs: int | None = None,
        eval_every: int | None = None,
        resume: str | Path | None = None,
        restart: bool = False,
    ) -> FitResult:
        """Train until the first budget is spent (``updates``, ``minutes`` or ``epochs``; one epoch
        when none is given), evaluating on ``val`` every ``eval_every`` updates and at the end.

        ``train`` yields :class:`~tbptt.Chunk` pieces of B stateful rows (a ``tbptt.data``
        batcher, or a list); each epoch ends the engine's stream (``engine.flush()``).
        ``resume``: a checkpoint file or run folder to continue from, exactly. ``restart``: start
        over in a ``run_dir`` that holds a run (its files move to ``run_dir/abandoned-N/``).
        """
        if updates is None and minutes is None and epochs is None:
            epochs = 1
        for name, value in (("updates", updates), ("epochs", epochs), ("eval_every", eval_every)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if minutes is not None and not minutes > 0:
            raise ValueError(f"minutes must be > 0, got {minutes!r}.")
        cursor = DataCursor(train)
        self._budget = (updates, minutes, epochs)
        self._eval_every = eval_every
        ckpt = latest_checkpoint(resume) if resume is not None else None
        opened = self._open_run(ckpt, restart)
        try:
            return self._fit(cursor, val, ckpt, updates, minutes)
        finally:
            if opened and self.run is not None:
                self.run.release()

    def _fit(
        self,
        cursor: DataCursor,
        val: Iterable[Chunk] | None,
        ckpt: Path | None,
        updates: int | None,
        minutes: float | None,
    ) -> FitResult:
        if ckpt is not None:
            self.load_checkpoint(ckpt, cursor)
        self._session_start = time.perf_counter()
        if self.run is not None:
            self.run.rewind(self.counters.updates)  # a newer timeline moves to abandoned-N/
            self._log = MetricsLog(self.run.path, self.tensorboard)
        self._notify("on_fit_start")
        self.model.train()
        total_s = minutes * 60 if minutes else None
        self.progress.start(updates, total_s, self.counters.updates)
        self._window = LogWindow(time.perf_counter())
        reason: str | None = None
        val_metrics: dict[str, float] | None = None
        self._cursor = cursor
        try:
            with self._signals():
                reason = self._budget_spent()
                while reason is None:
                    start, seen = self.counters.chunks, 0
                    for seen, chunk in enumerate(cursor.epoch(start), 1):  # noqa: B007
                        self._feed(self.engine.feed(*chunk.to(self.device, non_blocking=True)))
                        self.counters.chunks += 1
                        reason = self._after_feed(val)
                        if reason is not None:
                            break
                    else:
                        if start == 0 and seen == 0:
                            raise ValueError(
                                "train yielded no chunk in a whole epoch; pass a non-empty stream."
                            )
                        self._feed(self.engine.flush())  # the stream ends with the epoch
                        self.counters.epoch += 1
                        self.counters.chunks = 0
                        reason = self._after_feed(val)
                if val is not None:
                    last = self._last_val
                    fresh = last is not None and last[0] == self.counters.updates
                    val_metrics = (
                        last[1] if last is not None and fresh else self._evaluate_and_log(val)
                    )
                # a signal during the final evaluation: the final checkpoint is saved anyway
                final = self._final_checkpoint()
        finally:
            self.progress.stop()
            if self._log is not None:
                self._log.close()
        best_update = self._restore_best()
        if best_update is not None:
            val_metrics = self.counters.best_metrics
        result = FitResult(
            updates=self.counters.updates,
            steps=self.counters.steps,
            epochs=self.counters.epoch,
            tokens=self.counters.tokens,
            seconds=self.elapsed(),
            skipped=self.counters.skipped,
            stop_reason=reason or "updates",
            train=dict(self._last_train),
            val=val_metrics,
            checkpoint=final,
            best_update=best_update,
        )
        self._notify("on_fit_end", result)
        return result

    def _after_feed(self, val: Iterable[Chunk] | None) -> str | None:
        """Between feeds (no update half-done): stop, evaluate, checkpoint as due."""
        c = self.counters
        if self._signal is not None:
            path = self.save_checkpoint()
            where = f"saved checkpoint {path}" if path else "no run folder, nothing saved"
            raise TrainingInterrupted(
                f"Interrupted by {self._signal} at update {c.updates}: {where}.", path
            )
        if c.skipped_in_row >= self.max_nonfinite:
            self._log_train()
            raise NonFiniteError(
                f"Stopped at update {c.updates}: {c.skipped_in_row} updates in a row had a NaN or "
                f"inf loss or gradient ({c.skipped} skipped in all; max_nonfinite="
                f"{self.max_nonfinite}). {self._last_good()} Lower the learning rate, clip "
                "gradients (clip=1.0), or check the data for extreme values."
            )
        eval_every = self._eval_every
        if val is not None and eval_every and c.updates - c.last_eval >= eval_every:
            c.last_eval = c.updates
            self._evaluate_and_log(val)
        if (
            self.run_dir is not None
            and self.checkpoint_every
            and c.updates - c.last_checkpoint >= self.checkpoint_every
        ):
            self.save_checkpoint()
        if self.should_stop:
            return "callback"
        if self.patience and c.evals_since_best >= self.patience:
            return "early_stopping"
        return self._budget_spent()

    def _budget_spent(self) -> str | None:
        updates, minutes, epochs = self._budget
        c = self.counters
        if updates is not None and c.updates >= updates:
            return "updates"
        if epochs is not None and c.epoch >= epochs:
            return "epochs"
        if minutes is not None and self.elapsed() >= minutes * 60:
            return "minutes"
        return None

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._signal is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._signal = "Ctrl-C (SIGINT)" if name == "SIGINT" else name
            self.progress.message(
                f"{self._signal}: finishing the current update, then saving a checkpoint "
                "(press Ctrl-C again to quit without saving)."
            )

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train: Iterable[Chunk],
    *,
    rule: TruncationRule,
    val: Iterable[Chunk] | None = None,
    updates: int | None = None,
    minutes: float | None = None,
    epochs: int | None = None,
    eval_every: int | None = None,
    resume: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Build a :class:`Trainer` (``options`` are its arguments) and run :meth:`Trainer.fit`."""
    trainer = Trainer(model, loss_fn, rule, **options)
    return trainer.fit(
        train,
        val,
        updates=updates,
        minutes=minutes,
        epochs=epochs,
        eval_every=eval_every,
        resume=resume,
    )

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
import itertools
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.engine import Engine, Update
from tbptt.train.checkpoint import (
    CheckpointError,
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from tbptt.train.evaluation import evaluate, resolve_device
from tbptt.train.metrics import Metrics, MetricsLog, peak_memory_mb
from tbptt.train.progress import Progress
from tbptt.train.run import RUN_FILE, RunFolder, RunFolderError, run_dir_of
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
AMP = ("auto", "off", "fp16", "bf16")


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


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp not in AMP:
        raise ValueError(f"amp must be one of {AMP}, got {amp!r}.")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        import warnings

        warnings.warn(
            f"amp={amp!r} runs on CUDA only; training in float32 on {device}.", stacklevel=3
        )
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


class _Cursor:
    """Iterate a training stream epoch by epoch and save/restore the position.

    Streams with ``state_dict``/``load_state_dict`` (the ``tbptt.data`` batchers) save their own
    position; other re-iterable collections of chunks (a list) are replayed, skipping the chunks
    already consumed in the current epoch.
    """

    def __init__(self, stream: Iterable[Chunk]) -> None:
        if isinstance(stream, Iterator):
            raise TypeError(
                "train must be re-iterable (a tbptt.data batcher, a list of Chunks, ...), got a "
                "one-shot iterator. Wrap a generator function in a class with __iter__, or pass "
                "list(...)."
            )
        self.stream = stream
        self.stateful = callable(getattr(stream, "state_dict", None))

    def epoch(self, skip: int) -> Iterator[Chunk]:
        it = iter(self.stream)
        if not self.stateful and skip:
            it = itertools.islice(it, skip, None)
        return it

    def state_dict(self) -> Any:
        return self.stream.state_dict() if self.stateful else None  # type: ignore[attr-defined]

    def load_state_dict(self, saved: Any) -> None:
        if self.stateful:
            self.stream.load_state_dict(saved)  # type: ignore[attr-defined]


class Trainer:
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
        self.amp_dtype = _amp_dtype(amp, self.device)
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
        self._window = _Window()
        self._last_train: dict[str, float] = {}
        self._last_val: tuple[int, dict[str, float]] | None = None
        self._cursor: _Cursor | None = None
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

    def _scaled_loss(self, y: Tensor, targets: Tensor) -> Tensor:
        assert self.scaler is not None
        return self.scaler.scale(self.loss_fn(y, targets))  # times the scale (self._loss_scale)

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
        cursor = _Cursor(train)
        self._budget = (updates, minutes, epochs)
        self._eval_every = eval_every
        ckpt = latest_checkpoint(resume) if resume is not None else None
        opened = self._open_run(ckpt, restart)
        try:
            return self._fit(cursor, val, ckpt, updates, minutes)
        finally:
            if opened and self.run is not None:
                self.run.release()

    def _open_run(self, ckpt: Path | None, restart: bool) -> bool:
        """Claim the run folder, or open it to continue ``ckpt``; True if this call did."""
        if self.run_dir is None or self.run is not None:
            return False
        same = ckpt is not None and run_dir_of(ckpt).resolve() == self.run_dir.resolve()
        if same:
            self.run = RunFolder.open(self.run_dir)
        elif restart and RunFolder.holds_run(self.run_dir):
            self.run = RunFolder.open(self.run_dir)
            self.run.restart()
            self.run.write_config(self.config)
        else:
            try:
                self.run = RunFolder.claim(self.run_dir, self.config)
            except RunFolderError as e:
                raise RunFolderError(
                    f"{e} Or pass restart=True to start over (the old files are kept in "
                    "abandoned-N/)."
                ) from None
        return True

    def _fit(
        self,
        cursor: _Cursor,
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
        for cb in self.callbacks:
            cb.on_fit_start(self)
        self.model.train()
        total_s = minutes * 60 if minutes else None
        self.progress.start(updates, total_s, self.counters.updates)
        self._window = _Window(time.perf_counter())
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
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _feed(self, updates: Iterator[Update]) -> None:
        while True:
            with self._autocast():
                u = next(updates, None)
            if u is None:
                return
            self._apply(u)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _apply(self, u: Update) -> None:
        """Step the optimizer for one update (or skip it if it is not finite)."""
        c = self.counters
        c.updates += 1
        loss_scale = self._loss_scale
        loss = float(u.loss) / loss_scale
        finite = u.finite and math.isfinite(loss)
        overflow = False
        grad_norm = float("nan")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if finite:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            grad_norm = _grad_norm(params, self.clip)
            if not math.isfinite(grad_norm):
                if self.scaler is not None:
                    overflow = True  # the scaler skips the step and lowers the scale
                else:
                    finite = False
        stepped = False
        if finite:
            scale = float(u.lr_scale)
            saved = [g["lr"] for g in self.optimizer.param_groups] if scale != 1.0 else None
            if saved is not None:
                for g in self.optimizer.param_groups:
                    g["lr"] = g["lr"] * scale
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self._loss_scale = float(self.scaler.get_scale())
            else:
                self.optimizer.step()
            if saved is not None:
                for g, lr in zip(self.optimizer.param_groups, saved):
                    g["lr"] = lr
            if overflow:
                c.amp_overflows += 1
            else:
                c.steps += 1
                stepped = True
            c.skipped_in_row = 0
        else:
            for p in params:
                p.grad = None
            c.skipped += 1
            c.skipped_in_row += 1
        self.scheduler.step()
        count = int(u.report_count)
        c.tokens += count
        if finite and not overflow:
            self._window.add(float(u.report_sum) / loss_scale, count, grad_norm)
        self._window.tokens += count
        for cb in self.callbacks:
            cb.on_update(self, u, stepped)
        log = c.updates % self.log_every == 0
        if log:
            self._log_train()
        self.progress.update(c.updates, self.elapsed(), self._live(), log=False)

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
        self._window = _Window(now)
        info = dict(self._last_train)
        if c.best_val is not None:
            info["val"] = c.best_val
        self.progress.update(c.updates, self.elapsed(), info, log=True)

    def _write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self._log is not None:
            self._log.write(record)
        for cb in self.callbacks:
            cb.on_log(self, record)

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

    def _last_good(self) -> str:
        found = self.run.checkpoints() if self.run is not None else []
        if found:
            return f"The last checkpoint written, {str(found[-1])!r}, is kept."
        return "No checkpoint was written before it (nothing to resume from)."

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
        for cb in self.callbacks:
            cb.on_evaluate(self, metrics)
        return metrics

    def _keep_best(self, key: str, metrics: dict[str, float]) -> None:
        """A new best validation: remember its weights (and save them, with a run folder)."""
        c = self.counters
        c.best_update, c.best_metrics, c.evals_since_best = c.updates, dict(metrics), 0
        if not self.keep_best:
            return
        self._best_weights = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        if self.run is not None:
            self.run.save_best(self.state_dict(), c.updates, key, metrics[key])

    def _restore_best(self) -> int | None:
        """``keep_best``: load the best validation's weights into the model; their update."""
        c = self.counters
        if not self.keep_best or c.best_update is None:
            return None
        if c.best_update == c.updates:
            return c.updates
        weights = self._best_weights
        saved = self.run.best() if self.run is not None else None
        if weights is None and saved is not None:
            weights = load_checkpoint(saved)["model"]  # a resumed run
        if weights is None:
            return None
        self.model.load_state_dict(weights)
        return c.best_update

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see :mod:`tbptt.train.checkpoint`)."""
        if not callable(getattr(self.engine, "state_dict", None)):
            raise RuntimeError(
                "this tbptt.Engine has no state_dict(); checkpoints need an engine that can save "
                "its carried state. Update tbptt."
            )
        counters = asdict(self.counters)
        counters["elapsed"] = self.elapsed()
        return {
            "config": self.config,
            "extra": self.extra,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "engine": self.engine.state_dict(),
            "data": self._cursor.state_dict() if self._cursor is not None else None,
            "counters": counters,
            "rng": capture_rng(),
            "torch_version": str(torch.__version__),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Save to ``path`` (default: the run folder's ``checkpoints/step-<updates>.pt``,
        keeping the newest ``keep_checkpoints`` of the run) atomically; never over a file."""
        self.counters.last_checkpoint = self.counters.updates
        if path is not None:
            run_id = self.run.run_id if self.run is not None else None
            out = save_checkpoint({**self.state_dict(), "run_id": run_id}, path)
        elif self.run is not None:
            out = self.run.save(self.state_dict(), self.counters.updates, self.keep_checkpoints)
        else:
            return None
        for cb in self.callbacks:
            cb.on_checkpoint(self, out)
        return out

    def _final_checkpoint(self) -> Path | None:
        if self.run is None:
            return None
        path = checkpoint_path(self.run.checkpoints_dir, self.counters.updates)
        if (
            path in self.run.checkpoints()
            and self.counters.last_checkpoint == self.counters.updates
        ):
            return path
        return self.save_checkpoint()

    def load_checkpoint(self, path: str | Path, cursor: _Cursor | None = None) -> dict[str, Any]:
        """Restore a checkpoint saved by :meth:`save_checkpoint`; errors are
        :class:`~tbptt.train.checkpoint.CheckpointError` naming what does not match."""
        payload = load_checkpoint(path)
        folder = run_dir_of(Path(path))
        if self.run is not None and folder.resolve() == self.run.path.resolve():
            self.run.check_owner(payload, Path(path))
        elif (folder / RUN_FILE).is_file():
            RunFolder.read(folder).check_owner(payload, Path(path))
        self._check_config(payload.get("config") or {}, path)
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a model of another shape: "
                f"{str(e).splitlines()[0]} Build the model as in the run that saved it."
            ) from e
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
                self._loss_scale = float(self.scaler.get_scale())
            self.engine.load_state_dict(_to_device(payload["engine"], self.device))
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not fit this trainer: {e} Resume with the same "
                "optimizer, schedule and truncation rule as the run that saved it."
            ) from e
        if cursor is not None:
            self._cursor = cursor
            try:
                cursor.load_state_dict(payload["data"])
            except (ValueError, TypeError) as e:
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: the data stream's position does not fit the "
                    f"data given ({e})."
                ) from e
        saved = payload["counters"]
        names = {f.name for f in fields(Counters)}
        self.counters = Counters(**{k: v for k, v in saved.items() if k in names})
        self.extra.update(payload.get("extra") or {})
        restore_rng(payload["rng"])
        return payload

    def _check_config(self, saved: dict[str, Any], path: str | Path) -> None:
        if not self.config or not saved:
            return
        keys = (set(saved) | set(self.config)) - self.resume_may_change
        diff = [
            f"{k}={saved.get(k)!r} (now {self.config.get(k)!r})"
            for k in sorted(keys)
            if saved.get(k) != self.config.get(k)
        ]
        if diff:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was saved by a run with other settings: "
                + ", ".join(diff)
                + ". Resume with the same settings (drop those flags), or start a new run "
                "with another --name."
            )


def _grad_norm(params: list[Tensor], clip: float | None) -> float:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if clip is not None:
        return float(torch.nn.utils.clip_grad_norm_(grads, clip))
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in grads])  # type: ignore[union-attr]
    return float(torch.linalg.vector_norm(norms))


def _to_device(tree: Any, device: torch.device) -> Any:
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: _to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_device(v, device) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_to_device(v, device) for v in tree)
    return tree


class _Window:
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

"""One update's optimizer step in the :class:`Trainer`: mixed precision, gradient clipping,
non-finite updates skipped, the rule's learning-rate scale, the schedule."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from tbptt.engine import Update
from tbptt.train.records import TrainerFields

AMP = ("auto", "off", "fp16", "bf16")


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
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


def total_grad_norm(params: list[Tensor], clip: float | None) -> float:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if clip is not None:
        return float(torch.nn.utils.clip_grad_norm_(grads, clip))
    norms = torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in grads])  # type: ignore[union-attr]
    return float(torch.linalg.vector_norm(norms))


class StepMixin(TrainerFields):
    def _scaled_loss(self, y: Tensor, targets: Tensor) -> Tensor:
        assert self.scaler is not None
        return self.scaler.scale(self.loss_fn(y, targets))  # times the scale (self._loss_scale)

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
            grad_norm = total_grad_norm(params, self.clip)
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
        self._notify("on_update", u, stepped)
        log = c.updates % self.log_every == 0
        if log:
            self._log_train()
        self.progress.update(c.updates, self.elapsed(), self._live(), log=False)

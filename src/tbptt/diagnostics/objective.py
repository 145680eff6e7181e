"""The default sweep objective: one ``tbptt train`` run per (k1, k2), through the trainer.

>>> fn = trainer_objective(corpus="stdlib", updates=2, hidden=8, embed=8, batch_size=2,
...                        val_fraction=0.002)
>>> sorted(fn(4, 8))
['peak_memory_mb', 'seconds', 'tokens_per_s', 'train_loss', 'val_loss']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["check_objective", "trainer_objective"]


def trainer_objective(**options: Any) -> Callable[[int, int], dict[str, float]]:
    """A ``train_fn(k1, k2)`` for :func:`tbptt.diagnostics.sweep`: a real training run of the
    default text task (any :class:`tbptt.train.config.RunConfig` field can be given in
    ``options``: ``corpus``, ``updates``, ``hidden``, ``batch_size``, ``device``, ``lr``...),
    with no files written, reporting the validation loss (nats per token, the state carried
    through the validation stream), the training loss of the last logging window, tokens/s and
    peak memory (CUDA: peak allocated; CPU: the process's peak resident size).
    """
    from tbptt.train import Trainer
    from tbptt.train.config import RunConfig
    from tbptt.train.jobs import build_job, build_rule
    from tbptt.train.metrics import peak_memory_mb

    base = {"task": "text", "progress": "off", "tensorboard": "off", **options}

    def train_fn(k1: int, k2: int) -> dict[str, float]:
        cfg = RunConfig(**{**base, "k1": k1, "k2": k2}).resolved()
        torch.manual_seed(cfg.seed)
        job = build_job(cfg)
        rule, rule_options = build_rule(cfg)
        trainer = Trainer(
            job.model,
            job.loss_fn,
            rule,
            lr=cfg.lr,  # type: ignore[arg-type]
            clip=cfg.clip or None,
            device=cfg.device,
            mode=cfg.mode,
            engine_options={**job.engine_options, **rule_options},
            metrics=job.metrics,
            progress=False,
            tensorboard=False,
            handle_signals=False,
        )
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        result = trainer.fit(
            job.train, job.val, updates=cfg.updates, minutes=cfg.minutes, epochs=cfg.epochs
        )
        return {
            "val_loss": float((result.val or {})["loss"]),
            "train_loss": float(result.train.get("loss", float("nan"))),
            "tokens_per_s": result.tokens / max(result.seconds, 1e-9),
            "peak_memory_mb": peak_memory_mb(trainer.device),
            "seconds": result.seconds,
        }

    return train_fn


def check_objective(points: list[tuple[int, int]], flag: str = "--lengths", **options: Any) -> None:
    """Check, before a sweep trains anything, that :func:`trainer_objective` with ``options``
    can train every (k1, k2) of ``points`` (built for the largest k1 and k2): the options, the
    device and the corpus are valid and the activations fit in memory. Raises ``ValueError``
    (or ``FileNotFoundError``, ``ModuleNotFoundError``) in one line, as ``tbptt train`` does;
    warns in one line, as ``tbptt train --k1`` does, about the k1s (given with ``flag``)
    longer than each training row."""
    from tbptt.train.command import steps_kept, warn_long_k1
    from tbptt.train.config import RunConfig
    from tbptt.train.evaluation import resolve_device
    from tbptt.train.jobs import build_job
    from tbptt.train.memory import check_fits

    k1, k2 = max(a for a, _ in points), max(b for _, b in points)
    cfg = RunConfig(**{"task": "text", **options, "k1": k1, "k2": k2}).resolved()
    device = resolve_device(cfg.device)
    try:
        job = build_job(cfg)
    except RuntimeError as e:  # torch's CPU allocator; torch.OutOfMemoryError on CUDA
        if "allocate" not in str(e):
            raise
        raise ValueError(
            f"--hidden {cfg.hidden} (--embed {cfg.embed}): the model's parameters cannot be "
            f"allocated on {device}. Lower --hidden."
        ) from None
    check_fits(job.model, int(cfg.batch_size or 1), steps_kept(cfg, job), device)
    warn_long_k1(cfg, job, [a for a, _ in points], flag)

"""The refit of ``--data`` forecasting (``--refit on``): the final model trained on every step.

A forecasting run validates on the last ``val_fraction`` of each sequence's training data, so
the model it chooses (the best checkpoint by validation) never trained on the most recent
behaviour, the part closest to what it will forecast. The usual remedy of the forecasting
literature is to choose on a held-out tail and then re-estimate on all the data before
forecasting (Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", 3rd ed., 2021,
section 5.8 on training and test sets; Tashman 2000, "Out-of-sample tests of forecasting
accuracy", IJF 16(4)). Here, once the run has chosen everything on its validation tail (the
number of updates ``U*`` of its best checkpoint, the one-step guard, the direct head), the
same model is trained again from the same initialisation (the run's seed) on every step of
every sequence, for ``U*`` updates scaled by how many more steps it sees (``REFIT_SCALED``),
with the run's own schedule over that budget. ``tbptt predict`` and ``tbptt.load(RUN)`` take
the one-step predictions from it (with the run's one-step guard) and the horizon forecasts
from the chosen model with its horizon guard (``REFIT_HORIZON``; :func:`run_predictor`).

Honesty: the report and ``summary.json`` keep the validation scores of the model chosen on the
held-out tail (the refit has trained on that tail, so it is not scored there), ``summary.json``
says the final model was refit (``refit``: its updates, steps and seconds), and ``tbptt
predict RUN`` on the run's own file prints those same validation scores (computed with the
chosen model) next to the refit's predictions.

Resuming: the refit is a short deterministic run (no checkpoint of its own); it is written
once finished (``refit.pt``, atomically), so a run killed during it (even ``kill -9``) redoes
it from its start on ``tbptt train --resume RUN`` and ends with the same bits.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FILE",
    "REFIT_DEFAULT",
    "REFIT_HORIZON",
    "REFIT_ONE_STEP",
    "REFIT_SCALED",
    "Averaged",
    "chosen_model",
    "forecast_refit",
    "refit_updates",
    "refit_weights",
    "run_predictor",
    "run_refit",
]

FILE = "refit.pt"
"""The refit's weights in the run folder (with its updates and time)."""

REFIT_DEFAULT = "on"
"""Forecast: ``--refit``'s value where it is not given (docs/quality.md has the measurement)."""

REFIT_SCALED = True
"""The refit's updates: the best checkpoint's, times the ratio of the steps it trains on to
the held-out split's training steps (the same number of epochs); False: the same number."""


REFIT_ONE_STEP = "average"
"""Where a refit run's one-step predictions come from: ``"average"``, the mean of the chosen
model's and the refit's (a combination of two forecasts, Bates & Granger 1969: one chosen on
the held-out tail, one trained on it; it was better than either alone on the tuning, unseen
and fresh groups, docs/quality.md), or ``"refit"``, the refit alone."""


REFIT_HORIZON = "chosen"
"""Where a refit run's horizon forecasts come from: ``"chosen"``, the model chosen on the
validation tail with its horizon guard (the refit serves the one-step predictions), or
``"refit"`` (docs/quality.md: the refit's horizon was worse on the tuning group)."""


def forecast_refit(cfg: Any, task: str, streamed: bool) -> str | None:
    """``--refit``'s value for a new run: ``on``/``off`` for forecasting (``REFIT_DEFAULT``
    where not given; off for a streamed file), ``None`` for the other tasks.

    >>> from types import SimpleNamespace as NS
    >>> forecast_refit(NS(refit=None, data="a.csv"), "forecast", streamed=False) == REFIT_DEFAULT
    True
    >>> forecast_refit(NS(refit=None, data="a.csv"), "classify", streamed=False) is None
    True
    """
    given = getattr(cfg, "refit", None)
    if task != "forecast":
        if given is not None:
            raise ValueError(
                f"--refit {given}: the refit on the whole training part serves --task forecast "
                f"only (this run is --task {task}); drop --refit."
            )
        return None
    if given == "on" and streamed:
        raise ValueError(
            f"--refit on: {cfg.data} is streamed (too many rows to hold in memory), and the "
            "refit trains on every id's rows at once; use --refit off or a smaller file."
        )
    return "off" if streamed else (given or REFIT_DEFAULT)


def refit_updates(best_update: int, n_train: np.ndarray, lengths: np.ndarray) -> int:
    """The refit's updates: ``best_update`` scaled by the steps the refit trains on
    (``lengths``) over the split's training steps (``n_train``) where ``REFIT_SCALED``.

    >>> refit_updates(400, np.array([80]), np.array([100]))
    500
    """
    if not REFIT_SCALED:
        return max(1, int(best_update))
    n_train, lengths = np.asarray(n_train), np.asarray(lengths)
    fitted = float(lengths[lengths >= 2].sum())  # the sequences each stream trains on
    ratio = fitted / max(1.0, float(n_train[n_train >= 2].sum()))
    return max(1, round(int(best_update) * ratio))


def _seed(seed: int) -> None:
    """Seed as ``tbptt train`` does before it builds a job (so the same initialisation)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def run_refit(cfg: Any, best_update: int, run_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the refit of a finished forecasting run whose best checkpoint is at
    ``best_update``; save it in ``run_dir`` (:data:`FILE`) and return the model (eval mode)
    and what to record (updates, seconds). A ``refit.pt`` of the same best checkpoint (a run
    resumed after its refit) is loaded, not trained again; one of another (a finished run
    resumed for more updates) is kept as ``refit-best-N.pt`` and the refit trained anew."""
    from tbptt.tabular.dataset import load_data
    from tbptt.tabular.job import build_data_job
    from tbptt.train.command import _make_trainer
    from tbptt.train.jobs import build_rule

    _seed(int(cfg.seed))
    job = build_data_job(cfg, whole=True)
    n_train = np.asarray(job.extra["n_train"])
    lengths = np.asarray(load_data(cfg).panel.lengths)
    updates = refit_updates(best_update, n_train, lengths)
    path = Path(run_dir) / FILE
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if (saved.get("best_update"), saved.get("updates")) == (int(best_update), updates):
            job.model.load_state_dict(saved["model"])  # a run resumed after its refit
            return job.model.eval(), {k: v for k, v in saved.items() if k != "model"}
        # a finished run resumed for more updates: its refit of the earlier best is set aside
        os.replace(path, path.with_name(f"refit-best-{saved.get('best_update')}.pt"))
    rule, rule_options = build_rule(cfg)
    options: dict[str, Any] = {**job.engine_options, **rule_options}
    ac = cfg.activation_checkpointing
    if ac is not None:
        options["checkpoint"] = "sqrt" if ac == "sqrt" else int(ac)
    on_cpu = str(cfg.device) == "cpu" or not torch.cuda.is_available()
    amp = "off" if on_cpu else cfg.amp  # float32 on a CPU, as the run (which said so once)
    quiet = replace(cfg, progress="off", tensorboard="off", patience=None, amp=amp)
    trainer = _make_trainer(quiet, job, rule, options, None)
    t0 = time.perf_counter()
    trainer.fit(job.train, None, updates=updates)
    info = {
        "updates": updates,
        "best_update": int(best_update),
        "steps": int(lengths.sum()),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    weights = {k: v.detach().to("cpu") for k, v in trainer.model.state_dict().items()}
    tmp = path.with_name(path.name + ".partial")
    torch.save({"model": weights, **info}, tmp)
    os.replace(tmp, path)  # whole or absent: a kill during the refit leaves no refit.pt
    return trainer.model.eval(), info


def refit_weights(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """The refit's weights of a run folder, or None (no refit: the run's best checkpoint)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def chosen_model(run_dir: Path) -> torch.nn.Module:
    """The model a run chose on its validation tail: its best checkpoint (eval mode)."""
    from tbptt.api import load
    from tbptt.train.run import RunFolder

    return load(RunFolder.read(run_dir).model_checkpoint()).model


def run_predictor(
    model: torch.nn.Module, cfg: Any, extra: dict[str, Any], run_dir: Path, refit: bool
) -> Any:
    """The :class:`~tbptt.tabular.predict.Predictor` of a loaded run (``model``; ``refit``:
    it is the refit of the run in ``run_dir``) with the run's one-step guard (classify: its
    1-NN DTW pool); a refit's horizon forecasts come from the chosen model where
    ``REFIT_HORIZON`` says so."""
    from tbptt.tabular.guard import OneStepGuard
    from tbptt.tabular.neighbours import DTWPool
    from tbptt.tabular.predict import Predictor

    guard = OneStepGuard.read(run_dir)
    if not refit:
        pred = Predictor(model, cfg, extra, guard)
        pred.pool = DTWPool.read(run_dir)  # classify (neighbours.py)
        return pred
    chosen = chosen_model(run_dir)
    horizon = Predictor(chosen, cfg, extra, guard) if REFIT_HORIZON == "chosen" else None
    if REFIT_ONE_STEP == "average":  # the two ensembles side by side: the mean of their means
        members = int(extra.get("members", 1))
        model, extra = Averaged(chosen, model), {**extra, "members": 2 * members}
    return Predictor(model, cfg, extra, guard, horizon_from=horizon)


class Averaged(torch.nn.Module):
    """Two models of the same kind side by side: outputs ``(B, T, 2 M out)``, the first's
    ``M`` members' outputs then the second's (the layout of a ``2 M``-member
    :class:`~tbptt.tabular.model.Ensemble`), so that the members' mean is the mean of the two
    models' means; the state is the pair of their states.

    >>> from tbptt.tabular.model import member_mean, TabularRNN
    >>> a, b = TabularRNN(2, 1, zero_head=False), TabularRNN(2, 1, zero_head=False)
    >>> x = torch.randn(1, 5, 2)
    >>> y, _ = Averaged(a, b)(x, None)
    >>> want = (a(x, None)[0] + b(x, None)[0]) / 2
    >>> bool(torch.allclose(member_mean(y, 2), want))
    True
    """

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        s1, s2 = (None, None) if state is None else state
        y1, s1 = self.first(x, s1)  # (B, T, M out)
        y2, s2 = self.second(x, s2)
        return torch.cat([y1, y2], -1), (s1, s2)

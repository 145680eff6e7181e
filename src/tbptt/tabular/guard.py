"""The one-step guard of ``--data`` forecasting: the model's one-step-ahead predictions, or their
combination with a simple forecast where the run's own validation part says that does better.

A small network trained on a short or noisy series can end up no better than the naive forecast
(the last value) or the seasonal naive one (the value one season back), and a combination of two
forecasts seldom does much worse than its better part and often better than both (Bates &
Granger 1969, "The combination of forecasts", Operational Research Quarterly 20(4); Makridakis
et al. 2020, "The M4 Competition"). So, once, after training, each target's one-step
predictions over the validation part (the last part of each sequence's training data, as the
early stopping saw it) are scored with every candidate

    ``w * model + (1 - w) * base``,  ``w`` in ``WEIGHTS``,  ``base``: naive or seasonal naive,

by MASE (each sequence's errors divided by its own in-sample seasonal-naive MAE, pooled). Only where
the model alone loses there to the better of the naive and the seasonal naive forecast, the
candidate combining the model with THAT forecast with the largest model weight among those within
``MARGIN`` of the best score (a combination rather than the simple forecast alone where both are) is
used, and only where it beats the model alone significantly (:func:`dm_pvalue`: a one-sided
Diebold-Mariano test of the absolute errors at level ``ALPHA``), for every one-step prediction of
the run from then on: ``tbptt predict``, ``tbptt.load(RUN).predict`` and the report. (A model that
beats both is kept even where a combination scores better on validation: on the tuning series
elec_equip, whose validation part holds the 2008 crash, a 50/50 blend with naive was 17% better
there and three times worse on the test part. A validation part of a few dozen steps is noisy:
without the test, on the held-out series wineind one seed's model lost to the seasonal naive
forecast there by 3% and was combined with the naive one, which took its test MASE from about 1.0 to
1.23.) The choice is saved in the run folder (``one_step_guard.json``, also in ``summary.json``) and
said in the report's verdict.

Horizon forecasts are not changed here (``horizon.py`` has their own guard); they run from the
model's own state and outputs.

>>> y = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
>>> base_one_step(y, season=2)["seasonal_naive"].tolist()
[nan, 1.0, 1.0, 2.0, 1.0, 2.0]
>>> g = OneStepGuard({"y": {"weight": 0.5, "base": "naive"}})
>>> g.apply(np.array([np.nan, 3.0, 3.0]), np.array([1.0, 2.0, 1.0]), "y", season=1).tolist()
[nan, 2.0, 2.5]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tbptt.tabular.panel import Panel
    from tbptt.tabular.predict import Predictor

__all__ = [
    "FILE",
    "MARGIN",
    "WEIGHTS",
    "OneStepGuard",
    "base_one_step",
    "choose_guard",
    "dm_pvalue",
    "fit_guard",
]

WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
"""The model's weight in the candidates (1: the model alone, 0: the simple forecast alone)."""

MARGIN = 0.05
"""Candidates whose validation MASE is within this fraction of the best one count as tied."""

ALPHA = 0.05
"""The level of the Diebold-Mariano test that the simple forecast beats the model."""

FILE = "one_step_guard.json"
"""The guard's file in the run folder."""

_WORDS = {
    "naive": "naive forecast (the last value)",
    "seasonal_naive": "seasonal naive forecast (one season back)",
}


def base_one_step(y: np.ndarray, season: int) -> dict[str, np.ndarray]:
    """(T,) one sequence's levels -> the naive ``y[t - 1]`` and seasonal naive ``y[t - m]``
    one-step predictions (T,) (NaN at t = 0; the naive one where ``t < m``)."""
    naive = np.full(len(y), np.nan)
    naive[1:] = y[:-1]
    m = max(1, int(season))
    seasonal = naive.copy()
    if m > 1 and len(y) > m:
        seasonal[m:] = y[:-m]
    return {"naive": naive, "seasonal_naive": seasonal}


def _combine(model: np.ndarray, base: np.ndarray, weight: float) -> np.ndarray:
    """``weight * model + (1 - weight) * base`` where both exist; the model's value elsewhere."""
    if weight >= 1.0:
        return model
    both = np.isfinite(model) & np.isfinite(base)
    return np.where(both, weight * model + (1.0 - weight) * base, model)


@dataclass
class OneStepGuard:
    """Per target: ``{"weight": w, "base": "naive" | "seasonal_naive", ...}`` (the validation
    scores it was chosen by ride along). No entry, or ``w = 1``: the model alone."""

    choice: dict[str, dict[str, Any]] = field(default_factory=dict)

    def weight(self, target: str) -> float:
        return float(self.choice.get(target, {}).get("weight", 1.0))

    def apply(self, model: np.ndarray, y: np.ndarray, target: str, season: int) -> np.ndarray:
        """(T,) the one-step predictions used for ``target``, from the model's (T,) and the
        sequence's levels ``y`` (T,)."""
        c = self.choice.get(target)
        if not c or float(c["weight"]) >= 1.0:
            return model
        return _combine(model, base_one_step(y, season)[c["base"]], float(c["weight"]))

    def describe(self, target: str) -> str:
        """The one-step forecast used for ``target``, in words."""
        w = self.weight(target)
        if w >= 1.0:
            return "the model's"
        base = _WORDS[self.choice[target]["base"]]
        return f"the {base}" if w <= 0.0 else f"{w:g} x the model's + {1 - w:g} x the {base}"

    def save(self, run_dir: Path) -> None:
        (Path(run_dir) / FILE).write_text(json.dumps(self.choice, indent=1) + "\n")

    @classmethod
    def read(cls, run_dir: Path | None) -> OneStepGuard:
        """The run folder's guard; the model alone where there is none (an older run, or one
        that stopped before its report)."""
        path = None if run_dir is None else Path(run_dir) / FILE
        if path is None or not path.is_file():
            return cls()
        return cls(json.loads(path.read_text()))


def dm_pvalue(d: np.ndarray) -> float:
    """The one-sided p-value that the loss differential ``d`` (n,) (here the model's absolute
    error minus the simple forecast's, one step ahead) has a positive mean: the Diebold-Mariano
    test (Diebold & Mariano 1995, "Comparing predictive accuracy", JBES 13(3)) for one-step
    forecasts, with the small-sample correction and Student-t reference of Harvey, Leybourne &
    Newbold 1997 ("Testing the equality of prediction mean squared errors", IJF 13(2)).
    Fewer than 3 values: 1 (no evidence).

    >>> round(dm_pvalue(np.array([1.0, 2.0, 0.5, 1.5, -0.2, 1.0])), 4)
    0.0136
    >>> dm_pvalue(np.array([0.1, -0.1, 0.1, -0.1]))
    0.5
    """
    from scipy.stats import t as student

    n = len(d)
    if n < 3:
        return 1.0
    var = float(np.mean((d - d.mean()) ** 2))  # the lag-0 autocovariance (h = 1)
    if var == 0.0:
        return 0.0 if d.mean() > 0 else 1.0
    stat = float(d.mean()) / np.sqrt(var / n) * np.sqrt((n - 1) / n)
    return float(student.sf(stat, n - 1))


def choose_guard(
    model: list[np.ndarray],
    levels: list[np.ndarray],
    start: list[int],
    scale: list[float],
    season: int,
) -> dict[str, Any]:
    """One target's choice from its sequences' one-step predictions ``model[i]`` (T_i,), levels
    ``levels[i]`` (T_i,), validation start ``start[i]`` (rows ``start[i]:`` are validation) and
    MASE scale ``scale[i]``: ``{"weight", "base", "val_mase": {candidate: MASE}}``.

    >>> y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    >>> c = choose_guard([np.full(8, 0.5)], [y], [4], [1.0], season=2)
    >>> c["weight"], c["base"]
    (0.0, 'seasonal_naive')
    >>> c = choose_guard([y.copy()], [y], [4], [1.0], season=2)  # the model is best: kept
    >>> c["weight"]
    1.0
    """
    if not model:
        return {"weight": 1.0, "base": "naive", "val_mase": {}}
    bases = ["naive", "seasonal_naive"] if season > 1 else ["naive"]
    errors: dict[tuple[str, float], list[np.ndarray]] = {}
    for pred, y, s, sc in zip(model, levels, start, scale):
        b = base_one_step(y, season)
        both = np.isfinite(pred) & np.isfinite(b["naive"]) & np.isfinite(y)  # all scored
        for name in bases:
            for w in WEIGHTS:
                e = np.abs(_combine(pred, b[name], w) - y)[s:] / sc
                errors.setdefault((name, w), []).append(e[both[s:]])
    err = {k: np.concatenate(v) for k, v in errors.items()}
    score = {k: float(v.mean()) if len(v) else np.inf for k, v in err.items()}
    alone = score[(bases[0], 1.0)]
    base = min(bases, key=lambda b: score[(b, 0.0)])  # the better simple forecast
    # only a model that loses to a simple forecast is combined, with that one: the most model
    # among the candidates within MARGIN of the best, where it is significantly better
    mine = {w_: score[(base, w_)] for w_ in WEIGHTS}
    best = min(mine.values())
    w = max(w_ for w_, v in mine.items() if v <= best * (1.0 + MARGIN))
    better = w < 1.0 and dm_pvalue(err[(base, 1.0)] - err[(base, w)]) < ALPHA
    name, w = (base, w) if alone > score[(base, 0.0)] and better else (bases[0], 1.0)
    val = {"model": alone} | {
        f"{w_:g} model + {1 - w_:g} {b_}" if 0 < w_ < 1 else b_: v
        for (b_, w_), v in score.items()
        if w_ < 1.0
    }
    return {"weight": w, "base": name, "val_mase": {k: round(v, 6) for k, v in val.items()}}


def fit_guard(pred: Predictor, panel: Panel, n_train: np.ndarray) -> OneStepGuard:
    """The guard of a trained run: each target's choice on the validation rows (``n_train[i]:``
    of each sequence of the run's own ``panel``) of the model's one-step predictions alone."""
    from tbptt.tabular.baselines import mase_scale

    spec, m = pred.spec, max(1, int(pred.spec.season))
    alone = pred.guard
    pred.guard = OneStepGuard()
    try:
        ones = pred.one_step(panel)  # the model alone
    finally:
        pred.guard = alone
    keep = [i for i in range(len(panel.ids)) if 1 <= int(n_train[i]) < int(panel.lengths[i])]
    choice = {}
    for j, col in enumerate(spec.targets):
        y_all = panel.frame[col].to_numpy(dtype=np.float64)
        levels = [y_all[panel.rows(i)] for i in keep]
        choice[col] = choose_guard(
            [ones[i]["one_step"][:, j] for i in keep],
            levels,
            [int(n_train[i]) for i in keep],
            [mase_scale(y[: int(n_train[i])], m) for y, i in zip(levels, keep)],
            m,
        )
    return OneStepGuard(choice)

"""The evaluation protocol shared by every method in ``benchmarks/forecast.py``.

One split and one score for all methods, so that a number in ``docs/quality.md`` means the same
thing for tbptt and for each peer:

* **split**: the last ~20 % of each series is held out, rounded to a whole number of horizons
  (at least one), so that the holdout is ``n_test = H * k`` steps;
* **one step ahead**: every holdout step is predicted from the true history before it, with the
  model fitted once on the training part and its weights frozen (no refit, no update);
* **horizon**: one ``H``-step forecast from the end of the training part, scored on the first
  ``H`` holdout steps;
* **MASE** (Hyndman & Koehler, 2006, "Another look at measures of forecast accuracy", IJF 22(4)):
  the mean absolute error divided by the in-sample mean absolute error of the seasonal-naive
  forecast ``y[t - m]`` on the training part (``m = 1``: the naive forecast).

Only numpy here: the CI test ``tests/test_benchmarks_protocol.py`` checks these pieces without
any peer library installed.

>>> holdout_size(100, horizon=6)
18
>>> y = np.array([1.0, 2.0, 3.0, 4.0])
>>> mase(np.array([5.0]), np.array([4.0]), y[:4], season=1)
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "holdout_size",
    "mase",
    "mase_scale",
    "one_step_frozen",
    "seasonal_naive_forecast",
    "seasonal_naive_one_step",
    "split_series",
]

TEST_FRACTION = 0.2


def holdout_size(n: int, horizon: int, fraction: float = TEST_FRACTION) -> int:
    """Holdout length: ``fraction * n`` rounded to a whole number (>= 1) of horizons.

    >>> holdout_size(36, horizon=4), holdout_size(20, horizon=4), holdout_size(309, horizon=11)
    (8, 4, 66)
    """
    if horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}.")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}.")
    k = max(1, round(fraction * n / horizon))
    if n - k * horizon < 2:
        raise ValueError(
            f"a series of {n} steps is too short for a holdout of {k} x {horizon} steps; "
            "use a shorter horizon."
        )
    return k * horizon


def split_series(
    y: np.ndarray, horizon: int, fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) of one series along its first axis; ``len(test)`` is a multiple of H."""
    n_test = holdout_size(len(y), horizon, fraction)
    return y[: len(y) - n_test], y[len(y) - n_test :]


def mase_scale(y_train: np.ndarray, season: int) -> float:
    """In-sample mean absolute error of the seasonal-naive forecast ``y[t - m]``.

    Falls back to ``m = 1`` when the training part is not longer than one season.

    >>> mase_scale(np.array([1.0, 3.0, 2.0, 4.0]), season=2)
    1.0
    """
    y_train = np.asarray(y_train, dtype=np.float64)
    m = season if len(y_train) > season else 1
    scale = float(np.mean(np.abs(y_train[m:] - y_train[:-m])))
    if not np.isfinite(scale) or scale == 0.0:
        raise ValueError(
            f"the seasonal-naive in-sample error is {scale!r} (a constant training part?); "
            "MASE is undefined for this series."
        )
    return scale


def mase(y_true: np.ndarray, y_pred: np.ndarray, y_train: np.ndarray, season: int) -> float:
    """Mean absolute scaled error of ``y_pred`` against ``y_true`` (NaN predictions refused)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred has shape {y_pred.shape}, expected {y_true.shape}.")
    if not np.all(np.isfinite(y_pred)):
        bad = int(np.sum(~np.isfinite(y_pred)))
        raise ValueError(f"y_pred has {bad} NaN/inf values of {y_pred.size}; nothing to score.")
    return float(np.mean(np.abs(y_true - y_pred)) / mase_scale(y_train, season))


def seasonal_naive_one_step(y: np.ndarray, n_train: int, season: int) -> np.ndarray:
    """One-step-ahead seasonal naive over ``y[n_train:]``: ``yhat[t] = y[t - m]`` (true history).

    >>> seasonal_naive_one_step(np.arange(6.0), n_train=4, season=2)
    array([2., 3.])
    """
    m = season if n_train > season else 1
    t = np.arange(n_train, len(y))
    return np.asarray(y, dtype=np.float64)[t - m]


def seasonal_naive_forecast(y_train: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``H``-step seasonal naive from the end of the training part: the last season, repeated.

    >>> seasonal_naive_forecast(np.array([1.0, 2.0, 3.0, 4.0]), horizon=3, season=2)
    array([3., 4., 3.])
    """
    y_train = np.asarray(y_train, dtype=np.float64)
    m = season if len(y_train) > season else 1
    last = y_train[-m:]
    return np.array([last[h % m] for h in range(horizon)])


def one_step_frozen(
    fit: Callable[[np.ndarray], object],
    predict_next: Callable[[object, np.ndarray], float],
    y: Sequence[float] | np.ndarray,
    n_train: int,
) -> np.ndarray:
    """One-step-ahead predictions of ``y[n_train:]`` from a model fitted once on ``y[:n_train]``.

    ``fit(train) -> model`` is called exactly once; ``predict_next(model, history) -> float``
    sees the true history ``y[:t]`` for each holdout step ``t`` and must not change ``model``
    (its weights are frozen). A sketch of what each peer adapter does in its own library's way.

    >>> one_step_frozen(lambda tr: tr.mean(), lambda mean, h: 0.5 * (mean + h[-1]), [0, 2, 4, 6], 2)
    array([1.5, 2.5])
    """
    y = np.asarray(y, dtype=np.float64)
    model = fit(y[:n_train].copy())
    return np.array([predict_next(model, y[:t].copy()) for t in range(n_train, len(y))])

"""The horizon guard of ``--data`` forecasting: the recursive model, or a simple forecast where
the sequence's own recent past says the model's recursion does worse.

A recursive forecast feeds each step's prediction back as the next input, so its errors
compound over the horizon; on a noisy series without a season it can drift far from anything
seen (Taieb et al. 2012, "A review and comparison of strategies for multi-step ahead time series
forecasting"). Two guards, both decided from the history given and never from the future:

- :func:`clip_range`: each recursive step is kept within the history's range widened by half of
  it, so one bad step cannot explode the rest.
- :func:`choose`: a rolling-origin backtest (Tashman 2000, "Out-of-sample tests of forecasting
  accuracy") over the last steps of each sequence scores the model's recursive forecast, the
  ``blend`` (the mean of the model's and the seasonal naive forecast: a combination, which
  seldom does much worse than its better part; Makridakis et al. 2020, "The M4 Competition"),
  the naive and the seasonal naive forecast; the sequence's horizon uses the best of them (its
  name is reported per sequence as :attr:`tbptt.tabular.predict.Predictor.methods`).

>>> y = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0])
>>> candidates(np.zeros(4), y, season=3)["seasonal_naive"].tolist()
[2.0, 3.0, 1.0, 2.0]
>>> candidates(np.zeros(4), y, season=3)["blend"].tolist()
[1.0, 1.5, 0.5, 1.0]
>>> choose({"model": [1.0, 2.0], "naive": [0.5, 0.5]})
'naive'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["METHODS", "backtest_origins", "candidates", "choose", "clip_range"]

METHODS = ("model", "blend", "naive", "seasonal_naive")  # ties go to the first


def clip_range(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z`` (n, k) history -> (k,) low and high bounds: its range widened by half of it."""
    lo, hi = np.nanmin(z, 0), np.nanmax(z, 0)  # (k,)
    pad = 0.5 * (hi - lo)
    return lo - pad, hi + pad


def candidates(model: np.ndarray, y: np.ndarray, season: int) -> dict[str, np.ndarray]:
    """The model's forecast ``model`` (horizon, ...) from the history ``y`` (n, ...) and the
    other :data:`METHODS` from the same history, each (horizon, ...); the seasonal naive is the
    naive one when the history is shorter than a season."""
    horizon = len(model)
    m = season if season > 1 and len(y) >= season else 1
    snaive = y[len(y) - m + np.arange(horizon) % m]
    return {
        "model": model,
        "blend": (model + snaive) / 2,
        "naive": np.repeat(y[-1:], horizon, 0),
        "seasonal_naive": snaive,
    }


def backtest_origins(n: int, horizon: int, season: int, count: int = 6) -> list[int]:
    """Up to ``count`` forecast origins (rows used) in a history of ``n`` rows, the latest
    ``n - horizon`` and then every ``max(1, horizon // 2)`` rows back, each leaving at least
    one season plus two rows before it.

    >>> backtest_origins(40, 10, 4)
    [30, 25, 20, 15, 10]
    >>> backtest_origins(8, 10, 1)
    []
    """
    step = max(1, horizon // 2)
    first = max(season, 1) + 2
    return [o for o in (n - horizon - j * step for j in range(count)) if o >= first]


def choose(errors: Mapping[str, Sequence[float]]) -> str:
    """The method with the least mean backtest error (``model`` on ties or with no backtest)."""
    best, best_err = "model", np.inf
    for name in METHODS:  # the model first: it keeps ties
        e = errors.get(name)
        if e is not None and len(e) and float(np.mean(e)) < best_err:
            best, best_err = name, float(np.mean(e))
    return best

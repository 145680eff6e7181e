"""The horizon of ``--data`` forecasting: the model's recursive forecast, its direct multi-step
head, or a simple forecast where the sequence's own recent past says the model does worse.

A recursive forecast feeds each step's prediction back as the next input, so its errors
compound over the horizon; on a noisy series without a season it can drift far from anything
seen (Taieb et al. 2012, "A review and comparison of strategies for multi-step ahead time series
forecasting"). The DIRECT strategy predicts every step of the horizon at once from the state at
the origin; forecasting runs train such a head next to the one-step output
(:func:`attach_direct`, :func:`horizon_mse`; the multi-horizon output of MQ-RNN, Wen et al.
2017, "A multi-horizon quantile recurrent forecaster"). Two guards, both decided from the
history given and never from the future:

- :func:`clip_range`: each recursive step is kept within the history's range widened by half of
  it, so one bad step cannot explode the rest.
- :func:`choose`: a rolling-origin backtest (Tashman 2000, "Out-of-sample tests of forecasting
  accuracy") over the last steps of each sequence scores the model's recursive forecast, its
  ``direct`` head's (where the run has one, as long as the horizon), the ``blend`` (the mean of
  the model's and the seasonal naive forecast: a combination, which seldom does much worse
  than its better part; Makridakis et al. 2020, "The M4 Competition"),
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
import torch

__all__ = [
    "METHODS",
    "attach_direct",
    "backtest_origins",
    "candidates",
    "choose",
    "clip_range",
    "direct_changes",
    "direct_forecast",
    "direct_spread",
    "horizon_mse",
]

METHODS = ("model", "direct", "blend", "naive", "seasonal_naive")  # ties go to the first


def clip_range(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``z`` (n, k) history -> (k,) low and high bounds: its range widened by half of it."""
    lo, hi = np.nanmin(z, 0), np.nanmax(z, 0)  # (k,)
    pad = 0.5 * (hi - lo)
    return lo - pad, hi + pad


def candidates(
    model: np.ndarray, y: np.ndarray, season: int, direct: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The model's forecast ``model`` (horizon, ...) from the history ``y`` (n, ...) and the
    other :data:`METHODS` from the same history, each (horizon, ...); the seasonal naive is the
    naive one when the history is shorter than a season. ``direct``: the direct head's
    forecast, a candidate where the run has one."""
    horizon = len(model)
    m = season if season > 1 and len(y) >= season else 1
    snaive = y[len(y) - m + np.arange(horizon) % m]
    out = {
        "model": model,
        "blend": (model + snaive) / 2,
        "naive": np.repeat(y[-1:], horizon, 0),
        "seasonal_naive": snaive,
    }
    if direct is not None:
        out["direct"] = direct
    return out


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


# -- the direct multi-step head ------------------------------------------------------------
#
# Besides its one-step output, a forecasting model can predict y[t + 1 .. t + H] from its state
# at t all at once (the DIRECT strategy of Taieb et al. 2012; the multi-horizon output of
# MQ-RNN, Wen et al. 2017, "A multi-horizon quantile recurrent forecaster"). Its errors do not
# compound through fed-back predictions, and it needs no forecast of the past-only covariates.
# Output layout per row: the ``n_out`` one-step outputs, then ``H`` blocks of ``k`` targets:
# block ``h - 1`` holds ``(z[t + h] - z[t]) / sd_change``, the scaled change over ``h`` steps.


def direct_changes(z: np.ndarray, observed: np.ndarray, n: int, horizon: int) -> np.ndarray:
    """The direct head's targets of one sequence and where they exist.

    ``z`` (T, k) the scaled targets (gaps carried forward), ``observed`` (T, k) whether each
    was observed, ``n``: only rows ``< n`` may serve as a future value (the training range;
    0: none). Returns (T, 2, horizon * k): ``[:, 0]`` the change ``z[t + h] - z[t]`` (block
    ``h - 1``), ``[:, 1]`` 1 where ``t + h < n`` and ``z[t + h]`` was observed, else 0.

    >>> z = np.array([[0.0], [1.0], [3.0], [6.0]])
    >>> d = direct_changes(z, np.ones((4, 1)), n=4, horizon=2)
    >>> d[:, 0].tolist(), d[:, 1].tolist()
    ([[1.0, 3.0], [2.0, 5.0], [3.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    """
    t_len, k = z.shape
    out = np.zeros((t_len, 2, horizon * k))
    for h in range(1, horizon + 1):
        rows = max(0, min(n, t_len) - h)  # rows t with t + h < n
        cols = slice((h - 1) * k, h * k)
        out[:rows, 0, cols] = z[h : h + rows] - z[:rows]
        out[:rows, 1, cols] = observed[h : h + rows]
    return out


def direct_spread(zs: list[np.ndarray], horizon: int, sdc: np.ndarray) -> np.ndarray:
    """(horizon k,) the mean squared change over ``h`` steps (block ``h - 1``), in
    ``sd_change`` units, pooled over the training ranges ``zs`` (each (n, k)); ``h`` where no
    pair is that far apart (a random walk's).

    >>> direct_spread([np.arange(6.0)[:, None]], 2, np.ones(1)).tolist()
    [1.0, 4.0]
    """
    k = len(sdc)
    sq, cnt = np.zeros(horizon * k), np.zeros(horizon * k)
    for z in zs:
        d = direct_changes(z, np.ones_like(z), len(z), horizon)  # (n, 2, H k)
        sq += ((d[:, 0] / np.tile(sdc, horizon)) ** 2 * d[:, 1]).sum(0)
        cnt += d[:, 1].sum(0)
    walk = np.repeat(np.arange(1.0, horizon + 1), k)
    ok = cnt > 0
    out = walk.copy()
    out[ok] = sq[ok] / cnt[ok]
    return np.maximum(out, 1e-6)


def attach_direct(
    y: np.ndarray,
    z: np.ndarray,
    n: int,
    horizon: int,
    n_out: int,
    sdc: np.ndarray,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """One sequence's one-step targets ``y`` (T, 3 n_out: values, mask weights, loss weights;
    ``forecast_arrays``) with the direct head's appended: (T, 3 (n_out + horizon k)).

    The direct values are :func:`direct_changes` over ``sd_change`` (``sdc`` (k,)); a future
    value counts where the one-step mask says it was observed and it lies before row ``n``
    (``n = 0``: no direct target, e.g. validation, which scores the one-step outputs only).
    Loss weights: the sequence's own one-step loss weight per target, over ``horizon`` and
    over the spread of block h (:func:`direct_spread`; default ``h``, a random walk's), so
    that the H blocks together weigh about as much as the one-step output (whose targets have
    unit spread) whatever the series' smoothness.
    """
    k = len(sdc)
    observed = np.zeros_like(z)
    observed[1:] = y[:-1, n_out : n_out + k]  # the target at t + 1 is z[t + 1]
    d = direct_changes(z, observed, n, horizon)  # (T, 2, H k)
    own = y[:, 2 * n_out : 2 * n_out + k].max(0)  # (k,) the sequence's loss weight
    if spread is None:
        spread = np.repeat(np.arange(1.0, horizon + 1), k)
    lw = d[:, 1] * np.tile(own, horizon) / (horizon * spread)
    vals = d[:, 0] / np.tile(sdc, horizon)
    parts = [y[:, :n_out], vals, y[:, n_out : 2 * n_out], d[:, 1], y[:, 2 * n_out :], lw]
    return np.concatenate(parts, 1)


def horizon_mse(y: torch.Tensor, targets: torch.Tensor, n_out: int) -> torch.Tensor:
    """``y`` (B, L, K), ``targets`` (B, L, 3K) -> (B, L): the weighted squared error summed over
    all K outputs over the ``n_out`` one-step ones, so that the one-step part keeps the scale
    of :func:`tbptt.tabular.model.weighted_mse` and the direct head adds to it."""
    k = y.shape[-1]
    v, w = targets[..., :k], targets[..., 2 * k :]
    return ((y - v) ** 2 * w).sum(-1) / n_out


def direct_forecast(
    last: np.ndarray, z_end: np.ndarray, horizon: int, n_out: int, sdc: np.ndarray
) -> np.ndarray:
    """The direct head's (horizon, k) scaled levels from a row's outputs ``last`` (n_out + H k,)
    and the scaled targets at that row ``z_end`` (k,)."""
    k = len(sdc)
    d = last[n_out : n_out + horizon * k].reshape(horizon, k)
    return z_end + d * sdc

"""The protocol pieces of ``benchmarks/forecast.py``, checked without any peer library.

Split into whole horizons, MASE against its definition (Hyndman & Koehler, 2006), the seasonal
naive baselines, one-step-ahead predictions with frozen weights, and the reading of
``tbptt predict``'s output rows (one_step aligned to the holdout, forecast rows per id).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def protocol():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("forecast_protocol")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("n,h", [(309, 11), (36, 6), (20, 4), (89, 8), (732, 12), (289, 48)])
def test_holdout_is_a_whole_number_of_horizons_near_a_fifth(protocol, n, h):
    n_test = protocol.holdout_size(n, h)
    assert n_test % h == 0 and n_test >= h
    k = n_test // h
    # the nearest whole number of horizons to 20 % (at least one)
    assert all(abs(k * h - 0.2 * n) <= abs(j * h - 0.2 * n) for j in range(1, n // h))
    train, test = protocol.split_series(np.arange(float(n)), h)
    assert len(test) == n_test and len(train) == n - n_test
    assert np.array_equal(np.concatenate([train, test]), np.arange(float(n)))


def test_holdout_refuses_a_series_too_short_and_bad_arguments(protocol):
    with pytest.raises(ValueError, match="too short"):
        protocol.holdout_size(5, 4)
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        protocol.holdout_size(50, 0)
    with pytest.raises(ValueError, match="fraction"):
        protocol.holdout_size(50, 5, fraction=1.5)


def test_mase_is_mae_over_the_in_sample_seasonal_naive_mae(protocol):
    rng = np.random.default_rng(0)
    y_train, y_true = rng.normal(size=40), rng.normal(size=8)
    y_pred = y_true + rng.normal(size=8)
    for m in (1, 4, 12):
        scale = sum(abs(y_train[t] - y_train[t - m]) for t in range(m, 40)) / (40 - m)
        mae = sum(abs(a - b) for a, b in zip(y_true, y_pred)) / 8
        assert protocol.mase(y_true, y_pred, y_train, m) == pytest.approx(mae / scale, rel=1e-12)


def test_mase_of_the_seasonal_naive_in_sample_is_one(protocol):
    y = np.sin(np.arange(60) * 2 * np.pi / 12) + 0.1 * np.arange(60)
    pred = protocol.seasonal_naive_one_step(y, 24, season=12)  # y[t - 12] for t in 24..59
    assert protocol.mase(y[24:], pred, y[:24], 12) == pytest.approx(1.0)
    assert protocol.mase_scale(y, 12) == pytest.approx(0.1 * 12)  # the trend over one season


def test_mase_refuses_nan_predictions_and_a_constant_training_part(protocol):
    with pytest.raises(ValueError, match="1 NaN/inf values of 3"):
        protocol.mase(np.ones(3), np.array([1.0, np.nan, 1.0]), np.arange(5.0), 1)
    with pytest.raises(ValueError, match="MASE is undefined"):
        protocol.mase(np.ones(3), np.ones(3), np.ones(10), 1)
    with pytest.raises(ValueError, match="shape"):
        protocol.mase(np.ones(3), np.ones(2), np.arange(5.0), 1)


def test_seasonal_naive_uses_the_true_history_and_repeats_the_last_season(protocol):
    y = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    assert protocol.seasonal_naive_one_step(y, 5, 3).tolist() == [3.0, 4.0, 5.0]
    assert protocol.seasonal_naive_forecast(y[:5], 5, 3).tolist() == [3.0, 4.0, 5.0, 3.0, 4.0]
    # a season longer than the training part falls back to the last value
    assert protocol.seasonal_naive_forecast(y[:2], 2, 12).tolist() == [2.0, 2.0]


class _AR(torch.nn.Module):
    """A linear AR(2) model: y[t] = a y[t-1] + b y[t-2] + c, fitted by least squares."""

    def __init__(self, train: np.ndarray) -> None:
        super().__init__()
        x = torch.tensor(np.stack([train[1:-1], train[:-2], np.ones(len(train) - 2)], 1))
        coef = torch.linalg.lstsq(x, torch.tensor(train[2:, None])).solution  # (3, 1)
        self.coef = torch.nn.Parameter(coef)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return (
            torch.stack([history[-1], history[-2], torch.ones((), dtype=history.dtype)])
            @ (self.coef[:, 0])
        )


def test_one_step_is_fitted_once_and_runs_with_frozen_weights(protocol):
    rng = np.random.default_rng(1)
    y = np.zeros(80)
    for t in range(2, 80):
        y[t] = 0.6 * y[t - 1] - 0.3 * y[t - 2] + 1.0 + rng.normal()
    fits: list[_AR] = []

    def fit(train: np.ndarray) -> _AR:
        assert len(train) == 64  # never sees the holdout
        fits.append(_AR(train))
        return fits[-1]

    def predict_next(model: _AR, history: np.ndarray) -> float:
        with torch.no_grad():
            return float(model(torch.tensor(history)))

    pred = protocol.one_step_frozen(fit, predict_next, y, 64)
    assert len(fits) == 1
    model = fits[0]
    before = model.coef.detach().clone()
    a, b, c = before[:, 0].tolist()
    brute = [a * y[t - 1] + b * y[t - 2] + c for t in range(64, 80)]  # the true history
    np.testing.assert_allclose(pred, brute, rtol=1e-12)
    assert torch.equal(model.coef.detach(), before)


def _tbptt_adapter():
    pytest.importorskip("pandas")
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("forecast_tbptt")
    finally:
        sys.path.remove(str(BENCH))


def test_predict_rows_are_aligned_to_the_holdout_per_id(tmp_path):
    adapter = _tbptt_adapter()
    rows = ["id,t,kind,yhat"]
    rows += [f"a,{t},one_step,{'' if t == 0 else t}" for t in range(6)]
    rows += [f"b,{t},one_step,{'' if t == 0 else 10 + t}" for t in range(4)]
    rows += [f"a,{t},forecast,{100 + t}" for t in range(6, 8)]
    rows += [f"b,{t},forecast,{200 + t}" for t in range(4, 6)]
    out = tmp_path / "out.csv"
    out.write_text("\n".join(rows) + "\n")
    one = adapter.tbptt_predictions(out, "one_step", {"a": 6, "b": 4}, {"a": 2, "b": 1})
    assert one == {"a": [4.0, 5.0], "b": [13.0]}
    fc = adapter.tbptt_predictions(out, "forecast", {"a": 2, "b": 2}, {"a": 2, "b": 2})
    assert fc == {"a": [106.0, 107.0], "b": [204.0, 205.0]}
    with pytest.raises(ValueError, match="id 'a' has 6 one_step rows, expected 7"):
        adapter.tbptt_predictions(out, "one_step", {"a": 7}, {"a": 2})
    with pytest.raises(ValueError, match="empty one_step predictions"):
        adapter.tbptt_predictions(out, "one_step", {"a": 6}, {"a": 6})

"""The forecast horizon guard: the backtest's choice per sequence and the recursion's range."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from tbptt.tabular.horizon import backtest_origins, candidates, choose
from tbptt.tabular.model import TabularRNN
from tbptt.tabular.panel import make_panel
from tbptt.tabular.predict import Predictor
from tbptt.tabular.prepare import fit_spec, forecast_arrays


def predictor(df: pd.DataFrame, season: int, trend: float = 0.0) -> tuple[Predictor, object]:
    """An untrained model (zero head: the naive forecast), or one whose head adds ``trend``
    scaled changes every step (a recursion that drifts without end)."""
    p = make_panel(df, id_col="id", time_col=None)
    spec = fit_spec(p, "forecast", ["y"], [], [], p.lengths - 8, season)
    n_in = forecast_arrays(p, spec)[0]["x"].shape[1]
    model = TabularRNN(n_in, spec.n_out, hidden=4)
    with torch.no_grad():
        model.head.bias.fill_(trend)
    cfg = SimpleNamespace(id="id", time=None)
    return Predictor(model, cfg, {"spec": spec.to_dict()}), p


def test_seasonal_sequence_falls_back_to_seasonal_naive_and_a_walk_keeps_the_model():
    t = np.arange(48)
    season = np.tile([0.0, 5.0, 1.0, 7.0], 12)
    walk = np.cumsum(np.random.default_rng(0).normal(size=48))
    df = pd.DataFrame(
        {"id": ["s"] * 48 + ["w"] * 48, "y": np.concatenate([season, walk]), "t": [*t, *t]}
    )
    pred, p = predictor(df, season=4)
    fc = pred.forecast(p, 6)
    # the zero head forecasts "no change"; on the periodic id the backtest's seasonal naive is
    # exact, so it is chosen; on the random walk the naive forecast (= the model) keeps the model
    assert pred.methods == ["seasonal_naive", "model"]
    np.testing.assert_allclose(fc[0][:, 0], np.tile([0.0, 5.0, 1.0, 7.0], 2)[:6])
    np.testing.assert_allclose(fc[1][:, 0], np.full(6, walk[-1]), rtol=1e-6)


def test_a_drifting_recursion_stays_within_the_widened_history_range():
    y = np.random.default_rng(1).normal(size=60)  # noise about a level
    df = pd.DataFrame({"id": "a", "y": y})
    pred, p = predictor(df, season=1, trend=5.0)
    rec = pred._recursive(p, 30, None)[0][:, 0]
    lo, hi = y.min(), y.max()
    assert rec.max() <= hi + 0.5 * (hi - lo) + 1e-9 and rec[-1] > hi  # it drifts, then is held
    fc = pred.forecast(p, 10)
    assert pred.methods == ["naive"]  # the drift loses the backtest to the naive forecast
    np.testing.assert_allclose(fc[0][:, 0], np.full(10, y[-1]))


def test_helpers():
    y = np.arange(5.0)[:, None]
    assert candidates(np.ones((2, 1)), y, 12)["seasonal_naive"][:, 0].tolist() == [4.0, 4.0]
    assert backtest_origins(20, 4, 12) == [16, 14]
    assert choose({}) == "model" and choose({"model": [1.0], "naive": [1.0]}) == "model"


def test_the_report_says_where_the_fallback_is_used():
    from tbptt.tabular.report import evaluate_run

    t = np.arange(48)
    df = pd.DataFrame({"id": "s", "y": np.tile([0.0, 5.0, 1.0, 7.0], 12), "t": t})
    pred, _ = predictor(df, season=4)
    pred.extra["n_train"] = [40]
    pred.cfg.horizon = 4
    text = evaluate_run(pred, df)["verdict"]
    assert "lost its backtest on 1 of 1 sequences, which use instead: seasonal naive (1)" in text

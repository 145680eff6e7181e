"""Forecast defaults decided from the data: the season (calendar + ACF) and the one-step guard
(the model, or its combination with naive / seasonal naive, chosen on the run's validation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tbptt
from tbptt.cli import main
from tbptt.tabular.dataset import calendar_season, detect_season
from tbptt.tabular.guard import (
    ALPHA,
    FILE,
    MARGIN,
    WEIGHTS,
    OneStepGuard,
    choose_guard,
    dm_pvalue,
)
from tbptt.tabular.panel import make_panel

FAST = ["--progress", "off", "--tensorboard", "off", "--updates", "12", "--eval-every", "4"]


@pytest.mark.parametrize(
    "step,m",
    [
        (pd.Timedelta(days=31), 12),
        (pd.Timedelta(days=28), 12),
        (pd.Timedelta(days=92), 4),
        (pd.Timedelta(days=7), 52),
        (pd.Timedelta(days=1), 7),
        (pd.Timedelta(hours=1), 24),
        (pd.Timedelta(minutes=30), 48),
        (pd.Timedelta(minutes=7), None),  # not a whole number per day
        (pd.Timedelta(days=365), None),  # yearly: no season
        (1, None),  # numbers: nothing to say
        (None, None),
    ],
)
def test_calendar_season(step, m):
    assert calendar_season(step) == m


def _frame(y: np.ndarray, freq: str) -> pd.DataFrame:
    t = pd.date_range("2001-01-01", periods=len(y), freq=freq).strftime("%Y-%m-%d")
    return pd.DataFrame({"t": t, "y": y})


def test_detect_season_takes_the_calendar_where_the_acf_confirms_it():
    rng = np.random.default_rng(0)
    n = 120
    walk = np.cumsum(rng.normal(size=n))
    monthly = walk + 3 * np.sin(2 * np.pi * np.arange(n) / 12)
    quarterly = walk + 3 * np.array([1.0, -1.0, 0.5, -0.5] * (n // 4))
    cases = [(monthly, "MS", 12), (quarterly, "QS", 4), (walk, "MS", 1)]  # walk: no season
    for y, freq, m in cases:
        p = make_panel(_frame(y, freq), id_col=None, time_col="t")
        assert detect_season(p, "y") == m, freq
    # numbers as time: no calendar, the ACF-confirmed periodogram finds the period alone
    p = make_panel(pd.DataFrame({"t": np.arange(n), "y": monthly}), id_col=None, time_col="t")
    assert detect_season(p, "y") == 12


def _brute_force(model, levels, start, scale, season):
    """Every candidate's pooled validation MASE and its absolute errors, written out step by
    step (float64), over the steps where the model, the target and the last value exist."""
    out, errors = {}, {}
    for base in ["naive", "seasonal_naive"] if season > 1 else ["naive"]:
        for w in WEIGHTS:
            errs = []
            for pred, y, s, sc in zip(model, levels, start, scale):
                for t in range(s, len(y)):
                    if not (np.isfinite(pred[t]) and np.isfinite(y[t]) and np.isfinite(y[t - 1])):
                        continue
                    lag = season if base == "seasonal_naive" and t >= season else 1
                    b = y[t - lag]
                    p = pred[t] if w == 1.0 or not np.isfinite(b) else w * pred[t] + (1 - w) * b
                    errs.append(abs(p - y[t]) / sc)
            out[(base, w)] = float(np.mean(errs))
            errors[(base, w)] = np.array(errs)
    return out, errors


def _dm_by_hand(d):
    """The one-sided Diebold-Mariano p-value with the HLN correction, h = 1, term by term."""
    from scipy.stats import t as student

    n = len(d)
    mean = sum(d) / n
    gamma0 = sum((v - mean) ** 2 for v in d) / n
    stat = mean / (gamma0 / n) ** 0.5 * ((n + 1 - 2) / n) ** 0.5
    return student.sf(stat, n - 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_guard_choice_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    season = [1, 4][seed % 2]
    levels = [np.cumsum(rng.normal(size=n)) + np.tile([0, 2, 0, -2], 8)[:n] for n in (30, 24)]
    noise = [0.2, 3.0][seed // 2]  # a good model, then a bad one
    model = [y + noise * rng.normal(size=len(y)) for y in levels]
    for m in model:
        m[0] = np.nan
    levels[1][5] = np.nan  # a missing target: not scored, no base from it
    start, scale = [22, 18], [1.3, 0.7]
    got = choose_guard(model, levels, start, scale, season)
    ref, errs = _brute_force(model, levels, start, scale, season)
    base = min((k for k in ref if k[1] == 0.0), key=ref.get)[0]  # the better simple forecast
    mine = {w: ref[(base, w)] for w in WEIGHTS}
    w = max(w for w, v in mine.items() if v <= min(mine.values()) * (1 + MARGIN))
    d = errs[(base, 1.0)] - errs[(base, w)]
    if w < 1.0:
        assert dm_pvalue(d) == pytest.approx(_dm_by_hand(d), rel=1e-9)
    loses = ref[("naive", 1.0)] > ref[(base, 0.0)] and w < 1.0 and _dm_by_hand(d) < ALPHA
    w = w if loses else 1.0  # a model that beats both, or not significantly, is kept
    assert loses == (noise > 1)  # both cases are covered
    assert got["weight"] == w
    if w < 1.0:
        assert got["base"] == base  # combined with the forecast that beat it
        assert got["val_mase"]["model"] > min(mine.values())  # it left the model for better
    assert got["val_mase"]["model"] == pytest.approx(ref[("naive", 1.0)], abs=1e-6)


def test_the_guard_keeps_a_model_that_loses_by_noise():
    """A model a little worse than the seasonal naive forecast on a short validation part (not
    significantly, by the Diebold-Mariano test) is kept alone; clearly worse, it is combined
    with that forecast, not with the naive one."""
    rng = np.random.default_rng(0)
    y = np.tile([0.0, 4.0, 1.0, -3.0], 10) + 0.5 * rng.normal(size=40)
    snaive = np.r_[np.full(4, np.nan), y[:-4]]
    close = snaive + 0.2 * rng.normal(size=40)  # as good as the seasonal naive, give or take
    got = choose_guard([close], [y], [28], [1.0], season=4)
    assert got["val_mase"]["model"] > got["val_mase"]["seasonal_naive"]  # it loses there ...
    assert got["weight"] == 1.0  # ... by noise: kept
    bad = snaive + 2.0 * rng.normal(size=40)
    got = choose_guard([bad], [y], [28], [1.0], season=4)
    assert got["weight"] < 1.0 and got["base"] == "seasonal_naive"


def _seasonal_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 96
    pattern = [0.0, 3.0, 1.0, -2.0, 0.5, -1.5, 2.0, -3.0, 1.5, 0.0, -1.0, 2.5]
    y = 10 + 4 * np.tile(pattern, n // 12) + 0.1 * rng.normal(size=n)
    _frame(y, "MS").to_csv(path, index=False)  # 8 years of months
    return path


def test_the_guard_is_saved_said_and_used_by_predict_and_load(tmp_path, capsys):
    data = _seasonal_csv(tmp_path / "s.csv")
    runs = ["--runs-dir", str(tmp_path / "runs"), "--name", "r"]
    args = ["train", "--data", str(data), "--target", "y", "--time", "t", *runs, *FAST]
    # 29 validation steps: enough for the guard's significance test (19 were too few)
    assert main([*args, "--val-fraction", "0.3"]) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "runs" / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["season"] == 12  # the calendar's, confirmed by the ACF
    guard = OneStepGuard.read(run)
    choice = guard.choice["y"]
    assert summary["one_step_guard"]["y"] == choice
    # 12 updates cannot learn the pattern: the seasonal naive forecast carries it
    assert choice["weight"] < 1.0 and choice["base"] == "seasonal_naive"
    assert "the forecasts used are" in printed and "seasonal naive" in printed
    score = summary["scores"]["model"]["y"]["one_step"]
    assert score["mase"] <= choice["val_mase"]["model"]

    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert f"model MASE {score['mase']:.3f} RMSE {score['rmse']:.4g}" in again  # reproduced
    table = pd.read_csv(out)
    loaded = tbptt.load(run).predict(data)
    np.testing.assert_array_equal(loaded["yhat"].to_numpy(float), table["yhat"].to_numpy(float))

    # what was used == w * (the network alone) + (1 - w) * y[t - m], computed here
    from tbptt.tabular.predict import Predictor

    lo = tbptt.load(run)
    alone = Predictor(lo.model, lo.config, lo.extra)  # no guard
    raw = alone.one_step(alone.panel(str(data)))[0]["one_step"][:, 0]
    y = pd.read_csv(data)["y"].to_numpy(float)
    w, m = choice["weight"], 12
    expect = raw.copy()
    expect[m:] = w * raw[m:] + (1 - w) * y[:-m]
    expect[1:m] = w * raw[1:m] + (1 - w) * y[: m - 1]  # no season back yet: the last value
    got = table.loc[table["kind"] == "one_step", "yhat"].to_numpy(float)
    np.testing.assert_allclose(got, expect, rtol=1e-12, equal_nan=True)


def test_a_run_without_a_guard_file_uses_the_model_alone(tmp_path):
    assert OneStepGuard.read(tmp_path).choice == {}
    assert OneStepGuard.read(None).weight("y") == 1.0
    (tmp_path / FILE).write_text(json.dumps({"y": {"weight": 1.0, "base": "naive"}}))
    model = np.array([np.nan, 1.0, 2.0])
    assert OneStepGuard.read(tmp_path).apply(model, np.zeros(3), "y", 1) is model


def test_with_a_season_the_untrained_model_is_the_seasonal_naive_forecast():
    from types import SimpleNamespace

    from tbptt.tabular.model import TabularRNN
    from tbptt.tabular.predict import Predictor
    from tbptt.tabular.prepare import fit_spec, forecast_arrays, seasonal_columns

    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=60)) + np.tile([3.0, -1.0, 0.0, -2.0], 15)
    p = make_panel(_frame(y, "QS"), id_col=None, time_col="t")
    for level in (True, False):  # the seasonal columns move with the level columns
        spec = fit_spec(p, "forecast", ["y"], [], [], np.array([48]), season=4)
        spec.level = level
        n_in = forecast_arrays(p, spec)[0]["x"].shape[1]
        model = TabularRNN(n_in, spec.n_out, hidden=8, skip=seasonal_columns(spec)).double()
        pred = Predictor(model, SimpleNamespace(id=None, time="t"), {"spec": spec.to_dict()})
        got = pred.one_step(p)[0]["one_step"][:, 0]
        expect = np.concatenate([[np.nan], y[:3], y[:-4]])  # y[t - 1] until a season is back
        np.testing.assert_allclose(got, expect, rtol=1e-10, equal_nan=True)


def test_the_untrained_model_starts_from_the_better_of_naive_and_seasonal_naive():
    from tbptt.tabular.prepare import fit_spec, seasonal_columns, seasonal_start

    t = np.arange(96)
    season = 5 * np.sin(2 * np.pi * t / 12)
    for y, seasonal in ((season + 0.01 * t, True), (0.3 * season + 2.0 * t, False)):
        p = make_panel(_frame(y, "MS"), id_col=None, time_col="t")
        spec = fit_spec(p, "forecast", ["y"], [], [], np.array([80]), season=12)
        expect = seasonal_columns(spec) if seasonal else []
        assert seasonal_start(p, spec, np.array([80])) == expect and len(seasonal_columns(spec))
        spec.season = 1
        assert seasonal_start(p, spec, np.array([80])) == []  # no season: the naive start

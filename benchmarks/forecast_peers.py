"""The peers of ``benchmarks/forecast.py``, each run under the protocol of ``forecast_protocol``.

Every peer takes the training parts and the full series of a dataset's ids (univariate: the
peers see the target only; tbptt also sees the covariates, known up to the previous step) and
returns, per id, the one-step-ahead predictions over the holdout (fitted once on the training
part, then run over the true history with its parameters frozen) and one ``H``-step forecast
from the end of the training part.

* ``seasonal_naive``: ``y[t - m]``.
* ``auto_ets`` / ``auto_arima``: statsforecast's ``AutoETS`` (Hyndman et al., 2002, "A state
  space framework for automatic forecasting using exponential smoothing methods", IJF 18(3)) and
  ``AutoARIMA`` (Hyndman & Khandakar, 2008, "Automatic time series forecasting: the forecast
  package for R", JSS 27(3)); the frozen one-step predictions are ``model.forward(y_full,
  fitted=True)``'s in-sample fitted values, which re-filter the full series with the
  coefficients fitted on the training part.
* ``darts_lstm``: Darts' ``RNNModel(model="LSTM")`` with the settings of Darts' RNN example
  notebook (hidden 20, no dropout, batch 16, 300 epochs, Adam 1e-3, training length 20, input
  chunk 14, a ``Scaler`` fitted on the training part; shorter series cap the two lengths), one
  global model over a panel's ids; one-step predictions by ``historical_forecasts(retrain=False)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from forecast_protocol import seasonal_naive_forecast, seasonal_naive_one_step

__all__ = ["PEERS", "PeerResult"]

PeerResult = dict[str, Any]  # {"ids": {id: {"one_step": [...], "forecast": [...]}}, "seconds": s}
Series = dict[str, np.ndarray]


def seasonal_naive(full: Series, n_train: dict[str, int], season: int, horizon: int, **_: Any):
    t0 = time.perf_counter()
    ids = {
        k: {
            "one_step": seasonal_naive_one_step(y, n_train[k], season).tolist(),
            "forecast": seasonal_naive_forecast(y[: n_train[k]], horizon, season).tolist(),
        }
        for k, y in full.items()
    }
    return {"ids": ids, "seconds": time.perf_counter() - t0}


def _statsforecast(make: Callable[[int], Any]):
    def run(full: Series, n_train: dict[str, int], season: int, horizon: int, **_: Any):
        ids, seconds = {}, 0.0
        for k, y in full.items():
            n = n_train[k]
            t0 = time.perf_counter()
            model = make(season if n > 2 * season else 1).fit(y[:n].astype(np.float64))
            seconds += time.perf_counter() - t0
            fitted = model.forward(y=y.astype(np.float64), h=horizon, fitted=True)["fitted"]
            ids[k] = {
                "one_step": np.asarray(fitted[n:], dtype=float).tolist(),
                "forecast": np.asarray(model.predict(h=horizon)["mean"], dtype=float).tolist(),
            }
        return {"ids": ids, "seconds": seconds}

    return run


def _auto_ets(m: int) -> Any:
    from statsforecast.models import AutoETS

    return AutoETS(season_length=m)


def _auto_arima(m: int) -> Any:
    from statsforecast.models import AutoARIMA

    return AutoARIMA(season_length=m)


def darts_lstm(
    full: Series, n_train: dict[str, int], season: int, horizon: int, seed: int, work: Path
):
    import torch
    from darts import TimeSeries
    from darts.dataprocessing.transformers import Scaler
    from darts.models import RNNModel

    torch.set_num_threads(1)
    keys = list(full)
    whole = [TimeSeries.from_values(full[k].astype(np.float32)) for k in keys]
    train = [s[: n_train[k]] for s, k in zip(whole, keys)]
    scaler = Scaler(global_fit=True).fit(train)
    train_s, whole_s = scaler.transform(train), scaler.transform(whole)
    training_length = min(20, min(n_train.values()) - 1)
    model = RNNModel(
        model="LSTM",
        hidden_dim=20,
        dropout=0,
        batch_size=16,
        n_epochs=300,
        optimizer_kwargs={"lr": 1e-3},
        random_state=seed,
        training_length=training_length,
        input_chunk_length=min(14, training_length - 1),
        force_reset=True,
        work_dir=str(work),
        pl_trainer_kwargs={
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "enable_checkpointing": False,
        },
    )
    t0 = time.perf_counter()
    model.fit(train_s, verbose=False)
    seconds = time.perf_counter() - t0
    one = model.historical_forecasts(
        whole_s,
        start=min(n_train.values()),
        start_format="position",
        forecast_horizon=1,
        retrain=False,
        last_points_only=True,
        verbose=False,
    )
    one = scaler.inverse_transform(one)
    fc = scaler.inverse_transform(model.predict(n=horizon, series=train_s, verbose=False))
    ids = {}
    for k, o, f, w in zip(keys, one, fc, whole):
        pred = o.values()[:, 0]  # the one-step predictions of w[start:], aligned at the end
        ids[k] = {
            "one_step": pred[len(pred) - (len(w) - n_train[k]) :].astype(float).tolist(),
            "forecast": f.values()[:, 0].astype(float).tolist(),
        }
    return {"ids": ids, "seconds": seconds}


PEERS: dict[str, tuple[Callable[..., PeerResult], bool]] = {
    # name: (runner, does the seed matter)
    "seasonal_naive": (seasonal_naive, False),
    "auto_ets": (_statsforecast(_auto_ets), False),
    "auto_arima": (_statsforecast(_auto_arima), False),
    "darts_lstm": (darts_lstm, True),
}

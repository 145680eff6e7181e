"""Baselines and the verdict: every forecast is shown next to the naive forecast (the last
value), the seasonal naive one (the value one season back) and the training mean; every
classifier next to the majority class. MASE divides by the in-sample seasonal-naive MAE of each
sequence's training range (Hyndman & Koehler 2006, "Another look at measures of forecast
accuracy"); sMAPE is the symmetric percentage error in percent.

>>> y = np.array([1.0, 2.0, 3.0, 4.0])
>>> round(scores(y[2:], np.array([2.0, 3.0]), np.array([1.0, 1.0]))["mase"], 3)
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tbptt.tabular.panel import Panel

__all__ = ["forecast_baselines", "scores", "verdict"]


def scores(truth: np.ndarray, pred: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, sMAPE (%) and MASE of ``pred`` against ``truth`` (same shape); ``scale``: the
    MASE denominator of each value (its sequence's in-sample seasonal-naive MAE)."""
    ok = np.isfinite(truth) & np.isfinite(pred)
    t, p, s = truth[ok], pred[ok], np.broadcast_to(scale, truth.shape)[ok]
    if len(t) == 0:
        return {}
    err = t - p
    den = np.abs(t) + np.abs(p)
    smape = np.where(den > 0, 2 * np.abs(err) / np.where(den > 0, den, 1), 0.0)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "smape": float(100 * np.mean(smape)),
        "mase": float(np.mean(np.abs(err) / s)),
    }


def mase_scale(y: np.ndarray, m: int) -> float:
    """The in-sample seasonal-naive MAE of ``y`` (the naive one when too short for a season)."""
    m = m if len(y) > m else 1
    d = np.abs(y[m:] - y[:-m]) if len(y) > m else np.array([])
    d = d[np.isfinite(d)]
    mae = float(d.mean()) if len(d) else 0.0
    return mae if mae > 1e-12 else 1.0


def forecast_baselines(
    panel: Panel, spec: Any, n_train: np.ndarray, horizon: int
) -> dict[str, Any]:
    """The baselines' one-step and horizon scores on the held-out steps, per target."""
    out: dict[str, Any] = {}
    m = max(1, int(spec.season))
    for col in spec.targets:
        y_all = panel.frame[col].to_numpy(dtype=np.float64)
        one: dict[str, list[np.ndarray]] = {
            "truth": [],
            "naive": [],
            "seasonal_naive": [],
            "mean": [],
            "scale": [],
        }
        hz: dict[str, list[np.ndarray]] = {
            "truth": [],
            "naive": [],
            "seasonal_naive": [],
            "mean": [],
            "scale": [],
        }
        for i in range(len(panel.ids)):
            y = y_all[panel.rows(i)]
            n = int(n_train[i])
            if n >= len(y) or n < 1:
                continue
            t = np.arange(n, len(y))
            scale = mase_scale(y[:n], m)
            mean = float(np.nanmean(y[:n]))
            one["truth"].append(y[t])
            one["naive"].append(y[t - 1])
            one["seasonal_naive"].append(np.where(t - m >= 0, y[np.maximum(t - m, 0)], y[t - 1]))
            one["mean"].append(np.full(len(t), mean))
            one["scale"].append(np.full(len(t), scale))
            h = min(horizon, len(y) - n)
            hz["truth"].append(y[n : n + h])
            hz["naive"].append(np.full(h, y[n - 1]))
            back = n - m + (np.arange(h) % m) if n >= m else np.full(h, n - 1)
            hz["seasonal_naive"].append(y[back])
            hz["mean"].append(np.full(h, mean))
            hz["scale"].append(np.full(h, scale))
        for name in ("naive", "seasonal_naive", "mean"):
            for kind, d in (("one_step", one), ("horizon", hz)):
                if d["truth"]:
                    out.setdefault(col, {}).setdefault(kind, {})[name] = scores(
                        np.concatenate(d["truth"]),
                        np.concatenate(d[name]),
                        np.concatenate(d["scale"]),
                    )
    first = out.get(spec.targets[0], {}).get("one_step", {})
    for name in ("naive", "seasonal_naive"):  # the flat keys of the loss plot
        if name in first:
            out[f"{name}_rmse"] = first[name]["rmse"]
            out[f"{name}_mae"] = first[name]["mae"]
    return out


_NAMES = {
    "naive": "naive (last value)",
    "seasonal_naive": "seasonal naive (one season back)",
    "mean": "training mean",
}
_TRY = {
    "naive": "a longer budget (--updates), --season if the series has one, or fewer inputs (--features)",
    "seasonal_naive": "--season M with the right season, a longer --k1/--k2 (at least one season), more --updates",
    "mean": "more --updates or a larger --hidden",
}


def verdict(
    model: dict[str, Any],
    baselines: dict[str, Any],
    target: str,
    kind: str = "one_step",
    horizon: int = 0,
    where: str = "validation",
) -> str:
    """One line: the model's MASE and RMSE next to the baselines', and a WARNING naming the
    baselines it loses to (by MASE), with what to try; ``where``: the data scored."""
    base = baselines.get(target, {}).get(kind, {})
    if not model or not base:
        return "no validation data to compare with the baselines"
    parts = [f"model MASE {model['mase']:.3f} RMSE {model['rmse']:.4g}"]
    parts += [f"{_NAMES[n]} MASE {b['mase']:.3f} RMSE {b['rmse']:.4g}" for n, b in base.items()]
    what = f"{horizon}-step horizon" if kind == "horizon" else "one step ahead"
    line = f"{where} ({target}, {what}): " + " | ".join(parts)
    lost = [n for n, b in base.items() if b["mase"] < model["mase"]]
    if lost:
        worst = min(lost, key=lambda n: base[n]["mase"])
        line += (
            f"\nWARNING: the model loses to {' and '.join(n.replace('_', ' ') for n in lost)} "
            f"({target}, {what}); try {_TRY[worst]}."
        )
    return line

"""What a ``--data`` run reports: the model's validation scores next to the baselines (one-step
and over the horizon), the verdict lines, ``predictions.csv`` and the plots (forecast against
truth with the holdout shaded, a few ids; a confusion matrix for classification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tbptt.tabular.baselines import forecast_baselines, mase_scale, scores, verdict
from tbptt.tabular.guard import OneStepGuard
from tbptt.tabular.model import classify_scores
from tbptt.tabular.panel import Panel
from tbptt.tabular.predict import Predictor

__all__ = ["evaluate_run", "write_outputs"]


def evaluate_run(pred: Predictor, data: Any) -> dict[str, Any]:
    """The validation scores of a trained run on ``data`` (its own file: the same split), with
    the baselines and the verdict lines."""
    panel = pred.panel(data)
    task = pred.spec.task
    if task == "forecast":
        return _evaluate_forecast(pred, panel)
    if task == "classify":
        return _evaluate_classify(pred, panel)
    return _evaluate_regress(pred, panel)


def _evaluate_forecast(pred: Predictor, panel: Panel) -> dict[str, Any]:
    spec = pred.spec
    n_train = np.asarray(pred.extra["n_train"])
    if len(n_train) != len(panel.ids) or (panel.lengths < n_train).any():
        raise ValueError(
            "--data holds other sequences than the run was trained on; its validation scores "
            "need the training file (give --out to only write predictions)."
        )
    horizon = int(pred.cfg.horizon or 1)
    base = forecast_baselines(panel, spec, n_train, horizon)
    ones = pred.one_step(panel)
    alone = _model_alone(pred, panel) if pred.guard.choice else ones
    fc = pred.forecast(panel, horizon, upto=n_train)
    m = max(1, int(spec.season))
    model: dict[str, Any] = {}
    lines = []
    for j, col in enumerate(spec.targets):
        y_all = panel.frame[col].to_numpy(dtype=np.float64)
        one: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        own: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # the model alone
        hz: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for i in range(len(panel.ids)):
            y, n = y_all[panel.rows(i)], int(n_train[i])
            if n >= len(y) or n < 1:
                continue
            sc = mase_scale(y[:n], m)
            h = min(horizon, len(y) - n)
            one.append((y[n:], ones[i]["one_step"][n:, j], np.full(len(y) - n, sc)))
            own.append((y[n:], alone[i]["one_step"][n:, j], np.full(len(y) - n, sc)))
            hz.append((y[n : n + h], fc[i][:h, j], np.full(h, sc)))
        model[col] = {
            "one_step": scores(*(np.concatenate(a) for a in zip(*one))),
            "horizon": scores(*(np.concatenate(a) for a in zip(*hz))),
            "one_step_model_alone": scores(*(np.concatenate(a) for a in zip(*own))),
        }
        lines.append(verdict(model[col]["one_step"], base, col, "one_step"))
        if pred.guard.weight(col) < 1.0:  # the one-step guard's choice (guard.py), said
            a = model[col]["one_step_model_alone"]
            lines.append(
                f"one step ahead ({col}): the forecasts used are {pred.guard.describe(col)}, "
                f"chosen on this validation part (the model alone: MASE {a['mase']:.3f} RMSE "
                f"{a['rmse']:.4g}), so the score above is optimistic"
            )
        lines.append(verdict(model[col]["horizon"], base, col, "horizon", horizon))
    used = [m.replace("_", " ") for m in pred.methods if m != "model"]
    if used:  # the horizon guard's fallback (horizon.py), said where it is used
        lines.append(
            f"horizon: the model's recursive forecast lost its backtest on {len(used)} of "
            f"{len(pred.methods)} sequences, which use instead: "
            + ", ".join(f"{m} ({used.count(m)})" for m in sorted(set(used)))
        )
    return {
        "model": model,
        "baselines": base,
        "verdict": _warnings_last(lines),
        "panel": panel,
        "one_step": ones,
        "forecast": fc,
    }


def _model_alone(pred: Predictor, panel: Panel) -> list[dict[str, Any]]:
    """The one-step predictions of the network alone, without the run's guard."""
    guard, pred.guard = pred.guard, OneStepGuard()
    try:
        return pred.one_step(panel)
    finally:
        pred.guard = guard


def _warnings_last(lines: list[str]) -> str:
    """The score lines, then every WARNING line: a loss is always what the report ends with."""
    parts = [p for line in lines for p in line.split("\n")]
    return "\n".join(
        [p for p in parts if not p.startswith("WARNING")]
        + [p for p in parts if p.startswith("WARNING")]
    )


def _evaluate_classify(pred: Predictor, panel: Panel) -> dict[str, Any]:
    """Validation scores: the held-out sequences (``val_ids``), or for a cross-fitted run
    (``folds``, ``crossfit.py``) every sequence, scored out-of-fold; majority from the rest."""
    spec, folds = pred.spec, pred.extra.get("folds")
    labels = panel.frame[spec.targets[0]].to_numpy()[panel.offsets]
    index = {c: j for j, c in enumerate(spec.classes)}
    if folds is not None and len(folds) != len(labels):
        raise ValueError(
            f"--data holds {len(labels)} sequences, the run was trained on {len(folds)}; its "
            "out-of-fold validation scores need the training file (give --out to only write "
            "predictions)."
        )
    val_ids = list(range(len(labels))) if folds is not None else list(pred.extra["val_ids"])
    of = None if folds is None else np.asarray(folds)
    guess = pred._classify_frame(panel, of)["yhat"].to_numpy()
    t = np.array([index.get(v, -1) for v in labels[val_ids]])
    g = np.array([index[v] for v in guess[val_ids]])
    sc: dict[str, Any] = dict(classify_scores(t, g, len(spec.classes)))
    train_ids = (
        np.arange(len(labels))
        if folds is not None
        else np.setdiff1d(np.arange(len(labels)), val_ids)
    )
    counts = np.bincount([index[v] for v in labels[train_ids]], minlength=len(spec.classes))
    major = int(np.argmax(counts))
    majority = float((t == major).mean())
    base: dict[str, Any] = {
        "majority_class": str(spec.classes[major]),
        "majority_accuracy": majority,
    }
    where = f"validation ({len(t)} sequences" + (
        f", out-of-fold: each scored by the one of {int(of.max()) + 1} members not trained on it)"
        if of is not None
        else ")"
    )
    line = (
        f"{where}: accuracy {sc['accuracy']:.3f}, macro-F1 "
        f"{sc['macro_f1']:.3f} | majority class ({base['majority_class']}): accuracy "
        f"{base['majority_accuracy']:.3f}"
    )
    if pred.pool is not None:  # the 1-NN DTW pool (neighbours.py), said
        base["nearest_neighbour_dtw_accuracy"] = pred.pool.accuracy
        line += f" | 1-NN DTW: accuracy {pred.pool.accuracy:.3f}"
        if pred.pool.weight < 1.0:
            alone = pred.class_probabilities(panel, of, pooled=False).argmax(1)[val_ids]
            sc["network_alone"] = classify_scores(t, alone, len(spec.classes))
            line += (
                f"\nclass probabilities: {pred.pool.describe()}, the weight chosen on this "
                f"validation by cross-entropy, so the score above is optimistic (the network "
                f"alone: accuracy {sc['network_alone']['accuracy']:.3f}, macro-F1 "
                f"{sc['network_alone']['macro_f1']:.3f})"
            )
        if sc["accuracy"] < pred.pool.accuracy:
            line += (
                "\nWARNING: the model loses to 1-NN DTW on validation; try more --updates or a "
                "larger --hidden (docs/data_files.md, classification)."
            )
    if sc["accuracy"] <= majority:
        line += (
            "\nWARNING: the model does no better than always answering the majority class; "
            "try more --updates, a larger --hidden, or --k1 covering whole sequences."
        )
    line = _warnings_last([line])
    return {"model": sc, "baselines": base, "verdict": line, "panel": panel, "confusion": (t, g)}


def _evaluate_regress(pred: Predictor, panel: Panel) -> dict[str, Any]:
    spec, val_ids = pred.spec, list(pred.extra["val_ids"])
    frame = pred.predict_frame(panel, 0)
    names = [c for c in frame.columns if c.startswith("yhat")]
    model: dict[str, Any] = {}
    base: dict[str, Any] = {}
    lines = []
    for j, col in enumerate(spec.targets):
        y_all = panel.frame[col].to_numpy(dtype=np.float64)
        truth = [
            y_all[panel.rows(i)][-1:] if spec.per_sequence else y_all[panel.rows(i)]
            for i in val_ids
        ]
        guess = [frame.loc[frame["id"] == panel.ids[i], names[j]].to_numpy() for i in val_ids]
        tv, gv = np.concatenate(truth), np.concatenate(guess)
        model[col] = scores(tv, gv, np.ones_like(tv))
        base[col] = scores(tv, np.full_like(tv, spec.mean[col]), np.ones_like(tv))
        line = (
            f"{col} (validation): model RMSE {model[col]['rmse']:.4g} MAE "
            f"{model[col]['mae']:.4g} | training mean RMSE {base[col]['rmse']:.4g} MAE "
            f"{base[col]['mae']:.4g}"
        )
        if model[col]["rmse"] >= base[col]["rmse"]:
            line += (
                f"\nWARNING: the model loses to the training mean ({col}); try more --updates, "
                "a larger --hidden or other --features."
            )
        lines.append(line)
    return {"model": model, "baselines": base, "verdict": _warnings_last(lines), "panel": panel}


def write_outputs(pred: Predictor, result: dict[str, Any], run_dir: Path) -> list[str]:
    """predictions.csv and the plot(s) in ``run_dir``; the names written."""
    panel = result["panel"]
    horizon = int(pred.cfg.horizon or 0) if pred.spec.task == "forecast" else 0
    frame = pred.predict_frame(panel, horizon)
    frame.to_csv(run_dir / "predictions.csv", index=False)
    written = ["predictions.csv"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    if pred.spec.task == "forecast":
        _plot_forecast(plt, pred, result, run_dir / "predictions.png")
        written.append("predictions.png")
    elif pred.spec.task == "classify":
        t, g = result["confusion"]
        n = len(pred.spec.classes)
        cm = np.zeros((n, n), dtype=int)
        for a, b in zip(t, g):
            if a >= 0:
                cm[a, b] += 1
        fig, ax = plt.subplots(figsize=(4 + 0.3 * n, 4 + 0.3 * n))
        ax.imshow(cm, cmap="Blues")
        for (a, b), v in np.ndenumerate(cm):
            ax.text(b, a, str(v), ha="center", va="center")
        labels = [str(c) for c in pred.spec.classes]
        ax.set_xticks(range(n), labels, rotation=45), ax.set_yticks(range(n), labels)
        (
            ax.set_xlabel("predicted"),
            ax.set_ylabel("true"),
            ax.set_title("validation confusion matrix"),
        )
        fig.tight_layout()
        fig.savefig(run_dir / "confusion.png", dpi=100)
        plt.close(fig)
        written.append("confusion.png")
    return written


def _plot_forecast(plt: Any, pred: Predictor, result: dict[str, Any], path: Path) -> None:
    panel, ones, fc = result["panel"], result["one_step"], result["forecast"]
    n_train = np.asarray(pred.extra["n_train"])
    col = pred.spec.targets[0]
    show = list(np.argsort(-panel.lengths)[:3])
    fig, axes = plt.subplots(len(show), 1, figsize=(10, 2.8 * len(show)), squeeze=False)
    for ax, i in zip(axes[:, 0], show):
        y = panel.frame[col].to_numpy(dtype=np.float64)[panel.rows(i)]
        x = np.arange(len(y))
        n = int(n_train[i])
        ax.axvspan(n - 0.5, len(y) - 0.5, color="0.9", label="holdout")
        ax.plot(x, y, color="k", lw=1, label="truth")
        ax.plot(x, ones[i]["one_step"][:, 0], color="tab:blue", lw=1, label="one step ahead")
        h = len(fc[i])
        ax.plot(
            np.arange(n, n + h), fc[i][:, 0], color="tab:red", lw=1.2, label=f"{h}-step forecast"
        )
        ax.set_title(f"{col}" + (f", id {panel.ids[i]}" if panel.id_col else ""), fontsize=9)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

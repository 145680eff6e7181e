"""Scores of a trained ``--data`` run on a file other than its training file (``tbptt predict
RUN --data OTHER``): the run report's metrics on every row of OTHER that has a target, next to
the same baselines, with the verdict line (a loss said in words).

- forecast: the one-step predictions (each row from the rows before it in its sequence, the
  weights frozen) of every row but the first of each sequence, against the naive forecast (the
  last value), the seasonal naive one (one season back; the last value within the first season)
  and the run's training mean; MASE, RMSE, MAE and sMAPE (:func:`tbptt.tabular.baselines.scores`).
  A new file has no training range, so each sequence's MASE scale is the seasonal-naive MAE of
  its own rows in the file (Hyndman & Koehler 2006, "Another look at measures of forecast
  accuracy", scale the error by an in-sample naive method). A row counts where the truth, the
  model and every baseline are finite, so all are scored on the same rows.
- classify: accuracy and macro-F1 over the sequences with a label (an unseen label counts as
  wrong), next to the run's majority class (from its ``summary.json``).
- regress: RMSE and MAE next to the training mean.

The file may come block by block (a streamed Parquet file, :func:`tbptt.tabular.streamed.
panel_blocks`): :meth:`FileScores.add` takes each block of whole sequences, and every metric is
a mean over rows, merged weighted by the rows each block scored.

>>> s = _Sums()
>>> s.add({"rmse": 1.0, "mae": 1.0, "smape": 10.0, "mase": 1.0}, 1)
>>> s.add({"rmse": 3.0, "mae": 3.0, "smape": 30.0, "mase": 3.0}, 1)
>>> s.n, s.scores()["mae"], round(s.scores()["rmse"] ** 2, 6)
(2, 2.0, 5.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tbptt.tabular.baselines import mase_scale, scores, verdict
from tbptt.tabular.model import classify_scores
from tbptt.tabular.panel import Panel
from tbptt.tabular.report import _warnings_last

__all__ = ["FileScores"]

_KEYS = ("rmse", "mae", "smape", "mase")


class _Sums:
    """Running sums of one set of :func:`scores` (``rmse`` merged as a root mean square)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(_KEYS, 0.0)

    def add(self, s: dict[str, float], n: int) -> None:
        if n == 0:
            return
        self.n += n
        for k in _KEYS:
            self.sums[k] += n * (s[k] ** 2 if k == "rmse" else s[k])

    def scores(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        m = {k: v / self.n for k, v in self.sums.items()}
        return {**m, "rmse": float(np.sqrt(m["rmse"]))}


class FileScores:
    """The scores of ``pred`` (a :class:`tbptt.tabular.predict.Predictor`) on a file named
    ``name``, added block by block (:meth:`add`); ``run_dir``: the run folder (classify: its
    majority class)."""

    def __init__(self, pred: Any, name: str, run_dir: Path | None = None) -> None:
        self.spec, self.name = pred.spec, name
        self.model: dict[str, _Sums] = {c: _Sums() for c in self.spec.targets}
        self.base: dict[str, dict[str, _Sums]] = {c: {} for c in self.spec.targets}
        self.labels: list[np.ndarray] = []  # classify: (true, guessed) class ids per block
        self.majority = _majority(run_dir) if self.spec.task == "classify" else None
        self.missing: str | None = None  # a target column the file lacks

    def add(self, panel: Panel, frame: pd.DataFrame) -> None:
        """Score ``frame`` (:meth:`Predictor.predict_frame` of ``panel``: whole sequences)."""
        absent = [c for c in self.spec.targets if c not in panel.frame.columns]
        if absent:
            self.missing = absent[0]
            return
        if self.spec.task == "forecast":
            self._add_forecast(panel, frame[frame["kind"] == "one_step"])
        elif self.spec.task == "classify":
            self._add_classify(panel, frame)
        else:
            self._add_regress(panel, frame)

    def _add(self, col: str, truth: np.ndarray, guess: np.ndarray, base: dict[str, Any]) -> None:
        """One target's rows: the model's and each baseline's scores on the rows where all are
        finite; ``base``: name -> (predictions, MASE scale per row) of the same rows."""
        ok = np.isfinite(truth) & np.isfinite(guess)
        for b, _ in base.values():
            ok &= np.isfinite(b)
        scale = next(iter(base.values()))[1]
        self.model[col].add(scores(truth[ok], guess[ok], scale[ok]), int(ok.sum()))
        for name, (b, sc) in base.items():
            self.base[col].setdefault(name, _Sums()).add(
                scores(truth[ok], b[ok], sc[ok]), int(ok.sum())
            )

    def _add_forecast(self, panel: Panel, ones: pd.DataFrame) -> None:
        spec = self.spec
        m = max(1, int(spec.season))
        names = ["yhat"] if len(spec.targets) == 1 else [f"yhat_{c}" for c in spec.targets]
        for j, col in enumerate(spec.targets):
            y_all = panel.frame[col].to_numpy(dtype=np.float64)  # (rows,)
            p_all = ones[names[j]].to_numpy(dtype=np.float64)  # (rows,) the same order
            parts: list[tuple[np.ndarray, ...]] = []
            for i in range(len(panel.ids)):
                y, p = y_all[panel.rows(i)], p_all[panel.rows(i)]
                t = np.arange(1, len(y))  # the rows with something before them
                scale = np.full(len(t), mase_scale(y, m))
                snaive = np.where(t >= m, y[np.maximum(t - m, 0)], y[t - 1])
                parts.append((y[t], p[t], y[t - 1], snaive, scale))
            if not parts:
                continue
            truth, guess, naive, snaive, scale = (np.concatenate(a) for a in zip(*parts))
            mean = np.full(len(truth), float(spec.mean[col]))
            base = {"naive": naive, "seasonal_naive": snaive, "mean": mean}
            self._add(col, truth, guess, {k: (v, scale) for k, v in base.items()})

    def _add_regress(self, panel: Panel, frame: pd.DataFrame) -> None:
        spec = self.spec
        names = [c for c in frame.columns if c.startswith("yhat")]
        for j, col in enumerate(spec.targets):
            y_all = panel.frame[col].to_numpy(dtype=np.float64)
            if spec.per_sequence:  # one row per id in ``frame``: the id's last target
                truth = np.array([y_all[panel.rows(i)][-1] for i in range(len(panel.ids))])
            else:  # one row per step, in the panel's order
                truth = y_all
            guess = frame[names[j]].to_numpy(dtype=np.float64)
            ones = np.ones_like(truth)
            self._add(col, truth, guess, {"mean": (np.full_like(truth, spec.mean[col]), ones)})

    def _add_classify(self, panel: Panel, frame: pd.DataFrame) -> None:
        labels = panel.frame[self.spec.targets[0]].to_numpy()[panel.offsets]  # (N,)
        index = {c: j for j, c in enumerate(self.spec.classes)}
        has = ~pd.isna(labels)
        t = np.array([index.get(v, -1) for v in labels[has]], dtype=np.int64)
        g = np.array([index[v] for v in frame["yhat"].to_numpy()[has]], dtype=np.int64)
        self.labels.append(np.stack([t, g]))  # (2, n)

    # -- the result ---------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        """``{"data", "task", "scored", "model", "baselines", "verdict"}``; ``scored`` 0 (and no
        model or baselines) where the file has no target to score."""
        out: dict[str, Any] = {"data": self.name, "task": self.spec.task}
        if self.spec.task == "classify":
            return {**out, **self._classify_result()}
        model = {c: s.scores() for c, s in self.model.items() if s.n}
        base = {
            c: {k: s.scores() for k, s in b.items()} for c, b in self.base.items() if model.get(c)
        }
        scored = sum(s.n for s in self.model.values())
        if not scored:
            return {**out, "scored": 0, "verdict": self._nothing()}
        if self.spec.task == "forecast":
            lines = [
                verdict(model[c], {c: {"one_step": base[c]}}, c, "one_step", where=self.name)
                for c in model
            ]
        else:
            lines = [self._regress_line(c, model[c], base[c]["mean"]) for c in model]
        return {
            **out,
            "scored": scored,
            "model": model,
            "baselines": base,
            "verdict": _warnings_last(lines),
        }

    def _regress_line(self, col: str, model: dict[str, float], mean: dict[str, float]) -> str:
        line = (
            f"{self.name} ({col}): model RMSE {model['rmse']:.4g} MAE {model['mae']:.4g} | "
            f"training mean RMSE {mean['rmse']:.4g} MAE {mean['mae']:.4g}"
        )
        if model["rmse"] >= mean["rmse"]:
            line += f"\nWARNING: the model loses to the training mean ({col}) on {self.name}."
        return line

    def _classify_result(self) -> dict[str, Any]:
        tg = np.concatenate(self.labels, 1) if self.labels else np.zeros((2, 0), np.int64)
        if tg.shape[1] == 0:
            return {"scored": 0, "verdict": self._nothing()}
        t, g = tg
        sc = classify_scores(t, g, len(self.spec.classes))
        line = (
            f"{self.name} ({len(t)} sequences): accuracy {sc['accuracy']:.3f}, macro-F1 "
            f"{sc['macro_f1']:.3f}"
        )
        base: dict[str, Any] = {}
        names = [str(c) for c in self.spec.classes]
        if self.majority in names:
            major = names.index(self.majority)
            base = {
                "majority_class": self.majority,
                "majority_accuracy": float((t == major).mean()),
            }
            line += f" | majority class ({self.majority}): accuracy {base['majority_accuracy']:.3f}"
            if sc["accuracy"] <= base["majority_accuracy"]:
                line += (
                    f"\nWARNING: on {self.name} the model does no better than always answering "
                    "the majority class."
                )
        return {"scored": len(t), "model": sc, "baselines": base, "verdict": line}

    def _nothing(self) -> str:
        if self.missing is not None:
            return (
                f"no scores: {self.name} has no column {self.missing!r} (the run's target); "
                "wrote the predictions only."
            )
        return (
            f"no scores: {self.name} has no row with a target to score; wrote the predictions only."
        )


def _majority(run_dir: Path | None) -> str | None:
    """The run's majority class (its ``summary.json``; None when that is missing)."""
    import json

    path = None if run_dir is None else Path(run_dir) / "summary.json"
    if path is None or not path.is_file():
        return None
    base = json.loads(path.read_text(encoding="utf-8")).get("scores", {}).get("baselines", {})
    major = base.get("majority_class")
    return None if major is None else str(major)

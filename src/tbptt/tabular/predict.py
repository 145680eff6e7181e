"""A trained ``--data`` model with its preparation: one-step predictions, horizon forecasts,
class probabilities. Used by ``tbptt predict``, the end-of-training report and ``tbptt.load``.

Forecasts past the end are recursive: each step's prediction of the targets and of the past-only
covariates (forecast jointly by the same head) becomes the next step's input; known covariates
and categorical ones keep their last value past the end of the file. Runs trained with the
direct multi-step head (``extra["direct"]`` = its steps) also forecast the whole horizon at once
from the state at the end, with no covariate forecast. Each step stays within the history's
widened range, and a sequence whose own recent past shows the recursion losing to the direct
head, to its blend with the seasonal naive forecast, or to the naive or seasonal naive forecast,
uses that one instead (``horizon.py``; the choice per sequence is :attr:`Predictor.methods`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tbptt.tabular.guard import OneStepGuard
from tbptt.tabular.horizon import (
    backtest_origins,
    candidates,
    choose,
    clip_range,
    direct_forecast,
)
from tbptt.tabular.model import mean_probabilities, member_mean
from tbptt.tabular.neighbours import DTWPool
from tbptt.tabular.panel import Panel, make_panel, next_times
from tbptt.tabular.prepare import (
    Spec,
    feature_arrays,
    forecast_arrays,
    forecast_inputs,
    sequence_inputs,
)

__all__ = ["MAX_HORIZON_RATIO", "Predictor"]

MAX_HORIZON_RATIO = 10
"""The longest forecast: this many times the longest sequence given (at least 1,000 steps);
past it a recursive forecast only feeds the model its own output, and takes minutes."""


def _check_horizon(horizon: int, panel: Panel) -> None:
    """Refuse a horizon past ``MAX_HORIZON_RATIO`` times the longest sequence, in one line."""
    most = max(1000, MAX_HORIZON_RATIO * int(panel.lengths.max()))
    if horizon > most:
        raise ValueError(
            f"horizon {horizon} is more than {MAX_HORIZON_RATIO} times the longest sequence "
            f"given ({int(panel.lengths.max())} steps): that far a recursive forecast only "
            f"feeds the model its own output. Give a horizon of at most {most} steps."
        )


class Predictor:
    """``model`` (eval mode) + its :class:`Spec` + the run's id/time columns; ``guard``: the
    run's one-step guard (``guard.py``; default: the model alone); ``horizon_from``: the
    predictor whose :meth:`forecast` this one's is (a refit run's chosen model, ``refit.py``;
    default: this one)."""

    def __init__(
        self,
        model: nn.Module,
        cfg: Any,
        extra: dict[str, Any],
        guard: OneStepGuard | None = None,
        horizon_from: Predictor | None = None,
    ) -> None:
        self.horizon_from = horizon_from
        self.model = model.eval()
        self.cfg = cfg
        self.extra = extra
        self.spec = Spec.from_dict(extra["spec"])
        self.guard = guard or OneStepGuard()
        self.methods: list[str] = []  # per sequence: the last forecast's method (horizon.py)
        self.direct = int(extra.get("direct", 0))  # steps of the direct head (0: none)
        self.pool: DTWPool | None = None  # classify: the 1-NN DTW pool (neighbours.py)

    def panel(self, data: str | Path | pd.DataFrame) -> Panel:
        """A file path or DataFrame as the run's panel (its --id/--time columns)."""
        from tbptt.tabular.io import read_table

        if not isinstance(data, (str, os.PathLike, pd.DataFrame)):
            raise TypeError(
                f"data must be a file path or a pandas DataFrame in long format, got "
                f"{type(data).__name__}; wrap arrays in a DataFrame with the run's columns."
            )
        df = data.copy() if isinstance(data, pd.DataFrame) else read_table(Path(data))
        if df.empty:
            raise ValueError("data has no rows; give the sequences to predict.")
        df.columns = [str(c) for c in df.columns]
        need = [
            c
            for c in (*self.spec.targets, *self.spec.past, *self.spec.known, *self.spec.cats)
            if c not in df.columns
        ]
        if self.spec.task != "forecast":
            need = [c for c in need if c not in self.spec.targets]
        if need:
            raise ValueError(f"--data: no column {need[0]!r}, which the run was trained with.")
        return make_panel(df, id_col=self.cfg.id, time_col=self.cfg.time)

    def _run(self, x: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        p = next(self.model.parameters())
        with torch.no_grad():
            y, state = self.model(torch.from_numpy(x).to(p.device, p.dtype).unsqueeze(0), state)
            if self.spec.task == "forecast":  # an ensemble: the members' mean forecast
                y = member_mean(y, int(self.extra.get("members", 1)))
        return y[0].double().cpu().numpy(), state  # (T, out)

    def _levels(self, z: np.ndarray) -> np.ndarray:
        mu = np.array([self.spec.mean[c] for c in self.spec.targets])
        sd = np.array([self.spec.sd[c] for c in self.spec.targets])
        return z * sd + mu

    # -- forecasting -----------------------------------------------------------------------

    def one_step(self, panel: Panel, upto: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per sequence: ``one_step`` (T, k) (row t predicts the target at t from the rows
        before it, NaN at 0; what :attr:`guard` chose for each target) and ``forecast`` (h, k)
        is filled by :meth:`forecast`; ``upto``: use only the first ``upto[i]`` rows of
        sequence i (the state ends there)."""
        spec = self.spec
        arrays = forecast_arrays(panel, spec)
        levels = panel.frame[list(spec.targets)].to_numpy(dtype=np.float64)  # (rows, k)
        sdc = np.array([spec.sd_change[c] for c in spec.targets])
        k = len(spec.targets)
        out = []
        for i, a in enumerate(arrays):
            n = len(a["x"]) if upto is None else int(upto[i])
            y, state = self._run(a["x"][:n]) if n else (np.zeros((0, spec.n_out)), None)
            zhat = a["z"][:n] + y[:, :k] * sdc  # (n, k): predictions of z[t + 1]
            pred = np.full((len(a["x"]), k), np.nan)
            pred[1 : n + 1] = self._levels(zhat)[: len(a["x"]) - 1] if n else pred[1:1]
            y_i = levels[panel.rows(i)]  # (T, k)
            for j, col in enumerate(spec.targets):
                pred[:, j] = self.guard.apply(pred[:, j], y_i[:, j], col, spec.season)
            out.append(
                {
                    "one_step": pred,
                    "state": state,
                    "last": y[-1] if n else None,
                    "n": n,
                    "arrays": a,
                }
            )
        return out

    def forecast(
        self, panel: Panel, horizon: int, upto: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """Per sequence: (horizon, k) forecasts past row ``upto[i] - 1`` (default: the end), in
        the data's units: the model's recursive one, or the blend, naive or seasonal naive one
        where a backtest over the sequence's rows before that point favours it
        (:func:`tbptt.tabular.horizon.choose`)."""
        if self.horizon_from is not None:
            res = self.horizon_from.forecast(panel, horizon, upto)
            self.methods = self.horizon_from.methods
            return res
        spec = self.spec
        n = panel.lengths.copy() if upto is None else np.asarray(upto, dtype=np.int64)
        levels = panel.frame[list(spec.targets)].to_numpy(dtype=np.float64)  # (rows, k)
        hist = [levels[panel.rows(i)] for i in range(len(panel.ids))]  # each (T_i, k)
        res, direct = self._model_forecasts(panel, horizon, n)
        self.methods = [choose(e) for e in self._backtest(panel, horizon, n, hist)]
        for i, name in enumerate(self.methods):
            if n[i] > 0:
                d = None if direct is None else direct[i]
                f = candidates(res[i], hist[i][: n[i]], spec.season, d)[name]
                res[i] = f if np.isfinite(f).all() else res[i]  # a gap at the end: the model
        return res

    def _backtest(
        self, panel: Panel, horizon: int, n: np.ndarray, hist: list[np.ndarray]
    ) -> list[dict[str, list[float]]]:
        """Per sequence and method: the mean absolute error (per target's scale) of each
        backtest forecast from :func:`backtest_origins` within its first ``n[i]`` rows."""
        spec = self.spec
        sd = np.array([spec.sd[c] for c in spec.targets])
        origins = [backtest_origins(int(m), horizon, int(spec.season)) for m in n]
        errors: list[dict[str, list[float]]] = [{} for _ in hist]
        for j in range(max((len(o) for o in origins), default=0)):
            at = np.array([o[j] if j < len(o) else 0 for o in origins], dtype=np.int64)
            model, direct = self._model_forecasts(panel, horizon, at)
            for i, o in enumerate(at.tolist()):
                if o == 0:
                    continue
                truth = hist[i][o : o + horizon]  # (horizon, k)
                d = None if direct is None else direct[i]
                for name, f in candidates(model[i], hist[i][:o], spec.season, d).items():
                    gap = np.abs(f - truth) / sd  # (h, k); NaN where the truth or f is missing
                    if np.isfinite(gap).any():
                        errors[i].setdefault(name, []).append(float(np.nanmean(gap)))
        return errors

    def _model_forecasts(
        self, panel: Panel, horizon: int, upto: np.ndarray | None
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """The recursive and the direct forecasts from one pass over the history."""
        ones = self.one_step(panel, upto)
        return self._recursive(panel, horizon, upto, ones), self._direct(panel, horizon, upto, ones)

    def _direct(
        self, panel: Panel, horizon: int, upto: np.ndarray | None, ones: list[Any] | None = None
    ) -> list[np.ndarray] | None:
        """Per sequence: (horizon, k) forecasts of the direct head from the state at row
        ``upto[i] - 1`` (NaN where ``upto[i]`` is 0), each within :func:`clip_range` of the
        history; None when the run has no direct head or it is shorter than ``horizon``."""
        spec = self.spec
        if self.direct < horizon:
            return None
        sdc = np.array([spec.sd_change[c] for c in spec.targets])
        res = []
        for r in ones or self.one_step(panel, upto):
            n, z = r["n"], r["arrays"]["z"]
            if n == 0:
                res.append(np.full((horizon, len(sdc)), np.nan))
                continue
            f = direct_forecast(r["last"], z[n - 1], horizon, spec.n_out, sdc)  # (horizon, k)
            res.append(self._levels(np.clip(f, *clip_range(z[:n]))))
        return res

    def _recursive(
        self, panel: Panel, horizon: int, upto: np.ndarray | None, ones: list[Any] | None = None
    ) -> list[np.ndarray]:
        """Per sequence: (horizon, k) recursive forecasts of the model past row ``upto[i] - 1``
        (NaN where ``upto[i]`` is 0), each step within :func:`clip_range` of the history."""
        spec = self.spec
        k, pnum = len(spec.targets), len(spec.past)
        sdc = np.array([spec.sd_change[c] for c in spec.targets])
        known_all = feature_arrays(panel.frame, spec, known_only=True)
        past_all = feature_arrays(panel.frame, spec, known_only=False)
        res = []
        for i, r in enumerate(ones or self.one_step(panel, upto)):
            n, a = r["n"], r["arrays"]
            if n == 0:
                res.append(np.full((horizon, k), np.nan))
                continue
            z = a["z"][:n].copy()
            lo, hi = clip_range(z)  # (k,) each
            miss = np.zeros_like(z)
            past = a["past"][:n].copy()
            full_past = past_all[panel.rows(i)][:n]
            known = known_all[panel.rows(i)][:n]
            state, y = r["state"], r["last"]
            preds = []
            for _ in range(horizon):
                znext = np.clip(z[-1] + y[:k] * sdc, lo, hi)
                preds.append(znext)
                pnext = past[-1] + y[k : k + pnum]
                z = np.concatenate([z, znext[None]], 0)
                miss = np.concatenate([miss, np.zeros((1, k))], 0)
                past = np.concatenate([past, pnext[None]], 0)
                prow = full_past[-1:].copy()
                prow[0, :pnum] = pnext
                full_past = np.concatenate([full_past, prow], 0)
                krow = known[-1:] if len(known) else np.zeros((1, 0))
                x = forecast_inputs(
                    z[-(spec.season + 1) :],
                    miss[-(spec.season + 1) :],
                    full_past[-(spec.season + 1) :],
                    np.repeat(krow, min(len(z), spec.season + 1), 0),
                    spec,
                )[-1:]
                yy, state = self._run(x, state)
                y = yy[-1]
            res.append(self._levels(np.array(preds)))
        return res

    def predict_frame(self, panel: Panel, horizon: int) -> pd.DataFrame:
        """The ``predict`` table: ``id, t, kind, yhat`` (one ``yhat`` column per target when
        there are several: ``yhat_COL``)."""
        spec = self.spec
        if spec.task == "classify":
            return self._classify_frame(panel)
        if spec.task == "regress":
            return self._regress_frame(panel)
        names = ["yhat"] if len(spec.targets) == 1 else [f"yhat_{c}" for c in spec.targets]
        _check_horizon(horizon, panel)
        ones = self.one_step(panel)
        fc = self.forecast(panel, horizon) if horizon else [np.zeros((0, len(names)))] * len(ones)
        parts = []
        for i, (o, f) in enumerate(zip(ones, fc)):
            times = list(panel.times(i))
            d = pd.DataFrame(o["one_step"], columns=names)
            d.insert(0, "kind", "one_step")
            d.insert(0, "t", times)
            d.insert(0, "id", panel.ids[i])
            future = (
                next_times(times[-1], panel.step, len(f))
                if panel.time_col
                else list(range(len(times), len(times) + len(f)))
            )
            g = pd.DataFrame(f, columns=names)
            g.insert(0, "kind", "forecast")
            g.insert(0, "t", future)
            g.insert(0, "id", panel.ids[i])
            parts += [d, g] if len(g) else [d]  # no empty frames (pandas 2 warns on them)
        return pd.concat(parts, ignore_index=True)

    # -- classification / regression --------------------------------------------------------

    def sequences(self, panel: Panel) -> list[np.ndarray]:
        """Each sequence's covariate rows ``(T_i, F)`` (:func:`feature_arrays`, scaled)."""
        feats = feature_arrays(panel.frame, self.spec)
        return [feats[panel.rows(i)] for i in range(len(panel.ids))]

    def _outputs(self, panel: Panel, seqs: list[np.ndarray] | None = None) -> list[np.ndarray]:
        patch = int(self.extra.get("patch", 1))  # values per recurrent step (classify)
        norm = self.extra.get("norm")  # per-sequence scaling (runs before it: none)
        return [
            self._run(sequence_inputs(x, self.spec, patch, norm))[0]
            for x in (self.sequences(panel) if seqs is None else seqs)
        ]

    def class_probabilities(
        self, panel: Panel, folds: np.ndarray | None = None, pooled: bool = True
    ) -> np.ndarray:
        """(N, C) each sequence's class probabilities: the members' average, or with ``folds``
        (a cross-fitted run's own sequences, ``crossfit.py``) its out-of-fold member's; then,
        unless ``pooled`` is False, pooled with the run's 1-NN DTW (:attr:`pool`; with
        ``folds``, each sequence's nearest neighbour among the others)."""
        seqs = self.sequences(panel)
        logits = torch.from_numpy(np.stack([o[-1] for o in self._outputs(panel, seqs)]))  # (N, M*C)
        members = int(self.extra.get("members", 1))  # an ensemble: its averaged probabilities
        if folds is None:
            prob = mean_probabilities(logits, members).numpy()  # (N, C)
        else:
            n = len(folds)
            per = logits.reshape(n, members, -1)[torch.arange(n), torch.as_tensor(folds)]
            prob = per.softmax(-1).numpy()  # (N, C)
        if pooled and self.pool is not None:
            prob = self.pool.apply(prob, seqs, loo=folds is not None)
        return prob

    def _classify_frame(self, panel: Panel, folds: np.ndarray | None = None) -> pd.DataFrame:
        """``id, yhat, p_CLASS...`` (:meth:`class_probabilities`)."""
        prob = self.class_probabilities(panel, folds)
        classes = self.spec.classes
        d = pd.DataFrame({"id": panel.ids, "yhat": [classes[j] for j in prob.argmax(1)]})
        for j, c in enumerate(classes):
            d[f"p_{c}"] = prob[:, j]
        return d

    def _regress_frame(self, panel: Panel) -> pd.DataFrame:
        spec = self.spec
        names = ["yhat"] if len(spec.targets) == 1 else [f"yhat_{c}" for c in spec.targets]
        parts = []
        for i, o in enumerate(self._outputs(panel)):
            lv = self._levels(o)
            if spec.per_sequence:
                parts.append(
                    pd.DataFrame(
                        {"id": [panel.ids[i]], **{n: [lv[-1, j]] for j, n in enumerate(names)}}
                    )
                )
            else:
                d = pd.DataFrame(lv, columns=names)
                d.insert(0, "t", list(panel.times(i)))
                d.insert(0, "id", panel.ids[i])
                parts.append(d)
        return pd.concat(parts, ignore_index=True)

"""The ``--data`` job: a file -> panel -> prepared arrays -> streams, model, loss and metrics for
:class:`tbptt.train.Trainer`, plus the defaults chosen from the data.

Each id is a true sequence: sequences of different lengths go whole into B stateful rows with
:class:`tbptt.data.StreamBatcher` (packed: a reset mid-chunk where the next one starts, no padding
but at the stream's end). Validation comes from the training data only: forecasting holds out the
last ``val_fraction`` of every sequence (evaluated with the state warmed up by its history);
classification and per-sequence regression hold out a stratified fraction of the sequences.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tbptt import losses
from tbptt.chunk import Chunk
from tbptt.data import StreamBatcher
from tbptt.tabular.io import read_table, split_columns
from tbptt.tabular.model import (
    ClassifyMetrics,
    ForecastMetrics,
    RegressMetrics,
    TabularRNN,
    weighted_mse,
)
from tbptt.tabular.panel import Panel, make_panel
from tbptt.tabular.prepare import (
    Spec,
    _numeric,
    feature_arrays,
    fit_spec,
    forecast_arrays,
    target_levels,
)

__all__ = ["DataSet", "build_data_job", "build_data_model", "data_defaults", "load_data"]


class WeightedStream(StreamBatcher):
    """A StreamBatcher whose mask also drops the steps whose target weights are all zero, so
    means count only the steps that have a target (targets ``(..., 2K)``: values, weights)."""

    def chunk(self, index: int) -> Chunk:
        c = super().chunk(index)
        k = c.targets.shape[-1] // 2
        assert c.mask is not None
        return c._replace(mask=c.mask & (c.targets[..., k:].sum(-1) > 0))


class DataSet:
    """A data file read for a run: the panel, the columns of each role and the task."""

    def __init__(self, cfg: Any) -> None:
        df = _read(str(Path(cfg.data).expanduser().resolve()))
        cols = list(df.columns)
        if cfg.target is None:
            raise ValueError("--data needs --target COL (the column to forecast or predict).")
        self.targets = split_columns(cfg.target, "--target", cols)
        id_col = split_columns(cfg.id, "--id", cols)
        time_col = split_columns(cfg.time, "--time", cols)
        self.panel: Panel = make_panel(
            df,
            id_col=id_col[0] if id_col else None,
            time_col=time_col[0] if time_col else None,
        )
        used = {*self.targets, *id_col, *time_col}
        given = split_columns(cfg.features, "--features", cols)
        self.features = given or [c for c in cols if c not in used]
        clash = [c for c in self.features if c in used]
        if clash:
            raise ValueError(f"--features {clash[0]!r} is also the target, id or time column.")
        self.known = split_columns(cfg.known, "--known", cols)
        extra = [c for c in self.known if c not in self.features]
        if extra:
            raise ValueError(
                f"--known {extra[0]!r} is not one of the features ({', '.join(self.features)})."
            )
        self.task = (
            cfg.task if cfg.task in ("forecast", "classify", "regress") else self.infer_task()
        )
        if self.task != "classify":
            for col in self.targets:
                _numeric(self.panel.frame, col, "--target")
        self.per_sequence = self.task == "classify" or (
            self.task == "regress" and self._constant_within_ids()
        )
        if self.task == "classify" and not self._constant_within_ids():
            raise ValueError(
                f"--task classify: --target {self.targets[0]!r} changes within a sequence; a "
                "label is one value per id. Use --task regress or --task forecast."
            )

    def _constant_within_ids(self) -> bool:
        p = self.panel
        key = p.frame[p.id_col] if p.id_col else pd.Series(0, index=p.frame.index)
        return bool(
            (p.frame.groupby(key, sort=False)[self.targets].nunique(dropna=False) <= 1).all().all()
        )

    def infer_task(self) -> str:
        """forecast when the target is numeric and changes within sequences; classify for a
        per-id label that is text, boolean or a few integers; regress otherwise."""
        col = self.panel.frame[self.targets[0]]
        if not self._constant_within_ids():
            return "forecast"
        few = col.nunique() <= 20 and (
            not pd.api.types.is_float_dtype(col) or (col.dropna() % 1 == 0).all()
        )
        return "classify" if not pd.api.types.is_numeric_dtype(col) or few else "regress"


@lru_cache(maxsize=4)
def _read(path: str) -> pd.DataFrame:
    return read_table(path)


def load_data(cfg: Any) -> DataSet:
    return DataSet(cfg)


def detect_season(panel: Panel, col: str) -> int:
    """The season: the strongest period the project's ACF/periodogram tool
    (:func:`tbptt.diagnostics.suggest.suggest`) finds in the longest sequence's changes, else 1."""
    from tbptt.diagnostics.suggest import suggest

    i = int(np.argmax(panel.lengths))
    y = panel.frame[col].to_numpy(dtype=np.float64)[panel.rows(i)]
    y = pd.Series(y).interpolate(limit_direction="both").to_numpy()
    n = len(y)
    if n < 24 or not np.isfinite(y).all():
        return 1
    try:
        s = suggest(np.diff(y), max_lag=min(n // 3, 400))
    except (ValueError, np.linalg.LinAlgError):
        return 1
    return int(s.periods[0]) if s.periods else 1


def data_defaults(cfg: Any) -> Any:
    """``cfg`` with the task and every unset size, length and budget chosen from the data:
    its length, number of sequences and season (see docs/data_files.md, "Defaults")."""
    ds = load_data(cfg)
    task = ds.task
    p = ds.panel
    steps, n = int(p.lengths.sum()), len(p.ids)
    season = cfg.season
    if task == "forecast" and season is None:
        season = detect_season(p, ds.targets[0])
    longest = int(p.lengths.max())
    k1 = cfg.k1 or int(
        np.clip(2 * (season or 1), 16, 64) if task == "forecast" else min(64, longest)
    )
    batch = cfg.batch_size or int(min(32, max(1, n // 4 if n >= 8 else n)))
    updates_per_epoch = max(1, steps // (batch * k1))
    budget: dict[str, Any] = {}
    if cfg.updates is None and cfg.minutes is None and cfg.epochs is None:
        budget["updates"] = int(np.clip(40 * updates_per_epoch, 400, 2000))
    updates = budget.get("updates", cfg.updates or 1000)
    return replace(
        cfg,
        task=task,
        season=season if task == "forecast" else cfg.season,
        horizon=cfg.horizon
        or (
            int(min(48, 2 * season))
            if task == "forecast" and season and season > 1
            else (12 if task == "forecast" else None)
        ),
        hidden=cfg.hidden or (32 if steps < 20_000 else 64),
        k1=k1,
        k2=cfg.k2 or k1,
        batch_size=batch,
        lr=cfg.lr or 5e-3,
        eval_every=cfg.eval_every or max(10, updates // 25),
        patience=cfg.patience or 8,
        **budget,
    )


def build_data_model(cfg: Any, extra: dict[str, Any]) -> TabularRNN:
    spec = Spec.from_dict(extra["spec"])
    return TabularRNN(
        int(extra["n_in"]),
        spec.n_out,
        hidden=int(cfg.hidden),
        layers=cfg.layers,
        cell=cfg.cell,
        dropout=cfg.dropout,
        zero_head=spec.task == "forecast",
    )


def _tensors(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    dt = torch.get_default_dtype()
    return [torch.from_numpy(np.ascontiguousarray(a)).to(dt) for a in arrays]


def holdout(lengths: np.ndarray, fraction: float) -> np.ndarray:
    """Training steps per sequence for forecasting: the last ``fraction`` (at least one target)
    of sequences of 4 or more steps is held out."""
    n_val = np.where(lengths >= 4, np.maximum(1, np.round(lengths * fraction)), 0).astype(np.int64)
    return lengths - n_val


def stratified_val(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: a stratified ``fraction`` of the sequences (at least one of each class with 2+)."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), dtype=bool)
    for c in pd.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(len(idx) * fraction)) if len(idx) > 1 else 0
        val[rng.permutation(idx)[: max(k, 1 if len(idx) > 1 else 0)]] = True
    return val


def build_data_job(cfg: Any) -> Any:
    """The :class:`tbptt.train.jobs.Job` of a ``--data`` run (``cfg`` already has its defaults)."""
    from tbptt.tabular.baselines import forecast_baselines
    from tbptt.train.jobs import Job

    ds = load_data(cfg)
    p = ds.panel
    if cfg.task == "forecast":
        n_train = holdout(p.lengths, cfg.val_fraction)
        if int((p.lengths - n_train).sum()) == 0:
            raise ValueError(
                f"--data: every sequence is shorter than 4 steps ({p.notes}); forecasting needs "
                "longer sequences to hold out validation steps."
            )
        spec = fit_spec(
            p, "forecast", ds.targets, ds.features, ds.known, n_train, int(cfg.season or 1)
        )
        arrays = forecast_arrays(p, spec)
        train_x = [a["x"][:n] for a, n in zip(arrays, n_train) if n >= 2]
        train_y = []
        for a, n in zip(arrays, n_train):
            if n >= 2:
                y = a["y"][:n].copy()
                y[n - 1, y.shape[1] // 2 :] = 0.0  # its target is a validation step
                train_y.append(y)
        val_y = []
        for a, n in zip(arrays, n_train):
            y = a["y"].copy()
            k = len(spec.targets)
            half = y.shape[1] // 2
            y[: max(n - 1, 0), half:] = 0.0  # only the held-out targets count
            y[:, half + k :] = 0.0  # and only the targets, not the covariates
            val_y.append(y)
        scale = [spec.sd_change[c] * spec.sd[c] for c in spec.targets]
        metrics: Any = ForecastMetrics(scale, spec.n_out)
        loss_fn: Any = weighted_mse
        val_x = [a["x"] for a in arrays]
        target_at = "step"
        baselines = forecast_baselines(p, spec, n_train, int(cfg.horizon or 1))
        extra_split: dict[str, Any] = {"n_train": n_train.tolist()}
        desc = (
            f"{int(n_train.sum())} training and {int((p.lengths - n_train).sum())} validation steps"
        )
    else:
        labels = p.frame[ds.targets[0]].to_numpy()[p.offsets]
        strata = labels if cfg.task == "classify" else np.zeros(len(labels))
        val_mask = stratified_val(strata, cfg.val_fraction, cfg.seed)
        if not val_mask.any() or val_mask.all():
            raise ValueError(
                f"--task {cfg.task}: {len(p.ids)} sequences are too few to hold out a validation "
                "fraction; give more ids."
            )
        n_train = np.where(val_mask, 0, p.lengths)
        spec = fit_spec(p, cfg.task, ds.targets, ds.features, [], n_train, 1, ds.per_sequence)
        feats = feature_arrays(p.frame, spec)
        xs = [feats[p.rows(i)] for i in range(len(p.ids))]
        if cfg.task == "classify":
            index = {c: j for j, c in enumerate(spec.classes)}
            ys = [np.array(index[v], dtype=np.int64) for v in labels]
            metrics = ClassifyMetrics(len(spec.classes))
            loss_fn = losses.cross_entropy
            target_at = "end"
            counts = np.bincount(
                [int(y) for y, v in zip(ys, val_mask) if not v], minlength=len(spec.classes)
            )
            major = int(np.argmax(counts))
            vy = np.array([int(y) for y, v in zip(ys, val_mask) if v])
            baselines = {
                "majority_class": str(spec.classes[major]),
                "majority_accuracy": float((vy == major).mean()),
            }
        else:
            lv = target_levels(p.frame, spec)
            if ds.per_sequence:
                ys = [
                    np.concatenate([lv[p.offsets[i]], np.ones(lv.shape[1])])
                    for i in range(len(p.ids))
                ]
                target_at = "end"
            else:
                ys = [
                    np.concatenate(
                        [np.nan_to_num(lv[p.rows(i)]), (~np.isnan(lv[p.rows(i)])).astype(float)], 1
                    )
                    for i in range(len(p.ids))
                ]
                target_at = "step"
            scale = [spec.sd[c] for c in spec.targets]
            metrics = RegressMetrics(scale, spec.n_out)
            loss_fn = weighted_mse
            tv = np.concatenate([lv[p.rows(i)] for i in np.flatnonzero(val_mask)])
            err = tv[np.isfinite(tv).all(1)] * np.array(scale)  # the training mean is 0 scaled
            baselines = {
                "mean_rmse": float(np.sqrt(np.mean(err**2))),
                "mean_mae": float(np.mean(np.abs(err))),
            }
        train_x = [x for x, v in zip(xs, val_mask) if not v]
        train_y = [y for y, v in zip(ys, val_mask) if not v]
        val_x = [x for x, v in zip(xs, val_mask) if v]
        val_y = [y for y, v in zip(ys, val_mask) if v]
        extra_split = {"val_ids": [int(i) for i in np.flatnonzero(val_mask)]}
        desc = f"{int((~val_mask).sum())} training and {int(val_mask.sum())} validation sequences"
    stream = WeightedStream if loss_fn is weighted_mse and target_at == "step" else StreamBatcher
    batch = int(min(cfg.batch_size, len(train_x)))
    train = stream(
        _tensors(train_x),
        _tensors(train_y) if target_at == "step" else _targets(train_y),
        batch_size=batch,
        chunk_len=cfg.chunk_len,
        target_at=target_at,
        shuffle=len(train_x) > 1,
        seed=cfg.seed,
    )
    val = stream(
        _tensors(val_x),
        _tensors(val_y) if target_at == "step" else _targets(val_y),
        batch_size=int(min(len(val_x), 64)),
        chunk_len=256,
        target_at=target_at,
    )
    n_in = int(train_x[0].shape[1])
    extra = {
        "spec": spec.to_dict(),
        "n_in": n_in,
        "notes": p.notes,
        "data": str(cfg.data),
        **extra_split,
    }
    return Job(
        model=build_data_model(cfg, extra),
        loss_fn=loss_fn,
        metrics=metrics,
        train=train,
        val=val,
        extra=extra,
        baselines=baselines,
        description={
            "data": f"{Path(cfg.data).name} ({p.notes}); {cfg.task} {', '.join(ds.targets)}: {desc}; {n_in} inputs per step"
        },
    )


def _targets(ys: list[np.ndarray]) -> list[torch.Tensor]:
    return [
        torch.as_tensor(y)
        if y.dtype == np.int64
        else torch.as_tensor(y, dtype=torch.get_default_dtype())
        for y in ys
    ]

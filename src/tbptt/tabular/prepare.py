"""Preparation: a panel's columns -> the model's input and target arrays, fitted on the training
range only and saved with the run (``Spec``), so ``predict`` and ``tbptt.load`` apply exactly the
transformation the model was trained with.

Forecasting models the *changes* of the target, not its levels. A level scaled on the training
range leaves that range when the series trends (Mauna Loa CO2 rises through the whole holdout:
every validation input was out of the training range, and a model of levels lost to the naive
forecast, RMSE 1.618 against 0.513); a change stays in range, and the untrained model (head at
zero) *is* the naive forecast. The level is still an input when the training range looks
stationary (an augmented Dickey-Fuller test, statsmodels), so mean reversion can be learned.

Input row ``t`` (it predicts the target at ``t + 1``) holds, in this order:

- per target: its scaled change ``(z[t] - z[t-1]) / sd_change``; the level ``z[t]`` (stationary
  targets); the seasonal-naive change ``(z[t+1-m] - z[t]) / sd_change`` (season ``m > 1``); a
  missing indicator when the target has gaps (a missing target is carried forward as input and
  masked as a target);
- covariates known only up to the present (``--features``): their scaled value at ``t``; known
  ones (``--known``): their value at ``t + 1``; missing numeric values are filled with the
  training mean (0 scaled) plus an indicator column; categorical columns are one-hot encoded
  (categories of the training range; an unseen one is all zeros).

Classification and regression inputs are the features at ``t`` (scaled, one-hot, indicators);
a long univariate sequence to classify is fed in patches of ``p`` steps (:func:`patches`).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tbptt.tabular.panel import Panel

__all__ = [
    "Spec",
    "feature_arrays",
    "fit_spec",
    "forecast_arrays",
    "patches",
    "seasonal_columns",
    "seasonal_start",
    "sequence_inputs",
    "sequence_stats",
]

MAX_CATEGORIES = 50

CLEARLY = 0.8
"""The seasonal naive forecast starts a forecast model where its in-sample error is below this
fraction of the naive one's (:func:`seasonal_start`)."""


@dataclass
class Spec:
    """Everything needed to turn a panel into model arrays (saved in the checkpoint's extra)."""

    task: str
    targets: list[str]
    past: list[str]  # numeric covariates known up to the present
    known: list[str]  # numeric covariates known in advance
    cats: dict[str, list[Any]]  # categorical column -> its categories
    known_cats: list[str]
    mean: dict[str, float]  # per numeric column (targets and covariates), training range
    sd: dict[str, float]
    sd_change: dict[str, float] = field(default_factory=dict)  # per target (forecast)
    level: bool = True  # forecast: the level is an input (a stationary training range)
    season: int = 1
    target_gaps: bool = False
    fill: list[str] = field(default_factory=list)  # numeric covariates with missing values
    classes: list[Any] = field(default_factory=list)  # classify: the labels
    per_sequence: bool = False  # classify / regress: one target per sequence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        return cls(**d)

    @property
    def n_out(self) -> int:
        """Model outputs: forecast: targets then past covariates (jointly forecast)."""
        if self.task == "classify":
            return len(self.classes)
        if self.task == "forecast":
            return len(self.targets) + len(self.past)
        return len(self.targets)


def numeric_column(df: pd.DataFrame, col: str, flag: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(float)
    if not pd.api.types.is_numeric_dtype(s):
        numbers = pd.to_numeric(s, errors="coerce")  # numbers held as text ("10.5") are numbers
        bad = s[numbers.isna() & s.notna()]
        if len(bad):
            raise ValueError(
                f"{flag} {col!r} is not numeric (e.g. {str(bad.iloc[0])!r} at data row "
                f"{int(bad.index[0])}). Give a numeric column, or use --task classify for labels."
            )
        s = numbers
    v = s.to_numpy(dtype=np.float64)
    inf = np.isinf(v)
    if inf.any():
        raise ValueError(
            f"{flag} {col!r} has {int(inf.sum())} infinite values (first at row "
            f"{int(np.flatnonzero(inf)[0])}). Replace them with numbers or leave them empty."
        )
    return v


def _train_rows(panel: Panel, n_train: np.ndarray) -> np.ndarray:
    """(rows,) bool: the row is in its sequence's training range."""
    pos = np.arange(len(panel.frame)) - np.repeat(panel.offsets, panel.lengths)
    return pos < np.repeat(n_train, panel.lengths)


def _safe_sd(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    sd = float(v.std()) if len(v) > 1 else 0.0
    return sd if sd > 1e-12 else 1.0


def fit_spec(
    panel: Panel,
    task: str,
    targets: list[str],
    features: list[str],
    known: list[str],
    n_train: np.ndarray,
    season: int,
    per_sequence: bool = False,
) -> Spec:
    """Fit the preparation on the rows of ``panel`` before ``n_train[i]`` of each sequence."""
    df = panel.frame
    train = _train_rows(panel, n_train)
    mean: dict[str, float] = {}
    sd: dict[str, float] = {}
    cats: dict[str, list[Any]] = {}
    numeric: list[str] = []
    for col in features:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            numeric.append(col)
            continue
        values = pd.unique(s[train].dropna())
        if len(values) > MAX_CATEGORIES:
            raise ValueError(
                f"--features {col!r} is text with {len(values)} distinct values (more than "
                f"{MAX_CATEGORIES}); one-hot encoding it would not generalise. Drop it, or map "
                "it to numbers first."
            )
        cats[col] = sorted(values.tolist(), key=str)
    fill = []
    for col in numeric:
        v = numeric_column(df, col, "--features")
        mean[col] = float(np.nanmean(v[train])) if np.isfinite(v[train]).any() else 0.0
        sd[col] = _safe_sd(v[train])
        if np.isnan(v).any():
            fill.append(col)
    spec = Spec(
        task=task,
        targets=targets,
        past=[c for c in numeric if c not in known],
        known=[c for c in numeric if c in known],
        cats=cats,
        known_cats=[c for c in cats if c in known],
        mean=mean,
        sd=sd,
        season=season,
        fill=fill,
        per_sequence=per_sequence,
    )
    if task == "classify":
        labels = df[targets[0]]
        if labels.isna().any():
            missing = [i for i in range(len(panel.ids)) if labels.iloc[panel.rows(i)].isna().any()]
            raise ValueError(
                f"--target {targets[0]!r} is missing in {len(missing)} of {len(panel.ids)} "
                f"sequences (first: id {panel.ids[missing[0]]!r}); every training sequence needs "
                "its label. Drop those ids (tbptt predict labels them later) or label them."
            )
        spec.classes = sorted(pd.unique(labels).tolist(), key=str)
        return spec
    for col in targets:
        y = numeric_column(df, col, "--target")
        yt = y[train]
        if not np.isfinite(yt).any():
            raise ValueError(f"--target {col!r} has no value in the training range.")
        mean[col], sd[col] = float(np.nanmean(yt)), _safe_sd(yt)
        if np.isnan(y).any():
            spec.target_gaps = True
        if task == "forecast":
            changes = [np.diff(y[panel.rows(i)][: n_train[i]]) for i in range(len(panel.ids))]
            spec.sd_change[col] = _safe_sd(np.concatenate(changes)) / sd[col]
    if task == "forecast":
        spec.level = _stationary(panel, targets[0], n_train)
    return spec


def _stationary(panel: Panel, col: str, n_train: np.ndarray) -> bool:
    """An augmented Dickey-Fuller test (statsmodels) on the longest training range rejects a
    unit root at 5%: then the level is a useful input (mean reversion)."""
    i = int(np.argmax(n_train))
    y = panel.frame[col].to_numpy(dtype=np.float64)[panel.rows(i)][: n_train[i]]
    y = y[np.isfinite(y)]
    if len(y) < 20:
        return True
    import warnings

    from statsmodels.tsa.stattools import adfuller

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' notice about its future return type
            return bool(adfuller(y, autolag="AIC")[1] < 0.05)
    except (ValueError, np.linalg.LinAlgError):
        return True


def _onehot(values: pd.Series, categories: list[Any]) -> np.ndarray:
    index = {c: j for j, c in enumerate(categories)}
    out = np.zeros((len(values), len(categories)))
    for r, v in enumerate(values.tolist()):
        j = index.get(v)
        if j is not None:
            out[r, j] = 1.0
    return out


def _scaled(df: pd.DataFrame, cols: list[str], spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """(rows, len(cols)) scaled values (missing -> 0, the training mean) and indicators."""
    if not cols:
        return np.zeros((len(df), 0)), np.zeros((len(df), 0))
    v = np.stack(
        [(numeric_column(df, c, "--features") - spec.mean[c]) / spec.sd[c] for c in cols], 1
    )
    miss = np.isnan(v)
    ind = miss[:, [j for j, c in enumerate(cols) if c in spec.fill]].astype(np.float64)
    return np.where(miss, 0.0, v), ind


def feature_arrays(df: pd.DataFrame, spec: Spec, known_only: bool | None = None) -> np.ndarray:
    """(rows, F) the covariate block of every row: numeric scaled, indicators, one-hot."""
    num = (
        spec.past + spec.known if known_only is None else (spec.known if known_only else spec.past)
    )
    cat = [c for c in spec.cats if known_only is None or (c in spec.known_cats) == known_only]
    v, ind = _scaled(df, num, spec)
    blocks = [v, ind] + [_onehot(df[c], spec.cats[c]) for c in cat]
    return np.concatenate(blocks, 1) if blocks else np.zeros((len(df), 0))


def patches(x: np.ndarray, p: int) -> np.ndarray:
    """(T, F) rows -> (ceil(T / p), p * F): non-overlapping windows of ``p`` steps, one per
    recurrent step (the last one padded with the last row), so a long sequence takes fewer
    steps (patching as in Nie et al., 2023, "A time series is worth 64 words", ICLR).

    >>> patches(np.arange(5.0).reshape(5, 1), 2).tolist()
    [[0.0, 1.0], [2.0, 3.0], [4.0, 4.0]]
    """
    if p <= 1:
        return x
    n = -(-len(x) // p)
    padded = np.concatenate([x, np.repeat(x[-1:], n * p - len(x), 0)])  # (n * p, F)
    return padded.reshape(n, p * x.shape[1])


SCALE_FLOOR = 1e-9
"""Classify: the smallest per-sequence standard deviation (in training-scaled units) that
:func:`sequence_inputs` divides by: only a constant sequence is merely centred (PLAID's quietest
sequences have 10^-6 of the training range's spread, and their shape is what tells them apart)."""


def sequence_stats(x: np.ndarray, spec: Spec) -> np.ndarray:
    """``(4 V + 1,)`` one sequence's level, scale, range and length: per numeric value column
    (``V``, the first columns of ``x`` (T, F) from :func:`feature_arrays`) its mean, log
    standard deviation, and the minimum and maximum of its z-normalised values; then the log
    of its length.

    >>> s = Spec("classify", ["y"], ["a"], [], {}, [], {"a": 0.0}, {"a": 1.0})
    >>> sequence_stats(np.array([[1.0], [3.0]]), s).round(3).tolist()
    [2.0, 0.0, -1.0, 1.0, 0.693]
    """
    v = len(spec.past) + len(spec.known)
    mean = x[:, :v].mean(0)  # (V,)
    sd = np.maximum(x[:, :v].std(0), SCALE_FLOOR)
    z = (x[:, :v] - mean) / sd  # (T, V)
    return np.concatenate([mean, np.log(sd), z.min(0), z.max(0), [np.log(len(x))]])


def sequence_inputs(
    x: np.ndarray, spec: Spec, patch: int, norm: dict[str, list[float]] | None
) -> np.ndarray:
    """One sequence's classify inputs ``x`` (T, F) (:func:`feature_arrays`) -> the model's rows.

    With ``norm`` (``{"mean": ..., "sd": ...}``: the spread of :func:`sequence_stats` over the
    training sequences), each row holds: the ``V`` numeric value columns z-normalised over the
    sequence itself (the per-sequence normalisation of the UCR archive, Dau et al., 2019, "The
    UCR time series archive"), the other columns of ``x`` (indicators, one-hot), the value
    columns as they are (scaled by the training range), then, after :func:`patches` of
    ``patch`` steps, the sequence's :func:`sequence_stats` standardised by ``norm`` as constant
    columns: ``(ceil(T / patch), patch * (F + V) + 4 V + 1)``. So the shape of a quiet sequence
    is as visible as that of a loud one, and its amplitude is still an input (PLAID's appliance
    currents span six orders of magnitude). ``norm=None``: the patches of ``x`` as it is (runs
    before it).

    >>> s = Spec("classify", ["y"], ["a"], [], {}, [], {"a": 0.0}, {"a": 1.0})
    >>> norm = {"mean": [0.0] * 5, "sd": [1.0] * 5}
    >>> sequence_inputs(np.array([[1.0], [3.0]]), s, 1, norm).round(3).tolist()
    [[-1.0, 1.0, 2.0, 0.0, -1.0, 1.0, 0.693], [1.0, 3.0, 2.0, 0.0, -1.0, 1.0, 0.693]]
    """
    if norm is None:
        return patches(x, patch)
    v = len(spec.past) + len(spec.known)
    st = sequence_stats(x, spec)
    z = (x[:, :v] - st[:v]) / np.exp(st[v : 2 * v])  # (T, V)
    rows = patches(np.concatenate([z, x[:, v:], x[:, :v]], 1), patch)  # (T / p, p (F + V))
    scaled = (st - np.asarray(norm["mean"])) / np.asarray(norm["sd"])
    return np.concatenate([rows, np.repeat(scaled[None], len(rows), 0)], 1)


def target_levels(df: pd.DataFrame, spec: Spec) -> np.ndarray:
    """(rows, k) the targets scaled by the training range (NaN where missing)."""
    return np.stack(
        [(numeric_column(df, c, "--target") - spec.mean[c]) / spec.sd[c] for c in spec.targets], 1
    )


def forecast_inputs(
    z: np.ndarray, miss: np.ndarray, past: np.ndarray, known_next: np.ndarray, spec: Spec
) -> np.ndarray:
    """One sequence's input rows ``(T, F)`` from its scaled targets ``z`` (T, k) (missing
    values carried forward), their indicators ``miss`` (T, k), the past-only covariates at t
    ``past`` (T, P) and the known ones at t + 1 ``known_next`` (T, Q)."""
    sdc = np.array([spec.sd_change[c] for c in spec.targets])  # (k,)
    change = np.zeros_like(z)
    change[1:] = (z[1:] - z[:-1]) / sdc
    blocks = [change]
    if spec.level:
        blocks.append(z)
    m = spec.season
    if m > 1:
        seas = np.zeros_like(z)
        t = np.arange(len(z))
        ok = t + 1 - m >= 0
        seas[ok] = (z[t[ok] + 1 - m] - z[ok]) / sdc
        blocks.append(seas)
    if spec.target_gaps:
        blocks.append(miss)
    blocks += [past, known_next]
    return np.concatenate(blocks, 1)


def seasonal_columns(spec: Spec) -> list[int]:
    """The input columns of the targets' seasonal-naive changes (:func:`forecast_inputs`'s
    layout: changes, levels, seasonal changes ...); none without a season. A model that adds
    them to its outputs (``TabularRNN(skip=...)``) is, untrained, the seasonal naive forecast.

    >>> seasonal_columns(Spec("forecast", ["a"], [], [], {}, [], {}, {}, level=True, season=12))
    [2]
    """
    if spec.season <= 1:
        return []
    k = len(spec.targets)
    first = k + (k if spec.level else 0)
    return list(range(first, first + k))


def seasonal_start(panel: Panel, spec: Spec, n_train: np.ndarray) -> list[int]:
    """The ``skip`` columns of a forecast model (:func:`seasonal_columns`) where the seasonal
    naive forecast is clearly better than the naive one on the training rows (the first
    target's mean absolute error, pooled over the sequences, below ``CLEARLY`` times the naive
    one's), else none: the untrained model is the clearly better of the two, or naive.
    (Starting from seasonal naive helped elec_equip, 0.285 -> 0.222 one-step MASE, where its
    in-sample error is 0.58 times naive's, and cost Mauna Loa CO2, 0.209 -> 0.254, at 1.13, and
    woolyrnq, three seeds, at 0.93: the margin was set after seeing woolyrnq.)"""
    m = spec.season
    if m <= 1:
        return []
    y_all = numeric_column(panel.frame, spec.targets[0], "--target")
    naive, seasonal = [], []
    for i in range(len(panel.ids)):
        y = y_all[panel.rows(i)][: int(n_train[i])]
        if len(y) > m:
            naive.append(np.abs(np.diff(y)))
            seasonal.append(np.abs(y[m:] - y[:-m]))
    if not seasonal:
        return []
    a, b = np.concatenate(naive), np.concatenate(seasonal)
    ok = np.isfinite(a).any() and np.isfinite(b).any()
    better = bool(ok and np.nanmean(b) < CLEARLY * np.nanmean(a))
    return seasonal_columns(spec) if better else []


def ffill(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Carry the last value forward over NaNs (leading NaNs -> 0, the training mean)."""
    miss = np.isnan(z)
    out = pd.DataFrame(z).ffill().fillna(0.0).to_numpy()
    return out, miss.astype(np.float64)


def forecast_arrays(
    panel: Panel, spec: Spec, n_train: np.ndarray | None = None
) -> list[dict[str, np.ndarray]]:
    """Per sequence: ``x`` (T, F) inputs, ``y`` (T, 3 n_out) targets: the changes of the
    targets and the past covariates at t + 1, their mask weights (0 where missing or past the
    end) and their loss weights; ``z`` (T, k) the filled scaled targets and ``past`` the
    past-only numeric covariates.

    The loss weight of a target is ``(pooled change spread / this sequence's) ** 2``, measured on
    the sequence's first ``n_train[i]`` rows (all rows without ``n_train``): every id counts by
    its error relative to its own scale (as MASE does), not by its size, so the large ids of a
    panel do not decide alone."""
    df = panel.frame
    zall = target_levels(df, spec)
    past_all = feature_arrays(df, spec, known_only=False)
    known_all = feature_arrays(df, spec, known_only=True)
    pnum = len(spec.past)
    sdc = np.array([spec.sd_change[c] for c in spec.targets])
    out = []
    for i in range(len(panel.ids)):
        r = panel.rows(i)
        zraw = zall[r]
        z, miss = ffill(zraw)
        past = past_all[r]
        known = known_all[r]
        known_next = np.concatenate([known[1:], known[-1:]], 0) if len(known) else known
        x = forecast_inputs(z, miss, past, known_next, spec)
        T, k = z.shape
        vals = np.zeros((T, k + pnum))
        w = np.zeros((T, k + pnum))
        vals[:-1, :k] = (z[1:] - z[:-1]) / sdc
        w[:-1, :k] = ~np.isnan(zraw[1:])
        if pnum:
            vals[:-1, k:] = past[1:, :pnum] - past[:-1, :pnum]
            w[:-1, k:] = 0.5  # covariates count half: they are forecast for the horizon only
        lw = w.copy()
        n = T if n_train is None else max(2, int(n_train[i]))
        with warnings.catch_warnings():  # a target without values here: NaN, set to 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            own = np.nanstd(np.diff(zraw[:n], axis=0) / sdc, axis=0) if n > 2 else np.ones(k)
        own = np.where(np.isfinite(own) & (own > 1e-6), own, 1.0)
        lw[:, :k] *= np.clip(1.0 / own**2, 0.01, 100.0)
        y = np.concatenate([vals, w, lw], 1)
        out.append({"x": x, "y": y, "z": z, "past": past[:, :pnum]})
    return out

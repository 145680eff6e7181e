"""The ``--data`` job: a file -> panel -> prepared arrays -> streams, model, loss and metrics for
:class:`tbptt.train.Trainer` (the defaults chosen from the data are in ``dataset.py``).

Each id is a true sequence: sequences of different lengths go whole into B stateful rows with
:class:`tbptt.data.StreamBatcher` (packed: a reset mid-chunk where the next one starts, no padding
but at the stream's end). Classification lays them out aligned instead: each sequence starts a
chunk as long as the longest, padded after its end, so a chunk is one recurrent call per update
rather than one per reset (PLAID, 100 to 1,344 steps in patches of 10: about 80 calls; an update
took 0.15 s packed and 0.02 s aligned on one core at a load average of about 3), and k2 = k1
reaches each sequence's first step. Validation comes from the training data only: forecasting
holds out the last ``val_fraction`` of every sequence (evaluated with the state warmed up by its
history); classification is cross-fitted by default (``crossfit.py``: every sequence trains
the members of the other folds and is scored out-of-fold by its own fold's member), and with
``--folds 1`` holds out a stratified fraction of the sequences, as regression does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from tbptt import losses
from tbptt.chunk import Chunk
from tbptt.data import StreamBatcher
from tbptt.tabular import streamed as streaming
from tbptt.tabular.baselines import forecast_baselines
from tbptt.tabular.crossfit import assign_folds, cross_fitted
from tbptt.tabular.dataset import load_data, patch_size
from tbptt.tabular.horizon import attach_direct, direct_spread, horizon_mse
from tbptt.tabular.io import file_digest
from tbptt.tabular.model import (
    ClassifyMetrics,
    Ensemble,
    ForecastMetrics,
    RegressMetrics,
    TabularRNN,
    ensemble_cross_entropy,
    ensemble_loss,
    weighted_mse,
)
from tbptt.tabular.prepare import (
    Spec,
    feature_arrays,
    fit_spec,
    forecast_arrays,
    seasonal_start,
    sequence_inputs,
    sequence_stats,
    target_levels,
)

__all__ = [
    "AugmentedStream",
    "WeightedStream",
    "build_data_job",
    "build_data_model",
    "direct_head",
    "holdout",
    "stratified_val",
]


class WeightedStream(StreamBatcher):
    """A StreamBatcher whose mask also drops the steps whose target weights are all zero, so
    means count only the steps that have a target (targets ``(..., 3K)``: values, mask weights,
    loss weights)."""

    def chunk(self, index: int) -> Chunk:
        c = super().chunk(index)
        k = c.targets.shape[-1] // 3
        assert c.mask is not None
        return c._replace(mask=c.mask & (c.targets[..., k : 2 * k].sum(-1) > 0))


AUGMENT_SCALE = 0.1
"""Classify: the standard deviation of the random amplitude factor per training sequence and
input column (:class:`AugmentedStream`)."""

AUGMENT_JITTER = 0.03
"""Classify: the standard deviation of the noise added to each scaled training input value."""

AUGMENT_CROP = 1.0
"""Classify: the fraction of each training sequence's raw steps that a random window keeps
each epoch (:class:`AugmentedStream`; 1: whole sequences, the default). Windows of 0.9 lowered
4-fold cross-validated accuracy on ArrowHead (0.667 to 0.597) and UnitTest (0.975 to 0.900) and
left ACSF1 level (0.545 to 0.565), seeds 0 and 1; 0.95 was lower on both ArrowHead and ACSF1."""


class AugmentedStream(StreamBatcher):
    """Classification's training stream: every epoch, each training sequence's numeric input
    values (``columns``, True for each of the F input columns that holds one) are multiplied by
    a random factor per sequence and column, ``N(1, scale^2)``, and jittered with
    ``N(0, jitter^2)`` noise per value, the cheap augmentations of Um et al., 2017, "Data
    augmentation of wearable sensor data for Parkinson's disease monitoring using convolutional
    neural networks" (ICMI), also used by Le Guennec, Malinowski & Tavenard, 2016, "Data
    augmentation for time series classification using convolutional neural networks".

    With ``crop < 1``, each sequence is then cut to a random contiguous window of
    ``ceil(crop * T)`` of its ``T`` raw steps (window slicing, Le Guennec et al., 2016): the
    rows' first ``patched`` columns hold ``patch`` raw steps each (:func:`patches`), so the
    window is taken in raw steps and patched again (the last patch padded with its last step);
    the columns after them (per-sequence statistics) are kept, and the label moves to the
    window's last step. Everything is seeded by ``(seed, epoch)``, so a resumed run sees the
    same data; validation and ``predict`` see whole sequences as they are. Indicator and
    one-hot columns are not scaled or jittered."""

    def __init__(
        self,
        *args: Any,
        columns: np.ndarray,
        scale: float,
        jitter: float,
        crop: float = 1.0,
        patch: int = 1,
        patched: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._columns = torch.from_numpy(np.asarray(columns, dtype=bool))  # (F,)
        self._scale, self._jitter, self._crop = scale, jitter, float(crop)
        self._patch = int(patch)
        self._patched = len(self._columns) if patched is None else int(patched)
        self._clean: Any = None
        super().__init__(*args, **kwargs)

    def _make_layout(self, epoch: int) -> Any:
        if self._clean is None:
            self._clean = self._prep
        clean = self._clean
        gen = torch.Generator().manual_seed(int(self.seed) * 100_003 + epoch)
        n, f = clean.num_sequences, clean.x.shape[1]
        factor = 1 + self._scale * torch.randn(n, f, generator=gen, dtype=clean.x.dtype)  # (N, F)
        steps = np.diff(np.append(clean.offsets, clean.x.shape[0]))  # (N,) rows of each
        per_step = factor.repeat_interleave(torch.from_numpy(steps), 0)  # (S, F)
        noise = self._jitter * torch.randn(clean.x.shape, generator=gen, dtype=clean.x.dtype)
        x = torch.where(self._columns, clean.x * per_step + noise, clean.x)  # (S, F)
        self._prep = replace(clean, x=x)
        if self._crop < 1.0:
            self._prep = self._cropped(self._prep, gen)
        return super()._make_layout(epoch)

    def _cropped(self, prep: Any, gen: torch.Generator) -> Any:
        """``prep`` with every sequence cut to a random window of ``crop`` of its raw steps."""
        p, w = self._patch, self._patched
        xs, ys = [], []
        for o, n in zip(prep.offsets.tolist(), prep.lengths.tolist()):
            rows = prep.x[o : o + n]  # (n, F)
            raw = rows[:, :w].reshape(n * p, w // p)  # (n p, F / p) the raw steps
            keep = max(1, math.ceil(round(self._crop * n * p, 6)))
            start = int(torch.randint(n * p - keep + 1, (1,), generator=gen))
            win = raw[start : start + keep]  # (keep, F / p)
            m = -(-keep // p)
            win = torch.cat([win, win[-1:].expand(m * p - keep, -1)])  # edge padding
            xs.append(torch.cat([win.reshape(m, w), rows[:m, w:]], 1))  # (m, F)
            if prep.y is not None:
                ys.append(prep.y[o : o + 1].expand(m, *prep.y.shape[1:]))
        lengths = np.array([len(x) for x in xs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        mask = torch.zeros(int(lengths.sum()), dtype=torch.bool)
        mask[torch.from_numpy(offsets + lengths - 1)] = True  # the label: each window's end
        y = torch.cat(ys) if ys else None
        return replace(prep, x=torch.cat(xs), y=y, m=mask, lengths=lengths, offsets=offsets)


def build_data_model(cfg: Any, extra: dict[str, Any]) -> TabularRNN | Ensemble:
    """The run's model: a :class:`TabularRNN`, or an :class:`Ensemble` of ``extra["members"]``
    of them (runs before ensembles: none, one model)."""
    spec = Spec.from_dict(extra["spec"])
    direct = int(extra.get("direct", 0)) * len(spec.targets)  # the direct head (horizon.py)
    options: dict[str, Any] = {
        "hidden": int(cfg.hidden),
        "layers": cfg.layers,
        "cell": cfg.cell,
        "dropout": cfg.dropout,
        "zero_head": spec.task == "forecast",
        "pool": extra.get("readout") == "pool",
        "skip": extra.get("skip"),  # runs before it: none
    }
    members = int(extra.get("members", 1))
    if members > 1:
        return Ensemble(int(extra["n_in"]), spec.n_out + direct, members=members, **options)
    return TabularRNN(int(extra["n_in"]), spec.n_out + direct, **options)


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
        k = round(len(idx) * fraction) if len(idx) > 1 else 0
        val[rng.permutation(idx)[: max(k, 1 if len(idx) > 1 else 0)]] = True
    return val


SCALE_SPREAD = 1.0
"""Classify: sequences are z-normalised one by one (:func:`tbptt.tabular.prepare.sequence_inputs`)
where the standard deviation of the log10 amplitude (per-sequence standard deviation) over the
training sequences passes this, in some value column: amplitudes that differ by an order of
magnitude or more, which the training set's scaling leaves flat for the quiet sequences (PLAID:
1.85, where they raised validation accuracy from 0.39 to 0.77; BasicMotions' channels 0.45 to
0.67; z-normalised sets such as ArrowHead and ACSF1: 0, where they lowered the accuracy of a
4-fold cross-validation of the training split, 0.667 to 0.611 and 0.58 to 0.49)."""


def _stats_scale(feats: np.ndarray, p: Any, spec: Spec, val: np.ndarray) -> dict[str, list] | None:
    """Classify: the mean and standard deviation of each sequence's statistics
    (:func:`tbptt.tabular.prepare.sequence_stats`) over the training sequences (not ``val``),
    saved with the run so that ``predict`` standardises them the same way; ``None`` (no
    per-sequence inputs) unless the amplitudes spread past ``SCALE_SPREAD``. A statistic that
    varies by less than 10^-6 (the level and scale of a z-normalised set) keeps the unit
    divisor: its rounding noise is not blown up into an input (it cost ArrowHead and ACSF1
    accuracy in cross-validation)."""
    st = np.stack([sequence_stats(feats[p.rows(i)], spec) for i in np.flatnonzero(~val)])
    v = len(spec.past) + len(spec.known)
    if not v or st[:, v : 2 * v].std(0).max() / np.log(10) <= SCALE_SPREAD:
        return None  # amplitudes of one order: the inputs as they are, scaled by the training set
    sd = st.std(0)  # one that does not vary (a z-normalised set's level, scale) stays ~0
    return {"mean": st.mean(0).tolist(), "sd": np.where(sd > 1e-6, sd, 1.0).tolist()}


@dataclass
class _Parts:
    """One task's prepared sequences, before streaming."""

    spec: Spec
    train_x: list[np.ndarray]
    train_y: list[np.ndarray]
    val_x: list[np.ndarray]
    val_y: list[np.ndarray]
    target_at: Literal["step", "end"]
    metrics: Any
    loss_fn: Any
    baselines: dict[str, Any]
    split: dict[str, Any]  # saved in extra: how the validation was taken
    desc: str
    weighted: bool = True  # targets carry weights (values, weights) per step
    augment: np.ndarray | None = None  # classify: the input columns AugmentedStream varies
    patched: int = 0  # classify: the leading input columns that hold patches of raw steps
    layout: str = "packed"  # classify: "aligned", each sequence starts a chunk (one segment)
    extra: dict[str, Any] = field(default_factory=dict)


def _forecast_parts(cfg: Any, ds: Any, whole: bool = False) -> _Parts:
    """Forecasting: the last ``val_fraction`` of each sequence validates. ``whole``: the
    training stream holds every step instead (the refit, ``refit.py``); the scaling, the
    seasonal start and the validation stream stay those of the held-out split, so the refit
    model is the run's model on more data."""
    p = ds.panel
    n_train = holdout(p.lengths, cfg.val_fraction)
    if int((p.lengths - n_train).sum()) == 0:
        raise ValueError(
            f"--data: every sequence is shorter than 4 steps ({p.notes}); forecasting needs "
            "longer sequences to hold out validation steps."
        )
    season = int(cfg.season or 1)
    spec = fit_spec(p, "forecast", ds.targets, ds.features, ds.known, n_train, season)
    if ds.streamed:  # the sample shaped the spec; every id's training rows scale it
        n_all = holdout(ds.streamed[0].lengths, cfg.val_fraction)
        spec = streaming.refit_spec(cfg.data, ds.streamed[0], spec, n_all, p.id_col, p.time_col)
    arrays = forecast_arrays(p, spec, n_train)
    fit_rows = p.lengths.copy() if whole else n_train  # (N,) the steps the training stream holds
    fitted = forecast_arrays(p, spec, fit_rows) if whole else arrays  # the loss weights' range
    k, half = len(spec.targets), spec.n_out
    train_x, train_y, val_y = [], [], []
    for a, n in zip(fitted, fit_rows.tolist()):
        if n >= 2:
            train_x.append(a["x"][:n])
            y = a["y"][:n].copy()
            y[n - 1, half:] = 0.0  # its target is a validation step (whole: past the end)
            train_y.append(y)
        y = a["y"].copy()
        y[: max(n - 1, 0), half:] = 0.0  # validation: only the held-out steps count,
        y[:, half + k : 2 * half] = 0.0  # and only the targets, not the covariates
        y[:, 2 * half + k :] = 0.0
        val_y.append(y)
    n_val = int((p.lengths - n_train).sum())
    parts = _Parts(
        spec=spec,
        train_x=train_x,
        train_y=train_y,
        val_x=[a["x"] for a in arrays],
        val_y=val_y,
        target_at="step",
        metrics=ForecastMetrics([spec.sd_change[c] * spec.sd[c] for c in spec.targets], half),
        loss_fn=weighted_mse,
        baselines=forecast_baselines(p, spec, n_train, int(cfg.horizon or 1)),
        split={"n_train": n_train.tolist()},
        extra={"skip": seasonal_start(p, spec, n_train)},
        desc=f"{int(n_train.sum())} training and {n_val} validation steps",
    )
    direct = direct_head(cfg, ds.streamed is not None)
    if direct:
        parts = _with_direct(parts, arrays, n_train, int(cfg.horizon or 0), fitted, fit_rows)
    return _as_ensemble(parts, int(cfg.members or 1))


def direct_head(cfg: Any, streamed: bool) -> bool:
    """Whether a forecasting run trains the direct multi-step head: ``--direct-head on``,
    ``off``, or ``auto`` (the default: on unless the file is streamed, whose ids train the
    one-step outputs only)."""
    choice = getattr(cfg, "direct_head", None) or "auto"
    if choice == "on" and streamed:
        raise ValueError(
            f"--direct-head on: {cfg.data} has more than {streaming.STREAM_ROWS:,} rows, so it "
            "is streamed, and streamed ids train the one-step outputs only. Use --direct-head "
            "auto or off."
        )
    return choice == "on" or (choice == "auto" and not streamed)


def _as_ensemble(parts: _Parts, members: int) -> _Parts:
    """Forecasting parts for an :class:`Ensemble` of ``members``: each member trained on its own
    loss (:func:`ensemble_loss`), the members' mean outputs scored; 1: as they are."""
    if members > 1:
        parts.loss_fn = ensemble_loss(parts.loss_fn, members)
        parts.metrics.members = members
        parts.extra["members"] = members
    return parts


def _with_direct(
    parts: _Parts,
    arrays: list[dict[str, np.ndarray]],
    n_train: np.ndarray,
    horizon: int,
    fitted: list[dict[str, np.ndarray]] | None = None,
    fit_rows: np.ndarray | None = None,
) -> _Parts:
    """Forecasting parts with the direct multi-step head's targets appended (horizon.py): it
    learns y[t + 1 .. t + H] from the training rows (``fit_rows`` of ``fitted``; default the
    ``n_train`` of ``arrays``); validation (and so the best checkpoint) scores the one-step
    outputs only."""
    if horizon < 1:
        return parts
    spec, half = parts.spec, parts.spec.n_out
    sdc = np.array([spec.sd_change[c] for c in spec.targets])
    fitted = arrays if fitted is None else fitted
    rows = n_train if fit_rows is None else fit_rows
    trained = [(a, n) for a, n in zip(fitted, rows.tolist()) if n >= 2]
    spread = direct_spread([a["z"][:n] for a, n in trained], horizon, sdc)
    parts.train_y = [
        attach_direct(y, a["z"][:n], n, horizon, half, sdc, spread)
        for y, (a, n) in zip(parts.train_y, trained)
    ]
    parts.val_y = [
        attach_direct(y, a["z"], 0, horizon, half, sdc) for y, a in zip(parts.val_y, arrays)
    ]
    total = half + horizon * len(sdc)
    parts.metrics = ForecastMetrics([spec.sd_change[c] * spec.sd[c] for c in spec.targets], total)
    parts.loss_fn = partial(horizon_mse, n_out=half)
    parts.extra["direct"] = horizon
    return parts


def _sequence_parts(cfg: Any, ds: Any) -> _Parts:
    """classify / regress: a (stratified, for classes) fraction of the sequences is held out."""
    p = ds.panel
    if ds.streamed:
        raise ValueError(
            f"--task {cfg.task}: {cfg.data} has more than {streaming.STREAM_ROWS:,} rows, so it "
            "is streamed, and streaming trains --task forecast only. Use a smaller file."
        )
    labels = p.frame[ds.targets[0]].to_numpy()[p.offsets]
    k = int(cfg.folds or 1) if cfg.task == "classify" else 1
    strata = labels if cfg.task == "classify" else np.zeros(len(labels))
    # cross-fitted: nothing held out, every sequence trains k - 1 members and validates one
    val = (
        np.zeros(len(labels), bool) if k > 1 else stratified_val(strata, cfg.val_fraction, cfg.seed)
    )
    if k == 1 and (not val.any() or val.all()):
        raise ValueError(
            f"--task {cfg.task}: {len(p.ids)} sequences are too few to hold out a validation "
            "fraction; give more ids."
        )
    n_train = np.where(val, 0, p.lengths)
    spec = fit_spec(p, cfg.task, ds.targets, ds.features, [], n_train, 1, ds.per_sequence)
    folds = assign_folds(labels, k, cfg.seed) if k > 1 else None  # cross-fitted (crossfit.py)
    feats = feature_arrays(p.frame, spec)
    patch = patch_size(ds, p.lengths)  # 1 but for long univariate sequences to classify
    norm = _stats_scale(feats, p, spec, val) if cfg.task == "classify" else None
    xs = [sequence_inputs(feats[p.rows(i)], spec, patch, norm) for i in range(len(p.ids))]
    target_at: Literal["step", "end"] = "end" if ds.per_sequence else "step"
    n_values = len(spec.past) + len(spec.known)
    values = np.arange(feats.shape[1]) < n_values  # not indicators
    if norm is not None:  # the values z-normalised, the other columns, the values as they are
        values = np.concatenate([values, np.ones(n_values, bool)])
    stats = np.zeros(xs[0].shape[1] - patch * len(values), dtype=bool)  # not augmented
    if cfg.task == "classify":
        index = {c: j for j, c in enumerate(spec.classes)}
        ys = [np.array(index[v], dtype=np.int64) for v in labels]
        scored = val if folds is None else np.ones(len(val), bool)  # out-of-fold: every one
        counts = np.bincount(
            [int(y) for y, v in zip(ys, val) if not v], minlength=len(spec.classes)
        )
        major = int(np.argmax(counts))
        truth = np.array([int(y) for y, v in zip(ys, scored) if v])
        members = int(cfg.members or 1)
        metrics: Any = ClassifyMetrics(len(spec.classes), members, cfg.best_by or "loss")
        loss_fn: Any = ensemble_cross_entropy(members) if members > 1 else losses.cross_entropy
        baselines: dict[str, Any] = {
            "majority_class": str(spec.classes[major]),
            "majority_accuracy": float((truth == major).mean()),
        }
    else:
        lv = target_levels(p.frame, spec)  # (rows, k) scaled, NaN where missing
        seqs = [lv[p.rows(i)] for i in range(len(p.ids))]
        if ds.per_sequence:
            ys = [np.concatenate([s[0], np.isfinite(s[0]), np.isfinite(s[0])]) for s in seqs]
        else:
            ys = [
                np.concatenate([np.nan_to_num(s), np.isfinite(s), np.isfinite(s)], 1) for s in seqs
            ]
        scale = [spec.sd[c] for c in spec.targets]
        metrics = RegressMetrics(scale, spec.n_out)
        loss_fn = weighted_mse
        baselines = {}  # the training mean's scores: computed with the model's (report.py)
        ys = [np.nan_to_num(y) for y in ys]
    parts = _Parts(
        spec=spec,
        train_x=[x for x, v in zip(xs, val) if not v],
        train_y=[y for y, v in zip(ys, val) if not v],
        val_x=[x for x, v in zip(xs, val) if v],
        val_y=[y for y, v in zip(ys, val) if v],
        target_at=target_at,
        metrics=metrics,
        loss_fn=loss_fn,
        baselines=baselines,
        split={"val_ids": [int(i) for i in np.flatnonzero(val)]},
        extra=(
            {"readout": "pool", "patch": patch, "members": int(cfg.members or 1), "norm": norm}
            if cfg.task == "classify"
            else {"readout": "pool", "patch": patch}
            if ds.per_sequence
            else {}
        ),
        desc=f"{int((~val).sum())} training and {int(val.sum())} validation sequences",
        weighted=cfg.task == "regress",
        augment=np.concatenate([np.tile(values, patch), stats])
        if cfg.task == "classify"
        else None,  # (p F + S,)
        layout="aligned" if ds.per_sequence else "packed",
        patched=patch * len(values),
    )
    return parts if folds is None else cross_fitted(parts, xs, np.array(ys), folds)


def _targets(ys: list[np.ndarray]) -> list[torch.Tensor]:
    """Class ids stay integers; everything else takes the default float dtype."""
    dt = torch.get_default_dtype()
    return [torch.as_tensor(y) if y.dtype == np.int64 else torch.as_tensor(y, dtype=dt) for y in ys]


def build_data_job(cfg: Any, whole: bool = False) -> Any:
    """The :class:`tbptt.train.jobs.Job` of a ``--data`` run (``cfg`` already has its defaults);
    ``whole``: forecasting's refit job, which trains on every step (:func:`_forecast_parts`)."""
    from tbptt.train.jobs import Job

    ds = load_data(cfg)
    forecast = cfg.task == "forecast"
    parts = _forecast_parts(cfg, ds, whole) if forecast else _sequence_parts(cfg, ds)
    # a mask of the steps that have a target, so means count those only
    stream = WeightedStream if parts.weighted and parts.target_at == "step" else StreamBatcher
    if ds.streamed:  # every id, read one at a time; validation and baselines: the sample
        index, picked = ds.streamed
        train: Any = streaming.forecast_stream(
            cfg.data,
            index,
            parts.spec,
            holdout(index.lengths, cfg.val_fraction),
            ds.panel.id_col,
            ds.panel.time_col,
            batch_size=int(min(cfg.batch_size, len(index.ids))),
            chunk_len=cfg.chunk_len,
        )
        parts.desc += (
            f"; streamed: all {len(index.ids)} ids ({int(index.lengths.sum())} rows) train, "
            f"validation and baselines on {len(picked)} evenly spaced ids"
        )
    else:
        augment: dict[str, Any] = {}
        train_stream: Any = stream
        if parts.augment is not None and AUGMENT_SCALE + AUGMENT_JITTER > 0:
            train_stream = AugmentedStream
            augment = {
                "columns": parts.augment,
                "scale": AUGMENT_SCALE,
                "jitter": AUGMENT_JITTER,
                "crop": AUGMENT_CROP,
                "patch": int(parts.extra.get("patch", 1)),
                "patched": parts.patched,
            }
        train = train_stream(
            _tensors(parts.train_x),
            _targets(parts.train_y),
            batch_size=int(min(cfg.batch_size, len(parts.train_x))),
            chunk_len=cfg.chunk_len,
            target_at=parts.target_at,
            shuffle=len(parts.train_x) > 1,
            seed=cfg.seed,
            layout=parts.layout,
            **augment,
        )
    val = stream(
        _tensors(parts.val_x),
        _targets(parts.val_y),
        batch_size=int(min(len(parts.val_x), 64)),
        chunk_len=256,
        target_at=parts.target_at,
    )
    p, n_in = ds.panel, int(parts.train_x[0].shape[1])
    extra = {
        "spec": parts.spec.to_dict(),
        "n_in": n_in,
        "notes": p.notes,
        "data": str(cfg.data),
        "streamed": ds.streamed is not None,
        "data_digest": file_digest(cfg.data),  # a resume refuses a changed file
        **parts.split,
        **parts.extra,
    }
    return Job(
        model=build_data_model(cfg, extra),
        loss_fn=parts.loss_fn,
        metrics=parts.metrics,
        train=train,
        val=val,
        extra=extra,
        baselines=parts.baselines,
        description={
            "data": f"{Path(cfg.data).name} ({p.notes}); {cfg.task} {', '.join(ds.targets)}: "
            f"{parts.desc}; {n_in} inputs per step"
        },
    )

"""A ``--data`` file read for a run (:class:`DataSet`: its panel, the columns of each role, the
task) and the defaults chosen from it (:func:`data_defaults`).

Defaults (each only where the option is not given):

- task: ``forecast`` when the target changes within sequences; ``classify`` for a per-sequence
  label that is text or a few integers; ``regress`` for another per-sequence number;
- season (:func:`detect_season`): the calendar's (12 for monthly dates, 4 for quarterly, 48 for
  half-hours ...) where the autocorrelation of the longest sequence's changes confirms it at
  that lag, else the strongest period that :func:`tbptt.diagnostics.suggest.suggest`
  (ACF-confirmed periodogram peaks) finds in them, else 1;
- k1 = k2: two seasons, between 16 and 64 steps (forecast); per-step regression: the longest
  sequence up to 64. One target per sequence: k1 = the longest sequence (up to 1,024); classify
  lays each sequence at the start of its own chunk (``layout="aligned"``), so k2 = k1 reaches
  its first step (twice that past 1,024 steps); per-sequence regression packs them, and k2 =
  twice k1, so the last step's loss reaches back over the whole sequence wherever it starts;
- batch: a quarter of the ids, at least 4 (all when fewer), at most 32; hidden 32 (64 past
  20,000 steps); Adam lr 5e-3 (forecast, classify), 2e-3 (regress: fewer, noisier targets);
- budget: 40 epochs, between 400 and 2,000 updates, and at most 2 minutes of training;
  validation 25 times; patience 8 evaluations (12 for regress, whose few validation sequences
  are noisy); the best checkpoint by validation is what predict uses;
- classify (one label per sequence, few sequences): ``CLASSIFY_EPOCHS`` (750) epochs, or fewer
  where they would pass ``CLASSIFY_STEPS_PER_RUN`` recurrent steps (about 40 s on one core),
  between 200 and 5,000 updates (:func:`classify_budget`): a budget fixed by
  the data, not by the clock; ``CLASSIFY_MINUTES`` (10) caps a run on a busy machine; patience
  25 (the best of all validations is kept); gradient clipping at norm 10 unless ``--clip`` is
  given (clipping at 1 slowed the fit of a 251-step LSTM on 24 sequences); validation fraction
  0.3 under 100 sequences, so that every class has a few validation sequences; the readout
  pools the hidden states over the sequence (:class:`tbptt.tabular.model.TabularRNN`,
  ``pool``); where the sequences' amplitudes spread over more than an order of magnitude, each
  sequence's values are z-normalised over the sequence, next to the values as they are and its
  level, scale, range and length
  (:func:`tbptt.tabular.prepare.sequence_inputs`); a univariate sequence longer than
  ``PATCH_STEPS`` (32) goes in patches of ``p`` values per recurrent step (:func:`patch_size`),
  and k1, k2 and the budget count those steps; a cross-fitted ensemble of ``CLASSIFY_FOLDS``
  (4) members, each trained on 3 of 4 stratified folds of the sequences and validated on the
  other, out-of-fold, so nothing is held out (:mod:`tbptt.tabular.crossfit`; ``--folds 1``, or
  ``--members N`` / ``--val-fraction F``: N models, default 1, and a held-out split); the
  budget counts every member's steps; the training sequences are augmented each epoch
  (:class:`tbptt.tabular.job.AugmentedStream`);
- forecast: an ensemble of ``FORECAST_MEMBERS`` (5) models, each with the updates of one, fewer
  where they would not train ``FORECAST_STEPS_PER_RUN`` steps together (one model for a streamed
  file, whose 2 minutes are better spent on more of its rows);
- horizon: two seasons, at most 48 (12 without a season).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tbptt.tabular.crossfit import choose_best_by, choose_folds
from tbptt.tabular.io import BUILTIN, read_table, split_columns
from tbptt.tabular.panel import Panel, make_panel
from tbptt.tabular.prepare import MAX_CATEGORIES, numeric_column

__all__ = [
    "DataSet",
    "builtin_series_config",
    "calendar_season",
    "check_target_varies",
    "classify_budget",
    "data_defaults",
    "detect_season",
    "load_data",
    "patch_size",
    "resolve_data",
]


class DataSet:
    """A data file read for a run: the panel, the columns of each role and the task."""

    def __init__(self, cfg: Any) -> None:
        df, self.streamed = _read(resolve_data(cfg.data), cfg.id)
        cols = list(df.columns)
        if cfg.target is None:
            raise ValueError("--data needs --target COL (the column to forecast or predict).")
        self.targets = split_columns(cfg.target, "--target", cols)
        id_col = split_columns(cfg.id, "--id", cols)
        time_col = split_columns(cfg.time, "--time", cols)
        _check_roles({"--target": self.targets, "--id": id_col, "--time": time_col})
        self.panel: Panel = make_panel(
            df,
            id_col=id_col[0] if id_col else None,
            time_col=time_col[0] if time_col else None,
        )
        used = {*self.targets, *id_col, *time_col}
        given = split_columns(cfg.features, "--features", cols)
        self.features = given or self._default_features(df, [c for c in cols if c not in used])
        clash = [c for c in self.features if c in used]
        if clash:
            raise ValueError(f"--features {clash[0]!r} is also the target, id or time column.")
        self.known = split_columns(cfg.known, "--known", cols)
        extra = [c for c in self.known if c not in self.features]
        if extra:
            raise ValueError(
                f"--known {extra[0]!r} is not one of the features ({', '.join(self.features)})."
            )
        for col in self.targets if self.streamed is None else ():  # (a sample when streamed)
            check_target_varies(df[col], col)
        self.task = (
            cfg.task if cfg.task in ("forecast", "classify", "regress") else self.infer_task()
        )
        if self.task != "classify":
            for col in self.targets:
                numeric_column(self.panel.frame, col, "--target")
        self.per_sequence = self.task == "classify" or (
            self.task == "regress" and self._constant_within_ids()
        )
        if self.task == "classify" and not self._constant_within_ids():
            raise ValueError(_label_changes(self.targets[0], self.panel.id_col))

    def _default_features(self, df: pd.DataFrame, columns: list[str]) -> list[str]:
        """Every column but the target, id and time, less dates (not given as --time) and text
        with more distinct values than one-hot encoding can use (free text, row keys): left
        out, and said in the notes."""
        text = [c for c in columns if not pd.api.types.is_numeric_dtype(df[c])]
        text = [c for c in text if not pd.api.types.is_bool_dtype(df[c])]
        dates = [c for c in text if _looks_like_dates(df[c])]
        many = dates + [c for c in text if c not in dates and df[c].nunique() > MAX_CATEGORIES]
        if dates:
            self.panel.notes += (
                f"; left out of the inputs: {', '.join(map(repr, dates))} (dates; give --time "
                f"{dates[0]} to order the rows by it and label the forecasts)"
            )
        words = [c for c in many if c not in dates]
        if words:
            self.panel.notes += (
                f"; left out of the inputs: {', '.join(map(repr, words))} (text with more than "
                f"{MAX_CATEGORIES} distinct values; map to numbers and name in --features to use)"
            )
        return [c for c in columns if c not in many]

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


def _label_changes(target: str, id_col: str | None) -> str:
    """The message for a class label that changes within a sequence (one without ``--id``:
    the whole file), with the fix for a file that holds one sequence per row."""
    if id_col is not None:
        return (
            f"--task classify: --target {target!r} changes within an id of --id {id_col!r}; a "
            "label is one value per id. Use --task regress or --task forecast."
        )
    return (
        f"--task classify: --target {target!r} changes from row to row, and without --id the "
        "file is one sequence. Give --id COL (long format: one row per step); for one sequence "
        "per row with its steps in columns, write it long first: df.melt(id_vars=["
        f"{target!r}], var_name='t', ignore_index=False).rename_axis('id').reset_index()."
    )


def _check_roles(roles: dict[str, list[str]]) -> None:
    """Refuse a column named twice: in one flag, or as two of target, id and time.

    >>> _check_roles({"--target": ["y"], "--id": ["y"], "--time": []})
    Traceback (most recent call last):
    ...
    ValueError: --id 'y' is also the --target column; each column has one role.
    """
    seen: dict[str, str] = {}
    for flag, columns in roles.items():
        for col in columns:
            if col in seen:
                twice = f"names {col!r} twice" if seen[col] == flag else ""
                raise ValueError(
                    f"{flag} {twice or f'{col!r} is also the {seen[col]} column'}; each column "
                    "has one role."
                )
            seen[col] = flag


def _looks_like_dates(col: pd.Series) -> bool:
    """Whether the first values of a text column all read as dates with a year in digits (not
    a category such as ``"Mon"`` or ``"March"``, which dateutil would also read).

    >>> [_looks_like_dates(pd.Series(v)) for v in (["2020-01-01", "2021Q3"], ["March", "Mon"])]
    [True, False]
    """
    import warnings

    head = col.dropna().astype(str).head(20)
    if not head.str.count(r"\d").ge(4).all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' format inference and deprecation notes
        parsed = pd.to_datetime(head, errors="coerce", format="mixed")
    return len(head) > 0 and bool(parsed.notna().all())


def check_target_varies(col: pd.Series, name: str) -> None:
    """Refuse a target column with no value, or with one value in every row (nothing to learn).

    >>> try:
    ...     check_target_varies(pd.Series([3.0, None, 3.0]), "y")
    ... except ValueError as e:
    ...     print(str(e)[:70])
    --target 'y' is 3.0 in every row that has a value (2 of 3 rows): there
    """
    values = col.dropna()
    if len(values) == 0:
        raise ValueError(
            f"--target {name!r} has no values (all {len(col)} rows are empty). Give a column "
            "that holds the values to forecast or predict."
        )
    if values.nunique() == 1:
        raise ValueError(
            f"--target {name!r} is {values.tolist()[0]!r} in every row that has a value "
            f"({len(values)} of {len(col)} rows): there is nothing to learn. Give a column whose "
            "values vary (or that holds at least two classes)."
        )


def resolve_data(data: str) -> str:
    """A file path made absolute (a run resumes and predicts from any directory); a built-in
    series name ``series:NAME`` as it is."""
    return data if data.startswith(BUILTIN) else str(Path(data).expanduser().resolve())


def builtin_series_config(cfg: Any) -> Any:
    """``--task series --series NAME`` through the data door: a forecast of the built-in series
    (its documented season unless --season is given)."""
    from tbptt.datasets import load_series

    s = load_series(cfg.series)
    return replace(
        cfg,
        task="forecast",
        data=BUILTIN + cfg.series,
        target=s.name,
        time="t",
        season=cfg.season or s.season,
    )


@lru_cache(maxsize=4)
def _read(path: str, id_col: str | None) -> tuple[pd.DataFrame, Any]:
    """The whole file, or above ``stream.STREAM_ROWS`` Parquet rows a sample of whole ids
    with the index of every id (``tbptt.tabular.stream``: training streams all of them)."""
    from tbptt.tabular import streamed as stream

    if stream.parquet_rows(path) > stream.STREAM_ROWS:
        df, index, picked = stream.sample_frame(path, id_col)
        return df, (index, picked)
    return read_table(path), None


def load_data(cfg: Any) -> DataSet:
    return DataSet(cfg)


def calendar_season(step: Any) -> int | None:
    """The season a calendar suggests for a time step (a ``pd.Timedelta``, as
    :class:`~tbptt.tabular.panel.Panel` infers it): a year of months (12) or quarters (4) or
    weeks (52), a week of days (7), a day of sub-daily steps (half-hours: 48); else ``None``
    (numbers, years, irregular steps).

    >>> calendar_season(pd.Timedelta(days=31)), calendar_season(pd.Timedelta(minutes=30))
    (12, 48)
    >>> calendar_season(pd.Timedelta(days=91)), calendar_season(3) is None
    (4, True)
    """
    if not isinstance(step, pd.Timedelta) or step <= pd.Timedelta(0):
        return None
    days = step / pd.Timedelta(days=1)
    if days < 1:
        per_day = pd.Timedelta(days=1) / step
        return round(per_day) if abs(per_day - round(per_day)) < 1e-9 else None
    for lo, hi, m in ((1, 1, 7), (7, 7, 52), (28, 31, 12), (89, 92, 4)):
        if lo <= days <= hi:
            return m
    return None


def detect_season(panel: Panel, col: str) -> int:
    """The season of the longest sequence's changes (its first differences):

    1. the calendar's (:func:`calendar_season`: 12 for monthly dates, 4 for quarterly ...) when
       the autocorrelation of the changes at that lag is positive and outside the white-noise
       band (the ACF of :func:`tbptt.diagnostics.suggest.suggest`, statsmodels; Box & Jenkins
       1970): a calendar that repeats without a season in the data (seasonally adjusted
       figures) is not taken;
    2. else the strongest period that the project's ACF-confirmed periodogram finds;
    3. else 1."""
    from tbptt.diagnostics.suggest import suggest

    i = int(np.argmax(panel.lengths))
    y = panel.frame[col].to_numpy(dtype=np.float64)[panel.rows(i)]
    y = pd.Series(y).interpolate(limit_direction="both").to_numpy()
    n = len(y)
    if n < 24 or not np.isfinite(y).all():
        return 1
    m = calendar_season(panel.step)
    max_lag = min(n // 3, 400)
    try:
        s = suggest(np.diff(y), max_lag=max(max_lag, min(m or 0, n // 2 - 2)))
    except (ValueError, np.linalg.LinAlgError):
        return 1
    if m is not None and 1 < m < len(s.acf):
        band = _z_band(s.alpha) / np.sqrt(s.n)  # the white-noise band's half-width
        if s.acf[m] > band:
            return m
    return int(s.periods[0]) if s.periods else 1


def _z_band(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


CLASSIFY_EPOCHS = 750
"""Classify: passes over the training sequences where the step budget allows (few sequences)."""

CLASSIFY_STEPS_PER_RUN = 12_000_000
"""Classify: the most recurrent steps (batch rows x chunk steps x updates x members, padding
included) of one run. A hidden-32 LSTM trained 1 to 3.4 x 10^5 of them per second on one CPU
core at a load average of about 2 (the aligned chunks of ``benchmarks/classify.py``'s UCR sets;
small batches are the slow end), so a run that reaches it (PLAID: 2,777 updates) trains for
about 40 s there; ``CLASSIFY_MINUTES`` bounds it on a busy machine."""

CLASSIFY_MINUTES = 10.0
"""Classify: the training time cap, an upper bound that only a loaded machine reaches (the
update budget, fixed by the data, normally ends first: the same run on any machine)."""


def classify_budget(
    lengths: np.ndarray, k1: int, batch: int, members: int, val_fraction: float
) -> dict[str, Any]:
    """Updates and time cap of a classify run from its data: ``CLASSIFY_EPOCHS`` passes over
    the training sequences (``lengths``: recurrent steps per sequence, aligned chunks of ``k1``
    steps, ``batch`` rows), at most ``CLASSIFY_STEPS_PER_RUN`` steps, between 200 and 5,000
    updates; the cosine schedule runs to its end within them.

    >>> classify_budget(np.full(100, 30), 30, 25, 1, 0.3)  # 70 training sequences: 3 updates
    {'updates': 2250, 'minutes': 10.0}
    >>> classify_budget(np.full(537, 135), 135, 32, 1, 0.2)["updates"]  # the step budget binds
    2777
    """
    chunks = -(-np.asarray(lengths) // max(1, k1))  # (N,) chunks of each sequence
    train = float(chunks.sum()) * (1 - val_fraction)
    per_epoch = max(1, int(np.ceil(train / max(1, batch))))
    fit = CLASSIFY_STEPS_PER_RUN // (max(1, batch) * max(1, k1) * max(1, members))
    updates = int(np.clip(min(CLASSIFY_EPOCHS * per_epoch, fit), 200, 5000))
    return {"updates": updates, "minutes": CLASSIFY_MINUTES}


CLASSIFY_MEMBERS = 1
"""Classify with a held-out split (``--folds 1``, ``--members``, ``--val-fraction``): models in
the ensemble unless ``--members`` says (:class:`tbptt.tabular.model.Ensemble`, sharing the step
budget). The default run is cross-fitted instead (``CLASSIFY_FOLDS`` members)."""


FORECAST_MEMBERS = 5
"""Forecast: models in the default ensemble (:class:`tbptt.tabular.model.Ensemble`, each
trained on its own loss, their forecasts averaged). Each member gets the updates one model
would (a forecasting run takes seconds, far inside its 2-minute cap). Chosen on the 11 tuning
series of ``benchmarks/forecast.py`` (3 seeds): mean one-step MASE 0.568 with one model, 0.551
with 3, 0.544 with 5, and a smaller spread over seeds (docs/quality.md)."""


FORECAST_STEPS_PER_RUN = 10_000_000
"""Forecast: the most batch x window x update steps that all the members of the default
ensemble train together (about 40 s of training for a hidden-32 LSTM at batch 32 on one core:
fertility's 192 countries trained 5 x 307,200 steps in 5.7 s, measured); beyond it the default
has fewer members, so that the 2-minute cap does not cut their schedules short. Every series of
``benchmarks/forecast.py`` is far below it (fertility, the largest: 15 % of it)."""


PATCH_STEPS = 32
"""Classify: the most recurrent steps of a univariate sequence; a longer one is fed in patches.
32 rather than 128: with augmentation, ArrowHead's and ACSF1's test accuracy rose (0.59 and
0.69 against 0.50 and 0.63; docs/quality.md) and an update is cheaper. 32 rather than 64: in
4-fold cross-validation of the training splits, 64 was level on ArrowHead and OSULeaf and lower
on ACSF1 (0.49 against 0.58)."""


def patch_size(ds: DataSet, lengths: np.ndarray) -> int:
    """Values per recurrent step (:func:`tbptt.tabular.prepare.patches`): classify with one
    numeric feature: the fewest that bring the median sequence to ``PATCH_STEPS`` steps or
    fewer (ArrowHead's 251 steps: 8; ACSF1's 1,460: 46; PLAID's 100 to 1,344, median 300: 10,
    so its longest takes 135 steps, and a short one still a few); otherwise 1."""
    frame = ds.panel.frame
    if not ds.per_sequence or len(ds.features) != 1:
        return 1
    if not pd.api.types.is_numeric_dtype(frame[ds.features[0]]):
        return 1
    return max(1, -(-int(np.median(lengths)) // PATCH_STEPS))


def _or(value: Any, default: Any) -> Any:
    """The given option, else the default (0 is given: the config's check refuses it)."""
    return default if value is None else value


def data_defaults(cfg: Any) -> Any:
    """``cfg`` with the task and every unset size, length and budget chosen from the data:
    its length, number of sequences and season (see the module doc)."""
    ds = load_data(cfg)
    task, p = ds.task, ds.panel
    lengths = ds.streamed[0].lengths if ds.streamed else p.lengths  # every id, also streamed
    patch = patch_size(ds, lengths)
    lengths = -(-lengths // patch)  # recurrent steps: patches of long univariate sequences
    steps, n, longest = int(lengths.sum()), len(lengths), int(lengths.max())
    season = cfg.season
    if task == "forecast" and season is None:
        season = detect_season(p, ds.targets[0])
    k2_default = None
    if task == "forecast":
        k1_default = int(np.clip(2 * season, 16, 64))
    elif ds.per_sequence:  # aligned: each sequence starts a chunk of its longest's steps,
        k1_default = min(longest, 1024)  # so k2 = k1 backpropagates through the whole of it
        k2_default = k1_default + (k1_default if longest > k1_default else 0)
    else:
        k1_default = min(64, longest)
    k1 = _or(cfg.k1, k1_default)
    batch = _or(cfg.batch_size, int(np.clip(n // 4, min(n, 4), 32)))
    classify = task == "classify"
    whole = ds.per_sequence  # one target per sequence (classify, or regress per sequence)
    if task == "regress" and cfg.members not in (None, 1):
        raise ValueError(
            f"--members {cfg.members}: an ensemble serves --task classify and forecast only "
            f"(this run is --task {task}); drop --members."
        )
    if task != "forecast" and getattr(cfg, "direct_head", "auto") != "auto":
        raise ValueError(
            f"--direct-head {cfg.direct_head}: the direct multi-step head serves --task forecast "
            f"only (this run is --task {task}); drop --direct-head."
        )
    from tbptt.tabular.neighbours import choose_pool
    from tbptt.tabular.refit import forecast_refit

    refit = forecast_refit(cfg, task, ds.streamed is not None)  # forecast: on or off
    dtw_pool = choose_pool(cfg, task, ds.streamed is not None)  # classify: on or off
    folds, best_by = choose_folds(cfg, task), choose_best_by(cfg, task)
    members: int | None = int(_or(cfg.members, CLASSIFY_MEMBERS)) if classify else None
    if folds > 1:  # cross-fitted: one member per fold, nothing held out (crossfit.py)
        members = folds
    if task == "forecast":  # a streamed file: its time cap is better spent on more data
        members = int(_or(cfg.members, 1 if ds.streamed else FORECAST_MEMBERS))
    budget: dict[str, Any] = {}
    if cfg.updates is None and cfg.minutes is None and cfg.epochs is None:
        per_epoch = max(1, steps // (max(1, batch) * max(1, k1)))
        if whole:  # few sequences, one target each: many epochs, the best by validation
            held = 0.0 if folds > 1 else _or(cfg.val_fraction, 0.3 if n < 100 else 0.2)
            budget = classify_budget(lengths, k1, batch, members or 1, held)
        else:
            budget["updates"] = int(np.clip(40 * per_epoch, 400, 2000))
            budget["minutes"] = 2.0  # a cap for long files and busy machines (the first one stops)
    updates = budget.get("updates", _or(cfg.updates, 1000))
    if task == "forecast" and cfg.members is None and (members or 1) > 1:  # while time allows
        per_member = max(1, batch) * max(1, k1) * int(updates)  # steps each member trains
        members = int(np.clip(FORECAST_STEPS_PER_RUN // per_member, 1, members or 1))
    horizon = None
    if task == "forecast":
        horizon = _or(cfg.horizon, min(48, 2 * season) if season > 1 else 12)
        if cfg.horizon is not None and cfg.horizon > longest:
            raise ValueError(
                f"--horizon {cfg.horizon} is longer than the longest sequence ({longest} steps): "
                f"nothing in the file can train or check forecasts that far. Give --horizon "
                f"{longest} or less (tbptt predict --horizon forecasts further, recursively)."
            )
    return replace(
        cfg,
        task=task,
        season=season,
        horizon=horizon if task == "forecast" else cfg.horizon,
        hidden=_or(cfg.hidden, 32 if steps < 20_000 else 64),
        k1=k1,
        k2=_or(cfg.k2, k2_default if cfg.k1 is None and k2_default else k1),
        batch_size=batch,
        lr=_or(cfg.lr, 2e-3 if task == "regress" else 5e-3),
        clip=_or(cfg.clip, 10.0 if whole else None),
        eval_every=_or(cfg.eval_every, max(10, int(updates) // 25)),
        patience=_or(cfg.patience, 8 if task == "forecast" else 25 if whole else 12),
        val_fraction=_or(cfg.val_fraction, 0.3 if whole and n < 100 and folds < 2 else None),
        members=members,
        folds=folds if classify else None,
        refit=refit,
        dtw_pool=dtw_pool,
        best_by=best_by,
        **budget,
    )

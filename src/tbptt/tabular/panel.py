"""Panels: the rows of a long-format table grouped into sequences (one per id), in time order.

Each id is one true sequence (the model's state is reset where it starts). With ``--time`` the
rows are sorted within each id (a stable sort: rows with equal times keep the file's order);
the time step is inferred (the most common difference) and used to label forecasts. What was
found is said in one line (``Panel.notes``), never guessed silently: unsorted rows (sorted),
gaps (kept as they are: the step before and after a gap is not filled in) and duplicate times
(refused: which row is the value is not knowable).

>>> import pandas as pd
>>> df = pd.DataFrame({"s": ["a", "b", "a"], "d": [2, 1, 1], "y": [3.0, 4.0, 5.0]})
>>> p = make_panel(df, id_col="s", time_col="d")
>>> p.ids, p.lengths.tolist(), p.frame["y"].tolist()
(['a', 'b'], [2, 1], [5.0, 3.0, 4.0])
>>> p.notes
'2 ids, 3 rows (1 to 2 per id); time d, step 1; rows were not in time order within ids: sorted'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Panel", "make_panel", "next_times"]


@dataclass
class Panel:
    """A table's rows grouped by id and sorted by time: ``frame`` rows ``offsets[i]`` ..
    ``offsets[i] + lengths[i]`` are sequence ``ids[i]``."""

    frame: pd.DataFrame
    ids: list[Any]
    lengths: np.ndarray  # (N,)
    offsets: np.ndarray  # (N,)
    id_col: str | None
    time_col: str | None
    step: Any  # the inferred time step (a number or a pandas Timedelta / offset), or None
    notes: str

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i] + self.lengths[i]))

    def times(self, i: int) -> np.ndarray:
        """The time labels of sequence i (positions 0.. without a time column)."""
        if self.time_col is None:
            return np.arange(int(self.lengths[i]))
        return self.frame[self.time_col].to_numpy()[self.rows(i)]


def _time_values(col: pd.Series, name: str, notes: list[str]) -> pd.Series:
    """Numbers stay numbers; anything else must parse as dates."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        out = col
    else:
        try:
            out = _parse_dates(col, notes)
        except (ValueError, TypeError) as e:
            bad = pd.to_datetime(col, format="mixed", errors="coerce").isna() & col.notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise ValueError(
                f"--time {name!r}: {str(col.iloc[row])!r} (data row {row}) is neither a number "
                "nor a date. Give a column of dates, periods or numbers."
            ) from e
    if out.isna().any():
        row = int(np.flatnonzero(out.isna().to_numpy())[0])
        raise ValueError(
            f"--time {name!r} has {int(out.isna().sum())} missing values (first at data row "
            f"{row}). Fill or drop those rows."
        )
    return out


def _parse_dates(col: pd.Series, notes: list[str]) -> pd.Series:
    """Text as dates, one reading for the whole column: ISO 8601 (``2020-01-31``) as it is;
    else one format inferred from the first value, month first (``01/02/2020`` is 2 January,
    pandas' default) or day first, whichever parses every row; where both do and disagree,
    month first, and ``notes`` says so; else each value on its own. Never a column read partly
    day first and partly month first.

    >>> _parse_dates(pd.Series(["12/01/2020", "13/01/2020", "14/01/2020"]), []).dt.day.tolist()
    [12, 13, 14]
    >>> notes = []
    >>> _parse_dates(pd.Series(["01/02/2020", "01/03/2020"]), notes).dt.month.tolist()
    [1, 1]
    >>> notes[0][:45]
    'dates like 01/02/2020 read month first (2 Jan'
    """
    text = col.astype(str).str.strip()
    if text.str.fullmatch(r"\d{4}-?Q[1-4]").all():  # quarters, 2024Q1: the quarter's start
        return pd.Series(
            pd.PeriodIndex(text.str.replace("-", ""), freq="Q").to_timestamp(), index=col.index
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' "could not infer format" and deprecations
        try:
            return pd.to_datetime(col, format="ISO8601")
        except (ValueError, TypeError):
            pass
        read = {}
        for dayfirst in (False, True):
            try:
                read[dayfirst] = pd.to_datetime(col, dayfirst=dayfirst)
            except (ValueError, TypeError):
                continue
        if len(read) == 2 and not read[False].equals(read[True]):
            first = read[False].iloc[0]
            notes.append(
                f"dates like {col.iloc[0]} read month first ({first.day} {first:%b} "
                f"{first.year}); day first would fit too: give ISO dates (YYYY-MM-DD) to be sure"
            )
        if read:
            return read[False] if False in read else read[True]
        return pd.to_datetime(col, format="mixed")


def make_panel(df: pd.DataFrame, *, id_col: str | None, time_col: str | None) -> Panel:
    """Group ``df`` by ``id_col`` (first appearance order) and sort by ``time_col`` within ids."""
    from tbptt.tabular.io import no_column

    for flag, col in (("--id", id_col), ("--time", time_col)):
        if col is not None and col not in df.columns:
            raise ValueError(f"{flag} {col!r}: {no_column(col, [str(c) for c in df.columns])}")
    df = df.copy()
    notes: list[str] = []
    if time_col is not None:
        df[time_col] = _time_values(df[time_col], time_col, notes)
    if id_col is not None:
        if df[id_col].isna().any():
            raise ValueError(
                f"--id {id_col!r} has {int(df[id_col].isna().sum())} missing values. "
                "Every row needs its sequence's id."
            )
        codes, ids = pd.factorize(df[id_col], sort=False)
    else:
        codes, ids = np.zeros(len(df), dtype=np.int64), pd.Index(["all"])
    key = pd.DataFrame({"_c": codes, "_r": np.arange(len(df))})
    sort_by = ["_c"]
    if time_col is not None:
        key["_t"] = df[time_col].to_numpy()
        sort_by = ["_c", "_t"]
    order = key.sort_values(sort_by, kind="stable")["_r"].to_numpy()
    unsorted = time_col is not None and bool((np.diff(order) < 0).any())
    grouped_before = bool((np.diff(codes) >= 0).all())
    frame = df.iloc[order].reset_index(drop=True)
    c = codes[order]
    lengths = np.bincount(c, minlength=len(ids)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    step = None
    if time_col is not None:
        step = _check_times(frame, time_col, c, id_col, list(ids), notes)
    head = (
        f"{len(ids)} ids, {len(frame)} rows ({lengths.min()} to {lengths.max()} per id)"
        if id_col is not None
        else f"one sequence of {len(frame)} rows"
    )
    if time_col is not None:
        head += f"; time {time_col}, step {_fmt_step(step)}"
    if unsorted:
        notes.insert(0, "rows were not in time order within ids: sorted")
    elif time_col is None and id_col is not None and not grouped_before:
        notes.insert(0, "ids interleaved: rows taken in file order within each id")
    return Panel(
        frame=frame,
        ids=[_plain(v) for v in ids],
        lengths=lengths,
        offsets=offsets,
        id_col=id_col,
        time_col=time_col,
        step=step,
        notes="; ".join([head, *notes]),
    )


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _fmt_time(v: Any) -> str:
    """A time value as a user wrote it: a midnight timestamp as its date.

    >>> _fmt_time(pd.Timestamp("2024-01-05")), _fmt_time(pd.Timestamp("2024-01-05 06:30")), _fmt_time(3)
    ('2024-01-05', '2024-01-05 06:30:00', '3')
    """
    if isinstance(v, pd.Timestamp) and v == v.normalize():
        return str(v.date())
    return str(v)


def _check_times(
    frame: pd.DataFrame,
    col: str,
    codes: np.ndarray,
    id_col: str | None,
    ids: list[Any],
    notes: list[str],
) -> Any:
    t = frame[col]
    same_id = codes[1:] == codes[:-1]
    diffs = (t.iloc[1:].to_numpy() - t.iloc[:-1].to_numpy())[same_id]
    if len(diffs) == 0:
        return None
    zero = diffs == diffs.dtype.type(0)
    if zero.any():
        where = np.flatnonzero(same_id)[np.flatnonzero(zero)[0]]
        who = f" in id {ids[codes[where]]!r}" if id_col is not None else ""
        raise ValueError(
            f"--time {col!r}: {int(zero.sum())} duplicate times{who} (first: {_fmt_time(t.iloc[where])}). "
            "Which row holds the value is not knowable; aggregate or drop the duplicates first."
        )
    values, counts = np.unique(diffs, return_counts=True)
    step = values[int(np.argmax(counts))]
    shortest, longest = _regular(step)
    gaps = diffs > longest
    if gaps.any():
        where = np.flatnonzero(same_id)[np.flatnonzero(gaps)[0]]
        n_ids = len(set(codes[np.flatnonzero(same_id)[gaps]].tolist()))
        who = f"id {ids[codes[where]]!r} " if id_col is not None else ""
        notes.append(
            f"{int(gaps.sum())} gaps in {n_ids} id(s) (first: {who}after {_fmt_time(t.iloc[where])}); "
            "kept as they are, not filled"
        )
    irregular = (diffs < shortest).sum()
    if irregular:
        notes.append(f"{int(irregular)} steps shorter than {_fmt_step(step)}")
    return (
        step.item()
        if isinstance(step, np.generic) and not isinstance(step, np.timedelta64)
        else pd.Timedelta(step)
        if isinstance(step, np.timedelta64)
        else step
    )


_CALENDAR_DAYS = ((28, 31), (89, 92), (181, 184), (365, 366))
"""Months, quarters, half-years and years: the lengths in days one calendar step can have."""


def _regular(step: Any) -> tuple[Any, Any]:
    """The shortest and longest difference that count as one ``step`` (the most common one):
    the step itself, or for a step of calendar months, quarters or years every length such a
    step can have (a month of 31 days is the common step of monthly dates; 28 is no gap).

    >>> [str(d) for d in _regular(np.timedelta64(31, "D"))]
    ['28 days', '31 days']
    >>> _regular(2.0)
    (2.0, 2.0)
    """
    if isinstance(step, np.timedelta64):
        days = step / np.timedelta64(1, "D")
        for lo, hi in _CALENDAR_DAYS:
            if lo <= days <= hi:
                return np.timedelta64(lo, "D"), np.timedelta64(hi, "D")
    return step, step


def _fmt_step(step: Any) -> str:
    if step is None:
        return "unknown"
    if isinstance(step, np.timedelta64):
        step = pd.Timedelta(step)
    if isinstance(step, pd.Timedelta):
        names = ("month", "quarter", "half-year", "year")
        for name, (lo, hi) in zip(names, _CALENDAR_DAYS):
            if lo <= step.days <= hi:
                return f"1 {name}"
    if isinstance(step, pd.Timedelta):
        return (
            str(step).replace("0 days ", "")
            if step < pd.Timedelta(days=1)
            else f"{step.days} day{'s' if step.days > 1 else ''}"
        )
    return f"{step:g}" if isinstance(step, float) else str(step)


def next_times(last: Any, step: Any, h: int) -> list[Any]:
    """The ``h`` time labels after ``last`` (``last + step``, ``+ 2 step`` ...)."""
    if step is None:
        return [None] * h
    if isinstance(step, pd.Timedelta) and step >= pd.Timedelta(days=28):
        days = step.days  # months, quarters, years: calendar offsets, not fixed days
        off = (
            pd.DateOffset(years=round(days / 365.25))
            if days >= 360
            else pd.DateOffset(months=round(days / 30.44))
        )
        return [pd.Timestamp(last) + off * (k + 1) for k in range(h)]
    return [last + step * (k + 1) for k in range(h)]

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


def _time_values(col: pd.Series, name: str) -> pd.Series:
    """Numbers stay numbers; anything else must parse as dates."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        out = col
    else:
        try:
            out = pd.to_datetime(col, format="mixed")
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


def make_panel(df: pd.DataFrame, *, id_col: str | None, time_col: str | None) -> Panel:
    """Group ``df`` by ``id_col`` (first appearance order) and sort by ``time_col`` within ids."""
    for flag, col in (("--id", id_col), ("--time", time_col)):
        if col is not None and col not in df.columns:
            raise ValueError(f"{flag} {col!r}: no such column (columns: {', '.join(df.columns)}).")
    df = df.copy()
    notes: list[str] = []
    if time_col is not None:
        df[time_col] = _time_values(df[time_col], time_col)
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
            f"--time {col!r}: {int(zero.sum())} duplicate times{who} (first: {t.iloc[where]!s}). "
            "Which row holds the value is not knowable; aggregate or drop the duplicates first."
        )
    values, counts = np.unique(diffs, return_counts=True)
    step = values[int(np.argmax(counts))]
    gaps = diffs > step
    if gaps.any():
        where = np.flatnonzero(same_id)[np.flatnonzero(gaps)[0]]
        n_ids = len(set(codes[np.flatnonzero(same_id)[gaps]].tolist()))
        who = f"id {ids[codes[where]]!r} " if id_col is not None else ""
        notes.append(
            f"{int(gaps.sum())} gaps in {n_ids} id(s) (first: {who}after {t.iloc[where]!s}); "
            "kept as they are, not filled"
        )
    irregular = (diffs < step).sum()
    if irregular:
        notes.append(f"{int(irregular)} steps shorter than {_fmt_step(step)}")
    return (
        step.item()
        if isinstance(step, np.generic) and not isinstance(step, np.timedelta64)
        else pd.Timedelta(step)
        if isinstance(step, np.timedelta64)
        else step
    )


def _fmt_step(step: Any) -> str:
    if step is None:
        return "unknown"
    if isinstance(step, pd.Timedelta):
        return (
            str(step).replace("0 days ", "") if step < pd.Timedelta(days=1) else f"{step.days} days"
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

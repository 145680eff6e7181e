"""Subsequence lengths for a panel: many sequences (one per id) in one long-format table.

The lags of :func:`tbptt.diagnostics.suggest.suggest` only mean something within one true
sequence: concatenating a panel's ids would put every id's first value one lag after the
previous id's last and read that boundary as autocorrelation. So each id (sorted by its time
column, as ``tbptt train --data --id --time`` sorts it) is analysed on its own, and the panel's
suggestion is what the ids agree on:

- the **memory**: the median of the ids' PACF memories;
- the **periods**: those found (within 10 %) in at least half of the analysed ids, the most
  shared first; each is the median of the ids' values for it;
- the **recommended** k2: the longest shared period, else the median memory, as for one series.

Ids shorter than 16 values, constant, or with gaps (NaN) are skipped and counted.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> t = np.arange(300)
>>> df = pd.concat(
...     pd.DataFrame({"id": k, "t": t, "y": np.sin(2 * np.pi * t / 12 + k) + 0.3 * rng.standard_normal(300)})
...     for k in range(4)
... )
>>> s = suggest_panel(df, "y", id_col="id", time_col="t")
>>> s.periods, s.recommended, len(s.per_id)
([12], 12, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tbptt.diagnostics.suggest import Suggestion, suggest

__all__ = ["PanelSuggestion", "suggest_panel"]

MIN_VALUES = 16
"""An id needs this many values to be analysed (:func:`tbptt.diagnostics.suggest.suggest`)."""


@dataclass
class PanelSuggestion:
    """What :func:`suggest_panel` found: the ids' agreement, and each analysed id's own
    (``per_id``, left out of the ``repr``; ``summary()`` is the report)."""

    column: str
    memory: int  # median PACF memory over the analysed ids
    periods: list[int]  # shared by at least half of them, the most shared first
    shares: list[float]  # the fraction of analysed ids that found each period
    per_id: dict[Any, Suggestion] = field(default_factory=dict, repr=False)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of ids

    @property
    def recommended(self) -> int:
        """The suggested backward length k2: the longest shared period, else the memory."""
        return max(self.periods) if self.periods else max(1, self.memory)

    @property
    def candidates(self) -> list[int]:
        return sorted({*self.periods, *([self.memory] if self.memory else [])})

    def summary(self) -> str:
        """A few lines for the terminal."""
        lengths = [s.n for s in self.per_id.values()]
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n)
        shared = ", ".join(
            f"{p} ({share:.0%} of ids)" for p, share in zip(self.periods, self.shares)
        )
        return "\n".join(
            [
                f"{len(self.per_id)} ids analysed one by one ({min(lengths)} to {max(lengths)} "
                f"steps), column {self.column!r}" + (f"; skipped: {skipped}" if skipped else ""),
                f"PACF memory (median over ids): {self.memory}",
                "periods found in at least half of the ids: " + (shared or "none"),
                "candidate subsequence lengths: " + ", ".join(map(str, self.candidates)),
                f"recommended k2: {self.recommended}",
            ]
        )

    def as_json(self) -> dict[str, Any]:
        """The numbers, with each id's memory and periods."""
        return {
            "ids": len(self.per_id),
            "skipped": self.skipped,
            "memory": self.memory,
            "periods": self.periods,
            "shares": self.shares,
            "candidates": self.candidates,
            "recommended": self.recommended,
            "per_id": {
                str(k): {"n": s.n, "memory": s.memory, "periods": s.periods}
                for k, s in self.per_id.items()
            },
        }

    def plot(self, path: Any = None, *, title: str | None = None) -> Any:
        """Each id's ACF (thin) and their mean (thick), the shared periods marked."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 4), layout="constrained")
        ax = fig.subplots()
        lags = min(len(s.acf) for s in self.per_id.values())
        acfs = np.stack([s.acf[:lags] for s in self.per_id.values()])  # (ids, lags)
        for row in acfs[:50]:
            ax.plot(row, color="0.7", lw=0.5)
        ax.plot(acfs.mean(0), color="tab:blue", lw=1.5, label="mean over ids")
        for p in self.periods:
            ax.axvline(p, color="tab:red", ls="--", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("lag (steps)")
        ax.set_ylabel("ACF")
        ax.set_title(title or f"ACF of {len(self.per_id)} ids; suggested {self.candidates}")
        ax.legend(loc="upper right")
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig


def suggest_panel(
    frame: pd.DataFrame,
    column: str,
    *,
    id_col: str,
    time_col: str | None = None,
    max_lag: int | None = None,
    alpha: float = 0.05,
) -> PanelSuggestion:
    """:func:`tbptt.diagnostics.suggest.suggest` for each id of a long-format ``frame`` and
    what they agree on (the module docstring says how). ``max_lag`` bounds every id's lags
    (an id's own bound, ``n // 2 - 1``, applies where it is lower)."""
    from tbptt.tabular.io import no_column
    from tbptt.tabular.panel import make_panel

    if column not in frame.columns:
        raise ValueError(f"--column {column!r}: {no_column(column, list(map(str, frame.columns)))}")
    if column in (id_col, time_col):
        raise ValueError(
            f"--column {column!r} is the --id or --time column; give the column of values."
        )
    panel = make_panel(frame, id_col=id_col, time_col=time_col)
    values = pd.to_numeric(panel.frame[column], errors="coerce").to_numpy(dtype=np.float64)
    per_id: dict[Any, Suggestion] = {}
    skipped = {"shorter than 16 values": 0, "constant": 0, "with gaps (NaN)": 0}
    for i, key in enumerate(panel.ids):
        y = values[panel.rows(i)]
        if len(y) < MIN_VALUES:
            skipped["shorter than 16 values"] += 1
        elif not np.isfinite(y).all():
            skipped["with gaps (NaN)"] += 1
        elif np.ptp(y) == 0:
            skipped["constant"] += 1
        else:
            lag = None if max_lag is None else max(2, min(max_lag, len(y) // 2 - 1))
            per_id[key] = suggest(y, max_lag=lag, alpha=alpha)
    if not per_id:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        raise ValueError(
            f"--id {id_col!r}: none of the {len(panel.ids)} ids can be analysed ({reasons}). "
            "Give ids of at least 16 finite, varying values in --column."
        )
    periods, shares = _shared_periods([s.periods for s in per_id.values()])
    memory = int(np.median([s.memory for s in per_id.values()]))
    return PanelSuggestion(column, memory, periods, shares, per_id, skipped)


def _shared_periods(found: list[list[int]]) -> tuple[list[int], list[float]]:
    """The periods found (each within 10 % of the next) by at least half of the ids, each the median of its
    group, the most shared first; and the fraction of ids sharing each.

    >>> _shared_periods([[12], [12, 30], [11], [7]])
    ([12], [0.75])
    """
    groups: list[list[int]] = []  # each: the ids' values of one period, ascending overall
    for p in sorted(q for periods in found for q in periods):
        if groups and p <= 1.1 * groups[-1][-1]:  # within 10 % of the nearest shorter one
            groups[-1].append(p)
        else:
            groups.append([p])
    shared = []
    for g in groups:
        ids = sum(any(q in g for q in periods) for periods in found)  # ids that found it
        if ids >= len(found) / 2:
            shared.append((int(np.median(g)), ids / len(found)))
    shared.sort(key=lambda ps: (-ps[1], ps[0]))
    return [p for p, _ in shared], [round(s, 3) for _, s in shared]

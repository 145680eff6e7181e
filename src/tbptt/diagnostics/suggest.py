"""Suggest subsequence lengths (k1/k2) for a time series from its ACF, PACF and periodogram.

The autocorrelation function (ACF) and partial autocorrelation function (PACF) are computed by
statsmodels (Box & Jenkins 1970, ch. 3; Bartlett's formula for the ACF's confidence band,
1/sqrt(n) for the PACF's). Two kinds of candidate lengths come out of them:

- the **memory**: the last significant PACF lag before the PACF stays inside its band for
  ``gap`` lags in a row (the order of the autoregression that explains the series: how far back
  one step depends *directly* on the past);
- the **dominant periods**: the strongest peaks of the periodogram (Schuster 1898) that rise
  above the white-noise level (a Fisher 1929 style test at level ``alpha``), each kept
  only if the ACF confirms it with a significant local maximum near that lag (which rejects
  the periodogram's harmonics such as a half-day in daily data) and dropped if it is a multiple
  of a shorter kept period whose ACF peak is at least as high (a repeat of that period, not a
  cycle of its own). A backward window of one period lets every update see a full cycle.

>>> import numpy as np
>>> t = np.arange(600)
>>> rng = np.random.default_rng(0)
>>> s = suggest(np.sin(2 * np.pi * t / 25) + 0.3 * rng.standard_normal(600))
>>> s.periods
[25]
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BUILTIN_SERIES", "Suggestion", "load_series", "suggest"]

BUILTIN_SERIES = {
    "sunspots": "monthly mean sunspot numbers 1749-1983 (pmdarima; 2820 months)",
    "taylor": "half-hourly electricity demand, England & Wales, 12 weeks of 2000 (pmdarima; 4032)",
    "sunspots-yearly": "yearly sunspot numbers 1700-2008 (statsmodels; 309 years)",
}


@dataclass
class Suggestion:
    """What :func:`suggest` found. Lags and periods are in steps of the series. Its ``repr``
    leaves out the ACF/PACF arrays (``s.acf`` ... hold them; ``s.summary()`` is the report)."""

    n: int  # length of the series
    acf: np.ndarray = field(repr=False)  # (max_lag + 1,) acf[0] = 1
    acf_confint: np.ndarray = field(repr=False)  # (max_lag + 1, 2) Bartlett band around acf
    pacf: np.ndarray = field(repr=False)  # (pacf_lags + 1,)
    pacf_confint: np.ndarray = field(repr=False)  # (pacf_lags + 1, 2)
    alpha: float  # the bands are 1 - alpha confidence intervals
    memory: int  # last significant PACF lag before `gap` insignificant ones (0: none)
    decorrelation: int  # first lag where the ACF enters the white-noise band
    periods: list[int]  # dominant periods, strongest first
    period_power: list[float] = field(default_factory=list)  # their periodogram power
    candidates: list[int] = field(default_factory=list)  # memory and periods, ascending

    @property
    def recommended(self) -> int:
        """The suggested backward length k2: the longest dominant period (a full cycle per
        update) or, without one, the PACF memory (at least 1)."""
        return max(self.periods) if self.periods else max(1, self.memory)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"series of {self.n} steps",
            f"PACF memory (last significant lag): {self.memory}",
            f"ACF decorrelation lag (enters the white-noise band): {self.decorrelation}",
            "dominant periods: " + (", ".join(map(str, self.periods)) or "none found"),
            "candidate subsequence lengths: " + ", ".join(map(str, self.candidates)),
            f"recommended k2: {self.recommended}",
        ]
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Figure:
        """ACF and PACF with their confidence bands, the suggestions marked; saved to ``path``
        (PNG/SVG by suffix) if given."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 6), layout="constrained")
        ax_acf, ax_pacf = fig.subplots(2, 1)
        lags = np.arange(len(self.acf))
        band = self.acf_confint - self.acf[:, None]
        ax_acf.fill_between(lags, band[:, 0], band[:, 1], color="tab:blue", alpha=0.15, lw=0)
        ax_acf.plot(lags, self.acf, color="tab:blue", lw=1)
        ax_acf.axhline(0, color="k", lw=0.5)
        for i, p in enumerate(self.periods):
            ax_acf.axvline(p, color="tab:red", ls="--", lw=1)
            ax_acf.annotate(
                f"period {p}",
                (p, self.acf[p]),
                xytext=(4, 6 + 12 * i),
                textcoords="offset points",
                color="tab:red",
            )
        ax_acf.set_ylabel("ACF")
        ax_acf.set_title(title or f"ACF (band: Bartlett, {1 - self.alpha:.0%})")

        plags = np.arange(len(self.pacf))
        pband = self.pacf_confint - self.pacf[:, None]
        ax_pacf.fill_between(plags, pband[:, 0], pband[:, 1], color="tab:green", alpha=0.2, lw=0)
        ax_pacf.vlines(plags[1:], 0, self.pacf[1:], color="tab:green", lw=1)
        ax_pacf.axhline(0, color="k", lw=0.5)
        if self.memory:
            ax_pacf.axvline(self.memory, color="tab:purple", ls="--", lw=1)
            ax_pacf.annotate(
                f"memory {self.memory}",
                (self.memory, 0.8 * float(np.nanmax(self.pacf[1:]))),
                xytext=(4, 0),
                textcoords="offset points",
                color="tab:purple",
            )
        ax_pacf.set_ylabel("PACF")
        ax_pacf.set_xlabel("lag (steps)")
        ax_pacf.set_title(
            "PACF; suggested lengths: " + ", ".join(map(str, self.candidates)), fontsize=10
        )
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig


def suggest(
    series: Any,
    *,
    max_lag: int | None = None,
    pacf_lags: int | None = None,
    alpha: float = 0.05,
    gap: int = 5,
    max_periods: int = 3,
    min_period: int = 2,
) -> Suggestion:
    """Candidate subsequence lengths for a 1-D series (see the module docstring for the method).

    Args:
        series: 1-D numbers (list, numpy array, pandas Series, torch tensor), all finite: a
            NaN or inf is refused (dropping it would shift every later lag), so fill or cut the
            gaps first.
        max_lag: the longest lag (and period) considered; default ``n // 2 - 1``.
        pacf_lags: PACF lags computed; default ``min(max_lag, 400)``.
        alpha: the confidence bands are ``1 - alpha`` intervals.
        gap: the PACF memory ends at the last significant lag before ``gap`` insignificant ones.
        max_periods: at most this many periodogram peaks are considered for periods.
        min_period: shorter periods are ignored.
    """
    from scipy.signal import find_peaks, periodogram
    from statsmodels.tsa.stattools import acf, pacf

    x = _as_1d(series)
    n = len(x)
    if n < 16:
        raise ValueError(f"series must have at least 16 values, got {n}. Give a longer series.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; e.g. alpha=0.05.")
    if np.ptp(x) == 0:
        raise ValueError(
            f"series is constant (all {n} values are {x[0]:g}): its ACF is undefined. Give a "
            "series that varies (check the column)."
        )
    limit = n // 2 - 1
    if max_lag is None:
        max_lag = limit
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or not 2 <= max_lag <= limit:
        raise ValueError(
            f"max_lag must be an integer in [2, n // 2 - 1] = [2, {limit}], got {max_lag!r}."
        )
    pacf_lags = min(max_lag, 400) if pacf_lags is None else pacf_lags
    if isinstance(pacf_lags, bool) or not isinstance(pacf_lags, int) or not 1 <= pacf_lags <= limit:
        raise ValueError(
            f"pacf_lags must be an integer in [1, n // 2 - 1] = [1, {limit}], got {pacf_lags!r}."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        r, r_ci = acf(x, nlags=max_lag, alpha=alpha, fft=True)
        p, p_ci = pacf(x, nlags=pacf_lags, alpha=alpha, method="ldb")
    r, p = np.asarray(r), np.asarray(p)
    white = _z(alpha) / math.sqrt(n)  # the white-noise band half-width

    # memory: last significant PACF lag before `gap` insignificant ones
    memory, run = 0, 0
    for lag in range(1, len(p)):
        if abs(p[lag]) > white:
            memory, run = lag, 0
        else:
            run += 1
            if run >= gap and memory:
                break
    inside = np.nonzero(r[1:] < white)[0]
    decorrelation = int(inside[0]) + 1 if len(inside) else max_lag

    # periods: periodogram peaks confirmed by an ACF local maximum
    freq, power = periodogram(x, detrend="linear", nfft=8 * n)  # zero-padded: finer periods
    _, raw = periodogram(x, detrend="linear")  # at the Fourier frequencies k / n
    # Under white noise the raw ordinates are ~ exponential around their mean: a peak above
    # ln(#frequencies / alpha) times the mean is significant at level ~alpha (Fisher 1929).
    threshold = math.log(len(raw) / alpha) * float(raw[1:].mean())
    peaks, _ = find_peaks(power)
    peaks = peaks[freq[peaks] > 0]
    periods_f = 1.0 / freq[peaks]
    keep = (periods_f >= min_period) & (periods_f <= max_lag)
    peaks, periods_f = peaks[keep], periods_f[keep]
    order = np.argsort(-power[peaks])
    acf_peaks, _ = find_peaks(r)
    half = r_ci[:, 1] - r
    found: list[tuple[int, int, float, float]] = []  # (period, acf peak lag, power, acf there)
    for i in order:
        period, pw = float(periods_f[i]), float(power[peaks[i]])
        k = round(freq[peaks[i]] * n)  # the nearest Fourier frequencies
        if raw[max(1, k - 1) : k + 2].max() <= threshold:
            continue  # not above the white-noise level: noise
        near = acf_peaks[np.abs(acf_peaks - period) <= max(2.0, 0.1 * period)]
        if not len(near):
            continue
        lag = int(near[np.argmax(r[near])])
        if r[lag] <= max(white, half[lag]):
            continue  # not a significant repetition: a harmonic or noise
        if any(abs(period - q) <= 0.1 * q or lag == q_lag for q, q_lag, _, _ in found):
            continue  # a sidelobe of a stronger peak, confirmed by the same ACF peak
        found.append((round(period), lag, pw, float(r[lag])))
        if len(found) >= max_periods:
            break
    kept: list[tuple[int, int, float, float]] = []
    for period, lag, pw, height in sorted(found, key=lambda f: f[1]):
        repeats = [
            q
            for _, q, _, h in kept
            if abs(lag - round(lag / q) * q) <= max(2.0, 0.1 * q) and height <= h
        ]
        if not repeats:  # not a mere repeat of a shorter, stronger period
            kept.append((period, lag, pw, height))
    kept.sort(key=lambda k: -k[2])
    periods = [k[0] for k in kept]
    candidates = sorted({*periods, *([memory] if memory else [])})
    return Suggestion(
        n=n,
        acf=r,
        acf_confint=np.asarray(r_ci),
        pacf=p,
        pacf_confint=np.asarray(p_ci),
        alpha=alpha,
        memory=memory,
        decorrelation=decorrelation,
        periods=periods,
        period_power=[k[2] for k in kept],
        candidates=candidates,
    )


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def _as_1d(series: Any) -> np.ndarray:
    if hasattr(series, "detach"):  # a torch tensor
        series = series.detach().cpu().numpy()
    try:
        x = np.asarray(series, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"series must be 1-D numbers (list, numpy array, pandas Series), got "
            f"{type(series).__name__}: {err}"
        ) from None
    x = np.squeeze(x)
    if x.ndim != 1:
        raise ValueError(
            f"series must be 1-D, got shape {x.shape}. Pick one column, e.g. series[:, 0]."
        )
    bad = np.nonzero(~np.isfinite(x))[0]
    if len(bad):
        raise ValueError(
            f"series has {len(bad)} NaN/inf value(s), the first at index {bad[0]} "
            f"({x[bad[0]]}); the lags are only meaningful without gaps. Fill them first (e.g. "
            "pandas Series.interpolate()) or keep a stretch without gaps."
        )
    return x


def load_series(source: str | Path, *, column: int | str | None = None) -> np.ndarray:
    """A built-in series by name (see ``BUILTIN_SERIES``) or numbers from a file.

    A file may hold one number per line, or CSV columns (a header row is skipped; ``column``
    picks a column by index or header name, default the last numeric column); Parquet, NumPy,
    compressed and ``;``-separated files are read as ``tbptt train --data`` reads them.
    """
    name = str(source)
    if name == "sunspots" or name == "taylor":
        try:
            from pmdarima import datasets
        except ImportError:
            raise ModuleNotFoundError(
                f"The built-in series {name!r} comes from pmdarima: pip install 'tbptt[diagnostics]'"
                " (or pip install pmdarima)."
            ) from None
        data = datasets.load_sunspots() if name == "sunspots" else datasets.load_taylor()
        return np.asarray(data, dtype=float)
    if name == "sunspots-yearly":
        import statsmodels.api as sm

        return np.asarray(sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"], dtype=float)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"DATA {name!r} is neither a file nor a built-in series; give a CSV/text file of "
            f"numbers or one of: {', '.join(BUILTIN_SERIES)}."
        )
    if _is_table_file(path):
        return _table_column(path, column, name)
    from tbptt.datasets import read_utf8
    from tbptt.tabular.io import _is_number

    rows = list(csv.reader(io.StringIO(read_utf8(path, f"DATA {name!r}"))))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    header: list[str] | None = None
    if rows and not _is_number(rows[0][-1]):
        header, rows = rows[0], rows[1:]
    if not rows:
        raise ValueError(f"DATA {name!r} holds no rows of numbers. Give a file of numbers.")
    width = len(header if header is not None else rows[0])
    col = _column_index(column, header, width, name)
    label = repr(header[col]) if header and -len(header) <= col < len(header) else str(col)
    values = []
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(
                f"line {i + 1 + (header is not None)} of {name!r} has {len(r)} cell(s), the "
                f"{'header' if header is not None else 'first line'} {width}: the columns "
                "would not line up. Fix that line (an empty cell is written 'a,,c')."
            )
        cell = r[col].strip()
        value = float(cell) if _is_number(cell) else math.nan
        if not math.isfinite(value):
            what = f"holds {cell!r}, not a finite number" if cell else "is empty"
            raise ValueError(
                f"line {i + 1 + (header is not None)} of {name!r}, column {label}, {what}. "
                "Fill or cut the gaps first (e.g. pandas Series.interpolate()), or pick "
                "another column with column=... (--column)."
            )
        values.append(value)
    return np.asarray(values)


def _is_table_file(path: Path) -> bool:
    """Parquet, Feather, JSON, Excel, NumPy, compressed or ``;``-separated files: read as ``tbptt train --data``
    reads them (pandas, pyarrow); plain CSV and text files by the strict reader below."""
    from tbptt.tabular.io import _COMPRESSED, _READERS

    suffixes = [x.lower() for x in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in (*_READERS, ".npy", ".npz", *_COMPRESSED):
        return True
    with open(path, "rb") as f:
        head = f.read(4096)
    first = head.split(b"\n", 1)[0]
    quoted = b'"' in head and b"\0" not in head  # a text table quoting "1,234.5"
    return (b";" in first and b"," not in first) or quoted


def _table_column(path: Path, column: int | str | None, name: str) -> np.ndarray:
    """One column of a table file (``--data``'s reader), checked like the text path."""
    from tbptt.tabular.io import read_table

    df = read_table(path)
    header = [str(c) for c in df.columns]
    col = _column_index(column, header, len(header), name)
    label = header[col]
    values = _as_floats(df.iloc[:, col])
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(
            f"row {bad[0]} of {name!r}, column {label!r}, holds {df.iloc[bad[0], col]!r}, not "
            "a finite number. Fill or cut the gaps first (e.g. pandas Series.interpolate()), "
            "or pick another column with column=... (--column)."
        )
    return values


def _as_floats(col: Any) -> np.ndarray:
    """A column as float64, NaN where a cell is not a number."""
    import pandas as pd

    return np.asarray(pd.to_numeric(col, errors="coerce"), dtype=np.float64)


def _column_index(column: int | str | None, header: list[str] | None, width: int, name: str) -> int:
    """The index of ``column`` (a header name or an index, negative from the end; ``None``:
    the last) in rows ``width`` cells wide."""
    if isinstance(column, str):
        if header is None or column not in header:
            raise ValueError(
                f"column {column!r} (--column) is not in the header of {name!r} ({header}); "
                "pass one of its names or an index."
            )
        return header.index(column)
    col = -1 if column is None else column
    if not -width <= col < width:
        raise ValueError(
            f"column {col} (--column) is out of range: {name!r} has {width} column(s); pass an "
            f"index in [{-width}, {width - 1}] or a header name."
        )
    return col

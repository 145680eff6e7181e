"""The public series of ``benchmarks/forecast.py``: real data shipped inside Python packages.

Each loader returns a long table (one row per step; columns ``id``, ``time``, the target and
its covariates) and a :class:`Spec` saying which column is which, the season ``m`` used for the
seasonal-naive baseline and the MASE scale, and the horizon ``H``. Nothing is downloaded: every
file comes with ``statsmodels``, ``pmdarima`` or ``sktime`` (the ``bench`` extra).

| name | source | steps | m | H | covariates |
|---|---|---|---|---|---|
| sunspots | statsmodels, yearly 1700-2008 | 309 | 11 | 11 | |
| co2 | statsmodels, weekly Mauna Loa, monthly means | 526 | 12 | 12 | |
| elnino | statsmodels, monthly sea surface temperature | 732 | 12 | 12 | |
| elec_equip | statsmodels, monthly electrical equipment orders | 257 | 12 | 12 | |
| grunfeld | statsmodels, 10 firms x 20 years investment | 10 x 20 | 1 | 4 | value, capital |
| interest_inflation | statsmodels, quarterly German rate R | 107 | 4 | 4 | Dp |
| austres | pmdarima, quarterly Australian residents | 89 | 4 | 8 | |
| heartrate | pmdarima, heart rate every 0.5 s | 150 | 1 | 10 | |
| shampoo | sktime ShampooSales, monthly | 36 | 12 | 6 | |
| seatbelts | sktime, monthly UK road casualties KSI | 192 | 12 | 12 | law |
| solar | sktime, half-hourly UK solar generation | 289 | 48 | 48 | |

A second group, ``UNSEEN`` (``benchmarks/forecast.py --group unseen``), holds series that were
never used to choose a default: the check that the defaults generalise. Seasonally adjusted or
yearly series take ``m = 1`` (the naive forecast), as an analyst would.

| name | source | steps | m | H | covariates |
|---|---|---|---|---|---|
| nile | statsmodels, yearly Nile flow 1871-1970 (a level shift) | 100 | 1 | 5 | |
| lynx | pmdarima, yearly Canadian lynx trappings (a ~10-year cycle) | 114 | 10 | 10 | |
| airpassengers | pmdarima, monthly airline passengers (trend, growing season) | 144 | 12 | 12 | |
| wineind | pmdarima, monthly Australian wine sales | 176 | 12 | 12 | |
| woolyrnq | pmdarima, quarterly Australian woollen yarn production | 119 | 4 | 8 | |
| us_unemp | statsmodels macrodata, quarterly US unemployment (adjusted) | 203 | 1 | 8 | |
| us_realgdp | statsmodels macrodata, quarterly US real GDP (adjusted, trend) | 203 | 1 | 8 | |
| uschange | sktime Uschange, quarterly US consumption growth | 187 | 1 | 8 | income, production, savings, unemployment |
| taylor | pmdarima, half-hourly electricity demand, the last 6 weeks | 2016 | 48 | 48 | |
| msft | pmdarima, daily Microsoft close, the last 1,000 trading days | 1000 | 1 | 5 | |
| fertility | statsmodels, yearly fertility rate 1960-2011, the complete countries | 52 x 192 | 1 | 5 | |

A third group, ``FRESH`` (``--group fresh``), was added after the forecasting ensemble's default
was chosen on the tuning group and checked on the unseen one, and run once, at the end, with the
peers that run fast (no Darts): the honest held-out figure for that choice.

| name | source | steps | m | H | covariates |
|---|---|---|---|---|---|
| ausbeer | pmdarima, quarterly Australian beer production 1956-2008 | 211 | 4 | 8 | |
| us_infl | statsmodels macrodata, quarterly US inflation rate | 203 | 1 | 8 | |
| us_tbilrate | statsmodels macrodata, quarterly US 3-month T-bill rate | 203 | 1 | 8 | |
| us_realinv | statsmodels macrodata, quarterly US real investment (adjusted) | 203 | 1 | 8 | |
| danish | statsmodels danish_data, quarterly Danish log real money 1974-1987 | 55 | 4 | 4 | lry, lpy, ibo, ide |
| ecg | sktime mitdb, an ECG record, the last 2,000 samples | 2000 | 1 | 10 | |

sktime's PBS_dataset (monthly scripts of one drug, 1991-2008) was in the group's first list and
dropped after its first run had started: its last 38 months are all 0 (the drug fell out of
use), so its whole holdout is zeros and scores only who predicts 0 best; the loader stays
(``pbs``) for the record.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DATASETS", "FRESH", "GROUPS", "UNSEEN", "Spec", "load"]


@dataclass(frozen=True)
class Spec:
    """Which columns of a dataset's long table are what, and its season and horizon."""

    name: str
    target: str
    season: int
    horizon: int
    id: str | None = None  # a panel: one sequence per value
    time: str = "time"
    features: tuple[str, ...] = field(default_factory=tuple)


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"{package} is not installed; pip install -e '.[bench]'")
    return Path(spec.origin).parent.joinpath(*parts)


def _monthly(values: np.ndarray, start: str) -> pd.Series:
    return pd.Series(pd.date_range(start, periods=len(values), freq="MS").strftime("%Y-%m-%d"))


def _sunspots() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.sunspots.load_pandas().data
    return pd.DataFrame({"time": d["YEAR"].astype(int), "y": d["SUNACTIVITY"].astype(float)})


def _co2() -> pd.DataFrame:
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # 4 weekly gaps bridged linearly
    return pd.DataFrame({"time": monthly.index.strftime("%Y-%m-%d"), "y": monthly.to_numpy()})


def _elnino() -> pd.DataFrame:
    import statsmodels.api as sm

    wide = sm.datasets.elnino.load_pandas().data
    y = wide.drop(columns="YEAR").to_numpy(dtype=float).reshape(-1)  # row-major: year, month
    return pd.DataFrame({"time": _monthly(y, f"{int(wide['YEAR'].iloc[0])}-01-01"), "y": y})


def _elec_equip() -> pd.DataFrame:
    from statsmodels.datasets import elec_equip

    d = elec_equip.load_pandas().data.iloc[:, 0]
    return pd.DataFrame({"time": d.index.strftime("%Y-%m-%d"), "y": d.to_numpy(dtype=float)})


def _grunfeld() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.grunfeld.load_pandas().data
    out = d.rename(columns={"firm": "id", "year": "time", "invest": "y"})
    out["time"] = out["time"].astype(int)
    return out[["id", "time", "y", "value", "capital"]].reset_index(drop=True)


def _interest_inflation() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.interest_inflation.load_pandas().data
    months = (d["quarter"].astype(int) - 1) * 3 + 1
    time = pd.to_datetime({"year": d["year"].astype(int), "month": months, "day": 1})
    return pd.DataFrame({"time": time.dt.strftime("%Y-%m-%d"), "y": d["R"], "Dp": d["Dp"]})


def _austres() -> pd.DataFrame:
    from pmdarima import datasets

    y = np.asarray(datasets.load_austres(), dtype=float)  # 1971 Q2 to 1993 Q2
    time = pd.date_range("1971-04-01", periods=len(y), freq="QS").strftime("%Y-%m-%d")
    return pd.DataFrame({"time": time, "y": y})


def _heartrate() -> pd.DataFrame:
    from pmdarima import datasets

    y = np.asarray(datasets.load_heartrate(), dtype=float)
    return pd.DataFrame({"time": np.arange(len(y)), "y": y})


def _shampoo() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "ShampooSales", "ShampooSales.csv"))
    return pd.DataFrame({"time": d["Time"] + "-01", "y": d["Sales"].astype(float)})


def _seatbelts() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "seatbelts", "seatbelts.csv"))
    return pd.DataFrame({"time": d.iloc[:, 0], "y": d["KSI"].astype(float), "law": d["label"]})


def _solar() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "solar", "solar.csv"))
    time = pd.to_datetime(d["datetime_gmt"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame({"time": time, "y": d["solar_gen"].astype(float)})


def _nile() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.nile.load_pandas().data
    return pd.DataFrame({"time": d["year"].astype(int), "y": d["volume"].astype(float)})


def _pmdarima(name: str, start: str | None, freq: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from pmdarima import datasets

        y = np.asarray(getattr(datasets, f"load_{name}")(), dtype=float)
        if start is None:  # yearly: the year as a number
            return pd.DataFrame({"time": np.arange(len(y)) + int(freq), "y": y})
        time = pd.date_range(start, periods=len(y), freq=freq).strftime("%Y-%m-%d")
        return pd.DataFrame({"time": time, "y": y})

    return load


def _macro(column: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import statsmodels.api as sm

        d = sm.datasets.macrodata.load_pandas().data
        months = (d["quarter"].astype(int) - 1) * 3 + 1
        time = pd.to_datetime({"year": d["year"].astype(int), "month": months, "day": 1})
        return pd.DataFrame({"time": time.dt.strftime("%Y-%m-%d"), "y": d[column].astype(float)})

    return load


def _uschange() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "Uschange", "Uschange.csv"))
    time = pd.PeriodIndex(d["Quarter"].str.replace(" ", ""), freq="Q").start_time
    out = d[["Consumption", "Income", "Production", "Savings", "Unemployment"]].astype(float)
    out.columns = ["y", "income", "production", "savings", "unemployment"]
    out.insert(0, "time", time.strftime("%Y-%m-%d"))
    return out


def _taylor() -> pd.DataFrame:
    from pmdarima import datasets

    y = np.asarray(datasets.load_taylor(), dtype=float)[-6 * 7 * 48 :]  # the last 6 weeks
    time = pd.date_range("2000-07-24", periods=len(y), freq="30min")  # a Monday: whole weeks
    return pd.DataFrame({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "y": y})


def _msft() -> pd.DataFrame:
    from pmdarima import datasets

    d = datasets.load_msft().iloc[-1000:]  # trading days: the dates have gaps (weekends)
    return pd.DataFrame({"time": np.arange(len(d)), "y": d["Close"].to_numpy(dtype=float)})


def _fertility() -> pd.DataFrame:
    import statsmodels.api as sm

    wide = sm.datasets.fertility.load_pandas().data
    years = [str(y) for y in range(1960, 2012)]
    wide = wide.dropna(subset=years)  # the countries with every year
    long = wide.melt(id_vars="Country Code", value_vars=years, var_name="time", value_name="y")
    long = long.rename(columns={"Country Code": "id"})
    long["time"] = long["time"].astype(int)
    return long.sort_values(["id", "time"]).reset_index(drop=True)[["id", "time", "y"]]


DATASETS: dict[str, tuple[Spec, Callable[[], pd.DataFrame]]] = {
    "sunspots": (Spec("sunspots", "y", season=11, horizon=11), _sunspots),
    "co2": (Spec("co2", "y", season=12, horizon=12), _co2),
    "elnino": (Spec("elnino", "y", season=12, horizon=12), _elnino),
    "elec_equip": (Spec("elec_equip", "y", season=12, horizon=12), _elec_equip),
    "grunfeld": (
        Spec("grunfeld", "y", season=1, horizon=4, id="id", features=("value", "capital")),
        _grunfeld,
    ),
    "interest_inflation": (
        Spec("interest_inflation", "y", season=4, horizon=4, features=("Dp",)),
        _interest_inflation,
    ),
    "austres": (Spec("austres", "y", season=4, horizon=8), _austres),
    "heartrate": (Spec("heartrate", "y", season=1, horizon=10), _heartrate),
    "shampoo": (Spec("shampoo", "y", season=12, horizon=6), _shampoo),
    "seatbelts": (Spec("seatbelts", "y", season=12, horizon=12, features=("law",)), _seatbelts),
    "solar": (Spec("solar", "y", season=48, horizon=48), _solar),
}

UNSEEN: dict[str, tuple[Spec, Callable[[], pd.DataFrame]]] = {
    "nile": (Spec("nile", "y", season=1, horizon=5), _nile),
    "lynx": (Spec("lynx", "y", season=10, horizon=10), _pmdarima("lynx", None, "1821")),
    "airpassengers": (
        Spec("airpassengers", "y", season=12, horizon=12),
        _pmdarima("airpassengers", "1949-01-01", "MS"),
    ),
    "wineind": (
        Spec("wineind", "y", season=12, horizon=12),
        _pmdarima("wineind", "1980-01-01", "MS"),
    ),
    "woolyrnq": (
        Spec("woolyrnq", "y", season=4, horizon=8),
        _pmdarima("woolyrnq", "1965-01-01", "QS"),
    ),
    "us_unemp": (Spec("us_unemp", "y", season=1, horizon=8), _macro("unemp")),
    "us_realgdp": (Spec("us_realgdp", "y", season=1, horizon=8), _macro("realgdp")),
    "uschange": (
        Spec(
            "uschange",
            "y",
            season=1,
            horizon=8,
            features=("income", "production", "savings", "unemployment"),
        ),
        _uschange,
    ),
    "taylor": (Spec("taylor", "y", season=48, horizon=48), _taylor),
    "msft": (Spec("msft", "y", season=1, horizon=5), _msft),
    "fertility": (Spec("fertility", "y", season=1, horizon=5, id="id"), _fertility),
}


def _ausbeer() -> pd.DataFrame:
    from pmdarima import datasets

    y = np.asarray(datasets.load_ausbeer(), dtype=float)
    y = y[np.isfinite(y)]  # the file ends with an empty quarter
    time = pd.date_range("1956-01-01", periods=len(y), freq="QS").strftime("%Y-%m-%d")
    return pd.DataFrame({"time": time, "y": y})


def _pbs() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "PBS_dataset", "PBS_dataset.csv"))
    time = pd.to_datetime(d["Month"], format="%Y %b").dt.strftime("%Y-%m-%d")
    return pd.DataFrame({"time": time, "y": d["Scripts"].astype(float)})


def _danish() -> pd.DataFrame:
    import statsmodels.api as sm

    d = sm.datasets.danish_data.load_pandas().data
    out = d[["lrm", "lry", "lpy", "ibo", "ide"]].astype(float).rename(columns={"lrm": "y"})
    out.insert(0, "time", pd.to_datetime(d.index).strftime("%Y-%m-%d"))
    return out.reset_index(drop=True)


def _ecg() -> pd.DataFrame:
    d = pd.read_csv(_package_file("sktime", "datasets", "data", "mitdb", "mitdb.csv"))
    y = d["data"].to_numpy(dtype=float)[-2000:]
    return pd.DataFrame({"time": np.arange(len(y)), "y": y})


FRESH: dict[str, tuple[Spec, Callable[[], pd.DataFrame]]] = {
    "ausbeer": (Spec("ausbeer", "y", season=4, horizon=8), _ausbeer),
    "us_infl": (Spec("us_infl", "y", season=1, horizon=8), _macro("infl")),
    "us_tbilrate": (Spec("us_tbilrate", "y", season=1, horizon=8), _macro("tbilrate")),
    "us_realinv": (Spec("us_realinv", "y", season=1, horizon=8), _macro("realinv")),
    "danish": (
        Spec("danish", "y", season=4, horizon=4, features=("lry", "lpy", "ibo", "ide")),
        _danish,
    ),
    "ecg": (Spec("ecg", "y", season=1, horizon=10), _ecg),
}

DROPPED: dict[str, tuple[Spec, Callable[[], pd.DataFrame]]] = {
    "pbs": (Spec("pbs", "y", season=12, horizon=12), _pbs),
}

GROUPS = {"tuning": DATASETS, "unseen": UNSEEN, "fresh": FRESH}
"""The tuning series (the defaults were chosen looking at them), the held-out ones, and the
fresh ones (added after the ensemble's default was chosen; run once)."""


def load(name: str) -> tuple[Spec, pd.DataFrame]:
    """The spec and long table of one public dataset (an ``id`` column is always present)."""
    known = {**DATASETS, **UNSEEN, **FRESH, **DROPPED}
    if name not in known:
        raise ValueError(f"dataset={name!r} is not known; choose one of {sorted(known)}.")
    spec, loader = known[name]
    frame = loader()
    if "id" not in frame.columns:
        frame.insert(0, "id", name)
    if frame[spec.target].isna().any():
        raise ValueError(f"{name}: the target has {int(frame[spec.target].isna().sum())} NaNs.")
    return spec, frame

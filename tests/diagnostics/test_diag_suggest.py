"""suggest(): the sunspot cycle in monthly data, the daily and weekly periods in half-hourly
demand, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from tbptt.diagnostics import Suggestion, load_series, suggest

pytest.importorskip("pmdarima")


def test_monthly_sunspots_have_the_11_year_cycle(tmp_path):
    s = suggest(load_series("sunspots"))
    assert s.n == 2820
    assert len(s.periods) >= 1 and 128 <= s.periods[0] <= 136  # months, ~11 years
    assert s.recommended == s.periods[0]
    assert s.periods[0] in s.candidates and s.memory in s.candidates
    fig = s.plot(tmp_path / "sun.png")
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert f"period {s.periods[0]}" in labels  # the cycle is marked on the ACF
    assert (tmp_path / "sun.png").stat().st_size > 10_000


def test_half_hourly_demand_has_daily_and_weekly_periods():
    s = suggest(load_series("taylor"))
    assert sorted(s.periods) == [48, 336]
    assert s.recommended == 336
    assert "dominant periods: 48, 336" in s.summary()


def test_confidence_bands_come_from_statsmodels():
    from statsmodels.tsa.stattools import acf

    x = load_series("taylor")[:600]
    s = suggest(x, max_lag=100, pacf_lags=60)
    r, ci = acf(x, nlags=100, alpha=0.05, fft=True, result_object=False)
    np.testing.assert_allclose(s.acf, r)
    np.testing.assert_allclose(s.acf_confint, ci)
    assert s.pacf.shape == (61,) and s.pacf_confint.shape == (61, 2)


def test_white_noise_has_no_period():
    s = suggest(np.random.default_rng(1).standard_normal(1000))
    assert isinstance(s, Suggestion) and s.periods == []
    assert s.recommended >= 1


def test_csv_files(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("time,value\n" + "".join(f"{i},{np.sin(i / 3):.5f}\n" for i in range(50)))
    x = load_series(f)
    assert x.shape == (50,) and x[1] == pytest.approx(np.sin(1 / 3), abs=1e-5)
    assert load_series(f, column="time")[-1] == 49
    g = tmp_path / "numbers.txt"
    g.write_text("1\n2\n3\n")
    assert list(load_series(g)) == [1, 2, 3]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="at least 16 values, got 3"):
        suggest([1.0, 2.0, 3.0])
    with pytest.raises(
        ValueError, match=r"max_lag must be an integer in \[2, n // 2 - 1\] = \[2, 49\], got 80"
    ):
        suggest(np.arange(100.0), max_lag=80)
    with pytest.raises(ValueError, match="series must be 1-D, got shape"):
        suggest(np.zeros((50, 2)))
    with pytest.raises(ValueError, match="alpha must be in"):
        suggest(np.arange(100.0), alpha=2)
    with pytest.raises(FileNotFoundError, match=r"neither a file nor a built-in series.*sunspots"):
        load_series("nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("1\n2\nx y\n")
    with pytest.raises(
        ValueError, match=r"line 3 of .*, column -1, holds 'x y', not a finite number"
    ):
        load_series(bad)


def test_table_files_are_read_like_train_data(tmp_path):
    import pandas as pd

    y = np.sin(np.arange(120) * 2 * np.pi / 12) + 0.01 * np.arange(120)
    df = pd.DataFrame({"t": np.arange(120), "y": y, "s": "a"})
    df.to_parquet(tmp_path / "a.parquet")
    df.to_csv(tmp_path / "a.csv.gz", index=False)
    df.to_csv(tmp_path / "eu.csv", sep=";", decimal=",", index=False)
    np.save(tmp_path / "a.npy", y)
    for name, column in (("a.parquet", "y"), ("a.csv.gz", "y"), ("eu.csv", "y"), ("a.npy", 0)):
        np.testing.assert_allclose(load_series(tmp_path / name, column=column), y)
    with pytest.raises(ValueError, match="column 's', holds 'a', not a finite number"):
        load_series(tmp_path / "a.parquet", column="s")

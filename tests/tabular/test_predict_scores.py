"""tbptt predict RUN --data OTHER: the report's scores on another file (file_scores.py), and a
large Parquet file streamed in blocks of ids with the same output as the in-memory path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tbptt.cli import main

FAST = ["--progress", "off", "--tensorboard", "off", "--updates", "8", "--eval-every", "4"]


def forecast_panel(ids: int, seed: int, n0: int = 40) -> pd.DataFrame:
    """Ids with a trend and a weekly season, ids contiguous and in time order."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(ids):
        n = n0 + 5 * i
        t = np.arange(n)
        y = 5 + i + 0.05 * t + np.sin(2 * np.pi * t / 7) + 0.1 * rng.normal(size=n)
        frames.append(pd.DataFrame({
            "store": f"s{seed}_{i}", "date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "y": y, "promo": (rng.random(n) < 0.2).astype(float),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def train(tmp_path: Path, data: Path, *args: str, name: str = "r") -> Path:
    runs = ["--runs-dir", str(tmp_path / "runs"), "--name", name]
    assert main(["train", "--data", str(data), *args, *runs, *FAST]) == 0
    return tmp_path / "runs" / name


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fc")
    data = tmp / "train.csv"
    forecast_panel(3, seed=0).to_csv(data, index=False)
    return train(tmp, data, "--target", "y", "--id", "store", "--time", "date", "--season", "7")


def test_forecast_scores_on_another_file(forecast_run, tmp_path, capsys):
    other = tmp_path / "other.csv"
    df = forecast_panel(4, seed=5)
    df.loc[3, "y"] = np.nan  # a row without a target is not scored
    df.to_csv(other, index=False)
    out = tmp_path / "out.csv"
    capsys.readouterr()
    assert main(["predict", str(forecast_run), "--data", str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "other.csv (y, one step ahead): model MASE" in printed
    assert "naive (last value) MASE" in printed and "training mean MASE" in printed
    got = json.loads((tmp_path / "out.scores.json").read_text())
    assert f"{got['model']['y']['mase']:.3f}" in printed
    # independently: the one-step rows of out.csv against the file, and the naive forecast
    table = pd.read_csv(out)
    one = table[table["kind"] == "one_step"].reset_index(drop=True)
    y = df["y"].to_numpy()
    prev = df.groupby("store")["y"].shift(1).to_numpy()
    m = 7
    pos = df.groupby("store").cumcount().to_numpy()
    snaive = np.where(pos >= m, df.groupby("store")["y"].shift(m).to_numpy(), prev)
    first = pos == 0
    ok = ~first & np.isfinite(y) & np.isfinite(prev) & np.isfinite(snaive)
    ok &= np.isfinite(one["yhat"].to_numpy())
    err = y[ok] - one["yhat"].to_numpy()[ok]
    assert (
        got["scored"] == ok.sum() == len(df) - 4 - 3
    )  # 4 first rows; the NaN, a step and a season later
    assert got["model"]["y"]["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-9)
    assert got["model"]["y"]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-9)
    scale = {
        s: np.nanmean(np.abs(g["y"].to_numpy()[m:] - g["y"].to_numpy()[:-m]))
        for s, g in df.groupby("store", sort=False)
    }
    sc = df["store"].map(scale).to_numpy()[ok]
    naive_mase = np.mean(np.abs(y[ok] - prev[ok]) / sc)
    assert got["baselines"]["y"]["naive"]["mase"] == pytest.approx(naive_mase, rel=1e-9)
    assert got["model"]["y"]["mase"] == pytest.approx(np.mean(np.abs(err) / sc), rel=1e-9)


def test_no_target_to_score_is_one_line(forecast_run, tmp_path, capsys):
    other = tmp_path / "empty.csv"
    df = forecast_panel(2, seed=6)
    df["y"] = np.nan
    df.to_csv(other, index=False)
    out = tmp_path / "out.csv"
    capsys.readouterr()
    assert main(["predict", str(forecast_run), "--data", str(other), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        "no scores: empty.csv has no row with a target to score; wrote the predictions only."
    )
    assert out.exists() and not (tmp_path / "out.scores.json").exists()
    before = out.read_bytes()
    bad = str(tmp_path / "nowhere" / "o.csv")
    assert main(["predict", str(forecast_run), "--data", str(other), "--out", bad]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"tbptt: error: --out {bad!r}: no folder {str(tmp_path / 'nowhere')!r}; create it first."
    ]
    df.drop(columns="y").to_csv(other, index=False)  # a forecast's target is also its input
    assert main(["predict", str(forecast_run), "--data", str(other), "--out", str(out)]) == 2
    assert "--data: no column 'y'" in capsys.readouterr().err
    assert out.read_bytes() == before  # a failed predict leaves OUT.csv as it was


def test_classify_scores_on_another_file_and_without_labels(tmp_path, capsys):
    def sequences(n: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(n):
            lab = ["up", "down"][i % 2]
            x = np.cumsum((0.5 if lab == "up" else -0.5) + 0.2 * rng.normal(size=6 + i % 5))
            rows += [(f"{seed}-{i}", t, v, lab) for t, v in enumerate(x)]
        return pd.DataFrame(rows, columns=["id", "t", "x", "label"])

    sequences(24, 1).to_parquet(tmp_path / "c.parquet")
    run = train(tmp_path, tmp_path / "c.parquet", "--target", "label", "--id", "id", name="c")
    other = sequences(10, 2)
    other.to_csv(tmp_path / "o.csv", index=False)
    out = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(run), "--data", str(tmp_path / "o.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    got = json.loads((tmp_path / "p.scores.json").read_text())
    table = pd.read_csv(out)
    truth = other.groupby("id", sort=False)["label"].first().to_numpy()
    assert got["model"]["accuracy"] == pytest.approx((table["yhat"].to_numpy() == truth).mean())
    major = json.loads((run / "summary.json").read_text())["scores"]["baselines"]
    assert got["baselines"]["majority_class"] == major["majority_class"]
    assert got["baselines"]["majority_accuracy"] == 0.5  # 5 up, 5 down
    assert "o.csv (10 sequences): accuracy" in printed and "majority class" in printed
    other.drop(columns="label").to_csv(tmp_path / "n.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "n.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == (
        "no scores: n.csv has no column 'label' (the run's target); wrote the predictions only."
    )
    assert len(pd.read_csv(out)) == 10


# -- a large Parquet file: predicted in blocks of ids --------------------------------------------
@pytest.fixture
def streamed(monkeypatch):
    """Every Parquet file of more than 100 rows is streamed, in blocks of about 120 rows."""
    from tbptt.tabular import dataset, streamed

    monkeypatch.setattr(streamed, "STREAM_ROWS", 100)
    monkeypatch.setattr(streamed, "PREDICT_ROWS", 120)
    dataset._read.cache_clear()
    yield streamed
    dataset._read.cache_clear()


def test_streamed_predict_writes_what_the_in_memory_path_writes(
    forecast_run, tmp_path, monkeypatch, capsys
):
    from tbptt.tabular import streamed

    path = tmp_path / "big.parquet"
    forecast_panel(6, seed=7).to_parquet(path, row_group_size=50)  # 315 rows, 6 ids
    args = ["predict", str(forecast_run), "--data", str(path), "--horizon", "4"]
    assert main([*args, "--out", str(tmp_path / "mem.csv")]) == 0
    blocks: list[int] = []
    real = streamed.iter_frames

    def counted(*a, **k):
        for i, df in real(*a, **k):
            blocks.append(len(df))
            yield i, df

    monkeypatch.setattr(streamed, "STREAM_ROWS", 100)
    monkeypatch.setattr(streamed, "PREDICT_ROWS", 120)
    monkeypatch.setattr(streamed, "iter_frames", counted)
    from tbptt.tabular.predict import Predictor

    panels: list[int] = []
    real_panel = Predictor.panel

    def sized(self, data):
        panel = real_panel(self, data)
        panels.append(len(panel.frame))
        return panel

    monkeypatch.setattr(Predictor, "panel", sized)
    assert main([*args, "--out", str(tmp_path / "str.csv")]) == 0
    assert blocks == [40, 45, 50, 55, 60, 65]  # read one id at a time
    assert panels == [40 + 45 + 50, 55 + 60 + 65]  # blocks of whole ids, each until >= 120 rows
    mem, got = (tmp_path / "mem.csv").read_bytes(), (tmp_path / "str.csv").read_bytes()
    assert got == mem
    a = json.loads((tmp_path / "mem.scores.json").read_text())
    b = json.loads((tmp_path / "str.scores.json").read_text())
    for who in ("model", "baselines"):
        flat_a, flat_b = pd.json_normalize(a[who]), pd.json_normalize(b[who])
        np.testing.assert_allclose(flat_a.to_numpy(float), flat_b.to_numpy(float), rtol=1e-10)


def test_predict_on_a_streamed_run_scores_its_validation_sample(
    tmp_path, streamed, monkeypatch, capsys
):
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 120)  # 2 of the 6 ids validate
    path = tmp_path / "p.parquet"
    forecast_panel(6, seed=0).to_parquet(path, row_group_size=50)
    run = train(tmp_path, path, "--target", "y", "--id", "store", "--time", "date", name="big")
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["predict", str(run), "--out", str(tmp_path / "o.csv")]) == 0
    printed = capsys.readouterr().out
    assert summary["verdict"].splitlines()[0] in printed  # the run's own validation scores
    assert len(pd.read_csv(tmp_path / "o.csv")) == 315 + 6 * int(summary["config"]["horizon"])


def test_out_parquet_holds_the_same_table_as_out_csv(forecast_run, tmp_path):
    csv, parquet = tmp_path / "p.csv", tmp_path / "p.parquet"
    assert main(["predict", str(forecast_run), "--out", str(csv)]) == 0
    assert main(["predict", str(forecast_run), "--out", str(parquet)]) == 0
    got, want = pd.read_parquet(parquet), pd.read_csv(csv, parse_dates=["t"])
    assert got["yhat"].dtype == np.float64 and list(got.columns) == list(want.columns)
    for frame in (got, want):  # the same dates, whatever unit each reader gives them
        frame["t"] = frame["t"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_predict_refuses_a_horizon_below_one(forecast_run, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", str(forecast_run), "--out", str(out), "--horizon", "0"]) == 2
    assert capsys.readouterr().err == (
        "tbptt: error: --horizon must be a positive integer, got 0; leave it out for the run's "
        "own horizon.\n"
    )
    assert not out.exists()


def test_predict_refuses_a_horizon_far_past_the_data_in_one_line(forecast_run, tmp_path, capsys):
    import tbptt

    out = tmp_path / "p.csv"
    longest = int(pd.read_csv(forecast_run / "predictions.csv").groupby("id").size().max())
    assert main(["predict", str(forecast_run), "--out", str(out), "--horizon", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tbptt: error: horizon 100000 is more than 10 times the longest")
    assert err.count("\n") == 1 and "at most 1000 steps" in err and not out.exists()
    assert longest * 10 <= 1000  # the floor of 1,000 steps applies to this short panel
    with pytest.raises(ValueError, match="horizon 5000 is more than 10 times"):
        tbptt.load(forecast_run).forecast(5000)
    assert len(tbptt.load(forecast_run).forecast(1000)) == 1000 * 3


def test_load_predict_takes_numbers_as_text_and_refuses_what_it_cannot_read(forecast_run):
    import warnings

    import tbptt

    model = tbptt.load(forecast_run)
    df = forecast_panel(3, seed=0)
    as_text = df.assign(y=df["y"].map(repr))  # numbers held as strings, as JSON or Excel give
    pd.testing.assert_frame_equal(model.predict(as_text), model.predict(df))
    with pytest.raises(ValueError, match=r"^the run's target column 'y' is not numeric \(e.g"):
        model.predict(df.assign(y="abc"))  # in Python's words, not the command line's
    with pytest.raises(ValueError, match=r"^the run's time column 'date': no column 'date' in "):
        model.predict(df.drop(columns="date"))
    with pytest.raises(ValueError, match="data has no rows"):
        model.predict(df.iloc[:0])
    with pytest.raises(TypeError, match="data must be a file path or a pandas DataFrame"):
        model.predict(np.zeros((3, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no target values at all: predicted without a warning
        out = model.predict(df.assign(y=np.nan), horizon=0)
    assert len(out) == len(df)

"""The data door end to end: tbptt train --data, tbptt predict, tbptt.load (tiny budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tbptt
from tbptt.cli import main

FAST = ["--progress", "off", "--tensorboard", "off", "--updates", "12", "--eval-every", "4"]


def panel_csv(path: Path, ids: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(ids):
        n = 40 + 7 * i
        t = np.arange(n)
        y = 5 + i + 0.05 * t + np.sin(2 * np.pi * t / 7) + 0.1 * rng.normal(size=n)
        dates = pd.date_range("2024-01-01", periods=n, freq="D")
        for d, v, p in zip(dates, y, rng.random(n) < 0.2):
            rows.append((f"s{i}", d.date().isoformat(), v, int(p), "x" if p else "y"))
    df = pd.DataFrame(rows, columns=["store", "date", "y", "promo", "kind"])
    df.sample(frac=1, random_state=0).to_csv(path, index=False)  # unsorted on purpose
    return path


def train(tmp_path: Path, *args: str, name: str = "r") -> Path:
    code = main(["train", *args, "--runs-dir", str(tmp_path / "runs"), "--name", name, *FAST])
    assert code == 0
    return tmp_path / "runs" / name


def test_forecast_predict_reproduces_validation_and_load_equals_cli(tmp_path, capsys):
    data = panel_csv(tmp_path / "my.csv")
    run = train(tmp_path, "--data", str(data), "--target", "y", "--id", "store", "--time", "date")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["task"] == "forecast"
    val = summary["val"]
    capsys.readouterr()
    out = tmp_path / "out.csv"
    assert (
        main(["predict", str(run), "--data", str(data), "--out", str(out), "--horizon", "5"]) == 0
    )
    printed = capsys.readouterr().out
    # the Trainer's validation RMSE of the best weights == predict's one-step RMSE on the
    # holdout of the network alone (before the one-step guard, which may combine it: guard.py)
    assert summary["scores"]["model"]["y"]["one_step_model_alone"]["rmse"] == pytest.approx(
        val["rmse"], rel=1e-5
    )
    assert f"RMSE {val['rmse']:.4g}" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "t", "kind", "yhat"]
    assert (table["kind"] == "forecast").sum() == 3 * 5
    first = table[table["kind"] == "one_step"].groupby("id").head(1)
    assert first["yhat"].isna().all()  # nothing precedes the first row of a sequence
    fc = table[(table["kind"] == "forecast") & (table["id"] == "s0")]
    assert fc["t"].tolist()[0] == "2024-02-10"  # 40 days from 2024-01-01: the time continues
    loaded = tbptt.load(run).predict(data, horizon=5)
    np.testing.assert_allclose(loaded["yhat"].to_numpy(float), table["yhat"].to_numpy(float))
    assert len(tbptt.load(run).forecast(2)) == 3 * 2
    assert (tbptt.load(run).predict(data, horizon=0)["kind"] == "one_step").all()
    with pytest.raises(ValueError, match="horizon must be a whole number of steps >= 0"):
        tbptt.load(run).predict(data, horizon=-1)


def test_classify_and_regress(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        lab = ["up", "down"][i % 2]
        x = np.cumsum((0.5 if lab == "up" else -0.5) + 0.2 * rng.normal(size=6 + i % 5))
        rows += [(i, t, v, lab, float(v.sum() if False else x.sum())) for t, v in enumerate(x)]
    df = pd.DataFrame(rows, columns=["id", "t", "x", "label", "total"])
    df.to_parquet(tmp_path / "c.parquet")
    run = train(
        tmp_path,
        "--data",
        str(tmp_path / "c.parquet"),
        "--target",
        "label",
        "--id",
        "id",
        "--features",
        "x",
        name="c",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["task"] == "classify"
    assert "majority class" in summary["verdict"] and "macro-F1" in summary["verdict"]
    assert (run / "confusion.png").exists()
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--out", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["id", "yhat", "p_down", "p_up"]
    run = train(
        tmp_path,
        "--data",
        str(tmp_path / "c.parquet"),
        "--target",
        "total",
        "--id",
        "id",
        "--features",
        "x",
        "--task",
        "regress",
        name="r",
    )
    assert "training mean" in json.loads((run / "summary.json").read_text())["verdict"]


def test_a_compressed_csv_is_read_like_the_plain_one(tmp_path):
    from tbptt.tabular.io import read_table

    df = pd.DataFrame({"t": np.arange(30), "y": np.sin(np.arange(30.0))})
    for name in ("a.csv.gz", "a.tsv.zip"):
        df.to_csv(tmp_path / name, sep="\t" if ".tsv" in name else ",", index=False)
        pd.testing.assert_frame_equal(read_table(tmp_path / name), df)
    df.to_parquet(tmp_path / "a.parquet.gz")
    with pytest.raises(ValueError, match=r"unknown file type '\.parquet\.gz'"):
        read_table(tmp_path / "a.parquet.gz")


def test_free_text_is_left_out_of_the_default_inputs_and_said(tmp_path, capsys):
    t = np.arange(80)
    df = pd.DataFrame({"t": t, "y": np.sin(t / 5.0), "note": [f"n{i}" for i in t], "c": t % 3})
    df["c"] = df["c"].map({0: "a", 1: "b", 2: "c"})
    df.to_csv(tmp_path / "f.csv", index=False)
    run = train(tmp_path, "--data", str(tmp_path / "f.csv"), "--target", "y", "--time", "t")
    printed = capsys.readouterr()
    assert "left out of the inputs: 'note' (text with more than 50" in printed.out + printed.err
    spec = tbptt.load(run).extra["spec"]
    assert spec["cats"] == {"c": ["a", "b", "c"]} and "note" not in spec["past"]
    df["d"] = pd.date_range("2020-01-01", periods=80, freq="D").strftime("%Y-%m-%d")
    df.to_csv(tmp_path / "g.csv", index=False)
    run = train(tmp_path, "--data", str(tmp_path / "g.csv"), "--target", "y", name="g")
    printed = capsys.readouterr()
    assert "left out of the inputs: 'd' (dates; give --time d to order" in printed.out + printed.err
    assert "d" not in tbptt.load(run).extra["spec"]["cats"]


def test_npy_one_series_and_npz_panel(tmp_path):
    t = np.arange(80.0)
    np.save(tmp_path / "a.npy", np.stack([np.sin(t / 3), np.cos(t / 3)], 1))  # (T, F)
    run = train(tmp_path, "--data", str(tmp_path / "a.npy"), "--target", "0", name="a")
    assert json.loads((run / "summary.json").read_text())["config"]["task"] == "forecast"
    x = np.random.default_rng(0).normal(size=(12, 9, 2))
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(12) % 2)
    run = train(
        tmp_path, "--data", str(tmp_path / "b.npz"), "--target", "y", "--id", "id", name="b"
    )
    assert json.loads((run / "summary.json").read_text())["config"]["task"] == "classify"


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("", ["--target", "y"], "is empty"),
        ("y,x\n", ["--target", "y"], "no rows"),
        ("y,x\n1,2\n3,4\n", ["--target", "z"], "--target 'z'"),
        ("y,x\na,2\nb,4\nc,5\nd,3\n", ["--target", "y", "--task", "forecast"], "is not numeric"),
        ("y,t\n1,1\n2,1\n3,2\n", ["--target", "y", "--time", "t"], "duplicate times"),
        ("y,x\n1,2\n", ["--target", "y", "--id", "nope"], "--id 'nope'"),
        ("y,x\n,2\n,4\n", ["--target", "y"], "--target 'y' has no values (all 2 rows"),
        ("y,x\n5,2\n5,4\n,1\n", ["--target", "y"], "--target 'y' is 5.0 in every row"),
        ("i,y\n1,a\n1,a\n2,a\n", ["--target", "y", "--id", "i"], "'a' in every row"),
        ("t,y\n2020-01-01,1\n3,2\n", ["--target", "y", "--time", "t"], "'3' (data row 1) is"),
        ("s,y\na,1\nb,2\n", ["--target", "s", "--id", "s"], "--id 's' is also the --target"),
        ("t,y\n1,1\n2,2\n", ["--target", "y,y"], "--target names 'y' twice"),
        ("t,y,u\n1,1,2\n2,2,3\n", ["--target", "y", "--features", "u,u"], "--features names 'u'"),
        ("t,y,u\n1,1,2\n2,2,3\n", ["--target", "y", "--known", "u, u"], "--known names 'u' twice"),
        (
            "y\n" + "".join(f"{v}\n" for v in range(30)),
            ["--target", "y", "--horizon", "100000"],
            "--horizon 100000 is longer than the longest sequence (30 steps)",
        ),
        (
            "label,v0,v1\na,1,2\nb,3,4\n",  # one sequence per row: the fix is said
            ["--target", "label", "--task", "classify"],
            "without --id the file is one sequence. Give --id COL (long format: one row per step)",
        ),
        (
            "i,y\n" + "".join(f"{i},{'' if i in (2, 5) else 'ab'[i % 2]}\n" for i in range(20)),
            ["--target", "y", "--id", "i", "--task", "classify"],
            "is missing in 2 of 20 sequences (first: id 2)",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code = main(["train", "--data", str(path), *args, "--runs-dir", str(tmp_path / "runs"), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("tbptt: error:") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_two_targets_with_a_past_covariate_forecast_jointly(tmp_path):
    t = np.arange(60.0)
    df = pd.DataFrame({"a": np.sin(t / 4), "b": np.cos(t / 5) + 0.01 * t, "u": np.sin(t / 7)})
    df.to_parquet(tmp_path / "m.parquet")
    run = train(
        tmp_path, "--data", str(tmp_path / "m.parquet"), "--target", "a,b", "--horizon", "4"
    )
    model = tbptt.load(run)
    assert model.extra["spec"]["past"] == ["u"]  # forecast with the targets: no future needed
    table = model.predict()
    assert list(table.columns) == ["id", "t", "kind", "yhat_a", "yhat_b"]
    fc = table[table["kind"] == "forecast"]
    assert (
        fc["t"].tolist() == [60, 61, 62, 63] and np.isfinite(fc[["yhat_a", "yhat_b"]]).all().all()
    )
    with pytest.raises(ValueError, match="generate\\(\\) needs a text run"):
        model.generate("x")


def test_a_resume_refuses_a_data_file_that_changed(tmp_path, capsys):
    data = panel_csv(tmp_path / "my.csv")
    run = train(tmp_path, "--data", str(data), "--target", "y", "--id", "store", "--time", "date")
    assert main(["train", "--resume", str(run), "--updates", "16", "--progress", "off"]) == 0
    df = pd.read_csv(data)
    df.loc[0, "y"] += 1.0
    df.to_csv(data, index=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--updates", "20", "--progress", "off"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tbptt: error: --data {str(data)!r} has changed since run") and (
        err.count("\n") == 1 and "resuming would mix two data sets" in err
    )
    assert main(["predict", str(run), "--out", str(tmp_path / "p.csv")]) == 0
    assert capsys.readouterr().out.startswith(
        f"WARNING: {str(data)!r} has changed since the run trained on it; these are not the "
        "run's validation scores."
    )

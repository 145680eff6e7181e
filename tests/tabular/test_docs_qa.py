"""Problems a new user met while following the docs, each pinned by a test."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd

from tbptt.tabular.model import TabularRNN
from tbptt.tabular.panel import make_panel
from tbptt.tabular.predict import Predictor
from tbptt.tabular.prepare import fit_spec, forecast_arrays


def test_backtest_over_missing_targets_is_silent_and_keeps_finite_errors():
    # a target with gaps: some backtest windows hold truth where every candidate is NaN
    # (seasonal naive one season after a gap); numpy's "Mean of empty slice" used to leak
    y = np.tile([1.0, 4.0, 2.0, 6.0], 15) + np.random.default_rng(0).normal(0, 0.1, 60)
    y[[20, 24, 33, 41, 42, 45]] = np.nan
    df = pd.DataFrame({"id": "a", "y": y})
    p = make_panel(df, id_col="id", time_col=None)
    spec = fit_spec(p, "forecast", ["y"], [], [], p.lengths - 8, 4)
    model = TabularRNN(forecast_arrays(p, spec)[0]["x"].shape[1], spec.n_out, hidden=4)
    pred = Predictor(model, SimpleNamespace(id="id", time=None), {"spec": spec.to_dict()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        errors = pred._backtest(p, 4, p.lengths, [y[:, None]])
        fc = pred.forecast(p, 4)
    assert errors[0] and all(np.isfinite(v).all() for v in errors[0].values())
    assert np.isfinite(fc[0]).all()


def test_forecast_of_a_classification_run_is_one_clear_error(tmp_path):
    import pytest

    import tbptt
    from tbptt.cli import main

    rng = np.random.default_rng(0)
    rows = [
        (i, t, float(v), "ab"[i % 2]) for i in range(12) for t, v in enumerate(rng.normal(size=8))
    ]
    path = tmp_path / "c.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    args = ["train", "--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "2"]
    assert main([*args, *fast, "--runs-dir", str(tmp_path / "runs"), "--name", "c"]) == 0
    run = tbptt.load(tmp_path / "runs" / "c")
    assert len(run.predict(str(path))) == 12  # the table works
    with pytest.raises(ValueError, match=r"forecast\(\) needs a forecast run; .* classify run"):
        run.forecast(3)  # was KeyError: 'kind'


def test_a_missing_run_folder_is_named_as_the_run_not_as_resume(tmp_path, capsys):
    import pytest

    import tbptt
    from tbptt.cli import main
    from tbptt.train.checkpoint import CheckpointError

    missing = str(tmp_path / "runs" / "nope")
    for command in (["predict", missing], ["generate", missing]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"tbptt: error: run {missing!r} does not exist. Pass a run folder")
        assert "resume=" not in err and "\n" not in err
    with pytest.raises(CheckpointError, match=r"run .* does not exist"):
        tbptt.load(missing)


def test_predict_at_another_horizon_says_which_forecast_the_backtest_chose(tmp_path, capsys):
    from tbptt.cli import main

    t = np.arange(120)
    y = np.sin(2 * np.pi * t / 6) + 0.1 * np.random.default_rng(0).normal(size=120)
    path = tmp_path / "s.csv"
    pd.DataFrame({"t": t, "y": y}).to_csv(path, index=False)
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "2", "--members", "1"]
    train = ["train", "--data", str(path), "--target", "y", "--time", "t", "--horizon", "6"]
    assert main([*train, *fast, "--runs-dir", str(tmp_path / "runs"), "--name", "f"]) == 0
    assert "forecast over" not in capsys.readouterr().out  # the run's own horizon: its report
    run = str(tmp_path / "runs" / "f")
    assert main(["predict", run, "--horizon", "3", "--out", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("forecast over 3 steps"))
    assert "(the lines above are for the run's 6)" in line and line.endswith("(1)")


def test_a_file_whose_targets_are_all_missing_prepares_without_numpy_warnings():
    y = np.sin(np.arange(40.0))
    good = make_panel(pd.DataFrame({"id": "a", "y": y}), id_col="id", time_col=None)
    spec = fit_spec(good, "forecast", ["y"], [], [], good.lengths - 8, 1)
    empty = pd.DataFrame({"id": np.repeat(["a", "b"], 20), "y": np.nan})
    empty.loc[25, "y"] = 1.0  # id b: one value, no change
    p = make_panel(empty, id_col="id", time_col=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was "Degrees of freedom <= 0 for slice"
        arrays = forecast_arrays(p, spec, p.lengths)
    assert [a["x"].shape[0] for a in arrays] == [20, 20]
    assert all(np.isfinite(a["y"]).all() for a in arrays)


def test_gaps_and_duplicates_name_a_date_as_written():
    import pytest

    dates = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06"])
    notes = make_panel(pd.DataFrame({"d": dates, "y": 1.0}), id_col=None, time_col="d").notes
    assert "(first: after 2024-01-02);" in notes, notes
    dup = pd.DataFrame({"d": dates[[0, 1, 1]], "y": 1.0})
    with pytest.raises(ValueError, match=r"\(first: 2024-01-02\)\. Which row"):
        make_panel(dup, id_col=None, time_col="d")

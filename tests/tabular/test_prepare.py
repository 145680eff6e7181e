"""Panels, preparation and streaming: id/time handling, missing values, categorical columns and
the state reset exactly where each id starts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tbptt.tabular.dataset import DataSet
from tbptt.tabular.io import read_table
from tbptt.tabular.job import WeightedStream, build_data_job
from tbptt.tabular.panel import make_panel
from tbptt.tabular.prepare import feature_arrays, fit_spec, forecast_arrays
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate


def cfg_for(path, **kw):
    base = {"data": str(path), "target": "y", "id": "id", "time": "t", "task": "forecast"}
    return RunConfig(**{**base, **kw}).resolved() if "hidden" in kw else RunConfig(**{**base, **kw})


def test_unsorted_gaps_one_row_per_id_and_duplicates():
    df = pd.DataFrame(
        {"id": ["a", "b", "a", "a", "c"], "t": [3, 1, 1, 2, 5], "y": [3.0, 9, 1, 2, 7]}
    )
    p = make_panel(df, id_col="id", time_col="t")
    assert p.frame["y"].tolist() == [1.0, 2.0, 3.0, 9.0, 7.0] and p.lengths.tolist() == [3, 1, 1]
    assert "not in time order within ids: sorted" in p.notes and ";" in p.notes
    gaps = make_panel(pd.DataFrame({"t": [1, 2, 3, 6, 7], "y": 0.0}), id_col=None, time_col="t")
    assert "1 gaps in 1 id(s) (first: after 3); kept as they are" in gaps.notes and gaps.step == 1
    with pytest.raises(ValueError, match=r"--time 't': 1 duplicate times in id 'a' \(first: 1\)"):
        make_panel(
            pd.DataFrame({"id": ["a", "a"], "t": [1, 1], "y": 0.0}), id_col="id", time_col="t"
        )
    dates = make_panel(
        pd.DataFrame({"t": ["2024-03-01", "2024-01-01", "2024-02-01"], "y": 0.0}),
        id_col=None,
        time_col="t",
    )
    assert "sorted" in dates.notes and dates.step is not None


def test_calendar_steps_and_date_formats_are_read_as_people_write_them():
    monthly = pd.date_range("2020-01-01", periods=30, freq="MS").strftime("%Y-%m-%d")
    p = make_panel(pd.DataFrame({"t": monthly, "y": 0.0}), id_col=None, time_col="t")
    assert p.notes.endswith("step 1 month") and p.step == pd.Timedelta(days=31)  # no "gaps"
    quarters = make_panel(
        pd.DataFrame({"t": ["2000Q1", "2000Q2", "2000Q3", "2000Q4", "2001Q1"], "y": 0.0}),
        id_col=None,
        time_col="t",
    )
    assert quarters.notes.endswith("step 1 quarter")
    dmy = pd.date_range("2020-01-01", periods=40, freq="D").strftime("%d/%m/%Y")
    p = make_panel(pd.DataFrame({"t": dmy, "y": 0.0}), id_col=None, time_col="t")
    assert p.frame["t"].dt.day.tolist() == list(range(1, 32)) + list(range(1, 10))
    assert p.notes.endswith("step 1 day")  # day first throughout: no gaps, no sorting
    ambiguous = make_panel(
        pd.DataFrame({"t": ["01/02/2020", "01/03/2020", "01/04/2020"], "y": 0.0}),
        id_col=None,
        time_col="t",
    )
    assert "dates like 01/02/2020 read month first (2 Jan 2020); day first would fit too" in (
        ambiguous.notes
    )


def test_a_csv_separated_by_semicolons_with_decimal_commas(tmp_path):
    from tbptt.tabular.io import read_table

    df = pd.DataFrame({"t": ["2020-01-01", "2020-01-02"], "y": [1.5, -2.25], "s": ["a", "b"]})
    (tmp_path / "eu.csv").write_text("t;y;s\n2020-01-01;1,5;a\n2020-01-02;-2,25;b\n")
    pd.testing.assert_frame_equal(read_table(tmp_path / "eu.csv"), df, check_dtype=False)
    (tmp_path / "pipe.csv").write_text("t|y|s\n2020-01-01|1.5|a\n2020-01-02|-2.25|b\n")
    pd.testing.assert_frame_equal(read_table(tmp_path / "pipe.csv"), df, check_dtype=False)


def test_missing_targets_are_masked_and_missing_inputs_get_an_indicator(tmp_path):
    y = np.sin(np.arange(30) / 3.0)
    y[[5, 6]] = np.nan
    u = np.cos(np.arange(30.0))
    u[10] = np.nan
    df = pd.DataFrame({"y": y, "u": u})
    p = make_panel(df, id_col=None, time_col=None)
    spec = fit_spec(p, "forecast", ["y"], ["u"], [], np.array([24]), season=1)
    assert spec.target_gaps and spec.fill == ["u"]
    a = forecast_arrays(p, spec)[0]
    k = spec.n_out  # y and u are forecast jointly
    w = a["y"][:, k]  # the target's weight: row t predicts y[t + 1]
    assert w[4] == 0 and w[5] == 0 and w[6] == 1 and w[-1] == 0
    feats = feature_arrays(p.frame, spec)
    assert feats.shape == (30, 2) and feats[10].tolist() == [0.0, 1.0]  # filled + indicator
    assert np.isfinite(a["x"]).all()


def test_categorical_columns_are_one_hot_and_unseen_values_are_zero():
    df = pd.DataFrame({"id": [0] * 4 + [1] * 4, "c": list("abab") + list("abzb"), "y": range(8)})
    p = make_panel(df, id_col="id", time_col=None)
    spec = fit_spec(p, "regress", ["y"], ["c"], [], np.array([4, 2]), 1)
    assert spec.cats == {"c": ["a", "b"]}
    f = feature_arrays(p.frame, spec)
    assert f.shape == (8, 2) and f[6].tolist() == [0.0, 0.0] and f[0].tolist() == [1.0, 0.0]


def test_state_reset_exactly_where_each_id_starts(tmp_path, float64):
    rng = np.random.default_rng(0)
    rows = [
        (i, t, float(v))
        for i, n in enumerate([9, 5, 13, 6])
        for t, v in enumerate(rng.normal(size=n))
    ]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows, columns=["id", "t", "y"]).to_csv(path, index=False)
    cfg = RunConfig(
        data=str(path),
        target="y",
        id="id",
        time="t",
        task="forecast",
        hidden=5,
        k1=4,
        batch_size=1,
        season=1,
        horizon=2,
    ).resolved()
    torch.manual_seed(0)
    job = build_data_job(cfg)
    for p in job.model.parameters():  # a non-trivial model (the head starts at zero)
        torch.nn.init.normal_(p, std=0.5)
    x, y = job.val._prep.x, job.val._prep.y
    lengths = job.val._prep.lengths.tolist()
    seqs_x = list(torch.split(x, lengths))
    seqs_y = list(torch.split(y, lengths))
    packed = WeightedStream(seqs_x, seqs_y, batch_size=1, chunk_len=4)  # resets mid-chunk
    starts = np.cumsum([0, *lengths[:-1]])
    reset = torch.cat([c.reset[0] for c in packed])
    assert torch.nonzero(reset).flatten().tolist() == starts.tolist()  # each id starts fresh
    assert any(s % 4 for s in starts[1:])  # at least one reset falls inside a chunk
    alone = [WeightedStream([a], [b], batch_size=1, chunk_len=4) for a, b in zip(seqs_x, seqs_y)]
    got = evaluate(job.model, job.loss_fn, packed, metrics=job.metrics, device="cpu")
    # reference: each sequence run on its own from a zero state, errors pooled by hand
    sq, n = 0.0, 0.0
    for s in alone:
        r = evaluate(job.model, job.loss_fn, s, metrics=job.metrics, device="cpu")
        sq += r["rmse"] ** 2 * r["tokens"]
        n += r["tokens"]
    assert got["rmse"] == pytest.approx(math.sqrt(sq / n), rel=1e-12)


def test_dataset_infers_the_task_and_refuses_bad_columns(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"id": [1, 1, 2, 2], "x": [1.0, 2, 3, 4], "y": ["u", "u", "v", "v"]}).to_csv(
        path, index=False
    )
    ds = DataSet(
        SimpleNamespace(
            data=str(path), target="y", id="id", time=None, features=None, known=None, task="auto"
        )
    )
    assert ds.task == "classify" and ds.features == ["x"]
    with pytest.raises(ValueError, match="--known 'id' is not one of the features"):
        DataSet(
            SimpleNamespace(
                data=str(path),
                target="y",
                id="id",
                time=None,
                features="x",
                known="id",
                task="auto",
            )
        )
    with pytest.raises(ValueError, match="--task classify: --target 'x' changes within an id of"):
        DataSet(
            SimpleNamespace(
                data=str(path),
                target="x",
                id="id",
                time=None,
                features=None,
                known=None,
                task="classify",
            )
        )
    bad = tmp_path / "b.npy"
    np.save(bad, np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"has shape \(2, 2, 2, 2\)"):
        read_table(bad)


def test_known_covariates_are_fed_for_the_step_predicted_others_for_the_present():
    df = pd.DataFrame(
        {"y": np.arange(10.0), "past": np.arange(10.0) * 2, "cal": np.arange(10.0) * 3}
    )
    p = make_panel(df, id_col=None, time_col=None)
    spec = fit_spec(p, "forecast", ["y"], ["past", "cal"], ["cal"], np.array([8]), season=1)
    assert spec.past == ["past"] and spec.known == ["cal"] and spec.n_out == 2
    x = forecast_arrays(p, spec)[0]["x"]  # change, [level], past at t, cal at t + 1
    past = (df["past"] - spec.mean["past"]) / spec.sd["past"]
    cal = (df["cal"] - spec.mean["cal"]) / spec.sd["cal"]
    np.testing.assert_allclose(x[:9, -2], past[:9])
    np.testing.assert_allclose(x[:9, -1], cal[1:10])

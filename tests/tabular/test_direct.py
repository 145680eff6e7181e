"""The direct multi-step head: its targets line up with the future steps of the same sequence
across TBPTT chunk boundaries and id resets, its loss keeps the one-step scale, and its forecast
is offered to the horizon guard."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from tbptt.tabular.horizon import horizon_mse
from tbptt.tabular.job import WeightedStream, build_data_job, build_data_model, holdout
from tbptt.tabular.model import TabularRNN, weighted_mse
from tbptt.tabular.panel import make_panel
from tbptt.tabular.predict import Predictor
from tbptt.tabular.prepare import Spec, fit_spec, forecast_arrays
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate

LENGTHS = [9, 5, 13, 6]


def _job(tmp_path, horizon: int):
    rng = np.random.default_rng(0)
    rows = [
        (i, t, float(v)) for i, n in enumerate(LENGTHS) for t, v in enumerate(rng.normal(size=n))
    ]
    df = pd.DataFrame(rows, columns=["id", "t", "y"])
    df.to_csv(tmp_path / "d.csv", index=False)
    cfg = RunConfig(
        data=str(tmp_path / "d.csv"),
        target="y",
        id="id",
        time="t",
        task="forecast",
        hidden=5,
        k1=4,
        batch_size=2,
        season=1,
        horizon=horizon,
    ).resolved()
    return build_data_job(cfg), df, cfg


def _rows(stream) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every chunk of a stream joined along time per batch row: inputs, targets, resets."""
    chunks = list(stream)
    x = torch.cat([c.inputs for c in chunks], 1).numpy()  # (B, T, F)
    y = torch.cat([c.targets for c in chunks], 1).numpy()  # (B, T, 3 out)
    reset = torch.cat([c.reset for c in chunks], 1).numpy()  # (B, T)
    return x, y, reset


def test_direct_targets_are_the_future_steps_across_chunks_and_resets(tmp_path, float64):
    h_max = 3
    job, df, cfg = _job(tmp_path, h_max)
    spec = Spec.from_dict(job.extra["spec"])
    assert job.extra["direct"] == h_max
    n_out, out = spec.n_out, spec.n_out + h_max
    n_train = holdout(np.array(LENGTHS), cfg.val_fraction)
    scale = spec.sd["y"] * spec.sd_change["y"]  # a direct target is a change over this scale
    p = make_panel(df, id_col="id", time_col="t")
    inputs = [a["x"] for a in forecast_arrays(p, spec)]
    x, y, reset = _rows(job.train)
    assert y.shape[-1] == 3 * out
    seen, mid_chunk = [], False
    for b in range(x.shape[0]):
        starts = [*np.flatnonzero(reset[b]).tolist(), x.shape[1]]
        mid_chunk |= any(s % cfg.k1 for s in starts[1:-1])
        for s, e in zip(starts[:-1], starts[1:]):
            # which id this segment is: its inputs are that id's first n_train rows
            i = None
            for j, a in enumerate(inputs):
                n = int(n_train[j])
                if e - s >= n and np.array_equal(a[:n], x[b, s : s + n]):
                    i = j
            assert i is not None
            n = int(n_train[i])
            seen.append(i)
            truth = df[df["id"] == i]["y"].to_numpy()
            seg = y[b, s : s + n]  # (n, 3 out)
            for t in range(n):
                for h in range(1, h_max + 1):
                    col = n_out + h - 1
                    if t + h < n:  # a future training value of the same id
                        assert abs(seg[t, col] - (truth[t + h] - truth[t]) / scale) < 1e-12
                        assert seg[t, out + col] == 1.0 and seg[t, 2 * out + col] > 0
                    else:  # past this id's training end: masked, whatever follows in the row
                        assert seg[t, out + col] == 0.0 and seg[t, 2 * out + col] == 0.0
            assert not y[b, s + n : e, out:].any()  # stream padding after it counts nothing
    assert sorted(seen) == list(range(len(LENGTHS))) and mid_chunk
    _, yv, _ = _rows(job.val)  # validation scores the one-step outputs only
    assert not yv[..., out + n_out : 2 * out].any() and not yv[..., 2 * out + n_out :].any()


def test_the_loss_keeps_the_one_step_scale(float64):
    g = torch.Generator().manual_seed(0)
    out, n_out = 4, 1
    y = torch.randn(2, 5, out, generator=g)
    t = torch.rand(2, 5, 3 * out, generator=g)
    t[..., out + n_out : 2 * out] = 0.0
    t[..., 2 * out + n_out :] = 0.0  # no direct target: exactly the one-step loss
    one = torch.cat(
        [t[..., :n_out], t[..., out : out + n_out], t[..., 2 * out : 2 * out + n_out]], -1
    )
    torch.testing.assert_close(horizon_mse(y, t, n_out), weighted_mse(y[..., :n_out], one))


def test_runs_without_the_head_build_the_one_step_model(tmp_path):
    job, _, cfg = _job(tmp_path, 2)
    old = {k: v for k, v in job.extra.items() if k != "direct"}  # a run from before the head
    assert build_data_model(cfg, old).head.out_features == 1
    assert build_data_model(cfg, job.extra).head.out_features == 3


def test_the_guard_uses_the_direct_head_where_its_backtest_wins():
    t = np.arange(60.0)
    df = pd.DataFrame({"id": "a", "y": 0.3 * t + 0.01 * np.sin(t)})  # a trend
    p = make_panel(df, id_col="id", time_col=None)
    spec = fit_spec(p, "forecast", ["y"], [], [], p.lengths - 8, 1)
    n_in = forecast_arrays(p, spec)[0]["x"].shape[1]
    h_max = 6
    model = TabularRNN(n_in, spec.n_out + h_max, hidden=4)  # zero head: recursion = naive
    step = 0.3 / spec.sd["y"] / spec.sd_change["y"]  # one step of the trend, scaled
    with torch.no_grad():
        model.head.bias[1:] = torch.arange(1, h_max + 1) * step  # direct: the trend
    extra = {"spec": spec.to_dict(), "direct": h_max}
    pred = Predictor(model, SimpleNamespace(id="id", time=None), extra)
    fc = pred.forecast(p, 4)
    assert pred.methods == ["direct"]
    np.testing.assert_allclose(fc[0][:, 0], 0.3 * np.arange(60, 64), atol=0.05)
    assert pred._direct(p, h_max + 1, None) is None  # a longer horizon than the head's


def test_the_direct_loss_streamed_with_resets_equals_each_sequence_alone(tmp_path, float64):
    """TBPTT exactness with the head: the packed training stream's loss (resets mid-chunk)
    equals the loss of each training sequence run alone from a zero state, pooled by hand."""
    job, _, _ = _job(tmp_path, 3)
    torch.manual_seed(0)
    for prm in job.model.parameters():  # a non-trivial model (the head starts at zero)
        torch.nn.init.normal_(prm, std=0.5)
    prep = job.train._prep
    lengths = prep.lengths.tolist()
    xs, ys = list(torch.split(prep.x, lengths)), list(torch.split(prep.y, lengths))
    packed = WeightedStream(xs, ys, batch_size=2, chunk_len=4)
    resets = [c.reset for c in packed]  # a whole pass (a partial one would resume later)
    assert any(r[:, 1:].any() for r in resets)  # a sequence starts inside a chunk
    got = evaluate(job.model, job.loss_fn, packed, device="cpu")
    total, count = 0.0, 0.0
    for a, b in zip(xs, ys):
        alone = evaluate(
            job.model,
            job.loss_fn,
            WeightedStream([a], [b], batch_size=1, chunk_len=4),
            device="cpu",
        )
        total += alone["loss"] * alone["tokens"]
        count += alone["tokens"]
    assert got["tokens"] == count and abs(got["loss"] - total / count) < 1e-12

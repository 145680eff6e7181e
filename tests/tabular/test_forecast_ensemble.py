"""The forecasting ensemble (independent members, their forecasts averaged) and --direct-head."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import tbptt
from tbptt.cli import main
from tbptt.tabular.dataset import FORECAST_MEMBERS, data_defaults
from tbptt.tabular.horizon import horizon_mse
from tbptt.tabular.job import WeightedStream, build_data_job
from tbptt.tabular.model import Ensemble, TabularRNN, ensemble_loss, member_mean, weighted_mse
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate

OFF = ["--progress", "off", "--tensorboard", "off"]
FAST = [*OFF, "--updates", "12", "--eval-every", "4"]


def _series(path, n: int = 70):
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = 3 + 0.05 * t + np.sin(2 * np.pi * t / 6) + 0.2 * rng.normal(size=n)
    pd.DataFrame({"t": t, "y": y}).to_csv(path, index=False)
    return path


def _ensemble(out: int = 5, members: int = 3) -> Ensemble:
    torch.manual_seed(0)
    model = Ensemble(2, out, members=members, hidden=4, zero_head=False).double()
    for prm in model.parameters():
        torch.nn.init.normal_(prm, std=0.5)
    return model


def _targets(b: int, t: int, k: int) -> torch.Tensor:
    """(B, T, 3K) values, mask weights, loss weights (some zero)."""
    v = torch.randn(b, t, k, dtype=torch.float64)
    w = (torch.rand(b, t, k, dtype=torch.float64) > 0.3).double()
    return torch.cat([v, w, w * torch.rand(b, t, k, dtype=torch.float64)], -1)


@pytest.mark.parametrize("direct", [False, True])
def test_each_member_gets_the_gradient_of_its_own_loss(direct):
    """The ensemble loss is the members' own losses averaged, and each member's gradient is that
    of the same model trained alone (its loss over the member count): brute force, float64."""
    out = 5 if direct else 2  # 2 one-step outputs (+ a 3-step direct head of 1 target)
    base = (lambda y, tg: horizon_mse(y, tg, n_out=2)) if direct else weighted_mse
    model, loss = _ensemble(out), ensemble_loss(base if direct else weighted_mse, 3)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    tg = _targets(3, 6, out)
    y, _ = model(x, None)  # (B, T, 3 * out)
    got = loss(y, tg)
    alone = [base(m(x, None)[0], tg) for m in model.members]  # each (B, T)
    torch.testing.assert_close(got, sum(alone) / 3)
    got.sum().backward()
    for member in model.members:
        grads = [p.grad.clone() for p in member.parameters()]
        member.zero_grad()
        (base(member(x, None)[0], tg).sum() / 3).backward()
        for g, p in zip(grads, member.parameters()):
            torch.testing.assert_close(g, p.grad)


def test_the_streamed_ensemble_with_resets_scores_the_members_mean(tmp_path, float64):
    """Packed rows (a sequence starting mid-chunk): the ensemble's loss equals each sequence
    run alone from a zero state, and its metrics score the mean of the members' outputs."""
    pd.DataFrame(
        [
            (i, t, float(v))
            for i, n in enumerate([9, 5, 13, 6])
            for t, v in enumerate(np.sin(range(n)) + i)
        ],
        columns=["id", "t", "y"],
    ).to_csv(tmp_path / "d.csv", index=False)
    cfg = RunConfig(
        data=str(tmp_path / "d.csv"), target="y", id="id", time="t", task="forecast", hidden=4,
        k1=4, batch_size=2, season=1, horizon=3, members=3,
    ).resolved()  # fmt: skip
    job = build_data_job(cfg)
    assert isinstance(job.model, Ensemble) and job.extra["members"] == 3
    torch.manual_seed(0)
    for prm in job.model.parameters():
        torch.nn.init.normal_(prm, std=0.5)
    prep = job.train._prep
    xs = list(torch.split(prep.x, prep.lengths.tolist()))
    ys = list(torch.split(prep.y, prep.lengths.tolist()))
    packed = WeightedStream(xs, ys, batch_size=2, chunk_len=4)
    resets = [c.reset for c in packed]  # a whole pass (a partial one would resume later)
    assert any(r[:, 1:].any() for r in resets)
    got = evaluate(job.model, job.loss_fn, packed, metrics=job.metrics, device="cpu")
    total = count = sq = 0.0
    scale = job.metrics.scale.item()
    for a, b in zip(xs, ys):
        with torch.no_grad():
            outs = [m(a.unsqueeze(0), None)[0][0] for m in job.model.members]  # (T, out) each
        loss = sum(horizon_mse(o, b, n_out=1) for o in outs) / 3  # (T,)
        w = b[:, 4 + 0]  # the one-step target's mask weight (out = 1 + 3)
        mean = sum(outs) / 3
        total += float((loss * (w > 0)).sum())
        count += float((w > 0).sum())
        sq += float((((mean[:, 0] - b[:, 0]) * scale) ** 2 * w).sum())
    assert got["tokens"] == count and abs(got["loss"] - total / count) < 1e-12
    assert abs(got["rmse"] - (sq / count) ** 0.5) < 1e-9


def test_member_mean_and_the_defaults(tmp_path):
    y = torch.arange(12.0).view(1, 2, 6)
    torch.testing.assert_close(member_mean(y, 3), (y[..., 0:2] + y[..., 2:4] + y[..., 4:6]) / 3)
    path = _series(tmp_path / "s.csv")
    base = {"data": str(path), "target": "y", "time": "t"}
    assert data_defaults(RunConfig(**base)).members == FORECAST_MEMBERS
    assert data_defaults(RunConfig(**base, members=1)).members == 1
    with pytest.raises(ValueError, match="--members 3: an ensemble serves --task classify and"):
        data_defaults(RunConfig(**base, task="regress", members=3))
    with pytest.raises(ValueError, match="--direct-head off: the direct multi-step head serves"):
        data_defaults(RunConfig(**base, task="regress", direct_head="off"))


def test_fewer_default_members_where_the_time_would_not_allow(tmp_path, monkeypatch):
    from tbptt.tabular import dataset

    path = _series(tmp_path / "s.csv")
    base = {"data": str(path), "target": "y", "time": "t"}
    one = data_defaults(RunConfig(**base, members=1))
    per_member = one.batch_size * one.k1 * one.updates  # 1 x 16 x 400 steps
    monkeypatch.setattr(dataset, "FORECAST_STEPS_PER_RUN", 3 * per_member + 1)
    assert data_defaults(RunConfig(**base)).members == 3
    assert data_defaults(RunConfig(**base, members=5)).members == 5  # asked for: kept
    monkeypatch.setattr(dataset, "FORECAST_STEPS_PER_RUN", per_member // 2)
    assert data_defaults(RunConfig(**base)).members == 1


def test_an_ensemble_run_predicts_its_validation_and_load_equals_cli(tmp_path, capsys):
    data = _series(tmp_path / "s.csv")
    runs = tmp_path / "runs"
    args = ["train", "--data", str(data), "--target", "y", "--time", "t", "--runs-dir", str(runs)]
    assert main([*args, "--name", "e", "--members", "2", *FAST]) == 0
    run = runs / "e"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["members"] == 2
    model = tbptt.load(run)
    assert isinstance(model.model, Ensemble) and len(model.model.members) == 2
    out = tmp_path / "o.csv"
    capsys.readouterr()
    assert (
        main(["predict", str(run), "--data", str(data), "--out", str(out), "--horizon", "4"]) == 0
    )
    alone = summary["scores"]["model"]["y"]["one_step_model_alone"]["rmse"]
    assert alone == pytest.approx(summary["val"]["rmse"], rel=1e-5)
    table = pd.read_csv(out)
    loaded = model.predict(data, horizon=4)
    np.testing.assert_array_equal(loaded["yhat"].to_numpy(float), table["yhat"].to_numpy(float))


def test_an_ensemble_run_resumes_bit_for_bit(tmp_path):
    data = _series(tmp_path / "s.csv")
    runs = tmp_path / "runs"
    args = ["--data", str(data), "--target", "y", "--time", "t", "--runs-dir", str(runs), *OFF]
    args += ["--members", "2", "--eval-every", "4", "--checkpoint-every", "4"]
    args += ["--schedule", "constant", "--patience", "100"]
    assert main(["train", *args, "--updates", "12", "--name", "full"]) == 0
    assert main(["train", *args, "--updates", "8", "--name", "part"]) == 0
    assert main(["train", "--resume", str(runs / "part"), "--updates", "12", *OFF]) == 0
    full, part = (json.loads((runs / n / "summary.json").read_text()) for n in ("full", "part"))
    assert part["result"]["updates"] == 12
    assert part["val"] == full["val"]
    if full.get("refit"):  # the refit of the 8-update run is set aside, trained anew at 12
        assert part["refit"] == {**full["refit"], "seconds": part["refit"]["seconds"]}
        assert len(list((runs / "part").glob("refit-best-*.pt"))) == 1
    a, b = tbptt.load(runs / "full").model, tbptt.load(runs / "part").model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_direct_head_off_and_one_member_build_the_plain_model(tmp_path):
    data = _series(tmp_path / "s.csv")
    base = {"data": str(data), "target": "y", "time": "t", "members": 1}

    def job(**kw):
        return build_data_job(data_defaults(RunConfig(**base, **kw)).resolved())

    off = job(direct_head="off")
    assert isinstance(off.model, TabularRNN) and "direct" not in off.extra
    assert "members" not in off.extra  # one model: saved as runs before ensembles were
    assert off.model.head.out_features == 1
    on = job()
    assert on.extra["direct"] == on.model.head.out_features - 1 > 0
    assert job(direct_head="on").extra["direct"] == on.extra["direct"]
    with pytest.raises(SystemExit) as bad:
        main(["train", "--data", str(data), "--target", "y", "--direct-head", "sideways"])
    assert bad.value.code == 2


def test_a_run_saved_before_ensembles_predicts_as_it_did(tmp_path):
    """A one-model run whose config has no ``members`` (null) and no ``direct_head`` (runs
    saved before them) loads and predicts byte for byte what it predicted before."""
    data = _series(tmp_path / "s.csv")
    runs = tmp_path / "runs"
    args = ["train", "--data", str(data), "--target", "y", "--time", "t", "--runs-dir", str(runs)]
    assert main([*args, "--name", "one", "--members", "1", *FAST]) == 0
    run = runs / "one"
    predict = ["predict", str(run), "--data", str(data), "--horizon", "4"]
    assert main([*predict, "--out", str(tmp_path / "new.csv")]) == 0
    for ckpt in sorted((run / "checkpoints").glob("*.pt")):  # the config saved with the weights
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        payload["config"]["members"] = None
        del payload["config"]["direct_head"]
        torch.save(payload, ckpt)
    assert main([*predict, "--out", str(tmp_path / "old.csv")]) == 0
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()
    old = tbptt.load(run)
    assert old.config.members is None and isinstance(old.model, TabularRNN)

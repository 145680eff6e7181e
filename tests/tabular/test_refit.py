"""``--refit on``: the forecasting model trained again on every step (tbptt.tabular.refit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tbptt
from tbptt.cli import main
from tbptt.tabular.dataset import data_defaults, load_data
from tbptt.tabular.job import WeightedStream, build_data_job, build_data_model
from tbptt.tabular.model import weighted_mse
from tbptt.tabular.prepare import Spec, forecast_arrays
from tbptt.tabular.refit import FILE, forecast_refit, refit_updates, run_refit
from tbptt.train import Trainer
from tbptt.train.config import RunConfig
from tbptt.train.jobs import build_rule

SRC = Path(__file__).resolve().parents[2] / "src"
OFF = ["--progress", "off", "--tensorboard", "off", "--threads", "1"]
SMALL = [*OFF, "--members", "1", "--hidden", "8", "--updates", "60", "--eval-every", "10"]


def _series(path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = 3 + 0.05 * t + np.sin(2 * np.pi * t / 6) + 0.2 * rng.normal(size=n)
    pd.DataFrame({"t": t, "y": y}).to_csv(path, index=False)
    return path


def _cfg(data: Path, **more) -> RunConfig:
    base = dict(data=str(data), target="y", time="t", seed=3, members=1, hidden=6, refit="on")
    return data_defaults(RunConfig(**{**base, **more})).resolved()


def test_the_refit_trains_as_a_plain_run_on_every_step(tmp_path, float64):
    """The refit's weights equal those of a plain Trainer run, from the run's seeded
    initialisation, on a stream built here from every step of the series (float64)."""
    cfg = _cfg(_series(tmp_path / "s.csv"), direct_head="off", k1=8, batch_size=1)
    model, info = run_refit(cfg, best_update=20, run_dir=tmp_path)
    assert info["updates"] == refit_updates(20, np.array([48]), np.array([60])) == 25

    torch.manual_seed(cfg.seed)
    extra = build_data_job(cfg).extra  # the split run's extra: its scaling and model
    panel = load_data(cfg).panel
    (a,) = forecast_arrays(panel, Spec.from_dict(extra["spec"]), None)  # every row
    assert a["y"][-1, 1:].sum() == 0  # the last step has no target
    stream = WeightedStream(
        [torch.from_numpy(a["x"])], [torch.from_numpy(a["y"])], batch_size=1, chunk_len=8
    )
    torch.manual_seed(cfg.seed)
    load_data(cfg)  # the same draws as the refit before its model (none, today)
    ref = build_data_model(cfg, extra)
    rule, _ = build_rule(cfg)
    trainer = Trainer(
        ref, weighted_mse, rule, lr=cfg.lr, schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio
    )
    trainer.fit(stream, None, updates=25)
    for (k, got), want in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=k)


def test_the_refit_stream_holds_every_step_with_the_direct_head(tmp_path):
    """Two ids, the direct head on: the refit's training targets are those of the held-out
    split's job extended to the sequences' ends (the last step of each without a target)."""
    rows = [
        (i, t, float(np.sin(t / 3) + i + 0.1 * t)) for i, n in ((0, 40), (1, 30)) for t in range(n)
    ]
    data = tmp_path / "p.csv"
    pd.DataFrame(rows, columns=["id", "t", "y"]).to_csv(data, index=False)
    cfg = _cfg(data, id="id", direct_head="on", horizon=3)
    split, whole = build_data_job(cfg), build_data_job(cfg, whole=True)
    assert whole.extra == split.extra  # the same model, scaling and split
    n_train = split.extra["n_train"]
    for i, n in enumerate((40, 30)):
        y_split = split.train._prep.y[split.train._prep.offsets[i] :][: n_train[i]]
        y_whole = whole.train._prep.y[whole.train._prep.offsets[i] :][:n]
        assert whole.train._prep.lengths[i] == n
        k = y_whole.shape[1] // 3
        # the direct targets and weights of the rows whose whole horizon lies in the split
        m = n_train[i] - 3 - 1
        torch.testing.assert_close(y_whole[:m, :k], y_split[:m, :k])
        assert (y_whole[n_train[i] : n - 4, k : 2 * k] > 0).all()  # more rows with targets
        assert y_whole[n - 1, k : 2 * k].sum() == 0  # nothing past the end


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = open(cwd / "out.txt", "ab")  # noqa: SIM115 - closed when the process ends
    return subprocess.Popen(
        [sys.executable, "-m", "tbptt.cli", *args], cwd=cwd, env=env, stdout=out, stderr=out
    )


def test_a_kill_during_the_refit_resumes_to_the_same_bits(tmp_path):
    """kill -9 once the run has chosen its checkpoint and guard (the refit running), resume:
    refit.pt holds the weights of the same refit run without interruption."""
    data = _series(tmp_path / "s.csv", 90)
    train = ["train", "--data", str(data), "--target", "y", "--time", "t", "--runs-dir", "runs"]
    more = ["--members", "1", "--hidden", "8", "--updates", "160", "--horizon", "2"]
    proc = _cli([*train, *OFF, *more, "--refit", "on", "--name", "killed"], tmp_path)
    run = tmp_path / "runs" / "killed"
    t0 = time.monotonic()
    while not (run / "one_step_guard.json").exists():  # written just before the refit
        assert proc.poll() is None, (tmp_path / "out.txt").read_text()
        assert time.monotonic() - t0 < 90
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    if (run / FILE).exists():
        pytest.skip("the refit finished before the kill (a very fast machine)")
    assert not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run), *OFF[:4]]) == 0
    got = torch.load(run / FILE, weights_only=True)
    cfg = tbptt.load(run).config
    torch.set_num_threads(1)
    model, info = run_refit(cfg, got["best_update"], tmp_path)  # uninterrupted, in-process
    assert info["updates"] == got["updates"]
    for k, v in model.state_dict().items():
        assert torch.equal(got["model"][k], v), k
    summary = json.loads((run / "summary.json").read_text())
    assert summary["refit"]["updates"] == got["updates"]
    assert summary["result"]["best_update"] == got["best_update"]


def test_a_refit_run_predicts_with_the_refit_and_scores_the_chosen_model(tmp_path, monkeypatch):
    """predict and tbptt.load take one step from the mean of the refit and the chosen model
    and the horizon from the chosen model; `tbptt predict RUN` reproduces the run's validation
    scores exactly (those of the chosen model), and summary.json says it refit."""
    data = _series(tmp_path / "s.csv")
    runs = tmp_path / "runs"
    args = ["train", "--data", str(data), "--target", "y", "--time", "t", "--runs-dir", str(runs)]
    assert main([*args, "--name", "r", *SMALL, "--refit", "on"]) == 0
    run = runs / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["refit"] == "on" and summary["refit"]["updates"] > 0
    assert summary["refit"]["best_update"] == summary["result"]["best_update"]
    out = tmp_path / "out.csv"
    assert main(["predict", str(run), "--out", str(out)]) == 0
    scores = json.loads(out.with_suffix(".scores.json").read_text())
    assert scores["model"] == summary["scores"]["model"]  # the chosen model's, exactly
    loaded = tbptt.load(run).predict()
    pd.testing.assert_frame_equal(loaded, pd.read_csv(out), check_dtype=False)
    assert out.read_bytes() == (run / "predictions.csv").read_bytes()
    chosen = tbptt.load(sorted((run / "checkpoints").glob("best*.pt"))[-1]).predict()
    one = loaded["kind"] == "one_step"  # one step: the two models' mean; the horizon: chosen
    assert not np.allclose(chosen["yhat"][one].fillna(0), loaded["yhat"][one].fillna(0))
    pd.testing.assert_frame_equal(loaded[~one], chosen[~one])
    monkeypatch.setattr("tbptt.tabular.refit.REFIT_ONE_STEP", "refit")
    alone = tbptt.load(run).predict()  # the refit alone
    mean = (alone["yhat"][one] + chosen["yhat"][one]) / 2
    np.testing.assert_allclose(loaded["yhat"][one], mean, rtol=1e-6, atol=1e-9)
    assert not np.allclose(alone["yhat"][one].fillna(0), loaded["yhat"][one].fillna(0))


def test_a_run_without_refit_predicts_byte_for_byte_as_before(tmp_path):
    """--refit off, and a run saved before the option (no ``refit`` in its config): no
    refit.pt, and predict writes the same bytes."""
    data = _series(tmp_path / "s.csv")
    runs = tmp_path / "runs"
    args = ["train", "--data", str(data), "--target", "y", "--time", "t", "--runs-dir", str(runs)]
    assert main([*args, "--name", "o", *SMALL, "--refit", "off"]) == 0
    run = runs / "o"
    assert not (run / FILE).exists()
    predict = ["predict", str(run), "--data", str(data), "--horizon", "4"]
    assert main([*predict, "--out", str(tmp_path / "new.csv")]) == 0
    for ckpt in sorted((run / "checkpoints").glob("*.pt")):
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        del payload["config"]["refit"]
        torch.save(payload, ckpt)
    assert main([*predict, "--out", str(tmp_path / "old.csv")]) == 0
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()


def test_refit_flag_errors_are_one_line(tmp_path, capsys):
    data = _series(tmp_path / "s.csv")
    base = ["train", "--data", str(data), "--target", "y", "--runs-dir", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as bad:
        main([*base, "--refit", "sometimes"])
    assert bad.value.code == 2
    assert "--refit: invalid choice: 'sometimes'" in capsys.readouterr().err
    labels = tmp_path / "c.csv"
    pd.DataFrame(
        {"id": np.repeat(range(8), 5), "x": np.arange(40.0), "y": np.repeat([0, 1] * 4, 5)}
    ).to_csv(labels, index=False)
    cls = ["train", "--data", str(labels), "--target", "y", "--id", "id", "--task", "classify"]
    assert main([*cls, "--refit", "on", "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tbptt: error: --refit on: the refit on the whole training part serves --task forecast "
        "only (this run is --task classify); drop --refit."
    ]
    assert not (tmp_path / "r").exists()  # nothing written
    cfg = replace(RunConfig(data="big.parquet"), refit="on")
    with pytest.raises(ValueError, match=r"--refit on: big\.parquet is streamed"):
        forecast_refit(cfg, "forecast", streamed=True)
    assert forecast_refit(replace(cfg, refit=None), "forecast", streamed=True) == "off"

"""Per-sequence regression (one number per id) trains like classification: patches of long
univariate sequences, aligned chunks, the pooled readout, a budget in updates from the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tbptt
from tbptt.cli import main

FAST = ["--progress", "off", "--tensorboard", "off", "--eval-every", "5"]


def spectra(path: Path, ids: int = 30, seed: int = 0) -> Path:
    """Univariate sequences of 60 to 80 steps whose target is the height of a bump."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(ids):
        n = 60 + 10 * (i % 3)
        height = rng.uniform(1, 3)
        x = height * np.exp(-(((np.arange(n) - n / 2) / 6) ** 2)) + 0.05 * rng.normal(size=n)
        rows += [(f"m{i}", t, v, height) for t, v in enumerate(x)]
    pd.DataFrame(rows, columns=["id", "t", "x", "fat"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reg")
    data = spectra(tmp / "spectra.csv")
    args = ["--data", str(data), "--target", "fat", "--id", "id", "--time", "t"]
    runs = ["--runs-dir", str(tmp / "runs"), "--name", "r", "--updates", "20", *FAST]
    assert main(["train", *args, "--task", "regress", *runs]) == 0
    return tmp / "runs" / "r"


def test_defaults_follow_classification(tmp_path):
    from tbptt.tabular.dataset import data_defaults
    from tbptt.train.config import RunConfig

    data = str(spectra(tmp_path / "s.csv"))
    base = {"task": "regress", "data": data, "target": "fat", "id": "id", "time": "t"}
    got = data_defaults(RunConfig(**base))
    assert got.k1 == got.k2 == 27  # patches of 3 (median 70 / 32): the longest, 80, in 27
    assert got.batch_size == 7 and got.minutes == 10.0  # a budget in updates (classify_budget):
    assert got.updates == 750 * 3  # 750 passes over 21 training ids, 3 updates of 7 each
    assert got.val_fraction == 0.3 and got.patience == 25 and got.clip == 10.0
    per_step = data_defaults(RunConfig(**{**base, "target": "x", "features": "fat"}))
    assert per_step.k1 == 64 and per_step.updates == 400  # a target per step: as before


def test_the_run_reads_a_pooled_summary_of_patches(run):
    summary = json.loads((run / "summary.json").read_text())
    extra = tbptt.load(run).extra
    assert extra["readout"] == "pool" and extra["patch"] == 3
    assert summary["config"]["k1"] == summary["config"]["k2"] == 27


def test_predict_reproduces_the_validation_scores_and_load_equals_the_cli(run, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    data = Path(summary["config"]["data"])
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    cli = pd.read_csv(out)
    api = tbptt.load(run).predict(data)
    np.testing.assert_allclose(cli["yhat"], api["yhat"], rtol=1e-12)
    df = pd.read_csv(data)
    truth = df.groupby("id", sort=False)["fat"].first()
    val_ids = [list(truth.index)[i] for i in tbptt.load(run).extra["val_ids"]]
    err = cli.set_index("id").loc[val_ids, "yhat"] - truth.loc[val_ids]
    rmse = float(np.sqrt(np.mean(err**2)))
    assert rmse == pytest.approx(summary["scores"]["model"]["fat"]["rmse"], rel=1e-9)
    assert rmse == pytest.approx(summary["val"]["rmse"], rel=1e-5)  # the trainer's, float32

"""The 1-NN DTW pool of classify runs (``tbptt.tabular.neighbours``): DTW against a brute-force
dynamic programme in float64, the averaging, the weight's choice, and a run's files, report and
predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tbptt.tabular import neighbours
from tbptt.tabular.neighbours import DTWPool, compression, dtw_matrix, fit_pool, paa


def _dtw_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """The definition: D[i, j] = |a_i - b_j|^2 + min(D[i-1, j], D[i, j-1], D[i-1, j-1]),
    the whole window; the distance is sqrt(D[n, m])."""
    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = float(((a[i - 1] - b[j - 1]) ** 2).sum())
            d[i, j] = cost + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return float(np.sqrt(d[n, m]))


@pytest.mark.parametrize("channels", [1, 3])
def test_dtw_matrix_equals_the_dynamic_programme_for_any_lengths(monkeypatch, channels):
    monkeypatch.setattr(neighbours, "_BLOCK", 2)  # queries in several blocks
    rng = np.random.default_rng(channels)
    queries = [rng.normal(size=(n, channels)) for n in (5, 9, 1, 7, 12)]
    refs = [rng.normal(size=(n, channels)) for n in (8, 3, 11)]
    got = dtw_matrix(queries, refs)
    want = np.array([[_dtw_by_hand(q, r) for r in refs] for q in queries])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    among = np.array([[_dtw_by_hand(q, r) for r in refs] for q in refs])  # each pair once
    np.testing.assert_allclose(dtw_matrix(None, refs), among, rtol=1e-10, atol=1e-12)


def test_paa_means_each_window_and_the_budget_sets_the_window():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 2))
    want = np.stack([x[i : i + 3].mean(0) for i in range(0, 11, 3)])
    np.testing.assert_allclose(paa(x, 3), want, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(paa(x, 1), x)
    lengths = np.full(100, 400)  # 40,000 steps: 8e8 cells of pairs at p = 1
    assert compression(lengths, cells=8e8) == 1 and compression(lengths, cells=2e8) == 2
    assert compression(lengths, cells=1e5) is None  # a median sequence would keep < 8 points
    assert compression(np.full(1000, 1)) == 1  # one row per id: compared as they are


def _shapes(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Three classes of sequences told apart by their shape (a rise, a fall, a bump), of
    lengths 20 to 30, with a little noise: 1-NN DTW gets all of them."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        t = np.linspace(0, 1, int(rng.integers(20, 31)))
        c = i % 3
        y = [t, 1 - t, np.sin(np.pi * t)][c] + 0.02 * rng.normal(size=len(t))
        seqs.append(y[:, None])
        labels.append(c)
    return seqs, np.array(labels)


def test_the_weight_goes_to_whichever_part_scores_better_out_of_fold():
    seqs, y = _shapes(24)
    every = np.arange(24)
    sure = np.eye(3)[y] * 0.98 + 0.01  # a network right on every sequence
    assert fit_pool(sure, seqs, y, every, every, 3).weight == 1.0  # type: ignore[union-attr]
    lost = np.full((24, 3), 1 / 3)  # a network that knows nothing
    pool = fit_pool(lost, seqs, y, every, every, 3)
    assert pool is not None and pool.weight == 0.0 and pool.accuracy == 1.0
    # leave-one-out: a sequence is never its own neighbour, even as an exact copy of itself
    np.testing.assert_array_equal(pool.probabilities(seqs, loo=True).argmax(1), y)
    wrong = np.eye(3)[(y + 1) % 3]  # a confident network, always wrong
    assert fit_pool(wrong, seqs, y, every, every, 3).weight == 0.0  # type: ignore[union-attr]


def test_held_out_scoring_compares_with_the_training_part_only():
    seqs, y = _shapes(30)
    scored, refs = np.arange(20, 30), np.arange(20)
    pool = fit_pool(np.full((10, 3), 1 / 3), seqs, y, scored, refs, 3)
    assert pool is not None and len(pool.refs) == 20 and pool.accuracy == 1.0
    np.testing.assert_array_equal(pool.labels, y[:20])


def test_the_pool_saves_and_reads_back_exactly(tmp_path):
    seqs, y = _shapes(12)
    pool = DTWPool(0.3, 0.75, 0.7, 2, [paa(s, 2) for s in seqs], y, 3)
    pool.save(tmp_path)
    back = DTWPool.read(tmp_path)
    assert back is not None and (back.weight, back.accuracy, back.confidence, back.p) == (
        0.3,
        0.75,
        0.7,
        2,
    )
    for a, b in zip(pool.refs, back.refs):
        np.testing.assert_array_equal(a, b)
    prob = np.full((12, 3), 1 / 3)
    np.testing.assert_array_equal(pool.apply(prob, seqs), back.apply(prob, seqs))
    assert DTWPool.read(tmp_path / "nothing") is None


def _file(tmp_path, n: int = 18):
    seqs, y = _shapes(n, seed=1)
    rows = [
        (i, t, float(v), "abc"[y[i]]) for i, s in enumerate(seqs) for t, v in enumerate(s[:, 0])
    ]
    path = tmp_path / "shapes.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    return path


FAST = ["--progress", "off", "--tensorboard", "off", "--updates", "4", "--eval-every", "2"]


def test_a_run_pools_reports_and_predicts_the_same_everywhere(tmp_path, capsys, monkeypatch):
    import tbptt
    from tbptt.cli import main
    from tbptt.tabular.predict import Predictor
    from tbptt.tabular.report import evaluate_run

    path = _file(tmp_path)
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    calls = []
    monkeypatch.setattr(neighbours, "dtw_matrix", lambda q, r: calls.append(q) or dtw_matrix(q, r))
    assert main(["train", *args, "--runs-dir", str(runs), "--name", "p", *FAST]) == 0
    assert calls == [None]  # fit, report and predictions.csv: one matrix, each pair once
    run = runs / "p"
    summary = json.loads((run / "summary.json").read_text())
    # 4 updates: the network is near chance, the 1-NN right on every sequence out-of-fold
    assert summary["config"]["dtw_pool"] == "on" and (run / neighbours.FILE).is_file()
    info = summary["dtw_pool"]
    assert info["used"] and info["network_weight"] < 0.5
    assert info["nearest_neighbour_accuracy"] == 1.0
    model = summary["scores"]["model"]
    assert model["accuracy"] == 1.0  # pooled, out-of-fold
    # the trainer chose its checkpoint on the network alone: the report keeps that score
    assert model["network_alone"]["accuracy"] == summary["val"]["accuracy"]
    assert summary["scores"]["baselines"]["nearest_neighbour_dtw_accuracy"] == 1.0
    assert "1-NN DTW" in summary["verdict"] and "optimistic" in summary["verdict"]
    # tbptt predict on the run's own file: the same validation scores; CLI = tbptt.load
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(run), "--data", str(path), "--out", str(out)]) == 0
    assert "accuracy 1.000" in capsys.readouterr().out
    loaded = tbptt.load(run)
    cli, api = pd.read_csv(out), loaded.predict(str(path))
    assert cli["yhat"].tolist() == api["yhat"].tolist()
    np.testing.assert_allclose(cli.filter(like="p_"), api.filter(like="p_"), atol=1e-6)
    # the pooled probabilities by hand: w * the members' mean + (1 - w) * the calibrated 1-NN
    pred = Predictor(loaded.model, loaded.config, loaded.extra)
    panel = pred.panel(str(path))
    net = pred.class_probabilities(panel)
    w, a = info["network_weight"], (18 + 1) / (18 + 2)  # all 18 right, Laplace's rule
    seqs = pred.sequences(panel)
    refs = [paa(s, info["p"]) for s in seqs]
    nearest = dtw_matrix([paa(s, info["p"]) for s in seqs], refs).argmin(1)  # itself
    first = pd.read_csv(path).groupby("id")["label"].first()
    y_ref = np.array([list(pred.spec.classes).index(v) for v in first])
    q = np.full(net.shape, (1 - a) / 2)  # the other two classes
    q[np.arange(len(q)), y_ref[nearest]] = a
    np.testing.assert_allclose(api.filter(like="p_").to_numpy(), w * net + (1 - w) * q, atol=1e-6)
    assert (
        evaluate_run(Predictor(loaded.model, loaded.config, loaded.extra), str(path))["model"][
            "accuracy"
        ]
        == summary["val"]["accuracy"]
    )  # without the pool: the network alone


def test_pool_off_held_out_and_other_tasks(tmp_path):
    import tbptt
    from tbptt.cli import main
    from tbptt.tabular.dataset import data_defaults
    from tbptt.train.config import RunConfig

    path = _file(tmp_path)
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    assert (
        main(["train", *args, "--runs-dir", str(runs), "--name", "off", *FAST, "--dtw-pool", "off"])
        == 0
    )
    summary = json.loads((runs / "off" / "summary.json").read_text())
    assert not (runs / "off" / neighbours.FILE).exists() and "dtw_pool" not in summary
    assert summary["scores"]["model"] == {k: summary["val"][k] for k in ("accuracy", "macro_f1")}
    # one model and a held-out split: the pool scores the held-out sequences
    assert (
        main(["train", *args, "--runs-dir", str(runs), "--name", "held", *FAST, "--folds", "1"])
        == 0
    )
    pool = DTWPool.read(runs / "held")
    val_ids = tbptt.load(runs / "held").extra["val_ids"]
    assert pool is not None and len(pool.refs) == 18 - len(val_ids) and len(val_ids) > 0
    base = {"data": str(path), "target": "x", "id": "id", "time": "t", "task": "forecast"}
    with pytest.raises(
        ValueError, match="--dtw-pool on: the 1-NN DTW pool serves --task classify only"
    ):
        data_defaults(RunConfig(**base, dtw_pool="on"))


def test_without_dtaidistance_the_default_trains_the_network_alone(tmp_path, monkeypatch):
    from tbptt.tabular.dataset import data_defaults
    from tbptt.train.config import RunConfig

    def missing() -> None:
        raise ImportError("the 1-NN DTW pool of classify runs needs dtaidistance: pip install")

    monkeypatch.setattr(neighbours, "_dtaidistance", missing)
    base = {"data": str(_file(tmp_path)), "target": "label", "id": "id", "time": "t"}
    with pytest.warns(UserWarning, match=r"no 1-NN DTW pool for this run: .* needs dtaidistance"):
        assert data_defaults(RunConfig(**base)).dtw_pool == "off"
    with pytest.raises(
        ValueError, match=r"^--dtw-pool on: the 1-NN DTW pool .* needs dtaidistance"
    ):
        data_defaults(RunConfig(**base, dtw_pool="on"))

"""The cross-fitted classify ensemble (tbptt/tabular/crossfit.py): folds, the masked member loss
against each member trained alone (float64 brute force, resets inside chunks), out-of-fold
validation by hand, predict/load/report against the run's own validation, resume, old runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tbptt.data import StreamBatcher
from tbptt.engine import Engine
from tbptt.tabular.crossfit import assign_folds, fold_targets
from tbptt.tabular.dataset import data_defaults
from tbptt.tabular.model import (
    ClassifyMetrics,
    Ensemble,
    TabularRNN,
    classify_scores,
    crossfit_cross_entropy,
)
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate
from tbptt.truncation import TBPTT

K, C = 3, 3
LENGTHS = [5, 3, 7, 4, 6, 2, 5, 4]  # packed two to a row: resets fall inside chunks


def _data(seed: int = 0) -> tuple[list[torch.Tensor], np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, 2, generator=g, dtype=torch.float64) for n in LENGTHS]
    labels = np.arange(len(LENGTHS)) % C
    return xs, labels, assign_folds(labels, K, seed)


def _ensemble() -> Ensemble:
    torch.manual_seed(0)
    return Ensemble(2, C, members=K, hidden=4, pool=True, zero_head=False).double()


def test_folds_are_stratified_balanced_and_seeded():
    labels = np.array(list("aaaaabbbbbbbcc"))
    folds = assign_folds(labels, 4, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [3, 3, 4, 4]  # sizes differ by one at most
    for c in "abc":  # each class spread over the folds as evenly as its count allows
        per = np.bincount(folds[labels == c], minlength=4)
        assert per.max() - per.min() <= 1
    np.testing.assert_array_equal(folds, assign_folds(labels, 4, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, 4, seed=4))
    with pytest.raises(ValueError, match="--folds 15: cross-fitting needs 2 to 14 folds"):
        assign_folds(labels, 15, seed=0)


def test_masked_member_loss_equals_each_member_trained_alone_on_its_folds():
    xs, labels, folds = _data()
    model = _ensemble()
    ys = list(torch.from_numpy(fold_targets(labels, folds, K, held=False)))  # (1 + K,) each
    # one chunk per row holds several whole sequences: the state is reset inside it
    stream = StreamBatcher(xs, ys, batch_size=2, chunk_len=40, target_at="end")
    engine = Engine(model, crossfit_cross_entropy(K), TBPTT(40), check_inputs=False)
    for chunk in stream:
        list(engine.feed(*chunk))
    list(engine.flush())
    got = [[p.grad.clone() for p in m.parameters()] for m in model.members]
    # brute force: member m alone, from a fresh state on each sequence not in fold m; the
    # engine's mean over the 8 sequences and the mean over the K - 1 members that train each
    for m, member in enumerate(model.members):
        alone = TabularRNN(2, C, hidden=4, pool=True, zero_head=False).double()
        alone.load_state_dict(member.state_dict())
        total = sum(
            torch.nn.functional.cross_entropy(
                alone(x.unsqueeze(0), None)[0][:, -1], torch.tensor([int(y)])
            )
            for x, y, f in zip(xs, labels, folds)
            if f != m
        )
        (total / (len(xs) * (K - 1))).backward()
        for a, b in zip(got[m], alone.parameters()):
            torch.testing.assert_close(a, b.grad, rtol=1e-10, atol=1e-12)


def test_out_of_fold_validation_equals_a_hand_computation():
    xs, labels, folds = _data(1)
    model = _ensemble()
    ys = list(torch.from_numpy(fold_targets(labels, folds, K, held=True)))
    stream = StreamBatcher(xs, ys, batch_size=3, chunk_len=6, target_at="end")  # chunk borders
    out = evaluate(
        model, crossfit_cross_entropy(K), stream, metrics=ClassifyMetrics(C, K), device="cpu"
    )
    with torch.no_grad():  # each sequence alone through the member of its fold
        logits = torch.stack(
            [model.members[f](x.unsqueeze(0), None)[0][0, -1] for x, f in zip(xs, folds)]
        )  # (N, C)
    ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    assert out["loss"] == pytest.approx(float(ce), rel=1e-10)
    pred = logits.argmax(-1).numpy()
    acc = float((pred == labels).mean())
    f1 = np.mean(
        [
            2
            * ((pred == c) & (labels == c)).sum()
            / (2 * ((pred == c) & (labels == c)).sum() + ((pred == c) != (labels == c)).sum())
            for c in range(C)
            if ((pred == c) | (labels == c)).any()
        ]
    )
    assert out["accuracy"] == pytest.approx(acc) and out["macro_f1"] == pytest.approx(f1)
    assert classify_scores(labels, pred, C) == pytest.approx({"accuracy": acc, "macro_f1": f1})


def _file(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        (i, t, float(np.sin(t / (2 + 2 * (i % 3))) + 0.3 * rng.normal()), "abc"[i % 3])
        for i in range(18)
        for t in range(24)
    ]
    path = tmp_path / "c.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    return path


def test_defaults_cross_fit_four_members_and_refuse_contradictions(tmp_path):
    path = _file(tmp_path)
    base = {"task": "classify", "data": str(path), "target": "label", "id": "id", "time": "t"}
    cfg = data_defaults(RunConfig(**base))
    assert (cfg.folds, cfg.members, cfg.val_fraction) == (4, 4, None)
    # all 18 sequences stream (rows of 4: 5 updates an epoch), each member's steps counted
    assert cfg.updates == 750 * 5
    held = data_defaults(RunConfig(**base, members=1))  # the held-out split, as before
    assert (held.folds, held.members, held.val_fraction) == (1, 1, 0.3)
    assert data_defaults(RunConfig(**base, val_fraction=0.25)).folds == 1
    with pytest.raises(ValueError, match="--folds 3 trains one member per fold, but --members"):
        data_defaults(RunConfig(**base, folds=3, members=2))
    with pytest.raises(ValueError, match="--folds 4 validates out-of-fold"):
        data_defaults(RunConfig(**base, folds=4, val_fraction=0.2))
    with pytest.raises(
        ValueError, match="--folds 2: cross-fitted members serve --task classify only"
    ):
        data_defaults(RunConfig(**{**base, "task": "forecast", "target": "x"}, folds=2))


def test_predict_load_and_report_reproduce_the_out_of_fold_validation(tmp_path, capsys):
    import tbptt
    from tbptt.cli import main
    from tbptt.tabular.predict import Predictor
    from tbptt.tabular.report import evaluate_run

    path = _file(tmp_path)
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "30", "--eval-every", "10"]
    fast += ["--dtw-pool", "off"]  # the members' own probabilities (the pool: test_neighbours)
    assert main(["train", *args, "--runs-dir", str(runs), "--name", "cf", *fast]) == 0
    summary = json.loads((runs / "cf" / "summary.json").read_text())
    loaded = tbptt.load(runs / "cf")
    folds = np.asarray(loaded.extra["folds"])
    assert loaded.extra["members"] == 4 and len(folds) == 18 and "val_ids" not in loaded.extra
    assert "out-of-fold" in summary["verdict"] and "(18 sequences" in summary["verdict"]
    # the trainer's validation (best checkpoint) = the report's out-of-fold scores, exactly
    for key in ("accuracy", "macro_f1"):
        assert summary["val"][key] == summary["scores"]["model"][key]
    pred = Predictor(loaded.model, loaded.config, loaded.extra)
    again = evaluate_run(pred, str(path))["model"]
    assert again == summary["scores"]["model"]
    # by hand: each sequence's logits from the member of its fold
    frame = pd.read_csv(path)
    oof = pred._classify_frame(pred.panel(frame), folds)
    labels = np.array(["abc"[i % 3] for i in range(18)])
    assert float((oof["yhat"].to_numpy() == labels).mean()) == again["accuracy"]
    # predict on the run's own file prints those validation scores; the CLI equals tbptt.load
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(runs / "cf"), "--data", str(path), "--out", str(out)]) == 0
    assert f"accuracy {again['accuracy']:.3f}" in capsys.readouterr().out
    cli, api = pd.read_csv(out), loaded.predict(str(path))
    assert cli["yhat"].tolist() == api["yhat"].tolist()  # every member averaged
    np.testing.assert_allclose(cli.filter(like="p_"), api.filter(like="p_"), atol=1e-6)


def test_cross_fitted_resume_is_bit_identical(resumed_classify):
    r = resumed_classify()  # the fixture's default run: cross-fitted
    assert r["full"]["config"]["folds"] == 4 and r["full"]["config"]["members"] == 4
    assert r["full"]["val"] == r["part"]["val"]
    a = torch.load(r["runs"] / "full" / "checkpoints" / "step-00000012.pt", weights_only=False)
    b = torch.load(r["runs"] / "part" / "checkpoints" / "step-00000012.pt", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_a_run_without_folds_loads_and_predicts_byte_identically(tmp_path):
    """A run saved before cross-fitting (no ``folds`` in its config or extra) keeps its
    held-out split: the same predictions, byte for byte, and the same validation scores."""
    from tbptt.cli import main

    path = _file(tmp_path)
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "12", "--eval-every", "6"]
    assert (
        main(["train", *args, "--runs-dir", str(runs), "--name", "old", *fast, "--members", "2"])
        == 0
    )
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    assert main(["predict", str(runs / "old"), "--data", str(path), "--out", str(before)]) == 0
    for ckpt in (runs / "old" / "checkpoints").glob("*.pt"):  # as an old run saved them
        payload = torch.load(ckpt, weights_only=False)
        payload["config"].pop("folds")
        assert "folds" not in payload["extra"] and "val_ids" in payload["extra"]
        torch.save(payload, ckpt)
    assert main(["predict", str(runs / "old"), "--data", str(path), "--out", str(after)]) == 0
    assert before.read_bytes() == after.read_bytes()
    assert (tmp_path / "before.scores.json").read_bytes() == (
        tmp_path / "after.scores.json"
    ).read_bytes()


def test_the_best_checkpoint_is_the_most_accurate_ties_by_cross_entropy(tmp_path):
    from tbptt.cli import main

    path = _file(tmp_path)
    base = {"task": "classify", "data": str(path), "target": "label", "id": "id", "time": "t"}
    assert data_defaults(RunConfig(**base)).best_by == "accuracy"
    assert data_defaults(RunConfig(**base, best_by="loss")).best_by == "loss"
    with pytest.raises(ValueError, match="--best-by loss: accuracy and loss are the choices of"):
        data_defaults(RunConfig(**{**base, "task": "forecast", "target": "x"}, best_by="loss"))
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "40", "--eval-every", "4"]
    for by in ("accuracy", "loss"):
        assert (
            main(["train", *args, "--runs-dir", str(runs), "--name", by, *fast, "--best-by", by])
            == 0
        )
        records = [
            json.loads(line) for line in (runs / by / "metrics.jsonl").read_text().splitlines()
        ]
        val = [r for r in records if r["kind"] == "val"]
        if by == "accuracy":  # the first of the most accurate with the lowest cross-entropy
            want = min(val, key=lambda r: (-r["accuracy"], r["loss"], r["update"]))
        else:
            want = min(val, key=lambda r: (r["loss"], r["update"]))
        summary = json.loads((runs / by / "summary.json").read_text())
        assert summary["result"]["best_update"] == want["update"], by
        assert summary["val"]["accuracy"] == want["accuracy"]

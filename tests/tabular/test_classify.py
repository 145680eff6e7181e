"""Sequence classification from a --data file: the pooled readout and the chosen defaults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from tbptt import losses
from tbptt.data import StreamBatcher
from tbptt.tabular.dataset import CLASSIFY_MINUTES, data_defaults
from tbptt.tabular.model import TabularRNN
from tbptt.train.config import RunConfig
from tbptt.train.evaluation import evaluate
from tbptt.train.metrics import Metrics


class _Ends(Metrics):
    """Keeps the outputs at the unmasked steps (the sequences' last steps)."""

    def reset(self) -> None:
        self.out: list[torch.Tensor] = []

    def accumulate(self, outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        self.out.append(outputs[mask.bool()])


def test_pooled_readout_streamed_with_resets_equals_each_sequence_alone():
    torch.manual_seed(0)
    model = TabularRNN(2, 3, hidden=5, pool=True, zero_head=False).double()
    lengths = [7, 3, 9, 4]
    xs = [torch.randn(n, 2, dtype=torch.float64) for n in lengths]
    ys = [torch.tensor(i % 3) for i in range(len(lengths))]
    # one row, chunks of 5 steps: sequences start and end inside chunks and span chunk borders
    stream = StreamBatcher(xs, ys, batch_size=1, chunk_len=5, target_at="end")
    ends = _Ends()
    evaluate(model, losses.cross_entropy, stream, metrics=ends, device="cpu")
    streamed = torch.cat(ends.out)  # (4, 3) logits at each sequence's end, in stream order
    with torch.no_grad():
        alone = torch.cat([model(x.unsqueeze(0), None)[0][:, -1] for x in xs])
    torch.testing.assert_close(streamed, alone)
    # the pooled features are what the definition says: mean and max of h over the sequence
    with torch.no_grad():
        h, _ = model.rnn(xs[2].unsqueeze(0), None)
        feats = torch.cat([h[0, -1], h[0].mean(0), h[0].max(0).values])
        torch.testing.assert_close(model.head(feats), alone[2])


def test_classify_defaults_for_a_small_set(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        (i, t, float(v), "ab"[i % 2]) for i in range(40) for t, v in enumerate(rng.normal(size=30))
    ]
    path = tmp_path / "c.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    cfg = data_defaults(
        RunConfig(task="classify", data=str(path), target="label", id="id", time="t")
    )
    assert (cfg.k1, cfg.k2) == (30, 30)  # aligned: each sequence whole in its own chunk
    assert cfg.folds == 4 and cfg.lr == 5e-3 and cfg.clip == 10.0
    # cross-fitted: 750 epochs of all 40 sequences in rows of 10: 4 updates each; 10 minutes
    assert cfg.minutes == CLASSIFY_MINUTES and cfg.updates == 750 * 4
    held = data_defaults(
        RunConfig(task="classify", data=str(path), target="label", id="id", members=1)
    )  # one model: 750 epochs of the 28 training sequences (30 % held out): 3 updates each
    assert held.val_fraction == 0.3 and held.updates == 750 * 3
    given = data_defaults(
        RunConfig(task="classify", data=str(path), target="label", id="id", clip=1.0, lr=1e-3)
    )
    assert (given.clip, given.lr) == (1.0, 1e-3)  # options the user gives are kept, 1 too


def test_long_univariate_sequences_go_in_patches_and_predict_reproduces_validation(tmp_path):
    import json

    import tbptt
    from tbptt.cli import main
    from tbptt.tabular.model import classify_scores

    rng = np.random.default_rng(0)
    n_steps, rows = 256, []  # > PATCH_STEPS (32): patches of 8 values, 32 steps
    for i in range(12):  # amplitudes 0.01, 1 and 100: each sequence is z-normalised alone
        x = np.sin(np.arange(n_steps) / (3 + 3 * (i % 2))) + 0.3 * rng.normal(size=n_steps)
        x *= 10.0 ** (2 * (i % 3) - 2)
        rows += [(i, t, float(v), "ab"[i % 2]) for t, v in enumerate(x)]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    cfg = data_defaults(
        RunConfig(task="classify", data=str(path), target="label", id="id", time="t")
    )
    assert (cfg.k1, cfg.k2) == (32, 32)  # the whole sequence in patches, one chunk
    runs = tmp_path / "runs"
    args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
    fast = ["--progress", "off", "--tensorboard", "off", "--updates", "16", "--eval-every", "8"]
    ens = ["--members", "3"]  # an ensemble end to end: predict and load use every member
    ens += ["--dtw-pool", "off"]  # the network's own probabilities (the pool: test_neighbours)
    assert main(["train", *args, "--runs-dir", str(runs), "--name", "p", *fast, *ens]) == 0
    loaded = tbptt.load(runs / "p")
    assert loaded.extra["patch"] == 8 and loaded.extra["n_in"] == 8 * 2 + 5  # (z, x), stats
    out = tmp_path / "pred.csv"
    assert main(["predict", str(runs / "p"), "--data", str(path), "--out", str(out)]) == 0
    cli = pd.read_csv(out)
    api = loaded.predict(str(path))
    assert cli["yhat"].tolist() == api["yhat"].tolist()
    np.testing.assert_allclose(cli["p_a"].to_numpy(), api["p_a"].to_numpy(), atol=1e-6)
    # the saved validation accuracy is the predictions' on the held-out ids
    val = loaded.extra["val_ids"]
    truth = np.array(["ab"[i % 2] for i in val])
    acc = classify_scores(
        (truth == "b").astype(int), (cli["yhat"].to_numpy()[val] == "b").astype(int), 2
    )["accuracy"]
    summary = json.loads((runs / "p" / "summary.json").read_text())
    assert f"accuracy {acc:.3f}" in summary["verdict"]
    # the same input, patched by hand, gives the model's logits
    spec, one = loaded.extra["spec"], np.array([v for (i, _, v, _) in rows if i == 0])
    z = (one - spec["mean"]["x"]) / spec["sd"]["x"]  # scaled by the training range
    level, scale = z.mean(), z.std()  # then by the sequence itself: its shape, level, scale
    shape = (z - level) / scale
    stats = [level, np.log(scale), shape.min(), shape.max(), np.log(256)]
    norm = loaded.extra["norm"]  # the statistics standardised over the training sequences
    assert norm is not None and len(norm["mean"]) == 5
    stats = (np.array(stats) - norm["mean"]) / norm["sd"]
    pairs = np.stack([shape, z], 1).reshape(32, 16)  # (T / p, p x (z, x)): 256 = 32 x 8 steps
    x = np.concatenate([pairs, np.tile(stats, (32, 1))], 1)
    # the ensemble: each member run alone, its probabilities averaged by hand
    assert loaded.extra["members"] == 3 and len(loaded.model.members) == 3
    with torch.no_grad():
        inp = torch.from_numpy(x).float().unsqueeze(0)
        probs = [torch.softmax(m(inp, None)[0][0, -1].double(), -1) for m in loaded.model.members]
    prob = (sum(probs) / 3).numpy()
    np.testing.assert_allclose(prob[0], cli["p_a"].iloc[0], atol=1e-5)


def test_patch_size_follows_the_median_sequence(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [64] * 9 + [320]  # median 64: patches of 2, so the longest takes 160 steps
    rows = [
        (i, t, float(v), "ab"[i % 2])
        for i, n in enumerate(lengths)
        for t, v in enumerate(rng.normal(size=n))
    ]
    path = tmp_path / "v.csv"
    pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
    spec = {"task": "classify", "data": str(path), "target": "label", "id": "id", "time": "t"}
    cfg = data_defaults(RunConfig(**spec))
    assert (cfg.k1, cfg.k2) == (160, 160)

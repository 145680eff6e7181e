"""Classification's window slicing (Le Guennec et al., 2016): each epoch every training sequence is
cut to a random window of its raw steps, patched again; validation and predict see it whole."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from tbptt.tabular import job
from tbptt.tabular.job import AugmentedStream
from tbptt.tabular.prepare import patches

P, CROP = 4, 0.75
RAW = (18, 8, 13)  # raw steps of each sequence (patched: 5, 2, 4 rows; the last one padded)


def _stream(seed: int = 0, crop: float = CROP) -> tuple[AugmentedStream, list[np.ndarray]]:
    """Sequences whose raw values say where they come from (1000 i + t), one statistics column."""
    raws = [1000.0 * i + np.arange(n, dtype=float)[:, None] for i, n in enumerate(RAW)]  # (T, 1)
    rows = [np.concatenate([patches(r, P), np.full((-(-len(r) // P), 1), -i)], 1) for i, r in
            enumerate(raws)]  # fmt: skip
    s = AugmentedStream(
        [torch.from_numpy(r) for r in rows], [torch.tensor(i % 2) for i in range(len(RAW))],
        batch_size=1, chunk_len=5, target_at="end", layout="aligned", seed=seed, shuffle=False,
        columns=np.array([True] * P + [False]), scale=0.0, jitter=0.0, crop=crop, patch=P,
        patched=P,
    )  # fmt: skip
    return s, [patches(r, P) for r in raws]


def _epoch(s: AugmentedStream, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each sequence's chunk (aligned, one row, in order): inputs (L, F), targets (L,), mask (L,)."""
    s.set_epoch(epoch)
    return [(c.inputs[0], c.targets[0], c.mask[0]) for c in (s.chunk(i) for i in range(len(s)))]


def test_each_sequence_is_a_random_window_of_its_raw_steps_patched_again():
    s, padded = _stream()
    starts: set[tuple[int, int]] = set()
    for epoch in range(6):
        for i, (x, y, mask) in enumerate(_epoch(s, epoch)):
            raw = padded[i].reshape(-1)  # the raw steps as the rows hold them (padding included)
            keep = math.ceil(CROP * len(raw))
            m = -(-keep // P)
            assert mask.tolist() == [False] * (m - 1) + [True] + [False] * (5 - m)  # label at end
            assert int(y[m - 1]) == i % 2
            assert torch.all(x[:m, P] == -i)  # the statistics column is kept
            start = int(x[0, 0]) - 1000 * i
            window = raw[start : start + keep]  # brute force: the window the first value names
            want = np.concatenate([window, np.repeat(window[-1:], m * P - keep)]).reshape(m, P)
            np.testing.assert_array_equal(x[:m, :P].numpy(), want)
            starts.add((i, start))
    assert len({st for i, st in starts if i == 0}) > 2  # the window moves from epoch to epoch


def test_the_windows_are_seeded_by_seed_and_epoch():
    s, _ = _stream(seed=3)
    first = _epoch(s, 4)
    again, _ = _stream(seed=3)  # a resumed run lays out epoch 4 without the epochs before
    for (a, _, _), (b, _, _) in zip(first, _epoch(again, 4)):
        torch.testing.assert_close(a, b)
    other, _ = _stream(seed=4)
    assert any(not torch.equal(a, b) for (a, _, _), (b, _, _) in zip(first, _epoch(other, 4)))
    whole, padded = _stream(crop=1.0)  # off: the sequences as they are
    for (x, _, _), want in zip(_epoch(whole, 0), padded):
        np.testing.assert_array_equal(x[: len(want), :P].numpy(), want)


def test_a_cropped_run_resumes_bit_for_bit_and_predict_sees_whole_sequences(
    tmp_path, monkeypatch, resumed_classify
):
    import json

    import tbptt
    from tbptt.cli import main
    from tbptt.tabular.model import classify_scores

    monkeypatch.setattr(job, "AUGMENT_CROP", 0.8)
    got = resumed_classify("--members", "1")  # one model, a held-out split
    args, runs, path, full = got["args"], got["runs"], got["path"], got["full"]
    assert got["part"]["val"]["loss"] == full["val"]["loss"]  # the same windows, each epoch
    monkeypatch.setattr(job, "AUGMENT_CROP", 1.0)
    assert main(["train", *args, "--updates", "12", "--name", "whole"]) == 0
    whole = json.loads((runs / "whole" / "summary.json").read_text())
    assert whole["val"]["loss"] != full["val"]["loss"]  # the windows did change the training
    # predict (whole sequences) reproduces the run's own validation accuracy
    out = tmp_path / "pred.csv"
    assert main(["predict", str(runs / "full"), "--data", str(path), "--out", str(out)]) == 0
    loaded = tbptt.load(runs / "full")
    cli, api = pd.read_csv(out), loaded.predict(str(path))
    assert cli["yhat"].tolist() == api["yhat"].tolist()
    val = loaded.extra["val_ids"]
    truth = np.array(["ab"[i % 2] for i in val])
    acc = classify_scores(
        (truth == "b").astype(int), (cli["yhat"].to_numpy()[val] == "b").astype(int), 2
    )["accuracy"]
    assert f"accuracy {acc:.3f}" in full["verdict"]

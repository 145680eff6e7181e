"""Classification's training augmentation: amplitude per sequence and column, jitter per value."""

from __future__ import annotations

import numpy as np
import torch

from tbptt.tabular.job import AugmentedStream


def _inputs(stream: AugmentedStream, epoch: int) -> torch.Tensor:
    """(S, F): the epoch's steps as the chunks give them (one row, the sequences in order)."""
    stream.set_epoch(epoch)
    row = torch.cat([stream.chunk(i).inputs[0] for i in range(len(stream))])  # (C * L, F)
    return row[:17]  # 5 + 8 + 4 steps, then padding


def _stream(scale: float, jitter: float, seed: int = 0) -> tuple[AugmentedStream, list]:
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.normal(size=(n, 3))) for n in (5, 8, 4)]  # (T_i, 3)
    ys = [torch.tensor(i % 2) for i in range(3)]
    columns = np.array([True, True, False])  # the third column: an indicator, left alone
    s = AugmentedStream(
        xs, ys, batch_size=1, chunk_len=8, target_at="end", columns=columns, scale=scale,
        jitter=jitter, seed=seed,
    )  # fmt: skip
    return s, xs


def test_scaling_is_one_factor_per_sequence_and_column_and_spares_other_columns():
    s, xs = _stream(scale=0.2, jitter=0.0)
    x = _inputs(s, 0)
    clean = torch.cat(xs)
    torch.testing.assert_close(x[:, 2], clean[:, 2])  # the indicator column: untouched
    start = 0
    for seq in xs:
        ratio = x[start : start + len(seq), :2] / seq[:, :2]  # (T_i, 2): constant down a column
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
        assert not torch.allclose(ratio, torch.ones_like(ratio))
        start += len(seq)


def test_augmentation_is_fresh_each_epoch_and_the_same_when_replayed():
    s, xs = _stream(scale=0.1, jitter=0.03)
    e0, e1 = _inputs(s, 0), _inputs(s, 1)
    assert not torch.allclose(e0, e1)
    again, _ = _stream(scale=0.1, jitter=0.03)  # a resumed run lays the epoch out again
    torch.testing.assert_close(_inputs(again, 1), e1)
    torch.testing.assert_close(_inputs(s, 0), e0)
    noise = e0[:, :2] - torch.cat(xs)[:, :2]
    assert 0 < float(noise.abs().max()) < 2.0  # small changes, not a new series
    none, _ = _stream(scale=0.0, jitter=0.0)
    torch.testing.assert_close(_inputs(none, 0), torch.cat(xs))  # off: the data as it is


def test_a_resumed_classify_run_sees_the_same_augmented_data(resumed_classify):
    got = resumed_classify()
    assert got["part"]["val"]["loss"] == got["full"]["val"]["loss"]  # the same data, each epoch

"""Worked example (b) through the engine: TBPTT(500, 500) over stateful batches of the naive
split gives the same gradients as running each 50,000-step sequence in 500-step pieces by hand."""

from __future__ import annotations

import torch
from torch import nn

import tbptt
from tbptt.data import naive_split, stateful_batches


def test_naive_split_through_the_engine_equals_pieces_by_hand():
    g = torch.Generator().manual_seed(0)
    sequences = [torch.randn(50_000, generator=g, dtype=torch.float64) for _ in range(100)]
    samples = naive_split(sequences, 500, targets="next")  # 10,000 samples of [500, 1]
    assert tuple(samples.inputs.shape[:2]) == (10_000, 500)
    torch.manual_seed(0)
    model = nn.RNN(1, 2, batch_first=True).double()
    params = list(model.parameters())
    engine = tbptt.Engine(
        model, lambda y, t: (y[..., :1] - t).pow(2).flatten(2).mean(-1), tbptt.TBPTT(500)
    )

    got = []
    for chunk in stateful_batches(samples, batch_size=100):  # (100, 500, 1): one row per sequence
        for _ in engine.feed(*chunk):
            got.append([p.grad.clone() for p in params])
    for _ in engine.flush():
        got.append([p.grad.clone() for p in params])

    # By hand: sequence i is a row; its 100 pieces of 500 run in order, state detached between.
    x = torch.stack(sequences).unsqueeze(-1)  # (100, 50000, 1)
    hidden = None
    want = []
    for a in range(0, 50_000, 500):
        hidden = None if hidden is None else hidden.detach()
        x_piece = x[:, a : a + 500]
        target = x[:, a + 1 : a + 501]
        y, hidden = model(x_piece, hidden)
        y = y[:, : target.shape[1], :1]
        loss = (y - target).pow(2).sum() / (100 * 500 - (100 if a + 500 >= 50_000 else 0))
        want.append(torch.autograd.grad(loss, params))

    assert len(got) == len(want) == 100
    for u, (g_u, w_u) in enumerate(zip(got, want)):
        for gi, wi in zip(g_u, w_u):
            assert torch.allclose(gi, wi, atol=1e-10, rtol=1e-9), f"update {u}"

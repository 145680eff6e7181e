"""Every update's gradient equals the brute-force reference of docs/semantics.md §2 (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from reference import LinearScalarRNN, TanhStep, reference_grads
from torch import nn

import tbptt
from tbptt import BPTT, TBPTT, Engine

pytestmark = pytest.mark.usefixtures("float64")
B, F, H = 3, 2, 3


def step_loss(yt, target):  # (B, H) -> (B,)
    return ((yt - target) ** 2).mean(-1)


def make(kind: str, seed: int = 0):
    """(engine model, path, reference step function, params, reference initial state)."""
    torch.manual_seed(seed)
    if kind in ("lstm", "gru", "rnn"):
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        model = cls(F, H, num_layers=2, batch_first=True)
        zeros = torch.zeros(2, B, H)
        init = (zeros, zeros.clone()) if kind == "lstm" else zeros

        def step(xt, s):
            y, s = model(xt.unsqueeze(1), s)
            return y[:, 0], s

        return model, "chunk", step, init
    if kind == "lstmcell":
        model = nn.LSTMCell(F, H)

        def step(xt, s):
            h, c = model(xt, s)
            return h, (h, c)

        return model, "step", step, (torch.zeros(B, H), torch.zeros(B, H))
    if kind == "custom":
        model = TanhStep(F, H, H)
        return model, "step", model, torch.zeros(B, H)
    raise AssertionError(kind)


def stream(length: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, length, F, generator=g)
    y = torch.randn(B, length, H, generator=g)
    reset = torch.rand(B, length, generator=g) < 0.15
    mask = torch.rand(B, length, generator=g) < 0.8
    return x, y, reset, mask


def engine_grads(engine: Engine, params, pieces) -> list[list[torch.Tensor]]:
    out = []

    def grab():
        out.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params])

    for piece in pieces:
        for _ in engine.feed(*piece):
            grab()
    for _ in engine.flush():
        grab()
    return out


def assert_same(got, want, tol=1e-10):
    assert len(got) == len(want), (len(got), len(want))
    for u, (g, w) in enumerate(zip(got, want)):
        for gi, wi in zip(g, w):
            assert torch.allclose(gi, wi, atol=tol, rtol=0), (
                f"update {u}: max err {(gi - wi).abs().max()}"
            )


def rule_of(k1, k2):
    return BPTT() if math.isinf(k1) else TBPTT(k1, k2)


KS = [1, 2, 3, 5, 8]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "lstmcell", "custom"])
@pytest.mark.parametrize("k1", KS)
@pytest.mark.parametrize("k2", KS)
def test_every_update_matches_reference(kind, k1, k2):
    model, path, step, init = make(kind)
    params = list(model.parameters())
    lengths = range(1, 26) if kind in ("lstm", "custom") else (1, 2, 4, 7, 9, 13, 16, 25)
    for length in lengths:
        x, y, reset, mask = stream(length, seed=length)
        want = reference_grads(step, params, init, x, y, reset, mask, step_loss, k1, k2)
        for mode in ("stored", "recompute"):
            engine = Engine(model, tbptt.losses.mse, TBPTT(k1, k2), mode=mode, path=path)
            got = engine_grads(engine, params, [(x, y, reset, mask)])
            assert_same(got, want)


def test_reference_by_hand():
    """s_t = w s_{t-1} + x_t, loss (s_t - 0)^2, w = 0.5, x = 1, 2, 3, TBPTT(2, 3).

    Update 1, chunk [0, 2), cut 0: L = (s0^2 + s1^2) / 2, dL/dw = s1 * s0 = 2.5.
    Update 2, chunk [2, 3), cut 1 (s0 held constant): L = s2^2 with s2 = w (w s0 + x1) + x2,
    dL/dw = 2 s2 (s1 + w s0) = 2 * 4.25 * 3 = 25.5.
    """
    model = LinearScalarRNN(0.5)
    x = torch.tensor([[[1.0], [2.0], [3.0]]])  # (1, 3, 1)
    y = torch.zeros(1, 3, 1)
    reset = torch.zeros(1, 3, dtype=torch.bool)
    mask = torch.ones(1, 3, dtype=torch.bool)
    want = reference_grads(model, [model.w], torch.zeros(1, 1), x, y, reset, mask, step_loss, 2, 3)
    assert [g[0].item() for g in want] == pytest.approx([2.5, 25.5])
    engine = Engine(model, tbptt.losses.mse, TBPTT(2, 3), path="step")
    got = engine_grads(engine, [model.w], [(x, y, reset, mask)])
    assert [g[0].item() for g in got] == pytest.approx([2.5, 25.5])


@pytest.mark.parametrize("kind", ["lstm", "lstmcell", "custom"])
def test_bptt_matches_reference(kind):
    model, path, step, init = make(kind)
    params = list(model.parameters())
    for length in (1, 6, 25):
        x, y, reset, mask = stream(length, seed=100 + length)
        want = reference_grads(step, params, init, x, y, reset, mask, step_loss, math.inf, math.inf)
        got = engine_grads(
            Engine(model, tbptt.losses.mse, BPTT(), path=path), params, [(x, y, reset, mask)]
        )
        assert_same(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cudnn_chunk_path_matches_reference(kind):
    """On a GPU the chunk path is cuDNN (stored mode: each chunk on its own weight copies)."""
    model, path, step, init = make(kind)
    params = list(model.parameters())
    gpu_model = make(kind)[0].cuda()  # same seed: the same weights
    gpu_params = list(gpu_model.parameters())
    x, y, reset, mask = stream(17, seed=17)
    piece = [t.cuda() for t in (x, y, reset, mask)]
    for k1, k2 in [(3, 3), (2, 5), (5, 2)]:
        want = reference_grads(step, params, init, x, y, reset, mask, step_loss, k1, k2)
        for mode in ("stored", "recompute"):
            engine = Engine(gpu_model, tbptt.losses.mse, TBPTT(k1, k2), mode=mode, path=path)
            got = engine_grads(engine, gpu_params, [piece])
            assert_same([[g.cpu() for g in u] for u in got], want, tol=1e-9)

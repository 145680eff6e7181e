"""Exact online gradients (tbptt.online) against a brute-force definition, in float64.

The reference runs its own step loop of each layer's equations over the whole stream (resets
zero the state) and takes, for every update, the autograd gradient of that update's losses
through the entire past. With weights frozen, the engine's per-update gradients under
``Online(k1)`` must equal those one by one, and so sum to the full-BPTT gradient.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tbptt import TBPTT, Engine
from tbptt.elementwise import LRU, MinGRU
from tbptt.online import Online


class Readout(nn.Module):
    def __init__(self, layer: nn.Module, width: int) -> None:
        super().__init__()
        self.layer, self.head = layer, nn.Linear(width, 2)

    def forward(self, x: Tensor, state: object) -> tuple[Tensor, object]:
        y, state = self.layer(x, state)
        return self.head(y), state


def _sq(y: Tensor, t: Tensor) -> Tensor:
    return (y - t).pow(2).sum(-1)  # (B, L)


def _mingru_loop(m: Readout, x: Tensor, reset: Tensor) -> Tensor:
    w, c = m.layer.proj.weight, m.layer.proj.bias
    hid = m.layer.hidden
    h = x.new_zeros(x.shape[0], hid)
    ys = []
    for t in range(x.shape[1]):
        h = torch.where(reset[:, t, None], torch.zeros_like(h), h)
        u = x[:, t] @ w.T + c
        z = torch.sigmoid(u[:, :hid])
        h = (1 - z) * h + z * u[:, hid:]
        ys.append(m.head(h))
    return torch.stack(ys, 1)


def _lru_loop(m: Readout, x: Tensor, reset: Tensor) -> Tensor:
    lay = m.layer
    lam = torch.exp(torch.complex(-torch.exp(lay.nu_log), torch.exp(lay.theta_log)))
    h = torch.zeros(x.shape[0], lay.hidden, dtype=lam.dtype)
    ys = []
    for t in range(x.shape[1]):
        h = torch.where(reset[:, t, None], torch.zeros_like(h), h)
        u = torch.complex(x[:, t] @ lay.B_re.T, x[:, t] @ lay.B_im.T)
        h = lam * h + torch.exp(lay.gamma_log) * u
        y = h.real @ lay.C_re.T - h.imag @ lay.C_im.T
        ys.append(m.head(y if lay.D is None else y + lay.D * x[:, t]))
    return torch.stack(ys, 1)


def _model(kind: str) -> tuple[Readout, object]:
    if kind == "mingru":
        return Readout(MinGRU(3, 4, max_timescale=30.0), 4), _mingru_loop
    return Readout(LRU(3, 3, r_min=0.6, r_max=0.95, max_phase=1.0), 3), _lru_loop


def _stream(T: int = 23) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, T, 3, generator=g)
    y = torch.randn(2, T, 2, generator=g)
    reset = torch.zeros(2, T, dtype=torch.bool)
    reset[0, 5] = reset[1, 9] = reset[0, 15] = True  # inside chunks for every k1 below
    return x, y, reset


def _engine_grads(m: Readout, rule: object, x: Tensor, y: Tensor, reset: Tensor, **kw: object):
    engine = Engine(m, _sq, rule, reduction="sum", **kw)
    grads, spans = [], []

    def take(updates):
        for u in updates:
            grads.append([p.grad.clone() for p in m.parameters()])
            spans.append((u.start, u.stop))

    cuts = [0, 4, 5, 13, 14, x.shape[1]]  # fed in uneven pieces
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        take(engine.feed(x[:, lo:hi], y[:, lo:hi], reset[:, lo:hi]))
    take(engine.flush())
    return grads, spans


@pytest.mark.parametrize("kind", ["mingru", "lru"])
@pytest.mark.parametrize("k1", [1, 2, 7, 23])
def test_online_equals_bruteforce(kind: str, k1: int) -> None:
    torch.manual_seed(0)
    with torch.autograd.set_grad_enabled(True):
        torch.set_default_dtype(torch.float64)
        try:
            m, loop = _model(kind)
            x, y, reset = _stream()
            grads, spans = _engine_grads(m, Online(k1), x, y, reset)
            params = list(m.parameters())
            per_step = _sq(loop(m, x, reset), y)  # (B, T) through the whole past
            total = [torch.zeros_like(p) for p in params]
            for got, (a, b) in zip(grads, spans):
                want = torch.autograd.grad(per_step[:, a:b].sum(), params, retain_graph=True)
                for g, w in zip(got, want):
                    torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
                total = [t + g for t, g in zip(total, got)]
            full = torch.autograd.grad(per_step.sum(), params)
            for t, w in zip(total, full):
                torch.testing.assert_close(t, w, rtol=0, atol=1e-10)
        finally:
            torch.set_default_dtype(torch.float32)


def test_online_with_checkpointing_and_k2_below_k1_still_exact() -> None:
    """The cut signal survives activation checkpointing (the segment is re-run in the backward)."""
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        m, loop = _model("mingru")
        x, y, reset = _stream()
        grads, spans = _engine_grads(m, Online(7), x, y, reset, checkpoint=2)
        per_step = _sq(loop(m, x, reset), y)
        for got, (a, b) in zip(grads, spans):
            want = torch.autograd.grad(
                per_step[:, a:b].sum(), list(m.parameters()), retain_graph=True
            )
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)


def test_truncation_misses_what_online_sees() -> None:
    """The same stream under TBPTT(7): the gradient differs (the check above can fail)."""
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        m, _ = _model("mingru")
        x, y, reset = _stream()
        tb, _ = _engine_grads(m, TBPTT(7), x, y, reset)
        on, _ = _engine_grads(m, Online(7), x, y, reset)
        assert (tb[1][0] - on[1][0]).abs().max() > 1e-6
    finally:
        torch.set_default_dtype(torch.float32)


def test_online_refuses_models_without_online_layers() -> None:
    with pytest.raises(ValueError, match=r"rule=Online\(k1=5\).*minGRU or LRU"):
        Engine(nn.LSTM(1, 2, batch_first=True), _sq, Online(5))
    with pytest.raises(ValueError, match="k1 must be a positive integer"):
        Online(0)


def test_stats_say_what_is_exact() -> None:
    engine = Engine(Readout(MinGRU(3, 4), 4), _sq, Online(4))
    for _ in engine.feed(torch.randn(1, 8, 3), torch.randn(1, 8, 2)):
        pass
    assert engine.stats["online"]["layers"] == 1
    assert "truncated" in engine.stats["online"]["exact"]
    assert Engine(Readout(MinGRU(3, 4), 4), _sq, TBPTT(4)).stats["online"] is None

"""A brute-force TBPTT(k1, k2) reference, written from docs/semantics.md §2 and independent of the engine.

For each update it re-runs the stream one step at a time from its start: forward only up to
the cut, then with the graph, injecting exactly the losses the definition names.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

Step = Callable[[Tensor, object], tuple[Tensor, object]]


def chunks(length: int, k1: float) -> list[tuple[int, int]]:
    """[a, b) for every chunk, counted from the stream start; the last may be shorter."""
    if math.isinf(k1):
        return [(0, length)] if length else []
    k = int(k1)
    return [(a, min(a + k, length)) for a in range(0, length, k)]


def cut_of(a: int, b: int, k1: float, k2: float) -> int:
    if k2 >= k1:
        return max(0, a - int(k2 - k1)) if not math.isinf(k2) else 0
    return max(a, b - int(k2))


def _reset(state, rows: Tensor, init):
    if isinstance(state, tuple):
        return tuple(_reset(s, r_i, i) for s, r_i, i in zip(state, (rows,) * len(state), init))
    view = [1] * state.dim()
    bdim = 1 if state.dim() == 3 else 0
    view[bdim] = -1
    return torch.where(rows.view(view), init, state)


def reference_grads(
    step: Step,
    params: list[Tensor],
    init,
    x: Tensor,  # (B, T, F)
    y: Tensor,  # (B, T, ...)
    reset: Tensor,  # (B, T)
    mask: Tensor,  # (B, T)
    loss: Callable[[Tensor, Tensor], Tensor],  # (B, ...) x (B, ...) -> (B,)
    k1: float,
    k2: float,
) -> list[list[Tensor]]:
    """The gradient of every update, in order."""
    out = []
    for a, b in chunks(x.shape[1], k1):
        cut = cut_of(a, b, k1, k2)
        first_injected = max(a, cut)
        state = init
        with torch.no_grad():
            for t in range(cut):
                state = _reset(state, reset[:, t], init)
                _, state = step(x[:, t], state)
        total = x.new_zeros(())
        count = 0
        for t in range(cut, b):
            state = _reset(state, reset[:, t], init)
            yt, state = step(x[:, t], state)
            if t >= first_injected:
                total = total + (loss(yt, y[:, t]) * mask[:, t]).sum()
                count += int(mask[:, t].sum())
        total = total / max(count, 1)
        grads = (
            torch.autograd.grad(total, params, allow_unused=True)
            if total.requires_grad
            else [None] * len(params)
        )
        out.append([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    return out


class LinearScalarRNN(nn.Module):
    """s_t = w * s_{t-1} + x_t, y_t = s_t: small enough to differentiate by hand."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: Tensor, s: Tensor | None) -> tuple[Tensor, Tensor]:  # x (B, F=1)
        s = x if s is None else self.w * s + x
        return s, s


class TanhStep(nn.Module):
    """A custom step function with a batch-first state: s' = tanh(W s + U x), y = V s'."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.W = nn.Linear(hidden, hidden)
        self.U = nn.Linear(n_in, hidden, bias=False)
        self.V = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor, s: Tensor | None) -> tuple[Tensor, Tensor]:  # x (B, F)
        if s is None:  # None means the zero state
            s = x.new_zeros(x.shape[0], self.W.in_features)
        s = torch.tanh(self.W(s) + self.U(x))
        return self.V(s), s  # (B, O), (B, H)

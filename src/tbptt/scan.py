"""The element-wise linear recurrence ``h_t = a_t * h_{t-1} + b_t`` as one autograd function.

minGRU (Feng et al. 2024, "Were RNNs All We Needed?") and the LRU (Orvieto et al. 2023,
"Resurrecting Recurrent Neural Networks for Long Sequences") reduce to this scan. The forward
is a plain loop over time in the input's own precision; the backward is the reverse adjoint
scan ``g_t = dL/dh_t + a_{t+1} * g_{t+1}``, with ``dL/da_t = g_t * h_{t-1}`` and
``dL/db_t = g_t`` computed in one vectorised step. Unlike the log-space form
(``logcumsumexp``), nothing is exponentiated, so float32 stays within rounding of a step loop
at any length. Complex inputs (the LRU) follow PyTorch's conjugate convention.

>>> import torch
>>> a, b = torch.full((1, 3, 1), 0.5), torch.ones(1, 3, 1)   # (B, T, H)
>>> scan(a, b, torch.zeros(1, 1))[0, :, 0].tolist()          # 1, 1.5, 1.75
[1.0, 1.5, 1.75]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["scan", "scan_loop"]


def _conj(t: Tensor) -> Tensor:
    return t.conj() if t.is_complex() else t


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        # time-major copies: each step reads and writes one contiguous (B, H) slab
        a_t, b_t = a.transpose(0, 1).contiguous(), b.transpose(0, 1).contiguous()  # (T, B, H)
        out = torch.empty_like(b_t)  # (T, B, H)
        h = h0
        for t in range(a_t.shape[0]):
            h = torch.addcmul(b_t[t], a_t[t], h, out=out[t])
        ctx.save_for_backward(a_t, h0, out)
        return out.transpose(0, 1)  # (B, T, H)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a_t, h0, out = ctx.saved_tensors  # (T, B, H), (B, H), (T, B, H)
        g_in = grad_out.transpose(0, 1)  # (T, B, H)
        a_c = _conj(a_t)
        g = torch.empty_like(out)  # (T, B, H): dL/dh_t, all paths
        acc = g_in[-1].clone()
        g[-1] = acc
        for t in range(a_t.shape[0] - 2, -1, -1):
            acc = torch.addcmul(g_in[t], a_c[t + 1], acc, out=g[t])
        h_prev = torch.cat([h0.unsqueeze(0).expand_as(out[:1]), out[:-1]], 0)  # (T, B, H)
        grad_a = (g * _conj(h_prev)).transpose(0, 1)
        grad_h0 = a_c[0] * g[0]
        if h0.shape != grad_h0.shape:  # h0 was broadcast
            grad_h0 = grad_h0.sum_to_size(h0.shape)
        return grad_a, g.transpose(0, 1), grad_h0


def scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t``: a, b (B, T, H), h0 (B, H) -> (B, T, H).

    ``h0=None`` starts from zeros. Real or complex; differentiable in ``a``, ``b`` and ``h0``.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(
            f"scan: a and b must have the same (B, T, H) shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    if h0 is None:
        h0 = b.new_zeros(b.shape[0], b.shape[2])
    if a.shape[1] == 0:
        return b
    return _Scan.apply(a, b, h0.to(b.dtype))


def scan_loop(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """The same recurrence as a plain autograd step loop (the reference for :func:`scan`)."""
    h = b.new_zeros(b.shape[0], b.shape[2]) if h0 is None else h0
    hs = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    return torch.stack(hs, 1)

"""minGRU and LRU layers: element-wise recurrences that can train with exact online gradients.

Both run their recurrence through :func:`tbptt.scan.scan` and follow the engine's
``forward(x (B, T, D), state) -> (y (B, T, H), state)`` form. With ``online = True`` (set by
the engine under :class:`tbptt.online.Online`) the state also carries the sensitivities of
``h`` to the layer's own parameters, advanced over each call in closed form
(``S_T = P_0 S_0 + sum_t P_t * drive_t`` with ``P_t = prod_{s > t} a_s``), and re-attached
where the engine cut the graph (:mod:`tbptt.online`).

>>> import torch
>>> m = MinGRU(3, 5)
>>> y, (h,) = m(torch.randn(2, 7, 3), None)
>>> tuple(y.shape), tuple(h.shape)                             # (B, T, H), (B, H)
((2, 7, 5), (2, 5))
>>> lru = LRU(3, 4)
>>> y, (h,) = lru(torch.randn(2, 7, 3), None)
>>> tuple(y.shape), tuple(h.shape)                             # h: (B, H, 2) real view
((2, 7, 4), (2, 4, 2))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.online import OnlineLayer, cut_here, reattach
from tbptt.scan import scan

__all__ = ["LRU", "ElementwiseStack", "MinGRU"]


def _after(a: Tensor) -> tuple[Tensor, Tensor]:
    """``P_t = prod_{s > t} a_s`` (B, T, H) and the product of all (B, H), for a (B, T, H)."""
    inclusive = torch.flip(torch.cumprod(torch.flip(a, [1]), 1), [1])  # prod_{s >= t}
    after = torch.cat([inclusive[:, 1:], torch.ones_like(inclusive[:, :1])], 1)
    return after, inclusive[:, 0]


class MinGRU(OnlineLayer):
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?", §3.2.2):
    ``z_t = sigmoid(W_z x_t + c_z)``, ``h_t = (1 - z_t) * h_{t-1} + z_t * (W_h x_t + c_h)``.

    The gates' biases start at ``-log(T - 1)`` for timescales ``T`` spread log-uniformly over
    ``[1, max_timescale]`` (Tallec & Ollivier 2018's chrono initialisation), so some units keep
    their memory for long delays from the first update.
    State: ``(h,)`` with h (B, H); online: ``(h, S_W (B, 2H, D), S_c (B, 2H))``.
    """

    def __init__(self, input_size: int, hidden: int, *, max_timescale: float = 1000.0) -> None:
        super().__init__()
        self.hidden = hidden
        self.proj = nn.Linear(input_size, 2 * hidden)  # rows: [z gate | candidate]
        with torch.no_grad():
            timescale = torch.exp(torch.rand(hidden) * math.log(max(max_timescale, 2.0))) + 1.0
            self.proj.bias[:hidden] = -torch.log(timescale - 1.0)

    def sensitivity_params(self) -> Sequence[Tensor]:
        return (self.proj.weight, self.proj.bias)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
        batch, hid = x.shape[0], self.hidden
        u = self.proj(x)  # (B, T, 2H)
        z, cand = torch.sigmoid(u[..., :hid]), u[..., hid:]  # (B, T, H)
        if state is None:
            state = self._zeros(x)
        self.check_state(state)
        h0 = state[0].expand(batch, hid) if state[0].shape[0] == 1 else state[0]  # (B, H)
        if self.online and cut_here():
            delta = reattach(h0.new_zeros(batch, 2 * hid), state[1:], self.sensitivity_params())
            h0 = h0.detach() + delta[:, :hid] + delta[:, hid:]  # (B, H): gate and candidate rows
        h = scan(1.0 - z, z * cand, h0)  # (B, T, H)
        if not self.online:
            return h, (h[:, -1],)
        with torch.no_grad():
            h_prev = torch.cat([h0.detach().unsqueeze(1), h[:, :-1].detach()], 1)  # (B, T, H)
            drive = torch.cat([(cand - h_prev) * z * (1.0 - z), z], -1)  # dh_t/du_t (B, T, 2H)
            after, total = _after(1.0 - z)
            weight = torch.cat([after, after], -1) * drive  # (B, T, 2H)
            total2 = torch.cat([total, total], -1)  # (B, 2H)
            s_w = torch.einsum("bti,btd->bid", weight, x).addcmul_(total2.unsqueeze(-1), state[1])
            s_c = total2 * state[2] + weight.sum(1)
        return h, (h[:, -1], s_w, s_c)

    def _zeros(self, x: Tensor) -> tuple[Tensor, ...]:
        b, hid, d = x.shape[0], self.hidden, x.shape[-1]
        h = x.new_zeros(b, hid)
        if not self.online:
            return (h,)
        return (h, x.new_zeros(b, 2 * hid, d), x.new_zeros(b, 2 * hid))


class LRU(OnlineLayer):
    """Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
    Long Sequences"): ``h_t = lambda * h_{t-1} + gamma * (B x_t)`` with a complex diagonal
    ``lambda = exp(-exp(nu) + i exp(theta))``, ``y_t = Re(C h_t) + D * x_t`` (the skip term
    when input and hidden sizes agree). ``|lambda|`` starts uniform in ``[r_min, r_max]``.

    State: ``(h,)`` with h (B, H, 2) (real and imaginary parts); online:
    ``(h, S_nu, S_theta, S_gamma (B, H, 2), S_B (B, H, D, 2))``.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        *,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = math.pi / 10,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        u1, u2 = torch.rand(hidden), torch.rand(hidden)
        nu = -0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)
        self.nu_log = nn.Parameter(torch.log(nu))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2 + 1e-4))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1.0 - torch.exp(-2.0 * nu))))
        scale = 1.0 / math.sqrt(2 * input_size)
        self.B_re = nn.Parameter(torch.randn(hidden, input_size) * scale)
        self.B_im = nn.Parameter(torch.randn(hidden, input_size) * scale)
        self.C_re = nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden))
        self.C_im = nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden))
        self.D = nn.Parameter(torch.randn(input_size)) if input_size == hidden else None

    def sensitivity_params(self) -> Sequence[Tensor]:
        return (self.nu_log, self.theta_log, self.gamma_log, self.B_re)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
        batch, hid, length = x.shape[0], self.hidden, x.shape[1]
        log_lam = torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))  # (H,)
        lam, gamma = torch.exp(log_lam), torch.exp(self.gamma_log)  # (H,) complex, real
        u = torch.complex(x @ self.B_re.T, x @ self.B_im.T)  # (B, T, H)
        if state is None:
            state = self._zeros(x)
        self.check_state(state)
        cs = [torch.view_as_complex(s) for s in state]
        h0 = cs[0].expand(batch, hid) if cs[0].shape[0] == 1 else cs[0]  # (B, H)
        if self.online and cut_here():
            s_nu, s_th, s_ga, s_b = cs[1:]
            b_c = torch.complex(self.B_re, self.B_im)  # (H, D): S_{B_im} = i S_{B_re}
            h0 = reattach(
                h0,
                (s_nu, s_th, s_ga, s_b),
                (self.nu_log, self.theta_log, self.gamma_log, b_c),
            )
        h = scan(lam.expand(batch, length, hid), gamma * u, h0)  # (B, T, H) complex
        y = h.real @ self.C_re.T - h.imag @ self.C_im.T  # (B, T, H)
        if self.D is not None:
            y = y + self.D * x
        last = (torch.view_as_real(h[:, -1]),)
        if not self.online:
            return y, last
        with torch.no_grad():
            h_prev = torch.cat([h0.detach().unsqueeze(1), h[:, :-1].detach()], 1)  # (B, T, H)
            steps = torch.arange(length - 1, -1, -1, device=x.device, dtype=x.dtype)
            after = torch.exp(steps.unsqueeze(-1) * log_lam.detach())  # (T, H) lambda^(T-1-t)
            total = torch.exp(length * log_lam.detach())  # (H,)
            past = torch.einsum("th,bth->bh", after, h_prev)  # sum_t P_t h_{t-1}
            lam_d, gam_d = lam.detach(), gamma.detach()
            s_nu = total * cs[1] + lam_d * -torch.exp(self.nu_log.detach()) * past
            s_th = total * cs[2] + lam_d * 1j * torch.exp(self.theta_log.detach()) * past
            s_ga = total * cs[3] + gam_d * torch.einsum("th,bth->bh", after, u.detach())
            xs = torch.einsum("th,btd->bhd", after, x.to(after.dtype))  # (B, H, D)
            s_b = (gam_d.unsqueeze(-1) * xs).addcmul_(total.unsqueeze(-1), cs[4])
        return y, last + tuple(torch.view_as_real(s) for s in (s_nu, s_th, s_ga, s_b))

    def _zeros(self, x: Tensor) -> tuple[Tensor, ...]:
        b, hid, d = x.shape[0], self.hidden, x.shape[-1]
        h = x.new_zeros(b, hid, 2)
        if not self.online:
            return (h,)
        return (h, *(x.new_zeros(b, hid, 2) for _ in range(3)), x.new_zeros(b, hid, d, 2))


class ElementwiseStack(nn.Module):
    """``layers`` minGRU or LRU layers: the first maps ``input_size -> hidden``, each next one
    is a pre-norm residual block ``x + layer(LayerNorm(x))`` (Orvieto et al. 2023, §2).
    ``forward(x (B, T, D), state) -> (y (B, T, H), state)``; the state is one tuple per layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        layers: int = 1,
        *,
        cell: str = "mingru",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        make = {"mingru": MinGRU, "lru": LRU}[cell]
        self.layers = nn.ModuleList(
            [make(input_size if i == 0 else hidden, hidden) for i in range(layers)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers - 1)])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, tuple[Any, ...]]:
        states = state if state is not None else (None,) * len(self.layers)
        y, new = self.layers[0](x, states[0])
        out = [new]
        for layer, norm, s in zip(self.layers[1:], self.norms, states[1:]):
            step, new = layer(norm(self.drop(y)), s)
            y = y + step
            out.append(new)
        return y, tuple(out)

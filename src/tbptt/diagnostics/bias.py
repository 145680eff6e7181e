"""The truncation-bias meter: how far TBPTT(k1, k2)'s gradient is from full BPTT's, against k2.

At fixed parameters, the gradient TBPTT(k1, k2) hands the optimizer over a data sample (the sum
of its update gradients, each a sum of injected losses: ``reduction="sum"``, so that it is
comparable to BPTT's total) differs from the full-BPTT gradient of the same losses by the
*truncation bias*. Aicher, Foti & Fox (2019, "Adaptively Truncating Backpropagation Through Time
to Control Gradient Bias", UAI) choose the truncation length as the smallest that keeps the
relative bias under a tolerance, estimated from how fast ``||dl_T / ds_{T-j}||`` decays with j
(the *gradient reach*; vanishing gradients: it decays geometrically, exploding: it grows).

This module measures both directly on a sample:

- :func:`truncation_bias`: cosine similarity and relative error ``||g_k2 - g|| / ||g||`` for each
  k2, the smallest k2 meeting a tolerance, and (optionally) the reach curve;
- :func:`gradient_reach`: ``||dl_T / ds_{T-j}||`` for j = 0 .. T-1.

With ``k1 = 1`` (the default) every loss is backpropagated exactly k2 steps (or to the stream
start), which is the TBPTT(K) of Aicher et al.; pass ``k1`` to measure the (k1, k2) you train with.

>>> import torch
>>> from torch import nn
>>> from tbptt import losses
>>> _ = torch.manual_seed(0)
>>> rnn = nn.RNN(1, 4, batch_first=True)
>>> x, y = torch.randn(2, 12, 1), torch.randn(2, 12, 4)
>>> report = truncation_bias(rnn, losses.mse, x, y, k2s=[1, 4, 12])
>>> round(report.cosine[-1], 6), round(report.relative_error[-1], 6)   # k2 covers the sample
(1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tbptt import state as st
from tbptt.diagnostics.explain import rule_of
from tbptt.engine import Engine, LossFn, Mode
from tbptt.state import State
from tbptt.truncation import TruncationRule
from tbptt.unroll import Path as UnrollPath
from tbptt.unroll import Unroller

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BiasReport", "gradient_reach", "summed_gradient", "truncation_bias"]


@dataclass
class BiasReport:
    """What :func:`truncation_bias` measured. Lists run parallel to ``k2s``."""

    k1: int
    k2s: list[int]
    cosine: list[float]  # cos(g_k2, g_bptt)
    relative_error: list[float]  # ||g_k2 - g_bptt|| / ||g_bptt||
    bptt_norm: float  # ||g_bptt||
    tolerance: float
    smallest_k2: (
        int | None
    )  # the smallest k2 tried whose relative error, and every larger one's, is <= tolerance
    reach: np.ndarray | None = None  # (T,) ||dl_T / ds_{T-j}||, j = 0 .. T-1

    @property
    def wrong_sign(self) -> list[int]:
        """The k2 whose truncated gradient points away from BPTT's (cosine < 0)."""
        return [k for k, c in zip(self.k2s, self.cosine) if c < 0]

    def reach_k2(self, tolerance: float | None = None) -> int | None:
        """Aicher et al.'s estimate from the reach curve alone: the smallest k such that the
        gradient mass beyond k steps, ``sum_{j >= k} reach[j] / sum_j reach[j]``, is at most
        ``tolerance`` (default: the report's). ``None`` without a reach curve."""
        if self.reach is None or not len(self.reach):
            return None
        tol = self.tolerance if tolerance is None else tolerance
        total = float(self.reach.sum())
        if total == 0:
            return 1
        tail = np.cumsum(self.reach[::-1])[::-1] / total  # tail[k] = mass at lags >= k
        ok = np.nonzero(tail <= tol)[0]
        return int(ok[0]) if len(ok) else len(self.reach)

    def summary(self) -> str:
        """A table for the terminal."""
        rows = [f"TBPTT(k1={self.k1}, k2) against BPTT; ||g_bptt|| = {self.bptt_norm:.4g}"]
        rows.append(f"{'k2':>6} {'cosine':>9} {'rel.err':>9}")
        for k, c, e in zip(self.k2s, self.cosine, self.relative_error):
            rows.append(f"{k:>6} {c:>9.4f} {e:>9.4f}")
        best = self.smallest_k2 if self.smallest_k2 is not None else "none of those measured"
        rows.append(f"smallest k2 with relative error <= {self.tolerance:g}: {best}")
        if self.wrong_sign:
            rows.append(f"wrong sign (cosine < 0) for k2 in {self.wrong_sign}")
        if self.reach is not None:
            rows.append(f"k2 estimated from the gradient reach (Aicher et al.): {self.reach_k2()}")
        return "\n".join(rows)

    def plot(self, path: str | Path | None = None) -> Figure:
        """Cosine and relative error against k2 (left), the gradient reach (right, log scale)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10 if self.reach is not None else 5.5, 4), layout="constrained")
        axes = fig.subplots(1, 2 if self.reach is not None else 1, squeeze=False)[0]
        ax = axes[0]
        ax.plot(self.k2s, self.cosine, "o-", color="tab:blue", label="cosine similarity")
        ax.plot(self.k2s, self.relative_error, "s--", color="tab:orange", label="relative error")
        ax.axhline(0, color="k", lw=0.5)
        ax.axhline(self.tolerance, color="tab:orange", lw=0.8, ls=":", label="tolerance")
        if self.smallest_k2 is not None:
            ax.axvline(self.smallest_k2, color="tab:green", lw=1, label=f"k2 = {self.smallest_k2}")
        ax.set_xlabel("k2 (backward steps)")
        ax.set_title(f"TBPTT(k1={self.k1}, k2) gradient vs BPTT")
        ax.legend(fontsize=8)
        if self.reach is not None:
            _plot_reach(axes[1], self.reach)
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig


def _plot_reach(ax: Any, reach: np.ndarray) -> None:
    """The reach curve on a log axis. Zeros (e.g. j = 0 when the last output is computed beside
    the last state rather than from it) and values 12 decades below the peak (underflow) have
    no place on a log axis: they are left out and counted in the title, and the axis spans the
    values drawn."""
    j = np.arange(len(reach))
    peak = float(np.nanmax(reach)) if len(reach) else 0.0
    shown = np.isfinite(reach) & (reach > peak * 1e-12) & (reach > 0)
    title = "gradient reach"
    if not shown.any():
        ax.text(0.5, 0.5, "the reach is 0 at every lag", ha="center", transform=ax.transAxes)
    else:
        ax.semilogy(j[shown], reach[shown], ".-", color="tab:red", ms=3)
        low, high = float(reach[shown].min()), float(reach[shown].max())
        ax.set_ylim(low / 2, high * 2)
        ax.set_xlim(-0.5, len(reach) - 0.5)
        if (~shown).any():
            title += f" ({int((~shown).sum())} lag(s) at 0 or < 1e-12 x peak not drawn)"
    ax.set_xlabel("j (steps back)")
    ax.set_ylabel("||dl_T / ds_{T-j}||")
    ax.set_title(title, fontsize=10)


def summed_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    rule: TruncationRule,
    inputs: Tensor,
    targets: Tensor,
    reset: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    init_state: State | Callable[[int], State] = None,
    path: UnrollPath = "auto",
    mode: Mode = "recompute",
) -> Tensor:
    """The sum of every update's gradient over the sample at frozen parameters (no optimizer
    step), with ``reduction="sum"``; flattened over ``model.parameters()`` (P,)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad; nothing to measure.")
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        engine = Engine(
            model,
            loss_fn,
            rule,
            mode=mode,
            path=path,
            init_state=init_state,
            reduction="sum",
            zero_grad=False,  # accumulate: the sum over updates
        )
        for _ in engine.feed(inputs, targets, reset, mask):
            pass
        for _ in engine.flush():
            pass
        flat = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]
        )
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    return flat  # (P,)


def rule_bias(
    model: nn.Module,
    loss_fn: LossFn,
    rule: TruncationRule,
    inputs: Tensor,
    targets: Tensor,
    reset: Tensor | None = None,
    mask: Tensor | None = None,
    **kw: Any,
) -> tuple[float, float]:
    """Cosine similarity and relative error ``||g - g_bptt|| / ||g_bptt||`` of any rule's summed
    gradient against full BPTT on one sample (e.g. :class:`tbptt.online.Online`, which is
    exact for its layers' own parameters: 1 and ~0 for a single online layer with a readout).

    >>> import torch
    >>> from torch import nn
    >>> from tbptt.elementwise import MinGRU
    >>> from tbptt.online import Online
    >>> from tbptt.truncation import TBPTT
    >>> torch.manual_seed(0) and None
    >>> layer = MinGRU(1, 3, max_timescale=20.0)
    >>> loss = lambda y, t: (y[..., :1] - t).pow(2)[..., 0]
    >>> x, y = torch.randn(2, 24, 1), torch.randn(2, 24, 1)
    >>> cos, err = rule_bias(layer, loss, Online(4), x, y)
    >>> round(cos, 6), err < 1e-5
    (1.0, True)
    >>> rule_bias(layer, loss, TBPTT(4), x, y)[1] > 1e-3
    True
    """
    full = _bptt_gradient(model, loss_fn, inputs, targets, reset, mask, **kw)
    return _against(summed_gradient(model, loss_fn, rule, inputs, targets, reset, mask, **kw), full)


def _bptt_gradient(model: nn.Module, loss_fn: LossFn, *sample: Any, **kw: Any) -> Tensor:
    """The full-BPTT summed gradient (P,) of the sample; refused when its norm is 0 or not finite."""
    full = summed_gradient(model, loss_fn, rule_of(None), *sample, **kw)
    norm = float(full.norm())
    if norm == 0 or not math.isfinite(norm):
        raise ValueError(
            f"The full-BPTT gradient on this sample has norm {norm}; the bias is undefined. "
            "Check the targets/mask (are any losses counted?) and the model's outputs."
        )
    return full


def _against(g: Tensor, full: Tensor) -> tuple[float, float]:
    """Cosine similarity and relative error of the gradient ``g`` against ``full`` (both (P,))."""
    norm = full.norm()
    cos = float(torch.dot(g, full) / (g.norm() * norm).clamp(min=1e-300))
    return cos, float((g - full).norm() / norm)


def truncation_bias(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    k2s: Sequence[int],
    *,
    k1: int = 1,
    reset: Tensor | None = None,
    mask: Tensor | None = None,
    tolerance: float = 0.1,
    reach: bool = True,
    init_state: State | Callable[[int], State] = None,
    path: UnrollPath = "auto",
    mode: Mode = "recompute",
) -> BiasReport:
    """Measure the truncation bias of TBPTT(k1, k2) for each k2 in ``k2s`` on one sample.

    Args:
        model, loss_fn, init_state, path, mode: as for :class:`tbptt.Engine` (with frozen
            parameters ``"stored"`` and ``"recompute"`` give the same gradient; recompute is
            faster for k1 = 1). Use a deterministic
            model (no dropout, or ``model.eval()``): both gradients must see the same forward.
        inputs, targets, reset, mask: the sample, (B, T, ...) as for ``Engine.feed``; it is
            one stream from its start.
        k2s: the backward lengths to measure (positive integers).
        k1: the forward length of every TBPTT run (default 1: each loss backpropagated
            exactly k2 steps, Aicher et al.'s TBPTT(K)).
        tolerance: the relative error ``||g_k2 - g|| / ||g||`` the smallest k2 must meet.
        reach: also compute :func:`gradient_reach` on the sample (its last step's loss).

    The parameters are left as they were (their ``.grad`` too).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be an nn.Module (its parameters are what the gradients are of), got "
            f"{type(model).__name__}."
        )
    ks = list(k2s)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(
            f"k2s must be a non-empty list of positive integers, got {k2s!r}; e.g. k2s=[5, 10, 20]."
        )
    if not (isinstance(tolerance, float | int) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}; e.g. 0.1.")
    ks = sorted(set(ks))
    kw: dict[str, Any] = {"init_state": init_state, "path": path, "mode": mode}
    full = _bptt_gradient(model, loss_fn, inputs, targets, reset, mask, **kw)
    norm = float(full.norm())
    cos, rel = [], []
    for k in ks:
        g = summed_gradient(model, loss_fn, rule_of(k1, k), inputs, targets, reset, mask, **kw)
        c, r = _against(g, full)
        cos.append(c)
        rel.append(r)
    smallest = None
    for k, e in zip(reversed(ks), reversed(rel)):
        if e > tolerance:
            break
        smallest = k
    curve = None
    if reach:
        curve = gradient_reach(model, loss_fn, inputs, targets, init_state=init_state, path=path)
    return BiasReport(
        k1=k1,
        k2s=ks,
        cosine=cos,
        relative_error=rel,
        bptt_norm=norm,
        tolerance=float(tolerance),
        smallest_k2=smallest,
        reach=curve,
    )


def gradient_reach(
    model: Any,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    init_state: State | Callable[[int], State] = None,
    path: UnrollPath = "auto",
) -> np.ndarray:
    """``||dl_T / ds_{T-j}||`` for j = 0 .. T-1: how far back the last step's loss reaches.

    ``l_T`` is the last step's loss summed over the batch; ``s_t`` is the state after step t
    (all leaves of the state pytree together). ``reach[0]`` is 0 for models whose output is
    computed beside the state they return rather than from it (an ``nn.LSTM``'s output and its
    ``(h_n, c_n)`` are separate tensors): the last loss does not depend on the last state. A
    geometric decay means vanishing gradients
    (and a short k2 suffices), growth means exploding ones (Bengio, Simard & Frasconi 1994;
    Pascanu, Mikolov & Bengio 2013). Returns an array of T floats.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 2 or inputs.shape[1] < 1:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a (B, T, ...) tensor with T >= 1, got {got}.")
    unroller = Unroller(model, path, init_state, compile=False)
    batch, length = inputs.shape[:2]
    state = unroller.initial(batch)
    states: list[list[Tensor]] = []  # the leaves of s_t that are in the graph, t = 0 .. T-1
    with torch.enable_grad():
        for t in range(length):
            # one step through the engine's model call (chunk path: x (B, 1, ...))
            y, state = unroller._call(inputs[:, t : t + 1], state, None, False)  # (B, 1, ...)
            states.append([leaf for leaf in st.leaves(state) if leaf.requires_grad])
        loss = loss_fn(y, targets[:, length - 1 : length]).sum()
    flat = [leaf for leaves in states for leaf in leaves]
    if not flat:
        raise ValueError(
            "The model's states do not require grad (no trainable parameter feeds them), so "
            "dl_T/ds_t is undefined. Measure the reach with the model's parameters trainable."
        )
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    norms, i = [], 0
    for leaves in states:
        part = grads[i : i + len(leaves)]
        i += len(leaves)
        norms.append(math.sqrt(sum(float(g.pow(2).sum()) for g in part if g is not None)))
    return np.asarray(norms[::-1])  # reach[j] = ||dl_T / ds_{T-1-j}||

"""Exact online gradients for element-wise recurrent layers: real-time recurrent learning.

For a layer whose recurrence is element-wise, ``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t``
functions of the input and the layer's parameters ``theta`` only, the sensitivities
``S_t = dh_t/dtheta`` obey ``S_t = a_t * S_{t-1} + d(a_t h_{t-1} + b_t)/dtheta``: each hidden
unit depends only on its own row of parameters, so ``S`` is a (B, H, D) tensor, not
(B, H, H*D) as for a dense RNN (Williams & Zipser 1989, "A learning algorithm for continually
running fully recurrent neural networks"; Zucchet et al. 2023, "Online learning of long-range
dependencies", NeurIPS). The layer carries ``S`` in its state and advances it over a chunk in
closed form. Where the engine cut the graph, the layer re-attaches its state as

    h <- h.detach() + sum_p <S_p, p - p.detach()>

(the same value; its gradient flows into the parameters through the sensitivities), and
backpropagates inside the chunk as usual. With weights frozen, every update's gradient is then
the exact gradient of its losses through the whole past, at a memory cost independent of the
stream length.

What is exact: each online layer's *own* parameters. In a stack, influence that crosses a chunk
boundary through lower layers or an embedding is truncated at the cut (Zucchet et al.'s
approximation); parameters outside the recurrences (readouts, norms) need none.

The engine tells the layers where it cut the graph (:func:`graph_cut`), never a guess: the
state entering an update, a stored-mode window break, a replayed state. A reset inside a chunk
is not a cut: the reset rows restart from zero state and zero sensitivities, the other rows
keep their graph.

>>> import torch
>>> from tbptt import Engine, losses
>>> from tbptt.models import MinGRU
>>> layer = MinGRU(2, 4)
>>> engine = Engine(layer, lambda y, t: (y[..., :1] - t).pow(2)[..., 0], Online(k1=5))
>>> for u in engine.feed(torch.randn(3, 10, 2), torch.randn(3, 10, 1)):
...     pass
>>> engine.stats["online"]["layers"], len(engine.state)     # (h, S_W, S_c)
(1, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tbptt.truncation import TruncationRule, _check_steps

__all__ = ["EXACT", "Online", "OnlineLayer", "graph_cut", "online_layers", "reattach"]

EXACT = (
    "exact for each online layer's own parameters; influence crossing a chunk boundary through "
    "lower layers or embeddings is truncated (Zucchet et al. 2023)"
)

_CUT: ContextVar[bool] = ContextVar("tbptt_graph_cut", default=False)


@contextlib.contextmanager
def graph_cut(cut: bool) -> Iterator[None]:
    """Inside: the state given to the model's next call is cut from its history (or not)."""
    token = _CUT.set(bool(cut))
    try:
        yield
    finally:
        _CUT.reset(token)


def cut_here() -> bool:
    """Whether the engine cut the graph just before the current model call."""
    return _CUT.get()


class OnlineLayer(nn.Module):
    """An element-wise recurrent layer that can carry its sensitivities (``online = True``).

    Subclasses keep ``state = (h,)`` when not online and ``(h, *S)`` when online.
    """

    online: bool = False

    def check_state(self, state: Any) -> None:
        want = 1 + len(self.sensitivity_params()) if self.online else 1
        if not isinstance(state, tuple) or len(state) != want:
            got = len(state) if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"{type(self).__name__} state: expected a tuple of {want} tensors "
                f"({'h and its sensitivities' if self.online else 'h'}), got {got}. A state made "
                "with online gradients on cannot continue with them off (or back): start a new "
                "stream (engine.flush() or engine.reset_stream())."
            )

    def sensitivity_params(self) -> Sequence[Tensor]:
        """The parameters whose sensitivities the state carries, in the state's order (each
        subclass says which: :class:`tbptt.models.MinGRU`, :class:`tbptt.models.LRU`)."""
        raise NotImplementedError(
            f"{type(self).__name__} is an OnlineLayer and must define sensitivity_params()."
        )


def online_layers(model: Any) -> list[OnlineLayer]:
    """Every :class:`OnlineLayer` inside ``model``."""
    if not isinstance(model, nn.Module):
        return []
    return [m for m in model.modules() if isinstance(m, OnlineLayer)]


def reattach(h: Tensor, sens: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
    """``h.detach() + sum_p <S_p, p - p.detach()>``: the value of ``h``, its gradient into params.

    ``S_p`` is (B, H) for a per-unit parameter ``p`` (H,), or (B, H, D) for a (H, D) matrix
    whose row i drives unit i. The added term is zero in value, so the forward only copies
    ``h``; the backward gives ``dL/dp = sum_b <dL/dh_b, S_p[b]>`` (one pass over each ``S_p``).
    """
    return _Reattach.apply(h.detach(), len(sens), *sens, *params)


class _Reattach(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, n: int, *tensors: Tensor) -> Tensor:
        ctx.n = n
        ctx.save_for_backward(*tensors[:n])
        ctx.complex_params = [p.is_complex() for p in tensors[n:]]
        return h.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grads: list[Tensor | None] = []
        for s, is_complex in zip(ctx.saved_tensors, ctx.complex_params):
            s = s.conj() if s.is_complex() else s
            # (B, H) x (B, H, D) -> (H, D), or (B, H) x (B, H) -> (H,)
            g = torch.einsum("bh,bhd->hd", grad, s) if s.dim() > grad.dim() else (grad * s).sum(0)
            grads.append(g if is_complex or not g.is_complex() else g.real)
        return (None, None, *(None for _ in range(ctx.n)), *grads)


@dataclass(frozen=True)
class Online(TruncationRule):
    """An update every ``k1`` steps with exact online gradients for the model's online layers.

    The chunks and cuts are TBPTT(k1)'s; the layers (:class:`tbptt.models.MinGRU`,
    :class:`tbptt.models.LRU`) carry their sensitivities across the cuts, so each update's
    gradient reaches the start of the stream for their own parameters (see the module doc).
    """

    k1: int
    online = True

    def __post_init__(self) -> None:
        _check_steps("k1", self.k1)

    def next_length(self, start: int) -> int:
        return self.k1

    def cut(self, start: int, stop: int) -> int:
        return start

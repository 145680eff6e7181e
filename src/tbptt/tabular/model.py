"""The model, loss and metrics of the ``--data`` tasks.

- :class:`TabularRNN`: LSTM/GRU/RNN over the prepared input rows -> a linear head. For
  forecasting the head starts at zero, so the untrained model predicts "no change": the naive
  forecast, the baseline every model has to beat. For classification the head reads a pooled
  summary (``pool=True``): the hidden state with the running mean and max of the hidden states
  since the sequence began, carried in the state so that it streams chunk by chunk (mean/max
  pooling over time as in Wang, Yan & Oates, 2017, "Time series classification from scratch
  with deep neural networks: a strong baseline", IJCNN).
- :class:`Ensemble`: several TabularRNNs trained side by side from different initialisations
  (a deep ensemble: Lakshminarayanan, Pritzel & Blundell, 2017, "Simple and scalable
  predictive uncertainty estimation using deep ensembles", NeurIPS; forecasting's default, as
  in the ensembles of N-BEATS, Oreshkin et al. 2020, and of the M4 Competition's winners).
  Classification: :func:`ensemble_cross_entropy` trains each member on its own loss,
  :func:`mean_probabilities` is what is scored and predicted; the default, cross-fitted
  ensemble (``crossfit.py``) trains member m on the folds but m and validates it on fold m
  (:func:`crossfit_cross_entropy`, :class:`ClassifyMetrics`). Forecasting:
  :func:`ensemble_loss` trains each member on its own loss, :func:`member_mean` (the members'
  outputs averaged) is what is scored and predicted.
- :func:`weighted_mse`: targets ``(B, L, 3K)`` hold K values, their K mask weights (0 where a
  value is missing or not to be learned; the metrics count these) and K loss weights.
- :class:`ForecastMetrics` / :class:`ClassifyMetrics` / :class:`RegressMetrics`: what the
  validation reports (RMSE/MAE in the data's units; accuracy and macro-F1).

>>> m = TabularRNN(3, 2, hidden=4)
>>> y, state = m(torch.zeros(1, 5, 3), None)
>>> tuple(y.shape), float(y.detach().abs().sum())
((1, 5, 2), 0.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tbptt.models import make_rnn
from tbptt.train.metrics import Metrics

__all__ = [
    "ClassifyMetrics",
    "Ensemble",
    "ForecastMetrics",
    "RegressMetrics",
    "TabularRNN",
    "crossfit_cross_entropy",
    "ensemble_cross_entropy",
    "ensemble_loss",
    "mean_probabilities",
    "member_mean",
    "weighted_mse",
]


class TabularRNN(nn.Module):
    """Recurrent layers over ``(B, T, F)`` input rows, then a linear head to ``(B, T, out)``.

    ``zero_head``: the head's weights start at zero (forecasting: the naive forecast at init).
    ``skip``: input columns added to the first outputs (forecasting with a season where the
    seasonal naive forecast beats the naive one on the training rows: the seasonal-naive
    change, so that with the zero head the untrained model is the seasonal naive forecast and
    the network learns what it misses: a residual connection, He et al. 2016, "Deep residual
    learning for image recognition").
    ``pool``: the head reads ``[h_t, mean(h_1..h_t), max(h_1..h_t)]`` (3H) instead of ``h_t``;
    the state is then ``(rnn state, (sum (B, H), count (B, 1), max (B, H)))``: the engine's
    resets zero it, and a zero count starts the pooling afresh.

    >>> m = TabularRNN(2, 3, hidden=4, pool=True, zero_head=False)
    >>> x = torch.randn(1, 6, 2)
    >>> y1, s = m(x[:, :4], None)
    >>> y2, _ = m(x[:, 4:], s)                       # two chunks = one pass
    >>> y, _ = m(x, None)
    >>> bool(torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6))
    True
    """

    def __init__(
        self,
        features: int,
        out: int,
        *,
        hidden: int = 32,
        layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        zero_head: bool = True,
        pool: bool = False,
        skip: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.skip = list(skip or [])  # input columns added to the first outputs
        self.rnn = make_rnn(cell, features, hidden, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(3 * hidden if pool else hidden, out)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        if not self.pool:
            h, state = self.rnn(x, state)  # (B, T, H)
            return self._skip(x, self.head(self.drop(h))), state  # (B, T, out)
        rnn_state, pooled = (None, None) if state is None else state
        h, rnn_state = self.rnn(x, rnn_state)  # (B, T, H)
        feats, pooled = _pooled(h, pooled)  # (B, T, 3H)
        return self._skip(x, self.head(self.drop(feats))), (rnn_state, pooled)

    def _skip(self, x: Tensor, y: Tensor) -> Tensor:
        """``y`` (B, T, out) plus the ``skip`` input columns of ``x`` on its first outputs."""
        if not self.skip:
            return y
        add = x[..., self.skip]  # (B, T, len(skip))
        return y + torch.nn.functional.pad(add, (0, y.shape[-1] - add.shape[-1]))


class Ensemble(nn.Module):
    """``members`` independent :class:`TabularRNN` (same options, each its own random
    initialisation, no shared weight) side by side: outputs ``(B, T, members * out)``, member
    ``m``'s outputs (logits, or forecasts) in ``[..., m * out : (m + 1) * out]``; the state is
    the tuple of theirs.

    >>> torch.manual_seed(0) is not None
    True
    >>> e = Ensemble(2, 3, members=4, hidden=5, pool=True, zero_head=False)
    >>> y, state = e(torch.zeros(2, 7, 2), None)
    >>> tuple(y.shape), len(state), tuple(mean_probabilities(y, 4).shape)
    ((2, 7, 12), 4, (2, 7, 3))
    """

    def __init__(self, features: int, out: int, *, members: int, **options: Any) -> None:
        super().__init__()
        self.out = out
        self.members = nn.ModuleList(TabularRNN(features, out, **options) for _ in range(members))

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        states = (None,) * len(self.members) if state is None else state
        ys, new = [], []
        for member, s in zip(self.members, states):
            y, s = member(x, s)  # (B, T, out)
            ys.append(y)
            new.append(s)
        return torch.cat(ys, -1), tuple(new)  # (B, T, members * out)


def mean_probabilities(logits: Tensor, members: int) -> Tensor:
    """``(..., members * C)`` logits -> ``(..., C)``: the members' softmax probabilities averaged.

    >>> p = mean_probabilities(torch.tensor([[0.0, 0.0, 0.0, 100.0]]), 2)
    >>> [round(v, 3) for v in p[0].tolist()]
    [0.25, 0.75]
    """
    c = logits.shape[-1] // members
    p = logits.reshape(*logits.shape[:-1], members, c).softmax(-1)  # (..., members, C)
    return p.mean(-2)


def ensemble_cross_entropy(members: int) -> Any:
    """The loss of an :class:`Ensemble` of ``members``: logits ``(B, L, members * C)``, integer
    targets ``(B, L)`` -> ``(B, L)``, the mean of the members' own cross-entropies, so each
    member's gradient is that of its own loss (independent training; 1: plain cross-entropy)."""

    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        c = logits.shape[-1] // members
        per = logits.reshape(*logits.shape[:-1], members, c)  # (B, L, members, C)
        flat = nn.functional.cross_entropy(
            per.reshape(-1, c),
            targets.unsqueeze(-1).expand(*targets.shape, members).reshape(-1),
            reduction="none",
        )
        return flat.view(*targets.shape, members).mean(-1)

    return loss


def crossfit_cross_entropy(members: int) -> Any:
    """The loss of a cross-fitted :class:`Ensemble` (``tbptt/tabular/crossfit.py``): logits
    ``(B, L, members * C)``, targets ``(B, L, 1 + members)`` = the class id, then one weight per
    member -> ``(B, L)``: the weighted mean of the members' own cross-entropies. Training gives
    weight 1 to the members whose folds hold the sequence, so member m's gradient is that of its
    own loss on the other folds' sequences only (over ``members - 1``); validation gives weight
    1 to the member of the sequence's fold: its out-of-fold loss. A step with no weight (padding)
    costs 0.

    >>> f = crossfit_cross_entropy(2)
    >>> logits = torch.tensor([[[0.0, 0.0, 5.0, -5.0]]])   # member 0 unsure, member 1 sure
    >>> round(float(f(logits, torch.tensor([[[0, 1, 0]]]))), 4)  # member 0's loss: ln 2
    0.6931
    >>> round(float(f(logits, torch.tensor([[[0, 0, 1]]]))), 4)  # member 1's loss
    0.0
    """

    def loss(logits: Tensor, targets: Tensor) -> Tensor:
        c = logits.shape[-1] // members
        per = logits.reshape(*logits.shape[:-1], members, c)  # (B, L, members, C)
        label = targets[..., 0].long()  # (B, L)
        flat = nn.functional.cross_entropy(
            per.reshape(-1, c),
            label.unsqueeze(-1).expand(*label.shape, members).reshape(-1),
            reduction="none",
        ).view(*label.shape, members)  # (B, L, members)
        w = targets[..., 1:].to(flat.dtype)  # (B, L, members)
        return (flat * w).sum(-1) / w.sum(-1).clamp(min=1.0)

    return loss


def member_mean(outputs: Tensor, members: int) -> Tensor:
    """``(..., members * K)`` outputs of an :class:`Ensemble` -> ``(..., K)``: the members'
    outputs averaged (forecasting: the one-step changes and the direct head's, each linear in
    the forecast level, so this is the mean of the members' forecasts). 1: as they are.

    >>> member_mean(torch.tensor([[1.0, 2.0, 3.0, 6.0]]), 2).tolist()
    [[2.0, 4.0]]
    """
    if members == 1:
        return outputs
    k = outputs.shape[-1] // members
    return outputs.reshape(*outputs.shape[:-1], members, k).mean(-2)


def ensemble_loss(loss: Any, members: int) -> Any:
    """The loss of an :class:`Ensemble` of ``members`` from one model's ``loss(y (B, L, K),
    targets) -> (B, L)``: outputs ``(B, L, members * K)`` -> ``(B, L)``, the mean of the
    members' own losses against the same targets, so each member's gradient is that of its own
    loss over ``members`` (independent training). 1: ``loss`` itself."""
    if members == 1:
        return loss

    def mean_loss(y: Tensor, targets: Tensor) -> Tensor:
        k = y.shape[-1] // members
        per = [loss(y[..., m * k : (m + 1) * k], targets) for m in range(members)]  # (B, L) each
        return torch.stack(per, -1).mean(-1)

    return mean_loss


def _pooled(h: Tensor, carried: Any) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """``h`` (B, T, H) -> ``[h, running mean, running max]`` (B, T, 3H) and the carried
    ``(sum (B, H), count (B, 1), max (B, H))``; a row whose count is 0 starts afresh."""
    b, t, _ = h.shape
    if carried is None:
        carried = (h.new_zeros(b, h.shape[2]), h.new_zeros(b, 1), h.new_zeros(b, h.shape[2]))
    total, count, peak = carried
    steps = torch.arange(1, t + 1, device=h.device, dtype=h.dtype).view(1, t, 1)
    sums = total.unsqueeze(1) + h.cumsum(1)  # (B, T, H)
    counts = count.unsqueeze(1) + steps  # (B, T, 1)
    floor = torch.where(count > 0, peak, torch.full_like(peak, -torch.inf))  # (B, H)
    peaks = torch.maximum(h.cummax(1).values, floor.unsqueeze(1))  # (B, T, H)
    feats = torch.cat([h, sums / counts, peaks], -1)
    return feats, (sums[:, -1], counts[:, -1], peaks[:, -1])


def weighted_mse(y: Tensor, targets: Tensor) -> Tensor:
    """``y`` (B, L, K), ``targets`` (B, L, 3K) = values, mask weights, loss weights -> (B, L)
    squared error weighted by the loss weights."""
    k = y.shape[-1]
    v, w = targets[..., :k], targets[..., 2 * k :]
    return ((y - v) ** 2 * w).sum(-1) / k


class ForecastMetrics(Metrics):
    """RMSE and MAE of the targets' one-step predictions in the data's units (the first
    ``len(scale)`` channels; ``scale``: the change scale x the level scale per target).

    The best checkpoint is chosen by the loss: each sequence's errors relative to its own scale
    (the loss weights), so in a panel a large id does not decide alone. ``members`` > 1: the
    outputs are an :class:`Ensemble`'s, scored by their mean (:func:`member_mean`)."""

    name = "loss"

    def __init__(self, scale: list[float], n_out: int, members: int = 1) -> None:
        self.scale = torch.tensor(scale, dtype=torch.float64)
        self.n_out = n_out
        self.members = members
        self.reset()

    def reset(self) -> None:
        self._sq, self._abs, self._n = 0.0, 0.0, 0.0

    def accumulate(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> None:
        k = len(self.scale)
        scale = self.scale.to(outputs.device)
        outputs = member_mean(outputs, self.members)
        err = (outputs[..., :k].double() - targets[..., :k].double()) * scale  # (B, L, k)
        w = targets[..., self.n_out : self.n_out + k].double() * mask.unsqueeze(-1)
        self._sq += float((err**2 * w).sum())
        self._abs += float((err.abs() * w).sum())
        self._n += float(w.sum())

    def summary(self) -> dict[str, float]:
        if not self._n:
            return {}
        return {"rmse": math.sqrt(self._sq / self._n), "mae": self._abs / self._n}


class RegressMetrics(ForecastMetrics):
    """Regression: the same errors; targets are levels scaled by ``scale``."""


TIE_BREAK = 1e-6
"""``--best-by accuracy``: the cross-entropy's weight in ``error`` (below one sequence's share of
the accuracy up to 10^4 validation sequences and a cross-entropy of 100)."""


class ClassifyMetrics(Metrics):
    """Cross-entropy -> accuracy and macro-F1 over the sequences' last steps (the mask); with
    ``members`` > 1 the class is that of the members' averaged probabilities, or, for a
    cross-fitted ensemble (targets ``(..., 1 + members)``: the class, then the members'
    weights), of the weighted members' (validation: the sequence's out-of-fold member).
    ``best_by="accuracy"``: also ``error``, ``1 - accuracy + TIE_BREAK x cross-entropy``, the
    score the trainer keeps the lowest of (the best checkpoint: the most accurate, and of those
    the one with the lowest cross-entropy); ``"loss"``: the cross-entropy alone."""

    name = "loss"

    def __init__(self, n_classes: int, members: int = 1, best_by: str = "loss") -> None:
        self.n_classes = n_classes
        self.members = members
        self.best_by = best_by
        if best_by == "accuracy":  # the best checkpoint: the lowest error, ties by the loss
            self.name = "error"
        self._loss = float("nan")
        self.reset()

    def from_loss(self, loss: float) -> dict[str, float]:
        self._loss = loss
        return {"loss": loss}

    def reset(self) -> None:
        self._pred: list[np.ndarray] = []
        self._true: list[np.ndarray] = []

    def accumulate(self, outputs: Tensor, targets: Tensor, mask: Tensor) -> None:
        m = mask.bool()
        if targets.dim() == outputs.dim():  # cross-fitted: (..., 1 + members) class, weights
            c = outputs.shape[-1] // self.members
            per = outputs[m].reshape(-1, self.members, c).softmax(-1)  # (n, members, C)
            w = targets[m][:, 1:].to(per.dtype).unsqueeze(-1)  # (n, members, 1)
            prob = (per * w).sum(1) / w.sum(1).clamp(min=1.0)  # (n, C)
            true = targets[m][:, 0]
        else:
            prob = mean_probabilities(outputs[m], self.members)  # (n, C)
            true = targets[m]
        self._pred.append(prob.argmax(-1).cpu().numpy())
        self._true.append(true.long().cpu().numpy())

    def summary(self) -> dict[str, float]:
        if not self._pred:
            return {}
        out = classify_scores(
            np.concatenate(self._true), np.concatenate(self._pred), self.n_classes
        )
        if self.name == "error":
            out["error"] = 1.0 - out["accuracy"] + TIE_BREAK * self._loss
        return out


def classify_scores(true: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (the mean over the classes present in ``true`` or ``pred``).

    >>> classify_scores(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
    {'accuracy': 0.6666666666666666, 'macro_f1': 0.6666666666666666}
    """
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (true == c)).sum())
        fp = int(((pred == c) & (true != c)).sum())
        fn = int(((pred != c) & (true == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    acc = float((true == pred).mean()) if len(true) else 0.0
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)) if f1s else 0.0}

"""Small seeded models for the diagnostics tests: influence balancing and a char-LSTM."""

from __future__ import annotations

import inspect
import textwrap

import torch
from torch import Tensor, nn

import tbptt
from tbptt import TBPTT, Engine


class Balancing(nn.Module):
    """Influence balancing (Tallec & Ollivier 2017, UORO), written here from the paper's setup:
    s_t = A s_{t-1} + theta * u, A = 0.5 I + 0.5 superdiagonal, u = (+1 x10, -1 x13), s_0 = 1,
    output s_t[0], loss 0.5 (s_t[0] - 1)^2."""

    def __init__(self, n: int = 23, n_pos: int = 10, theta: float = 0.5) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
        eye = torch.eye(n, dtype=torch.float64)
        self.register_buffer(
            "A", 0.5 * eye + 0.5 * torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
        )
        self.register_buffer("u", torch.cat([torch.ones(n_pos), -torch.ones(n - n_pos)]).double())
        self.n = n

    def initial_state(self, batch: int) -> Tensor:
        return torch.ones(batch, self.n, dtype=torch.float64)  # (B, n)

    def forward(self, x: Tensor, s: Tensor | None) -> tuple[Tensor, Tensor]:  # x (B, L, 1)
        s = self.initial_state(x.shape[0]) if s is None else s
        ys = []
        for t in range(x.shape[1]):
            s = s @ self.A.T + self.theta * x[:, t] * self.u  # (B, n)
            ys.append(s[:, :1])
        return torch.stack(ys, 1), s  # (B, L, 1)


def half_squared(y: Tensor, target: Tensor) -> Tensor:
    return 0.5 * (y - target).pow(2).flatten(2).sum(-1)  # (B, L)


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor, state):  # x (B, L) long
        y, state = self.lstm(self.embed(x), state)  # (B, L, H)
        return self.head(y), state  # (B, L, V)


def char_data() -> tuple[Tensor, int]:
    """Characters of a standard-library module's source (always there): (N,) ids, vocab."""
    text = textwrap.dedent(inspect.getsource(textwrap))
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    return ids, len(vocab)


def trained_char_lstm(updates: int = 60, seed: int = 0) -> tuple[CharLSTM, Tensor]:
    """A char-LSTM briefly trained with TBPTT(20) on 4 stateful rows; returns it and the ids."""
    torch.manual_seed(seed)
    ids, vocab = char_data()
    model = CharLSTM(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    steps = 20 * updates
    x = ids[: 4 * steps].view(4, steps)  # (B, T)
    y = ids[1 : 4 * steps + 1].view(4, steps)
    engine = Engine(model, tbptt.losses.cross_entropy, TBPTT(20))
    losses = []
    for update in engine.feed(x, y):
        opt.step()
        losses.append(float(update.loss))
    model.losses = losses  # type: ignore[attr-defined]
    return model, ids

"""Small recurrent models for the ``tbptt`` command, in the engine's ``model(x, state)`` form.

>>> import torch
>>> m = CharRNN(vocab_size=10, embed=4, hidden=8)
>>> logits, state = m(torch.zeros(2, 5, dtype=torch.long), None)
>>> tuple(logits.shape), tuple(state[0].shape)             # (B, T, V), (layers, B, H)
((2, 5, 10), (1, 2, 8))
>>> s = SeriesRNN(hidden=8, cell="gru")
>>> y, h = s(torch.zeros(3, 7, 1), None)
>>> tuple(y.shape), tuple(h.shape)
((3, 7, 1), (1, 3, 8))
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from tbptt.elementwise import LRU, ElementwiseStack, MinGRU

Cell = Literal["lstm", "gru", "rnn", "mingru", "lru"]
CELLS: dict[str, Any] = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn": nn.RNN,
    "mingru": MinGRU,
    "lru": LRU,
}

__all__ = ["CELLS", "LRU", "CharRNN", "ElementwiseStack", "MinGRU", "SeriesRNN", "make_rnn"]


def make_rnn(cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` (tanh) with ``batch_first=True``, or a stack of minGRU
    or LRU layers (:class:`ElementwiseStack`, which can train with exact online gradients)."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}.")
    for name, value in (("hidden", hidden), ("layers", layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if cell in ("mingru", "lru"):
        return ElementwiseStack(input_size, hidden, layers, cell=cell, dropout=dropout)
    return CELLS[cell](
        input_size, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
    )


class CharRNN(nn.Module):
    """Embedding -> LSTM/GRU/RNN -> dropout -> linear: a character-level language model.

    ``forward(x (B, T) long, state) -> (logits (B, T, V), state)``.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embed: int = 64,
        hidden: int = 256,
        layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = make_rnn(cell, embed, hidden, layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        y, state = self.rnn(self.embed(x), state)  # (B, T, H)
        return self.head(self.drop(y)), state  # (B, T, V)

    @torch.no_grad()
    def sample(
        self,
        prompt: Tensor,
        length: int,
        *,
        temperature: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt`` (T,) long by ``length`` sampled tokens; returns (length,)."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        was_training = self.training
        self.eval()
        logits, state = self(prompt.view(1, -1), None)  # (1, T, V)
        out = []
        for _ in range(length):
            probs = torch.softmax(logits[0, -1].float() / temperature, -1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(prompt.device)
            out.append(nxt)
            logits, state = self(nxt.view(1, 1), state)
        self.train(was_training)
        return torch.cat(out) if out else prompt.new_zeros(0)


class SeriesRNN(nn.Module):
    """LSTM/GRU/RNN -> linear over ``features`` channels: predicts the next step.

    With ``residual=True`` (default) the head predicts the change, ``y_t = x_t + head(h_t)``, so
    an untrained model starts as the naive (last value) forecast.
    ``forward(x (B, T, F), state) -> (y (B, T, F), state)``.
    """

    def __init__(
        self,
        features: int = 1,
        *,
        hidden: int = 32,
        layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.rnn = make_rnn(cell, features, hidden, layers, dropout)
        self.head = nn.Linear(hidden, features)
        self.residual = residual

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        y, state = self.rnn(x, state)  # (B, T, H)
        out = self.head(y)  # (B, T, F)
        return (x + out if self.residual else out), state

"""Quickstart: a character-level LSTM trained with TBPTT(k1=25, k2=50) inside your own loop.

The text is the source of Python's own ``textwrap`` module (real text, always installed).
Run: python examples/quickstart.py [updates]
"""

import inspect
import math
import sys
import textwrap

import torch
from torch import nn

import tbptt

text = inspect.getsource(textwrap).encode()  # bytes: a 256-symbol alphabet
data = torch.tensor(list(text))
B = 16
rows = data[: len(data) // B * B].view(B, -1)  # (B, T): 16 parallel streams


class CharLSTM(nn.Module):
    def __init__(self, vocab=256, hidden=128):
        super().__init__()
        self.embed, self.lstm = nn.Embedding(vocab, 32), nn.LSTM(32, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):  # x (B, T) -> logits (B, T, V)
        y, state = self.lstm(self.embed(x), state)
        return self.head(y), state


def main(max_updates: int = 300) -> float:
    torch.manual_seed(0)
    model = CharLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    engine = tbptt.Engine(model, tbptt.losses.cross_entropy, tbptt.TBPTT(k1=25, k2=50))
    losses = []
    while len(losses) < max_updates:  # epochs over the same streams
        for a in range(0, rows.shape[1] - 1, 100):  # feed 100 steps at a time: any size works
            x, y = rows[:, a : a + 100], rows[:, a + 1 : a + 101]
            x = x[:, : y.shape[1]]
            for update in engine.feed(x, y):  # one update per 25 steps, reaching 50 back
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                losses.append(update.loss.item())
        list(engine.flush())  # the stream ends: the last short chunk is trained, state resets
    bits = sum(losses[-20:]) / 20 / math.log(2)
    print(f"{len(losses)} updates, train loss {bits:.2f} bits/char (uniform: 8.00)")
    return bits


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)

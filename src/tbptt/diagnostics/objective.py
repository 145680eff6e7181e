"""The default sweep objective: train a small character-level LSTM with TBPTT(k1, k2).

It uses the engine directly (the trainer's ``fit`` can replace it once it lands). The default
text is the source of a few Python standard-library modules: always installed, no download.

>>> fn = char_lm_objective(updates=3, hidden=8, batch_size=2, val_chars=200)
>>> sorted(fn(4, 8))
['peak_memory_mb', 'seconds', 'tokens_per_s', 'train_loss', 'val_loss']
"""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tbptt import losses
from tbptt.engine import Engine
from tbptt.truncation import TBPTT

__all__ = ["CharLSTM", "char_lm_objective", "default_text"]


def default_text(modules: tuple[str, ...] = ("textwrap", "argparse", "dataclasses")) -> str:
    """The source of some standard-library modules, joined (about 150k characters)."""
    import importlib

    return "\n".join(inspect.getsource(importlib.import_module(m)) for m in modules)


class CharLSTM(nn.Module):
    """Embedding -> LSTM -> linear head (word_language_model style)."""

    def __init__(self, vocab: int, hidden: int = 128, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor, state: object) -> tuple[Tensor, object]:  # x (B, L) long
        y, state = self.lstm(self.embed(x), state)  # (B, L, H)
        return self.head(y), state  # (B, L, V)


def char_lm_objective(
    text: str | None = None,
    *,
    updates: int = 200,
    hidden: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    val_chars: int = 20_000,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Callable[[int, int], dict[str, float]]:
    """A ``train_fn(k1, k2)`` for :func:`tbptt.diagnostics.sweep`: train a char-LSTM for
    ``updates`` updates of TBPTT(k1, k2) with Adam on ``batch_size`` stateful rows of ``text``,
    then report the held-out loss.

    Metrics: ``val_loss`` (nats per char on the last ``val_chars`` characters, the state carried
    through), ``train_loss`` (mean of the last 10% of updates), ``tokens_per_s`` (training
    characters per second), ``peak_memory_mb`` (CUDA: the peak allocated in this run; CPU: the
    process's peak resident size, an upper bound shared by all trials of the process).
    """
    text = default_text() if text is None else text
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.long)
    if len(ids) < 2 * val_chars:
        raise ValueError(
            f"text has {len(ids)} characters but val_chars={val_chars} needs at least "
            f"{2 * val_chars}; pass a longer text or a smaller val_chars."
        )
    train, val = ids[:-val_chars], ids[-val_chars:]

    def rows(data: Tensor, b: int) -> tuple[Tensor, Tensor]:
        width = (len(data) - 1) // b
        return data[: b * width].view(b, width), data[1 : b * width + 1].view(b, width)  # (B, T)

    def train_fn(k1: int, k2: int) -> dict[str, float]:
        torch.manual_seed(seed)
        dev = torch.device(device)
        model = CharLSTM(len(vocab), hidden).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        engine = Engine(model, losses.cross_entropy, TBPTT(k1, k2))
        x, y = rows(train, batch_size)
        if x.shape[1] < k1:
            raise ValueError(
                f"k1={k1} is longer than each of the {batch_size} training rows ({x.shape[1]} "
                "steps); use a smaller k1 or batch_size, or a longer text."
            )
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        history: list[float] = []
        seen, start = 0, time.perf_counter()
        while len(history) < updates:
            for a in range(0, x.shape[1] - k1 + 1, k1):
                for update in engine.feed(x[:, a : a + k1].to(dev), y[:, a : a + k1].to(dev)):
                    opt.step()
                    history.append(float(update.loss))
                    seen += batch_size * (update.stop - update.start)
                if len(history) >= updates:
                    break
            engine.reset_stream()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
        vx, vy = rows(val, 1)
        with torch.no_grad():
            logits, _ = model(vx.to(dev), None)  # (1, T, V)
            val_loss = float(losses.cross_entropy(logits, vy.to(dev)).mean())
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
        tail = history[-max(1, updates // 10) :]
        return {
            "val_loss": val_loss,
            "train_loss": sum(tail) / len(tail),
            "tokens_per_s": seen / seconds,
            "peak_memory_mb": peak,
            "seconds": seconds,
        }

    return train_fn

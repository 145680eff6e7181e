"""Regenerate the pictures of docs/guide.md: python docs/make_diagnostics_images.py [PART...]
with PART among explain, suggest, bias, sweep (default all; sweep takes the longest)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from tbptt import TBPTT, Engine, losses
from tbptt.datasets import stdlib_source
from tbptt.diagnostics import (
    explain,
    load_series,
    suggest,
    sweep,
    trainer_objective,
    truncation_bias,
)
from tbptt.models import CharRNN

IMG = Path(__file__).parent / "img"


def main(parts: list[str]) -> None:
    torch.set_num_threads(1)
    IMG.mkdir(exist_ok=True)
    if "explain" in parts:
        explain_images()
    if "suggest" in parts:
        suggest_images()
    if "bias" in parts:
        bias_images()
    if "sweep" in parts:
        sweep_images()


def explain_images() -> None:
    for k1, k2 in [(2, 4), (4, 2), (4, 4)]:
        explain(k1, k2, 12).plot(IMG / f"explain_{k1}_{k2}.png")


def suggest_images() -> None:
    suggest(load_series("sunspots")).plot(IMG / "suggest_sunspots.png", title="monthly sunspots")
    suggest(load_series("taylor")).plot(IMG / "suggest_taylor.png", title="half-hourly demand")


def bias_images() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "diagnostics"))
    from _diag_models import Balancing, half_squared

    torch.set_default_dtype(torch.float64)
    model = Balancing()
    x = torch.ones(1, 160, 1)
    mask = torch.zeros(1, 160, dtype=torch.bool)
    mask[:, 100:] = True
    r = truncation_bias(
        model,
        half_squared,
        x,
        x.clone(),
        [5, 10, 20, 30, 35, 40, 41, 45, 50, 60, 80],
        mask=mask,
        init_state=model.initial_state,
        tolerance=0.05,
    )
    print(r.summary())
    r.plot(IMG / "bias_influence.png")
    torch.set_default_dtype(torch.float32)

    torch.manual_seed(0)
    text = "\n".join(stdlib_source(limit_chars=150_000).docs)
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    lstm = CharRNN(len(vocab), embed=64, hidden=64)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    steps = 20 * 100
    engine = Engine(lstm, losses.cross_entropy, TBPTT(20))
    for _ in engine.feed(ids[: 8 * steps].view(8, steps), ids[1 : 8 * steps + 1].view(8, steps)):
        opt.step()
    s = 8 * steps + 1
    xs, ys = ids[s : s + 4 * 64].view(4, 64), ids[s + 1 : s + 1 + 4 * 64].view(4, 64)
    r = truncation_bias(lstm, losses.cross_entropy, xs, ys, [1, 2, 4, 8, 16, 32, 64])
    print(r.summary())
    r.plot(IMG / "bias_char_lstm.png")


def sweep_images() -> None:
    result = sweep(
        trainer_objective(updates=150, hidden=64, batch_size=16),
        k1s=[8, 32],
        k2s=[8, 16, 32, 64],
    )
    print(result.summary())
    result.plot_loss(IMG / "sweep_loss.png")
    result.plot_pareto(IMG / "sweep_pareto.png")


if __name__ == "__main__":
    main(sys.argv[1:] or ["explain", "suggest", "bias", "sweep"])

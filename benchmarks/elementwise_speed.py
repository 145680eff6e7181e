"""minGRU and LRU against nn.LSTM at equal parameters, and the cost of exact online gradients.

Measured in one run, on one device, one CPU thread by default, with every row taking turns
within each round (drift hits them alike); the median over rounds is reported:

- tokens/s (batch x steps / s) of training with ``tbptt.Engine`` + Adam under TBPTT(k1), for a
  sequence model ``Linear(D) -> recurrent layer -> Linear`` with nn.LSTM, minGRU or LRU, their
  hidden sizes chosen for equal parameter counts;
- the same minGRU / LRU under :class:`tbptt.online.Online` (k1): exact online gradients; the
  ratio to their plain TBPTT(k1) is the online option's cost (goal: at most 2x);
- stored TBPTT(k1, 4 k1) against TBPTT(k1), for minGRU and for nn.LSTM.

Prints a table and ``--json PATH`` writes it.

    python benchmarks/elementwise_speed.py                 # CPU-sized defaults, a few minutes
    python benchmarks/elementwise_speed.py --hidden 256 --steps 1024
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tbptt import TBPTT, Engine, losses
from tbptt.elementwise import LRU, MinGRU
from tbptt.online import Online


class SeqModel(nn.Module):
    """``x (B, T, D) -> layer -> Linear -> (B, T, D)``: the layer is nn.LSTM, minGRU or LRU."""

    def __init__(self, cell: str, dim: int, hidden: int) -> None:
        super().__init__()
        if cell == "lstm":
            self.layer: nn.Module = nn.LSTM(dim, hidden, batch_first=True)
        else:
            self.layer = MinGRU(dim, hidden) if cell == "mingru" else LRU(dim, hidden)
        self.head = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, state: object) -> tuple[Tensor, object]:
        y, state = self.layer(x, state)  # (B, T, H)
        return self.head(y), state


def params_of(cell: str, dim: int, hidden: int) -> int:
    return sum(p.numel() for p in SeqModel(cell, dim, hidden).parameters())


def matched_hidden(cell: str, dim: int, target: int) -> int:
    """The hidden size whose model has the parameter count closest to ``target``."""
    return min(range(1, 8 * dim + 1), key=lambda h: abs(params_of(cell, dim, h) - target))


def timed_run(cell: str, hidden: int, rule: object, x: Tensor, k1: int) -> Callable[[], float]:
    """A closure training over ``x`` once; returns seconds (the first chunk is a warm-up)."""
    torch.manual_seed(0)
    model = SeqModel(cell, x.shape[-1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    engine = Engine(model, losses.mse, rule)

    def run() -> float:
        engine.reset_stream()
        for _ in engine.feed(x[:, :k1], x[:, :k1]):
            opt.step()
        start = time.perf_counter()
        for _ in engine.feed(x[:, k1:-1], x[:, k1 + 1 :]):
            opt.step()
        return time.perf_counter() - start

    return run


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128, help="nn.LSTM hidden size (= input D)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--k1", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dim, k1 = args.hidden, args.k1
    target = params_of("lstm", dim, dim)
    hidden = {"lstm": dim, **{c: matched_hidden(c, dim, target) for c in ("mingru", "lru")}}
    x = torch.randn(args.batch, args.steps + k1 + 1, dim)
    rows = {
        "lstm TBPTT(k1)": ("lstm", TBPTT(k1)),
        "mingru TBPTT(k1)": ("mingru", TBPTT(k1)),
        "mingru Online(k1)": ("mingru", Online(k1)),
        "lru TBPTT(k1)": ("lru", TBPTT(k1)),
        "lru Online(k1)": ("lru", Online(k1)),
        "lstm TBPTT(k1,4k1) stored": ("lstm", TBPTT(k1, 4 * k1)),
        "mingru TBPTT(k1,4k1) stored": ("mingru", TBPTT(k1, 4 * k1)),
    }
    runs = {name: timed_run(c, hidden[c], rule, x, k1) for name, (c, rule) in rows.items()}
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(run())
    tokens = args.batch * (args.steps - 1)
    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    lstm = speed["lstm TBPTT(k1)"]
    ratios = {
        "mingru / lstm": speed["mingru TBPTT(k1)"] / lstm,
        "lru / lstm": speed["lru TBPTT(k1)"] / lstm,
        "mingru online cost (TBPTT time / ... )": speed["mingru TBPTT(k1)"]
        / speed["mingru Online(k1)"],
        "lru online cost": speed["lru TBPTT(k1)"] / speed["lru Online(k1)"],
        "lstm stored (k1,4k1) / (k1)": speed["lstm TBPTT(k1,4k1) stored"] / lstm,
        "mingru stored (k1,4k1) / (k1)": speed["mingru TBPTT(k1,4k1) stored"]
        / speed["mingru TBPTT(k1)"],
    }
    ratios["mingru online cost"] = ratios.pop("mingru online cost (TBPTT time / ... )")
    cpu = platform.processor() or platform.machine()
    print(
        f"{cpu}, {args.threads} thread(s), torch {torch.__version__}; batch {args.batch}, "
        f"{args.steps} steps, k1 {k1}, D {dim}; hidden {hidden}, params ~{target}"
    )
    print(f"{'row':32s} {'tokens/s':>10s}")
    for name, v in speed.items():
        print(f"{name:32s} {v:10.0f}")
    for name, v in ratios.items():
        print(f"{name:32s} {v:10.2f}x")
    result = {
        "config": vars(args),
        "hidden": hidden,
        "params": target,
        "cpu": cpu,
        "tokens_per_s": speed,
        "ratios": ratios,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()

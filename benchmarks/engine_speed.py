"""Engine speed against a hand-written loop and against one fused call over the whole sequence.

Measures, in one run and on one device (CPU, or CUDA when present):

- ``limit``: one forward+backward of the LSTM over the whole sequence (one cuDNN call on GPU),
  no truncation, no optimizer: the hardware limit for this model;
- ``hand k``: the word_language_model loop (chunk, detach, forward, backward, Adam step);
- ``engine k``: ``tbptt.Engine`` with ``TBPTT(k)`` and the same optimizer;
- for ``(k1, k2) = (25, 100)``: the engine's stored and recompute modes against the ideal
  F(k1) + B(k2) per update (forward of k1 steps plus the backward of a k2-step graph, measured
  separately, plus the optimizer step).

Prints a table of tokens/s (batch x steps / s) and ratios; ``--json PATH`` writes it too.

    python benchmarks/engine_speed.py               # CPU-sized defaults, about 2 minutes
    python benchmarks/engine_speed.py --hidden 1024 --batch 64 --steps 2000   # GPU sizes
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import tbptt


class LM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):  # x (B, T)
        y, state = self.lstm(self.embed(x), state)  # (B, T, H)
        return self.head(y), state  # (B, T, V)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = LM(args.vocab, args.embed, args.hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = torch.randint(args.vocab, (args.batch, args.steps + 1), device=device)
    x, y = data[:, :-1], data[:, 1:]
    tokens = args.batch * args.steps

    def loss_of(logits, target):
        return F.cross_entropy(logits.reshape(-1, args.vocab), target.reshape(-1))

    def limit() -> None:
        logits, _ = model(x, None)
        loss_of(logits, y).backward()
        model.zero_grad(set_to_none=True)

    def hand(k: int) -> Callable[[], None]:
        def run() -> None:
            hidden = None
            for a in range(0, args.steps, k):
                hidden = None if hidden is None else tuple(h.detach() for h in hidden)
                logits, hidden = model(x[:, a : a + k], hidden)
                loss = loss_of(logits, y[:, a : a + k])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return run

    def engine(rule: tbptt.TruncationRule, mode: str = "stored") -> Callable[[], None]:
        def run() -> None:
            eng = tbptt.Engine(model, tbptt.losses.cross_entropy, rule, mode=mode)  # type: ignore[arg-type]
            for _ in eng.feed(x, y):
                opt.step()
            for _ in eng.flush():
                opt.step()

        return run

    def ideal(k1: int, k2: int) -> float:
        """Seconds per update of F(k1) + B(k2) + an optimizer step, from separate timings."""
        xs, ys = x[:, :k2], y[:, :k2]

        def forward(k: int) -> Callable[[], None]:
            def run() -> None:
                with torch.no_grad():
                    model(xs[:, :k], None)

            return run

        def forward_backward() -> None:
            logits, _ = model(xs, None)
            loss_of(logits, ys).backward()

        def step() -> None:
            opt.step()

        f_k1 = timed(forward(k1), device, 5 * args.repeats)
        f_k2 = timed(forward(k2), device, 5 * args.repeats)
        fb_k2 = timed(forward_backward, device, 5 * args.repeats)
        opt_step = timed(step, device, 5 * args.repeats)
        model.zero_grad(set_to_none=True)
        return f_k1 + (fb_k2 - f_k2) + opt_step

    rows: list[dict[str, object]] = []

    def add(name: str, seconds: float, **ratios: float) -> None:
        rows.append({"name": name, "tokens_per_s": tokens / seconds, **ratios})

    t_limit = timed(limit, device, args.repeats)
    add("limit: one call over the whole sequence", t_limit)
    for k in (25, 100):
        t_hand = timed(hand(k), device, args.repeats)
        t_eng = timed(engine(tbptt.TBPTT(k)), device, args.repeats)
        add(f"hand-written loop k={k}", t_hand, vs_limit=t_limit / t_hand)
        add(f"engine TBPTT({k})", t_eng, vs_limit=t_limit / t_eng, vs_hand=t_hand / t_eng)
    t_ideal = ideal(25, 100) * args.steps / 25
    t_stored = timed(engine(tbptt.TBPTT(25, 100), "stored"), device, args.repeats)
    t_recomp = timed(engine(tbptt.TBPTT(25, 100), "recompute"), device, args.repeats)
    add("ideal F(25)+B(100)", t_ideal, vs_limit=t_limit / t_ideal)
    add(
        "engine TBPTT(25, 100) stored",
        t_stored,
        vs_ideal=t_ideal / t_stored,
        vs_recompute=t_recomp / t_stored,
    )
    add("engine TBPTT(25, 100) recompute", t_recomp, vs_ideal=t_ideal / t_recomp)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    print(
        f"device: {device.type} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"LSTM LM: batch {args.batch}, embed {args.embed}, hidden {args.hidden}, vocab {args.vocab}, {args.steps} steps"
    )
    print(f"{'':40} {'tokens/s':>10} {'ratios':>8}")
    for row in rows:
        ratios = "  ".join(
            f"{k}={v:.2f}" for k, v in row.items() if k not in ("name", "tokens_per_s")
        )
        print(f"{row['name']:40} {row['tokens_per_s']:>10.0f}  {ratios}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"device": device.type, "where": where, "args": vars(args), "rows": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()

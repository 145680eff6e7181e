"""A dependency truncation cannot see: recall a sign after 200 steps, updating every 10.

Every contender updates every ``k1`` steps on the same stream of :func:`tbptt.tasks.long_delay`
sequences: TBPTT(k1) and TBPTT(k1, 2 k1) (their gradients never reach step 0 of a sequence
from its last step) and exact online gradients, :class:`tbptt.online.Online` (Williams & Zipser
1989; Zucchet et al. 2023), for a minGRU (Feng et al. 2024) and an LRU (Orvieto et al. 2023)
layer with a linear readout. The table gives each one's loss over the last sequences relative to
the task's baseline (predicting 0: loss 1), and the peak memory of the online run at several
stream lengths (flat: the state is the same size at any length).

What needs exact gradients: the layer's own write and retention parameters (minGRU's gate and
candidate weights; the LRU's B, gamma and lambda), which decide whether step 0 is stored; the
readout only reads the last state and learns under any truncation.

    python examples/long_delay_online.py                 # the table (minutes on a CPU)
    python examples/long_delay_online.py --delay 1000 --k1 50 --sequences 300   # the issue's size
    python examples/long_delay_online.py --memory        # peak memory at 1e3, 1e4, 1e5 steps
    python examples/long_delay_online.py --sequences 4 --delay 40 --k1 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import Tensor, nn

from tbptt import TBPTT, Engine, losses, tasks
from tbptt.elementwise import LRU, MinGRU
from tbptt.online import Online


class Readout(nn.Module):
    """One element-wise recurrent layer and a linear readout: ``(B, T, 2) -> (B, T, 1)``."""

    def __init__(self, cell: str, hidden: int) -> None:
        super().__init__()
        self.layer = MinGRU(2, hidden) if cell == "mingru" else LRU(2, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, state: object) -> tuple[Tensor, object]:
        y, state = self.layer(x, state)  # (B, T, H)
        return self.head(y), state


def train(cell: str, rule: object, args: argparse.Namespace) -> float:
    """Train on ``args.sequences`` batches of sequences; the loss over the last quarter / 1."""
    torch.manual_seed(args.seed)
    model = Readout(cell, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    engine = Engine(model, losses.mse, rule)
    gen = torch.Generator().manual_seed(args.seed)
    tail = []
    for i in range(args.sequences):
        task = tasks.long_delay(args.batch, args.delay, noise=args.noise, generator=gen)
        for update in engine.feed(*task.chunk):
            if int(update.trained_count) == 0:  # no loss in this chunk: no step
                continue
            opt.step()
            if i >= args.sequences * 3 // 4:
                tail.append(float(update.loss))
    return sum(tail) / max(len(tail), 1) / task.baseline


def peak_memory_mib(cell: str, steps: int, k1: int, hidden: int, batch: int) -> float:
    """Run ``steps`` steps of Online(k1) on one unbroken stream (no resets: the state carries
    the sensitivities through all of it); the process's peak resident set, MiB."""
    torch.set_num_threads(1)
    model = Readout(cell, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    engine = Engine(model, losses.mse, Online(k1))
    x = torch.randn(batch, 1000, 2)
    for _ in range(steps // 1000):
        for _ in engine.feed(x, x[..., :1]):
            opt.step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_table(args: argparse.Namespace) -> list[dict[str, object]]:
    """Peak memory at 1e3, 1e4, 1e5 steps, each in a fresh process."""
    rows = []
    for cell in ("mingru", "lru"):
        for steps in (10**3, 10**4, 10**5):
            code = (
                "import sys; sys.path.insert(0, 'examples'); import long_delay_online as m; "
                f"print(m.peak_memory_mib({cell!r}, {steps}, {args.memory_k1}, {args.hidden}, "
                f"{args.batch}))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            mib = float(out.stdout.split()[-1])
            rows.append({"cell": cell, "steps": steps, "peak_rss_mib": round(mib, 1)})
            print(
                f"{cell:7s} Online({args.memory_k1}) {steps:>7d} steps: {mib:7.1f} MiB", flush=True
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=int, default=200)
    p.add_argument("--k1", type=int, default=10)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sequences", type=int, default=120, help="batches of sequences per run")
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="measure memory at 1e3..1e5 steps")
    p.add_argument("--memory-k1", type=int, default=100)
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    if args.memory:
        return memory_table(args)
    torch.set_num_threads(1)
    rules = {
        f"TBPTT({args.k1})": TBPTT(args.k1),
        f"TBPTT({args.k1}, {2 * args.k1})": TBPTT(args.k1, 2 * args.k1),
        f"Online({args.k1})": Online(args.k1),
    }
    rows = []
    print(
        f"delay {args.delay}, k1 {args.k1}, hidden {args.hidden}, batch {args.batch}, "
        f"{args.sequences} batches of sequences; loss / baseline over the last quarter"
    )
    for cell in ("mingru", "lru"):
        for name, rule in rules.items():
            t0 = time.perf_counter()
            rel = train(cell, rule, args)
            rows.append(
                {
                    "cell": cell,
                    "rule": name,
                    "loss/baseline": round(rel, 3),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            print(f"{cell:7s} {name:16s} {rel:7.3f}   ({rows[-1]['seconds']} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()

"""Engine speed against a hand-written loop and against one fused call over the whole sequence.

Measures, in one run and on one device (CPU, or CUDA when present):

- ``limit``: one forward+backward of the LSTM over the whole sequence (one cuDNN call on GPU),
  no truncation, no optimizer: the hardware limit for this model;
- ``hand k``: the word_language_model loop (chunk, detach, forward, backward, Adam step);
- ``engine k``: ``tbptt.Engine`` with ``TBPTT(k)`` and the same optimizer, k = 5, 25, 100;
- for ``(k1, k2) = (25, 100)``: the engine's stored and recompute modes against the ideal
  F(k1) + B(k2) per update (forward of k1 steps plus the backward of a k2-step graph, measured
  separately, plus the optimizer step);
- the step path (the same LM with an nn.LSTMCell, one call per step) eager and compiled
  (``tbptt.compiled``), for TBPTT(25) and ARTBP(c=0.1), against a hand-written LSTMCell loop,
  the engine's eager loop and the limit,
  with the compile time of the first run (TorchInductor's cache: ``TORCHINDUCTOR_CACHE_DIR``);
- memory: peak memory of TBPTT(100) over 10^4 and 10^6 steps, each in a fresh process (CUDA:
  peak allocated; CPU: peak resident set), which must not grow with the stream.

Prints a table of tokens/s (batch x steps / s) and ratios; ``--json PATH`` writes it too.
On a CPU, glibc's malloc hands freed memory back to the system and page-faults it in again on
the next update, which moves small-chunk timings by up to 20%; for steady figures set
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` (docs/performance.md), as the README's
table does.

    python benchmarks/engine_speed.py               # CPU-sized defaults, about 5 minutes
    python benchmarks/engine_speed.py --hidden 1024 --batch 64 --steps 2000   # GPU sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import tbptt


class CellLM(nn.Module):
    """The LM of :class:`LM` one step at a time (the step path)."""

    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.cell = nn.LSTMCell(embed, hidden)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):  # x (B,)
        h, c = self.cell(self.embed(x), state)  # (B, H)
        return self.head(h), (h, c)  # (B, V)


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


def timed(device: torch.device, repeats: int, *fns: Callable[[], None]) -> list[float]:
    """Median seconds of each of ``fns`` over ``repeats`` rounds, after one warm-up run each.

    The functions take turns within each round, so a change in the machine's speed during the
    measurement (a shared CPU, a GPU's clocks) hits all of them alike and leaves their ratios.
    """
    for fn in fns:
        fn()
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times):
            start = time.perf_counter()
            fn()
            sync(device)
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def peak_memory(steps: int, device: torch.device, vocab: int) -> float:
    """Peak MB of a fresh process running TBPTT(100) over ``steps`` steps (CUDA: allocated)."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            f"--device={device}",
            f"--vocab={vocab}",
            f"--memory-probe={steps}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


def memory_probe(steps: int, device: torch.device, vocab: int) -> float:
    """MB of memory TBPTT(100) needs over a stream of ``steps`` (fed 1,000 steps at a time)."""
    torch.manual_seed(0)
    model = LM(vocab, 16, 64).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    eng = tbptt.Engine(model, tbptt.losses.cross_entropy, tbptt.TBPTT(100))
    piece = torch.randint(vocab, (4, 1001), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    for _ in range(steps // 1000):
        for _ in eng.feed(piece[:, :-1], piece[:, 1:]):
            opt.step()
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB -> MB, the process


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
    parser.add_argument(
        "--memory-steps",
        type=lambda v: [int(float(n)) for n in v.split(",")],
        default=[10**4, 10**6],
        help="stream lengths for the memory check (default 1e4,1e6)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory_probe:  # the child process of peak_memory
        print(memory_probe(args.memory_probe, device, args.vocab))
        return
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

    def hand(k: int, net: nn.Module = model) -> Callable[[], None]:
        optimizer = opt if net is model else torch.optim.Adam(net.parameters(), lr=1e-4)

        def run() -> None:
            hidden = None
            for a in range(0, args.steps, k):
                hidden = None if hidden is None else tuple(h.detach() for h in hidden)
                if isinstance(net, CellLM):  # one call per step
                    outs = []
                    for t in range(a, min(a + k, args.steps)):
                        out, hidden = net(x[:, t], hidden)
                        outs.append(out)
                    logits = torch.stack(outs, 1)  # (B, k, V)
                else:
                    logits, hidden = net(x[:, a : a + k], hidden)
                loss = loss_of(logits, y[:, a : a + k])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return run

    def engine(
        rule: tbptt.TruncationRule, mode: str = "stored", net: nn.Module = model, **options: object
    ) -> Callable[[], None]:
        optimizer = opt if net is model else torch.optim.Adam(net.parameters(), lr=1e-4)
        if isinstance(rule, tbptt.ARTBP):
            options["reduction"] = "sum"

        def run() -> None:
            eng = tbptt.Engine(net, tbptt.losses.cross_entropy, rule, mode=mode, **options)  # type: ignore[arg-type]
            for _ in eng.feed(x, y):
                optimizer.step()
            for _ in eng.flush():
                optimizer.step()

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

        f_k1, f_k2, fb_k2, opt_step = timed(
            device, 5 * args.repeats, forward(k1), forward(k2), forward_backward, step
        )
        model.zero_grad(set_to_none=True)
        return f_k1 + (fb_k2 - f_k2) + opt_step

    rows: list[dict[str, object]] = []

    def add(name: str, seconds: float, **ratios: float) -> None:
        rows.append({"name": name, "tokens_per_s": tokens / seconds, **ratios})

    (t_limit,) = timed(device, args.repeats, limit)
    add("limit: one call over the whole sequence", t_limit)
    for k in (5, 25, 100):
        t_hand, t_eng = timed(device, args.repeats, hand(k), engine(tbptt.TBPTT(k)))
        add(f"hand-written loop k={k}", t_hand, vs_limit=t_limit / t_hand)
        add(f"engine TBPTT({k})", t_eng, vs_limit=t_limit / t_eng, vs_hand=t_hand / t_eng)
    t_ideal = ideal(25, 100) * args.steps / 25
    t_stored, t_recomp = timed(
        device,
        args.repeats,
        engine(tbptt.TBPTT(25, 100), "stored"),
        engine(tbptt.TBPTT(25, 100), "recompute"),
    )
    add("ideal F(25)+B(100)", t_ideal, vs_limit=t_limit / t_ideal)
    add(
        "engine TBPTT(25, 100) stored",
        t_stored,
        vs_ideal=t_ideal / t_stored,
        vs_recompute=t_recomp / t_stored,
    )
    add("engine TBPTT(25, 100) recompute", t_recomp, vs_ideal=t_ideal / t_recomp)

    torch.manual_seed(0)
    cell_lm = CellLM(args.vocab, args.embed, args.hidden).to(device)
    compile_s: dict[str, float] = {}
    hand_cell = hand(25, cell_lm)
    for name, rule in (("TBPTT(25)", tbptt.TBPTT(25)), ("ARTBP(c=0.1)", tbptt.ARTBP(0.1, seed=0))):
        eager = engine(rule, net=cell_lm, path="step", compile=False)
        compiled = engine(rule, net=cell_lm, path="step", compile=True)
        variants = tbptt.compiled._shared_for(cell_lm).compiled  # block shapes compiled so far
        began, runs, known = time.perf_counter(), 0, -1
        while known != len(variants) and runs < 10:  # until a run meets no new block shape
            known, runs = len(variants), runs + 1
            compiled()
            sync(device)
        warm_up = time.perf_counter() - began
        same_work = isinstance(rule, tbptt.TBPTT)  # the hand loop is TBPTT(25)
        if same_work:
            t_cell, t_eager, t_comp = timed(device, args.repeats, hand_cell, eager, compiled)
            add("hand-written LSTMCell loop k=25", t_cell, vs_limit=t_limit / t_cell)
        else:
            t_eager, t_comp = timed(device, args.repeats, eager, compiled)
        compile_s[name] = warm_up - runs * t_comp
        add(
            f"step path eager {name}",
            t_eager,
            vs_limit=t_limit / t_eager,
            **({"vs_hand": t_cell / t_eager} if same_work else {}),
        )
        add(
            f"step path compiled {name}",
            t_comp,
            vs_limit=t_limit / t_comp,
            **({"vs_hand": t_cell / t_comp} if same_work else {}),
            vs_eager=t_eager / t_comp,
        )

    memory = {n: peak_memory(n, device, args.vocab) for n in args.memory_steps}

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(
        f"device: {device.type} ({where}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    allocator = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    if device.type == "cpu":
        print(
            "malloc: " + ", ".join(f"{k}={v}" for k, v in allocator.items() if v)
            if any(allocator.values())
            else "malloc: glibc defaults (small-chunk timings can move by 20%; see the docstring)"
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
    print(
        "compile time of the first compiled run: "
        + ", ".join(f"{name} {sec:.1f} s" for name, sec in compile_s.items())
    )
    what = "peak allocated" if device.type == "cuda" else "peak resident set of a fresh process"
    print(
        f"memory of TBPTT(100), {what}: "
        + ", ".join(f"{n:.0e} steps {mb:.1f} MB" for n, mb in memory.items())
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": device.type,
                    "where": where,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "malloc": allocator,
                    "args": vars(args),
                    "rows": rows,
                    "compile_seconds": compile_s,
                    "memory_mb": {str(n): mb for n, mb in memory.items()},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()

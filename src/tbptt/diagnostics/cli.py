"""The diagnostics commands of the ``tbptt`` CLI: ``suggest``, ``sweep``, ``bias``, ``explain``.

Each is a ``*_parser(subparsers)`` / ``*_command(args)`` pair (accelerate style); the main CLI
adds them all with :func:`add_diagnostics_commands` and calls ``args.command(args)``.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="tbptt")
>>> add_diagnostics_commands(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["explain", "--k1", "2", "--k2", "4", "--steps", "4"])
>>> args.command(args)
TBPTT(k1=2, k2=4) over 4 steps
step       0 1 2 3
forward    o>o>o>o
update 0   L L . .   chunk [0, 2)  cut 0  losses 0-1  reach 1-2
update 1   < < L L   chunk [2, 4)  cut 0  losses 2-3  reach 3-4
L: loss injected   <: gradient flows back through   r: loss reported, not trained   |: state held constant
0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = [
    "add_diagnostics_commands",
    "bias_command",
    "bias_parser",
    "explain_command",
    "explain_parser",
    "suggest_command",
    "suggest_parser",
    "sweep_command",
    "sweep_parser",
]


def add_diagnostics_commands(subparsers: Any) -> None:
    """Add ``suggest``, ``sweep``, ``bias`` and ``explain`` to an argparse subparsers object."""
    for add in (suggest_parser, sweep_parser, bias_parser, explain_parser):
        add(subparsers)


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 8,16,32, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 8,16,32, got {text!r}"
        )
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -- suggest -------------------------------------------------------------------------------------
def suggest_parser(subparsers: Any) -> argparse.ArgumentParser:
    from tbptt.diagnostics.suggest import BUILTIN_SERIES

    p = subparsers.add_parser(
        "suggest",
        help="suggest subsequence lengths from a series' ACF/PACF and dominant periods",
        description="ACF and PACF (statsmodels) with confidence bands; candidate lengths from the "
        "last significant PACF lag and the dominant periods. Built-in series: "
        + "; ".join(f"{k}: {v}" for k, v in BUILTIN_SERIES.items()),
    )
    p.add_argument("data", metavar="DATA", help="a CSV/text file of numbers, or a built-in name")
    p.add_argument("--column", help="CSV column (index or header name); default the last")
    p.add_argument("--max-lag", type=_positive, help="longest lag considered (default n/2 - 1)")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - confidence of the bands")
    p.add_argument("--plot", type=Path, help="write the ACF/PACF plot here (PNG or SVG)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(command=suggest_command)
    return p


def suggest_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.suggest import load_series, suggest

    column: int | str | None = args.column
    if isinstance(column, str) and column.lstrip("-").isdigit():
        column = int(column)
    s = suggest(load_series(args.data, column=column), max_lag=args.max_lag, alpha=args.alpha)
    if args.json:
        keys = ("n", "memory", "decorrelation", "periods", "candidates", "recommended")
        print(json.dumps({k: getattr(s, k) for k in keys}))
    else:
        print(s.summary())
    if args.plot:
        s.plot(args.plot, title=f"{args.data}: ACF")
        print(f"plot: {args.plot}")
    return 0


# -- explain -------------------------------------------------------------------------------------
def explain_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="draw TBPTT(k1, k2) unrolled: which losses each update injects, how far back",
    )
    p.add_argument("--k1", type=_positive, help="forward steps per update (omit for full BPTT)")
    p.add_argument("--k2", type=_positive, help="backward steps per update (default k1)")
    p.add_argument("--steps", type=_positive, help="steps to draw (default 3 * max(k1, k2))")
    p.add_argument("--plot", type=Path, help="write the picture here (PNG or SVG)")
    p.add_argument(
        "--online", action="store_true", help="draw exact online gradients, Online(k1), instead"
    )
    p.set_defaults(command=explain_command)
    return p


def explain_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.explain import explain

    if args.k1 is None and args.k2 is not None:
        raise SystemExit("tbptt explain: --k2 needs --k1 (without --k1 the picture is full BPTT)")
    if args.online and (args.k1 is None or args.k2 is not None):
        raise SystemExit(
            "tbptt explain: --online needs --k1 and no --k2 (it reaches the whole past)"
        )
    steps = args.steps or 3 * max(args.k1 or 4, args.k2 or 0)
    e = explain(args.k1, args.k2, steps, online=args.online)
    print(e.text())
    if args.plot:
        e.plot(args.plot)
        print(f"plot: {args.plot}")
    return 0


# -- bias ----------------------------------------------------------------------------------------
def bias_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bias",
        help="measure the truncation bias of TBPTT(k1, k2) against BPTT over a range of k2",
        description="Cosine similarity and relative error of the TBPTT(k1, k2) gradient against "
        "the full-BPTT gradient at the same parameters, and the gradient reach "
        "||dl_T/ds_{T-j}|| (Aicher, Foti & Fox 2019), on a built-in task.",
    )
    p.add_argument(
        "--task",
        choices=["char", "influence"],
        default="char",
        help="char: a char-LSTM (briefly trained) on a built-in text; influence: influence "
        "balancing (UORO), whose short truncations have the wrong sign",
    )
    p.add_argument("--k1", type=_positive, default=1, help="forward steps per update (default 1)")
    p.add_argument(
        "--k2s", type=_ints, help="backward lengths, e.g. 1,2,4,8,16 (default: powers of 2)"
    )
    p.add_argument("--length", type=_positive, default=64, help="sample length T (default 64)")
    p.add_argument("--train-updates", type=int, default=50, help="char: updates of training first")
    p.add_argument("--tolerance", type=float, default=0.1, help="relative error to meet")
    p.add_argument("--plot", type=Path, help="write the plot here (PNG or SVG)")
    p.add_argument(
        "--cell",
        choices=["lstm", "gru", "rnn", "mingru", "lru"],
        default="lstm",
        help="char: the recurrent cell (default lstm)",
    )
    p.add_argument(
        "--online",
        action="store_true",
        help="char: also measure exact online gradients, Online(k1), against BPTT (--cell "
        "mingru or lru)",
    )
    p.set_defaults(command=bias_command)
    return p


def bias_command(args: argparse.Namespace) -> int:
    import torch

    from tbptt import TBPTT, Engine, losses
    from tbptt.diagnostics.bias import rule_bias, truncation_bias
    from tbptt.online import Online

    k2s = args.k2s or [2**i for i in range(args.length.bit_length()) if 2**i < args.length] + [
        args.length
    ]
    if args.online and (args.task != "char" or args.cell not in ("mingru", "lru")):
        raise SystemExit(
            f"tbptt bias: --online needs --task char and --cell mingru or lru, got --task "
            f"{args.task} --cell {args.cell}."
        )
    online = None
    if args.task == "influence":
        try:
            from tbptt.tasks import InfluenceBalancing, half_squared_error
        except ImportError:
            raise SystemExit(
                "tbptt bias --task influence needs tbptt.tasks (the influence-balancing task); "
                "this install does not have it. Use --task char."
            ) from None
        model = InfluenceBalancing()
        x, y = model.stream(args.length)
        report = truncation_bias(
            model,
            half_squared_error,
            x,
            y,
            k2s,
            k1=args.k1,
            tolerance=args.tolerance,
            init_state=model.initial_state,
        )
    else:
        from tbptt.datasets import stdlib_source
        from tbptt.models import CharRNN

        torch.manual_seed(0)
        text = "\n".join(stdlib_source(limit_chars=400_000).docs)
        vocab = sorted(set(text))
        ids = torch.tensor([vocab.index(c) for c in text])
        lstm = CharRNN(len(vocab), embed=64, hidden=64, cell=args.cell)
        opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
        steps = 20 * max(0, args.train_updates)
        if steps:
            engine = Engine(lstm, losses.cross_entropy, TBPTT(20))
            xs = ids[: 8 * steps].view(8, steps)  # (B, T)
            for _ in engine.feed(xs, ids[1 : 8 * steps + 1].view(8, steps)):
                opt.step()
        start = 8 * steps + 1
        x = ids[start : start + 4 * args.length].view(4, args.length)
        y = ids[start + 1 : start + 1 + 4 * args.length].view(4, args.length)
        report = truncation_bias(
            lstm, losses.cross_entropy, x, y, k2s, k1=args.k1, tolerance=args.tolerance
        )
        if args.online:
            online = rule_bias(lstm, losses.cross_entropy, Online(args.k1), x, y)
    print(report.summary())
    if online is not None:
        print(
            f"Online(k1={args.k1}) against BPTT: cosine {online[0]:.6f}, relative error "
            f"{online[1]:.2e} (exact for the recurrent layer's own parameters; the embedding's "
            "influence across chunks is truncated)"
        )
    if args.plot:
        report.plot(args.plot)
        print(f"plot: {args.plot}")
    return 0


# -- sweep ---------------------------------------------------------------------------------------
def sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="train a char-LSTM over a grid of lengths or (k1, k2) with Optuna",
        description="Each trial trains the default text task (a char-LSTM) with TBPTT(k1, k2) "
        "and records validation loss, tokens/s and peak memory. Several processes given the "
        "same --storage (e.g. sqlite:///sweep.db) split one grid.",
    )
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--lengths", type=_ints, help="k1 = k2 = L for each L, e.g. 16,32,64")
    grid.add_argument("--k1s", type=_ints, help="forward lengths of a (k1, k2) grid")
    p.add_argument("--k2s", type=_ints, help="backward lengths of a (k1, k2) grid")
    p.add_argument(
        "--storage", help="Optuna storage URL shared by processes, e.g. sqlite:///sweep.db"
    )
    p.add_argument("--study-name", default="tbptt-sweep")
    p.add_argument("--n-trials", type=_positive, help="trials for this process (default: all)")
    p.add_argument(
        "--corpus",
        default="auto",
        help="the text to train on: 'shakespeare', 'stdlib', 'auto' or a path (as tbptt train)",
    )
    p.add_argument("--updates", type=_positive, default=200, help="updates per trial")
    p.add_argument("--hidden", type=_positive, default=128)
    p.add_argument("--batch-size", type=_positive, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--plot-dir", type=Path, help="write sweep_loss.png and sweep_pareto.png here")
    p.set_defaults(command=sweep_command)
    return p


def sweep_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.objective import trainer_objective
    from tbptt.diagnostics.sweep import sweep

    if args.lengths is None and args.k2s is None:
        args.lengths = [16, 32, 64]
    train_fn = trainer_objective(
        corpus=args.corpus,
        updates=args.updates,
        hidden=args.hidden,
        batch_size=args.batch_size,
        device=args.device,
    )
    result = sweep(
        train_fn,
        lengths=args.lengths,
        k1s=args.k1s,
        k2s=args.k2s,
        storage=args.storage,
        study_name=args.study_name,
        n_trials=args.n_trials,
    )
    print(result.summary())
    if args.plot_dir:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
        result.plot_loss(args.plot_dir / "sweep_loss.png")
        result.plot_pareto(args.plot_dir / "sweep_pareto.png")
        print(f"plots: {args.plot_dir / 'sweep_loss.png'}, {args.plot_dir / 'sweep_pareto.png'}")
    return 0

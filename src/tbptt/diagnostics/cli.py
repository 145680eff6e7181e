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
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "add_diagnostics_commands",
    "bias_command",
    "bias_parser",
    "explain_command",
    "explain_parser",
    "sweep_command",
    "sweep_parser",
]


def add_diagnostics_commands(subparsers: Any) -> None:
    """Add ``suggest``, ``sweep``, ``bias`` and ``explain`` to an argparse subparsers object."""
    from tbptt.diagnostics.suggest_cli import suggest_parser  # it uses the helpers below

    for add in (suggest_parser, sweep_parser, bias_parser, explain_parser):
        add(subparsers)


# Bad input: one line ``tbptt: error: ...`` naming the flag, the value and the fix, exit 2 (as
# ``tbptt train``). These are the errors that mean "bad input"; anything else is a bug and
# keeps its traceback.
BAD_INPUT = (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError)


def _fail(message: str) -> int:
    print(f"tbptt: error: {message}", file=sys.stderr)
    return 2


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 8,16,32, got {text!r}"
        )
    return values


def _number(parse: Callable[[str], Any], ok: Callable[[Any], bool], want: str) -> Any:
    """An argparse type: ``parse`` the text, refused unless ``ok`` (the message says ``want``)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    return convert


_positive = _number(int, lambda v: v >= 1, "a positive integer")
_count = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_probability = _number(float, lambda v: 0 < v < 1, "a number in (0, 1) such as 0.05")


def check_output(path: Path | None, flag: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output the command could not write: a missing or
    read-only folder, a folder where a file is expected (or the reverse), a format matplotlib
    cannot write. ``folder=True``: ``path`` is a folder that will be created if missing."""
    if path is None:
        return
    if folder:
        parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
        if not parent.is_dir():
            raise ValueError(
                f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a folder. "
                "Give a folder path."
            )
    else:
        if path.is_dir():
            raise ValueError(
                f"{flag} {str(path)!r} is a folder; give a file name such as "
                f"{str(path / 'plot.png')!r}."
            )
        parent = path.parent
        if not parent.is_dir():
            raise ValueError(
                f"{flag} {str(path)!r}: the folder {str(parent)!r} does not exist. "
                "Create it first or write elsewhere."
            )
        from matplotlib.backend_bases import FigureCanvasBase

        suffix = path.suffix.lower().lstrip(".")
        formats = FigureCanvasBase.get_supported_filetypes()
        if suffix and suffix not in formats:
            raise ValueError(
                f"{flag} {str(path)!r}: matplotlib cannot write {suffix!r} files. "
                f"Use .png or .svg (or one of {', '.join(sorted(formats))})."
            )
    if not os.access(parent, os.W_OK):
        raise ValueError(
            f"{flag} {str(path)!r}: the folder {str(parent)!r} is not writable. Write elsewhere."
        )


# -- explain -------------------------------------------------------------------------------------
def explain_parser(subparsers: Any) -> argparse.ArgumentParser:
    from tbptt.diagnostics.explain import MAX_STEPS

    p = subparsers.add_parser(
        "explain",
        help="draw TBPTT(k1, k2) unrolled: which losses each update injects, how far back",
    )
    p.add_argument("--k1", type=_positive, help="forward steps per update (omit for full BPTT)")
    p.add_argument("--k2", type=_positive, help="backward steps per update (default k1)")
    p.add_argument(
        "--steps",
        type=_positive,
        help=f"steps to draw (default 3 * max(k1, k2), at most {MAX_STEPS})",
    )
    p.add_argument("--plot", type=Path, help="write the picture here (PNG or SVG)")
    p.add_argument(
        "--online", action="store_true", help="draw exact online gradients, Online(k1), instead"
    )
    p.set_defaults(command=explain_command)
    return p


def explain_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.explain import MAX_STEPS, explain

    if args.k1 is None and args.k2 is not None:
        return _fail(
            f"--k2 {args.k2} needs --k1 (without --k1 the picture is full BPTT); pass --k1 too."
        )
    if args.steps is not None and args.steps > MAX_STEPS:
        return _fail(
            f"--steps {args.steps} is more than the {MAX_STEPS} steps a picture can "
            f"show; pass --steps {MAX_STEPS} or fewer (past the first k2 steps the "
            "pattern repeats every k1 steps)."
        )
    if args.online and (args.k1 is None or args.k2 is not None):
        return _fail(
            "--online draws Online(k1), which reaches the whole past: pass --k1 and no --k2."
        )
    steps = args.steps or min(MAX_STEPS, 3 * max(args.k1 or 4, args.k2 or 0))
    try:
        check_output(args.plot, "--plot")
        e = explain(args.k1, args.k2, steps, online=args.online)
    except BAD_INPUT as err:
        return _fail(str(err))
    print(e.text())
    if args.plot:
        e.plot(args.plot)
        print(f"plot: {args.plot}")
    return 0


# -- bias ----------------------------------------------------------------------------------------
BIAS_LENGTH = {"char": 64, "influence": 160}  # default sample length T per task
MAX_BIAS_LENGTH = 1024  # time and memory grow with T: the char task takes ~1 min, 1.4 GB at 512


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
        "balancing (UORO), whose short truncations have the wrong sign once the sample is "
        "long enough: k2 <= 34 at the default 160 steps, k2 <= 40 in the steady state",
    )
    p.add_argument("--k1", type=_positive, default=1, help="forward steps per update (default 1)")
    p.add_argument(
        "--k2s", type=_ints, help="backward lengths, e.g. 1,2,4,8,16 (default: powers of 2)"
    )
    p.add_argument(
        "--length",
        type=_positive,
        help=f"sample length T (default: char {BIAS_LENGTH['char']}, influence "
        f"{BIAS_LENGTH['influence']}; at most {MAX_BIAS_LENGTH})",
    )
    p.add_argument(
        "--train-updates", type=_count, default=50, help="char: updates of training first"
    )
    p.add_argument("--tolerance", type=_positive_float, default=0.1, help="relative error to meet")
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
    from tbptt.diagnostics.bias import rule_bias, truncation_bias
    from tbptt.online import Online

    length = args.length or BIAS_LENGTH[args.task]
    if length > MAX_BIAS_LENGTH:
        return _fail(
            f"--length {length} is more than {MAX_BIAS_LENGTH}: the meter runs the whole "
            "sample once per k2 and its time and memory grow with the length. Pass "
            f"--length {MAX_BIAS_LENGTH} or less."
        )
    if args.online and (args.task != "char" or args.cell not in ("mingru", "lru")):
        return _fail(
            f"--online needs --task char and --cell mingru or lru, got --task {args.task} "
            f"--cell {args.cell}; pass --task char --cell mingru (or lru)."
        )
    if args.online and args.k1 is None:
        return _fail("--online measures Online(k1): pass --k1 too, e.g. --k1 8.")
    k2s = args.k2s or [2**i for i in range(length.bit_length()) if 2**i < length] + [length]
    try:
        check_output(args.plot, "--plot")
        if args.task == "influence":
            model, loss_fn, x, y, extra = _influence_sample(length)
        else:
            model, loss_fn, x, y, extra = _char_sample(length, args.train_updates, args.cell)
    except BAD_INPUT as e:
        return _fail(str(e))
    report = truncation_bias(
        model, loss_fn, x, y, k2s, k1=args.k1, tolerance=args.tolerance, **extra
    )
    online = None
    if args.online:
        online = rule_bias(model, loss_fn, Online(args.k1), x, y)
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


def _influence_sample(length: int) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    try:
        from tbptt.tasks import InfluenceBalancing, half_squared_error
    except ImportError:
        raise ModuleNotFoundError(
            "--task influence needs tbptt.tasks (the influence-balancing task), which this "
            "install does not have. Use --task char."
        ) from None
    model = InfluenceBalancing()
    x, y = model.stream(length)  # (1, T, 1) each
    return model, half_squared_error, x, y, {"init_state": model.initial_state}


def _char_sample(
    length: int, train_updates: int, cell: str = "lstm"
) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """A char-RNN (``cell``: lstm, gru, rnn, mingru, lru) trained ``train_updates`` TBPTT(20) updates on the stdlib's source, and the
    next 4 x ``length`` characters as the sample."""
    import torch

    from tbptt import TBPTT, Engine, losses
    from tbptt.datasets import stdlib_source
    from tbptt.models import CharRNN

    torch.manual_seed(0)
    text = "\n".join(stdlib_source(limit_chars=400_000).docs)
    steps = 20 * train_updates
    need = 8 * steps + 4 * length + 2
    if need > len(text):
        most = (len(text) - 4 * length - 2) // 160
        raise ValueError(
            f"--train-updates {train_updates} with --length {length} needs {need:,} characters "
            f"of text; the built-in text has {len(text):,}. Use --train-updates {max(0, most)} "
            "or fewer (or a shorter --length)."
        )
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    lstm = CharRNN(len(vocab), embed=64, hidden=64, cell=cell)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-2)
    if steps:
        engine = Engine(lstm, losses.cross_entropy, TBPTT(20))
        xs = ids[: 8 * steps].view(8, steps)  # (B, T)
        for _ in engine.feed(xs, ids[1 : 8 * steps + 1].view(8, steps)):
            opt.step()
    start = 8 * steps + 1
    x = ids[start : start + 4 * length].view(4, length)  # (4, T)
    y = ids[start + 1 : start + 1 + 4 * length].view(4, length)
    return lstm, losses.cross_entropy, x, y, {}


# -- sweep ---------------------------------------------------------------------------------------
def sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="train a char-LSTM over a grid of lengths or (k1, k2) with Optuna",
        description="Each trial trains the default text task (a char-LSTM) with TBPTT(k1, k2) "
        "and records validation loss, tokens/s and peak memory. Several processes given the "
        "same --storage (e.g. sqlite:///sweep.db) split one grid. Give --lengths, or --k2s "
        "(k1 = k2), or --k1s with --k2s (a grid).",
    )
    p.add_argument("--lengths", type=_ints, help="k1 = k2 = L for each L, e.g. 16,32,64")
    p.add_argument("--k1s", type=_ints, help="forward lengths of a (k1, k2) grid (with --k2s)")
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


def _sweep_grid(args: argparse.Namespace) -> list[tuple[int, int]]:
    """The (k1, k2) grid the flags ask for, or a ValueError naming the flags."""
    from tbptt.diagnostics.sweep import grid

    if args.lengths is not None and (args.k1s is not None or args.k2s is not None):
        given = " and ".join(f for f, v in (("--k1s", args.k1s), ("--k2s", args.k2s)) if v)
        raise ValueError(
            f"--lengths and {given} both given; pass --lengths (k1 = k2 = L) or "
            "--k1s with --k2s (a grid), not both."
        )
    if args.k1s is not None and args.k2s is None:
        k1s = ",".join(map(str, args.k1s))
        raise ValueError(
            f"--k1s {k1s} needs --k2s (the backward lengths of the grid), e.g. "
            f"--k1s {k1s} --k2s {k1s}; or pass --lengths {k1s} for k1 = k2."
        )
    if args.lengths is None and args.k2s is None:
        args.lengths = [16, 32, 64]
    return grid(args.lengths, args.k1s, args.k2s)


def _sweep_storage(storage: str | None) -> None:
    """Refuse a storage URL Optuna cannot open (checked by opening it), naming --storage."""
    if storage is None:
        return
    import optuna

    try:
        optuna.storages.get_storage(storage)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"--storage {storage!r} cannot be opened ({first}). Give a URL such "
            "as sqlite:///sweep.db (its folder must exist)."
        ) from None


def sweep_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.objective import check_objective, trainer_objective
    from tbptt.diagnostics.sweep import StudyMismatch, sweep

    options = {
        "corpus": args.corpus,
        "updates": args.updates,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    try:
        points = _sweep_grid(args)
        check_output(args.plot_dir, "--plot-dir", folder=True)
        _sweep_storage(args.storage)
        # the largest point first: a corpus, device or size that cannot train fails here
        flag = "--lengths" if args.lengths else "--k1s" if args.k1s else "--k2s"
        check_objective(points, flag, **options)
    except BAD_INPUT as e:
        return _fail(str(e))
    try:
        result = sweep(
            trainer_objective(**options),
            lengths=args.lengths,
            k1s=args.k1s,
            k2s=args.k2s,
            storage=args.storage,
            study_name=args.study_name,
            n_trials=args.n_trials,
        )
    except StudyMismatch as e:
        return _fail(str(e))
    print(result.summary())
    if args.plot_dir:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
        result.plot_loss(args.plot_dir / "sweep_loss.png")
        result.plot_pareto(args.plot_dir / "sweep_pareto.png")
        print(f"plots: {args.plot_dir / 'sweep_loss.png'}, {args.plot_dir / 'sweep_pareto.png'}")
    return 0

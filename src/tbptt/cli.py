"""The ``tbptt`` command: ``train``, ``generate``, ``predict``, ``report``.

Each subcommand is a ``*_parser(subparsers)`` / ``*_command(args) -> exit code`` pair.
Exit codes: 0 done; 1 training stopped on NaN/inf; 2 bad options, data or checkpoint;
130 interrupted (Ctrl-C / SIGTERM; a checkpoint was saved). User docs: ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Any

from tbptt.diagnostics.cli import add_diagnostics_commands
from tbptt.train.command import TRAIN_EXAMPLES, print_error, train_parser
from tbptt.train.finish import sample_text, series_verdict, write_predictions

__all__ = ["build_parser", "main"]

EXAMPLES = (
    TRAIN_EXAMPLES
    + """\
  tbptt predict runs/forecast-20250101-120000 --data my.csv --out out.csv --horizon 14
  tbptt predict runs/forecast-20250101-130000 --horizon 22   # a --task series run
  tbptt generate runs/text-20250101-120000 --prompt "ROMEO:"
  tbptt report runs/text-20250101-120000
  tbptt explain --k1 4 --k2 8                  # a picture of what TBPTT(4, 8) trains
  tbptt suggest sunspots                       # ACF/PACF: candidate lengths for a series
  tbptt bias --task influence                  # how biased is the truncated gradient?
  tbptt sweep --k1s 16,32 --k2s 32,64          # grid search over (k1, k2) with Optuna
"""
)


# -- generate / predict / report -----------------------------------------------------------------


def _load_run(path: str) -> tuple[Any, Any, dict[str, Any], Path]:
    """(model, config, extra, run folder) from a run folder or checkpoint file."""
    from tbptt.api import load

    run = load(path)
    return run.model, run.config, run.extra, run.path


def generate_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="sample text from a trained character model",
        description="Sample text from a text run (its best checkpoint by validation).",
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME) or checkpoint file")
    p.add_argument("--prompt", default="\n", help="text to start from (default: a newline)")
    p.add_argument("--chars", type=int, default=600, help="characters to generate (default 600)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.set_defaults(command=generate_command)
    return p


def generate_command(args: argparse.Namespace) -> int:
    from tbptt.train.checkpoint import CheckpointError

    try:
        model, cfg, extra, _ = _load_run(args.run)
        if cfg.task != "text":
            raise ValueError(f"{args.run} is a {cfg.task} run; use `tbptt predict` for series.")
        if args.chars < 1 or args.temperature <= 0:
            raise ValueError(
                f"--chars must be >= 1 and --temperature > 0, got {args.chars} and "
                f"{args.temperature}."
            )
        cfg.seed, cfg.temperature = args.seed, args.temperature
        print(sample_text(model, extra["vocab"], cfg, prompt=args.prompt, chars=args.chars))
    except (CheckpointError, ValueError) as e:
        print_error(str(e))
        return 2
    return 0


def predict_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="one-step predictions and a forecast from a trained series model",
        description=(
            "Run the best checkpoint (by validation) of a series or --data run over its data "
            "(state carried from the start), print its validation errors next to the "
            "baselines and a forecast, and write predictions.csv / predictions.png to the run "
            "folder (--data FILE --out OUT.csv: any file)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME) or checkpoint file")
    p.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="forecast steps (default: the run's --horizon; a built-in series: 2 seasons)",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        help="runs trained with --data: the file to predict (default: the run's own file)",
    )
    p.add_argument(
        "--out",
        metavar="OUT.csv",
        help="runs trained with --data: where to write the predictions (default: RUN/predictions.csv)",
    )
    p.set_defaults(command=predict_command)
    return p


def predict_command(args: argparse.Namespace) -> int:
    import numpy as np

    from tbptt.datasets import load_series
    from tbptt.train.checkpoint import CheckpointError
    from tbptt.train.jobs import series_baselines, series_predictions

    try:
        if args.horizon is not None and args.horizon < 1:
            raise ValueError(
                f"--horizon must be a positive integer, got {args.horizon}; leave it out for "
                "the run's own horizon."
            )
        model, cfg, extra, run_dir = _load_run(args.run)
        if cfg.data is not None:
            from tbptt.tabular.commands import predict_run
            from tbptt.tabular.refit import FILE as REFIT

            refit = Path(args.run).is_dir() and (run_dir / REFIT).is_file()  # --refit on
            h = args.horizon or 0
            print(predict_run(model, cfg, extra, run_dir, args.data, args.out, h, refit))
            return 0
        if cfg.task != "series":
            raise ValueError(f"{args.run} is a {cfg.task} run; use `tbptt generate` for text.")
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print_error(str(e))
        return 2
    horizon = args.horizon or int(extra.get("season", 12)) * 2
    pred = series_predictions(model, cfg, extra, horizon=horizon)
    n_train = int(extra["n_train"])
    err = pred["values"][n_train:] - pred["one_step"][n_train:]
    base = series_baselines(load_series(cfg.series), n_train)
    print(
        series_verdict(
            {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))},
            base,
            cfg.series,
        )
    )
    print(f"forecast ({horizon} steps): " + " ".join(f"{v:.4g}" for v in pred["forecast"]))
    write_predictions(model, cfg, extra, run_dir, horizon)
    print(f"wrote {run_dir / 'predictions.csv'} and {run_dir / 'predictions.png'}")
    return 0


def report_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="summarise a run folder",
        description="Print a summary of a run folder (config, results, baselines, files).",
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME)")
    p.add_argument("--json", action="store_true", help="print summary.json instead")
    p.set_defaults(command=report_command)
    return p


def report_command(args: argparse.Namespace) -> int:
    from tbptt.train.report import summarize

    run = Path(args.run)
    try:
        if args.json:
            path = run / "summary.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist (the run has not finished).")
            print(path.read_text(encoding="utf-8"), end="")
        else:
            print(summarize(run))
    except FileNotFoundError as e:
        print_error(str(e))
        return 2
    return 0


# -- main ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tbptt`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tbptt",
        description=(
            "Train recurrent networks with exact truncated backpropagation through time "
            "(TBPTT(k1, k2), full BPTT, stateful streams)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tbptt import __version__

    parser.add_argument("--version", action="version", version=f"tbptt {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for make in (train_parser, generate_parser, predict_parser, report_parser):
        make(sub)
    add_diagnostics_commands(sub)  # suggest, sweep, bias, explain
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tbptt`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    try:
        return int(args.command(args))
    except KeyboardInterrupt:
        print("tbptt: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`tbptt ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        print(f"tbptt: error: {_disk_error(e)}", file=sys.stderr)
        return 1


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _disk_error(e: OSError) -> str:
    """One line for a file the command could not read or write (a full disk, no permission).

    >>> _disk_error(OSError(errno.ENOSPC, "No space left on device", "out.csv"))
    "No space left on device: 'out.csv'. Free space on that disk, then run the command again."
    """
    where = f": {e.filename!r}" if e.filename else ""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "Free space on that disk" if full else "Fix that file's or folder's permissions"
    return f"{e.strerror or e}{where}. {fix}, then run the command again."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

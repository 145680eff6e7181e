"""``tbptt suggest``: candidate lengths from a series' ACF/PACF (:mod:`tbptt.diagnostics.suggest`),
or from each id of a long-format panel (:mod:`tbptt.diagnostics.panel_suggest`).

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="tbptt")
>>> _ = suggest_parser(parser.add_subparsers())
>>> args = parser.parse_args(["suggest", "sales.csv", "--id", "store", "--time", "date"])
>>> args.id_col, args.time_col, args.command.__name__
('store', 'date', 'suggest_command')
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tbptt.diagnostics.cli import BAD_INPUT, _fail, _positive, _probability, check_output

__all__ = ["suggest_command", "suggest_parser"]


def suggest_parser(subparsers: Any) -> argparse.ArgumentParser:
    from tbptt.diagnostics.suggest import BUILTIN_SERIES

    p = subparsers.add_parser(
        "suggest",
        help="suggest subsequence lengths from a series' ACF/PACF and dominant periods",
        description="ACF and PACF (statsmodels) with confidence bands; candidate lengths from the "
        "last significant PACF lag and the dominant periods. Built-in series: "
        + "; ".join(f"{k}: {v}" for k, v in BUILTIN_SERIES.items()),
    )
    p.add_argument(
        "data", metavar="DATA", help="a CSV/text, Parquet or .npy file, or a built-in name"
    )
    p.add_argument("--column", help="CSV column (index or header name); default the last")
    p.add_argument(
        "--id",
        dest="id_col",
        help="column naming each sequence of a long-format panel: each id is analysed on its "
        "own and the suggestion is what they agree on",
    )
    p.add_argument("--time", dest="time_col", help="column to sort by (within each id)")
    p.add_argument("--max-lag", type=_positive, help="longest lag considered (default n/2 - 1)")
    p.add_argument("--alpha", type=_probability, default=0.05, help="1 - confidence of the bands")
    p.add_argument("--plot", type=Path, help="write the ACF/PACF plot here (PNG or SVG)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(command=suggest_command)
    return p


def suggest_command(args: argparse.Namespace) -> int:
    from tbptt.diagnostics.suggest import load_series, suggest

    column: int | str | None = args.column
    if isinstance(column, str) and column.lstrip("-").isdigit():
        column = int(column)
    try:
        check_output(args.plot, "--plot")
        if args.id_col is not None:
            return _suggest_panel(args, column)
        if args.time_col is not None:
            series = _sorted_series(args, column)
        else:
            series = load_series(args.data, column=column)
        n = len(series)
        if n < 16:
            return _fail(
                f"DATA {args.data!r} has {n} values; suggest needs at least 16. "
                "Give a longer series."
            )
        if args.max_lag is not None and not 2 <= args.max_lag <= n // 2 - 1:
            return _fail(
                f"--max-lag {args.max_lag} does not fit a series of {n} values: "
                f"give 2 <= --max-lag <= {n // 2 - 1} (n/2 - 1), or a longer series."
            )
        s = suggest(series, max_lag=args.max_lag, alpha=args.alpha)
    except BAD_INPUT as e:
        return _fail(str(e))
    if args.json:
        keys = ("n", "memory", "decorrelation", "periods", "candidates", "recommended")
        print(json.dumps({k: getattr(s, k) for k in keys}))
    else:
        print(s.summary())
    if args.plot:
        s.plot(args.plot, title=f"{args.data}: ACF")
        print(f"plot: {args.plot}")
    return 0


def _table(args: argparse.Namespace, column: int | str | None) -> tuple[Any, str]:
    """``DATA`` read as ``tbptt train --data`` reads it, and the name of the column of values:
    ``--column`` (a name or an index), else the last numeric column besides --id and --time."""
    from tbptt.tabular.io import read_table

    flag = "--id" if args.id_col is not None else "--time"
    if not Path(args.data).is_file():
        raise FileNotFoundError(
            f"{flag} needs DATA to be a table file; {args.data!r} is not a file."
        )
    frame = read_table(Path(args.data))
    if isinstance(column, int):
        if not -frame.shape[1] <= column < frame.shape[1]:
            raise ValueError(
                f"--column {column} is out of range: {args.data!r} has {frame.shape[1]} columns; "
                "give an index or a header name."
            )
        return frame, str(frame.columns[column])
    if column is not None:
        return frame, column
    roles = {args.id_col, args.time_col}
    numeric = [c for c in frame.select_dtypes("number").columns if c not in roles]
    if not numeric:
        raise ValueError(f"{args.data!r} has no numeric column besides {flag}; give --column.")
    return frame, str(numeric[-1])


def _sorted_series(args: argparse.Namespace, column: int | str | None) -> Any:
    """``--time`` without ``--id``: the column of values as one sequence in time order."""
    import pandas as pd

    from tbptt.diagnostics.suggest import _as_1d
    from tbptt.tabular.io import no_column
    from tbptt.tabular.panel import make_panel

    frame, name = _table(args, column)
    if name not in frame.columns:
        raise ValueError(f"--column {name!r}: {no_column(name, list(map(str, frame.columns)))}")
    if name == args.time_col:
        raise ValueError(f"--column {name!r} is the --time column; give the column of values.")
    panel = make_panel(frame, id_col=None, time_col=args.time_col)
    return _as_1d(pd.to_numeric(panel.frame[name], errors="coerce"))


def _suggest_panel(args: argparse.Namespace, column: int | str | None) -> int:
    """``suggest FILE --id COL [--time COL]``: each id on its own, then what they agree on."""
    from tbptt.diagnostics.panel_suggest import suggest_panel

    frame, name = _table(args, column)
    s = suggest_panel(
        frame,
        name,
        id_col=args.id_col,
        time_col=args.time_col,
        max_lag=args.max_lag,
        alpha=args.alpha,
    )
    print(json.dumps(s.as_json()) if args.json else s.summary())
    if args.plot:
        s.plot(args.plot, title=f"{args.data}: ACF of each id")
        print(f"plot: {args.plot}")
    return 0

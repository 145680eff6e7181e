"""tbptt's side of ``benchmarks/forecast.py``: the default command line, nothing tuned.

For each dataset and seed it writes the training part (``train.csv``) and the whole series
(``full.csv``) in long format, then runs, exactly as a user would::

    tbptt train --data train.csv --target y --time time [--id id] --seed S
    tbptt predict RUN --data full.csv  --out one.csv --horizon H   # one_step rows, frozen weights
    tbptt predict RUN --data train.csv --out fc.csv  --horizon H   # forecast rows past the end

``one.csv``'s ``one_step`` rows over the holdout are the one-step-ahead predictions with the
true history fed in (the state carried through each sequence, the weights those of the trained
run); ``fc.csv``'s ``forecast`` rows are the ``H``-step forecast from the end of the training
part. The training time is the wall time of ``tbptt train`` (process start included).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from forecast_data import Spec

__all__ = ["run_tbptt", "tbptt_command", "tbptt_predictions"]

_CLI = "import sys; from tbptt.cli import main; sys.exit(main())"


def tbptt_command(args: list[str], log: Path) -> None:
    """Run ``tbptt ARGS`` in a fresh process, its output appended to ``log``; raise on failure."""
    with log.open("a") as out:
        out.write("$ tbptt " + " ".join(args) + "\n")
        out.flush()
        proc = subprocess.run(
            [sys.executable, "-c", _CLI, *args], stdout=out, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"tbptt {args[0]} exited {proc.returncode}: " + " | ".join(tail))


def tbptt_predictions(
    out_csv: Path, kind: str, lengths: dict[str, int], last: dict[str, int], by_id: bool = True
) -> dict[str, list[float]]:
    """Per id, the last ``last[id]`` ``yhat`` of the rows of ``kind`` in a ``predict`` output.

    ``lengths[id]`` is how many rows of that kind the id must have (every row of the file for
    ``one_step``, ``H`` for ``forecast``); a mismatch or a missing value is an error, not a
    silent misalignment. ``by_id=False``: a file of one sequence (trained without ``--id``).
    """
    table = pd.read_csv(out_csv)
    table = table[table["kind"] == kind]
    got: dict[str, list[float]] = {}
    for key, n in lengths.items():
        mine = table[table["id"].astype(str) == str(key)] if by_id else table
        rows = mine["yhat"].to_numpy(dtype=float)
        if len(rows) != n:
            raise ValueError(f"{out_csv}: id {key!r} has {len(rows)} {kind} rows, expected {n}.")
        tail = rows[len(rows) - last[key] :]
        if pd.isna(tail).any():
            raise ValueError(f"{out_csv}: id {key!r} has empty {kind} predictions to score.")
        got[key] = tail.tolist()
    return got


def run_tbptt(
    spec: Spec,
    frame: pd.DataFrame,
    n_train: dict[str, int],
    seed: int,
    work: Path,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train with the defaults (plus the options ``extra``, to measure a default's choice) on
    the training parts, predict, return the peers' result shape."""
    work.mkdir(parents=True, exist_ok=True)
    step = frame.groupby("id", sort=False).cumcount()  # position within its sequence
    train = frame[step < frame["id"].astype(str).map(n_train)]
    drop = [] if spec.id is not None else ["id"]  # one sequence: no id column in the file
    train.drop(columns=drop).to_csv(work / "train.csv", index=False)
    frame.drop(columns=drop).to_csv(work / "full.csv", index=False)
    runs, name, log = work / "runs", f"s{seed}", work / f"s{seed}.log"
    shutil.rmtree(runs / name, ignore_errors=True)
    log.unlink(missing_ok=True)
    cols = ["--target", spec.target, "--time", spec.time]
    if spec.id is not None:
        cols += ["--id", "id"]
    t0 = time.perf_counter()
    fit = ["--seed", str(seed), "--runs-dir", str(runs), "--name", name]
    tbptt_command(["train", "--data", str(work / "train.csv"), *cols, *fit, *extra], log)
    seconds = time.perf_counter() - t0
    run, h = str(runs / name), str(spec.horizon)
    for data, out in (("full.csv", "one.csv"), ("train.csv", "fc.csv")):
        tbptt_command(
            ["predict", run, "--data", str(work / data), "--out", str(work / out), "--horizon", h],
            log,
        )
    sizes = frame.groupby("id", sort=False).size()
    full_len = {str(k): int(v) for k, v in sizes.items()}
    n_test = {k: full_len[k] - n_train[k] for k in full_len}
    by_id = spec.id is not None
    one = tbptt_predictions(work / "one.csv", "one_step", full_len, n_test, by_id)
    horizon = {k: spec.horizon for k in full_len}
    fc = tbptt_predictions(work / "fc.csv", "forecast", horizon, horizon, by_id)
    ids = {k: {"one_step": one[k], "forecast": fc[k]} for k in full_len}
    return {"ids": ids, "seconds": seconds}

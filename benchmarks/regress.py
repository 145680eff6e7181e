"""tbptt's default per-sequence regressor against the usual peers on TSER sets (not run in CI).

    pip install torch==2.13.0 -e ".[bench]"
    python benchmarks/regress.py                     # both sets, seed 0
    python benchmarks/regress.py --seeds 0,1,2 --refresh tbptt
    python benchmarks/regress.py --methods tbptt-h64 --flags "--hidden 64"

Time series extrinsic regression (one number per sequence; Tan, Bergmeir, Petitjean & Webb,
2021, "Time series extrinsic regression", Data Mining and Knowledge Discovery 35) on the two
sets of the TSER archive shipped inside ``sktime`` (nothing is downloaded):

| set | train / test | length | target |
|---|---|---|---|
| Covid3Month | 140 / 61 | 84 | a country's Covid-19 death rate a month on, from 3 months of daily cases |
| Tecator | 172 / 43 | 100 | fat content of meat from its near-infrared absorbance spectrum |

tbptt: each split is written in long format (``id, t, label, dim_0``) and run as a user would:
``tbptt train --data train.csv --target label --id id --time t --task regress``, then ``tbptt
predict RUN --data test.csv`` on the test file without its label column. Peers, fitted on the
same training split: the training mean; ridge regression on the raw values with the penalty
chosen by leave-one-out (scikit-learn ``RidgeCV``; chemometrics' linear baseline); 1-NN under
full-window DTW (sktime ``KNeighborsTimeSeriesRegressor``); and ROCKET (Dempster, Petitjean &
Webb, 2020, "ROCKET: exceptionally fast and accurate time series classification using random
convolutional kernels", 2,000 kernels and a ridge head: sktime ``RocketRegressor``), the
strongest of the TSER paper's methods per second. Scores: RMSE and MAE on the test split;
results cached under ``benchmarks/.cache/regress``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classify import long_table
from forecast_tbptt import tbptt_command

SETS = ["Covid3Month", "Tecator"]
CACHE = Path(__file__).resolve().parent / ".cache" / "regress"


def load_split(name: str, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(X, y): X indexed by (instance, time), one column per channel; y one number each."""
    from sktime import datasets
    from sktime.datatypes import convert_to

    loader = {"Covid3Month": datasets.load_covid_3month, "Tecator": datasets.load_tecator}[name]
    x, y = loader(split=split, return_X_y=True)
    return convert_to(x, to_type="pd-multiindex"), np.asarray(y, dtype=np.float64)


def scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = np.asarray(pred, dtype=np.float64) - true
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def _panel(x: pd.DataFrame) -> np.ndarray:
    """(N, C, T) from the (instance, time)-indexed frame (equal lengths)."""
    return np.stack([g.to_numpy().T for _, g in x.groupby(level=0)])


def run_peer(name: str, method: str) -> dict[str, Any]:
    """One peer fitted on the training split, scored on the test split."""
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    a, b = _panel(xtr), _panel(xte)  # (N, C, T)
    t0 = time.perf_counter()
    if method == "mean":
        pred = np.full(len(yte), ytr.mean())
    elif method == "ridge":
        from sklearn.linear_model import RidgeCV

        ridge = RidgeCV(alphas=np.logspace(-4, 4, 17)).fit(a.reshape(len(a), -1), ytr)
        pred = ridge.predict(b.reshape(len(b), -1))
    elif method == "dtw":
        from sktime.regression.distance_based import KNeighborsTimeSeriesRegressor

        pred = KNeighborsTimeSeriesRegressor(n_neighbors=1, distance="dtw").fit(a, ytr).predict(b)
    elif method == "rocket":
        from sktime.regression.kernel_based import RocketRegressor

        rocket = RocketRegressor(num_kernels=2000, random_state=0)
        pred = rocket.fit(a, ytr).predict(b)
    else:
        raise ValueError(f"unknown method {method!r}")
    return {**scores(yte, pred), "seconds": time.perf_counter() - t0}


def run_tbptt(name: str, seed: int, method: str, flags: tuple[str, ...]) -> dict[str, Any]:
    """The default command line (plus ``flags``): test scores, the run's validation RMSE and
    the training seconds."""
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    work = CACHE / name / method
    work.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv = work / "train.csv", work / "test.csv"
    long_table(xtr, ytr).to_csv(train_csv, index=False)
    long_table(xte, None).to_csv(test_csv, index=False)
    runs, run_name, log = work / "runs", f"s{seed}", work / f"s{seed}.log"
    shutil.rmtree(runs / run_name, ignore_errors=True)
    log.unlink(missing_ok=True)
    cols = ["--target", "label", "--id", "id", "--time", "t", "--task", "regress"]
    fit = ["--seed", str(seed), "--runs-dir", str(runs), "--name", run_name, *flags]
    t0 = time.perf_counter()
    tbptt_command(["train", "--data", str(train_csv), *cols, *fit], log)
    seconds = time.perf_counter() - t0
    summary = json.loads((runs / run_name / "summary.json").read_text())["scores"]
    out = work / f"pred-s{seed}.csv"
    tbptt_command(
        ["predict", str(runs / run_name), "--data", str(test_csv), "--out", str(out)], log
    )
    pred = pd.read_csv(out).set_index("id")["yhat"]
    order = long_table(xte, None)["id"].unique()
    return {
        **scores(yte, pred.loc[order].to_numpy()),
        "val_rmse": summary["model"]["label"]["rmse"],
        "seconds": seconds,
    }


def cached(name: str, method: str, seed: int, refresh: bool, flags: tuple[str, ...]) -> Any:
    path = CACHE / name / f"{method}-s{seed}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    if method.startswith("tbptt"):
        result = run_tbptt(name, seed, method, flags)
    else:
        result = run_peer(name, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def report(rows: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """Markdown: one row per set and method, mean ± sd over seeds."""
    lines = [
        "| set | method | seeds | test RMSE | test MAE | validation RMSE | s |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(rs: list[dict[str, float]], k: str) -> str:
        v = [x[k] for x in rs if x.get(k) is not None]
        if not v:
            return "-"
        return f"{np.mean(v):.4g}" + (f" ± {np.std(v):.2g}" if len(v) > 1 else "")

    for name, r in rows.items():
        for method, rs in r.items():
            if rs:
                lines.append(
                    f"| {name} | {method} | {len(rs)} | {cell(rs, 'rmse')} | {cell(rs, 'mae')} "
                    f"| {cell(rs, 'val_rmse')} | {cell(rs, 'seconds')} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    p.add_argument(
        "--methods",
        default="tbptt,mean,ridge,dtw,rocket",
        help="tbptt, tbptt-LABEL (a variant: --flags, or another PYTHONPATH), mean, ridge, "
        "dtw, rocket",
    )
    p.add_argument("--flags", default="", help="extra tbptt train flags for tbptt-LABEL methods")
    p.add_argument("--seeds", default="0", help="comma-separated seeds for tbptt")
    p.add_argument("--refresh", default="", help="methods to rerun instead of reading the cache")
    p.add_argument("--out", help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    refresh = set(args.refresh.split(",")) - {""}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in [s for s in args.sets.split(",") if s]:
        rows[name] = {}
        for method in [m for m in args.methods.split(",") if m]:
            rows[name][method] = []
            for seed in seeds if method.startswith("tbptt") else [0]:
                flags = tuple(args.flags.split()) if method.startswith("tbptt-") else ()
                try:
                    r = cached(name, method, seed, method in refresh, flags)
                except Exception as e:  # reported, the other sets still run
                    print(f"{name} {method} seed {seed}: FAILED {type(e).__name__}: {e}")
                    continue
                rows[name][method].append(r)
                print(f"{name} {method} seed {seed}: {r}", flush=True)
    text = report(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

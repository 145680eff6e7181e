"""tbptt's default sequence classifier against 1-NN DTW on UCR/UEA sets (not run in CI).

    pip install torch==2.13.0 -e ".[bench]"
    python benchmarks/classify.py                          # 4 sets, seed 0
    python benchmarks/classify.py --sets ArrowHead --seeds 0,1,2 --refresh tbptt

The sets are the train/test splits shipped inside ``sktime`` (nothing is downloaded):

| set | classes | train / test | length | channels |
|---|---|---|---|---|
| BasicMotions | 4 | 40 / 40 | 100 | 6 |
| ArrowHead | 3 | 36 / 175 | 251 | 1 |
| PLAID | 11 | 537 / 537 | 100-1,344 (variable) | 1 |
| ACSF1 | 10 | 100 / 100 | 1,460 | 1 |

tbptt: each split is written in long format (``id, t, label, dim_0, ...``) and run exactly as a
user would: ``tbptt train --data train.csv --target label --id id --time t --task classify``,
then ``tbptt predict RUN --data test.csv --out pred.csv`` on the test file without its label
column. The baseline is 1-NN under unconstrained dynamic time warping (Sakoe & Chiba, 1978,
"Dynamic programming algorithm optimization for spoken word recognition", IEEE TASSP 26(1)),
sktime's ``KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")`` (tslearn's
``cdist_dtw`` for PLAID's variable lengths, which sktime's classifier refuses), the standard
baseline of the UCR/UEA archives (Dau et al., 2019, "The UCR time series archive"). Scores:
accuracy and macro-F1 on the test split; results cached under ``benchmarks/.cache/classify``.
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

from forecast_tbptt import tbptt_command

SETS = ["BasicMotions", "ArrowHead", "PLAID", "ACSF1"]
CACHE = Path(__file__).resolve().parent / ".cache" / "classify"


def load_split(name: str, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(X, y): X indexed by (instance, time) with one column per channel; y one label each."""
    from sktime.datasets import load_UCR_UEA_dataset

    x, y = load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="pd-multiindex")
    return x, np.asarray(y).astype(str)


def long_table(x: pd.DataFrame, y: np.ndarray | None) -> pd.DataFrame:
    """One row per (sequence, step): ``id, t, [label,] dim_0, ...``."""
    frame = x.copy()
    frame.columns = [f"dim_{i}" for i in range(frame.shape[1])]
    frame = frame.reset_index()
    frame.columns = ["id", "t", *frame.columns[2:]]
    instances = frame["id"].unique()  # sktime numbers them 0..N-1 in y's order
    if y is not None:
        labels = dict(zip(instances, y))
        frame.insert(2, "label", frame["id"].map(labels))
    return frame


def scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(true, pred)),
        "macro_f1": float(f1_score(true, pred, average="macro")),
    }


def _equal_length(*xs: pd.DataFrame) -> bool:
    return len({n for x in xs for n in x.groupby(level=0).size().unique()}) == 1


def run_dtw(name: str) -> dict[str, Any]:
    """1-NN DTW: sktime's classifier; tslearn's for variable lengths (sktime's refuses them)."""
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    t0 = time.perf_counter()
    if _equal_length(xtr, xte):
        from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier

        clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
        pred = clf.fit(xtr, ytr).predict(xte)
    else:
        from tslearn.metrics import cdist_dtw
        from tslearn.utils import to_time_series_dataset

        def padded(x: pd.DataFrame) -> np.ndarray:  # (N, T_max, C), NaN past each end
            return to_time_series_dataset([g.to_numpy() for _, g in x.groupby(level=0)])

        dist = cdist_dtw(padded(xte), padded(xtr))  # (N_test, N_train)
        pred = ytr[dist.argmin(axis=1)]
    return {**scores(yte, np.asarray(pred).astype(str)), "seconds": time.perf_counter() - t0}


def run_majority(name: str) -> dict[str, Any]:
    """The majority class of the training split, predicted for every test sequence."""
    (_, ytr), (_, yte) = load_split(name, "train"), load_split(name, "test")
    labels, counts = np.unique(ytr, return_counts=True)
    return {**scores(yte, np.full(len(yte), labels[counts.argmax()])), "seconds": 0.0}


def run_tbptt(name: str, seed: int) -> dict[str, Any]:
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    work = CACHE / name / "tbptt"
    work.mkdir(parents=True, exist_ok=True)
    long_table(xtr, ytr).to_csv(work / "train.csv", index=False)
    long_table(xte, None).to_csv(work / "test.csv", index=False)
    runs, run_name, log = work / "runs", f"s{seed}", work / f"s{seed}.log"
    shutil.rmtree(runs / run_name, ignore_errors=True)
    log.unlink(missing_ok=True)
    cols = ["--target", "label", "--id", "id", "--time", "t", "--task", "classify"]
    fit = ["--seed", str(seed), "--runs-dir", str(runs), "--name", run_name]
    t0 = time.perf_counter()
    tbptt_command(["train", "--data", str(work / "train.csv"), *cols, *fit], log)
    seconds = time.perf_counter() - t0
    out = work / f"pred-s{seed}.csv"
    tbptt_command(
        ["predict", str(runs / run_name), "--data", str(work / "test.csv"), "--out", str(out)], log
    )
    pred = pd.read_csv(out)
    order = long_table(xte, None)["id"].unique()
    by_id = dict(zip(pred["id"], pred["yhat"].astype(str)))
    if len(by_id) != len(order):
        raise ValueError(f"{out}: {len(by_id)} predictions for {len(order)} test sequences.")
    yhat = np.array([by_id[i] for i in order])
    return {**scores(yte, yhat), "seconds": seconds}


def cached(
    name: str, method: str, seed: int, refresh: bool, cached_only: bool = False
) -> dict[str, Any]:
    """One method's scores on one set, from the cache or computed now."""
    path = CACHE / name / f"{method}-s{seed}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    if cached_only:
        raise FileNotFoundError(f"{path} (--cached-only)")
    result = run_dtw(name) if method == "dtw" else run_tbptt(name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def report(rows: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """Markdown: accuracy and macro-F1 per set (tbptt: mean ± sd over seeds), time, the gap."""
    lines = [
        "| set | tbptt accuracy | 1-NN DTW accuracy | majority accuracy | tbptt macro-F1 "
        "| 1-NN DTW macro-F1 | tbptt train s | DTW fit+predict s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        t, d, maj = r.get("tbptt", []), r.get("dtw", []), r.get("majority", [])

        def cell(rs: list[dict[str, float]], k: str) -> str:
            if not rs:
                return "-"
            v = [x[k] for x in rs]
            return f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")

        lines.append(
            f"| {name} | {cell(t, 'accuracy')} | {cell(d, 'accuracy')} | {cell(maj, 'accuracy')} "
            f"| {cell(t, 'macro_f1')} "
            f"| {cell(d, 'macro_f1')} | {cell(t, 'seconds')} | {cell(d, 'seconds')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated UCR/UEA names")
    p.add_argument("--methods", default="tbptt,dtw,majority", help="tbptt, dtw, majority")
    p.add_argument("--seeds", default="0", help="comma-separated seeds for tbptt")
    p.add_argument("--refresh", default="", help="methods to rerun instead of reading the cache")
    p.add_argument("--out", help="also write the table to this Markdown file")
    p.add_argument("--cached-only", action="store_true", help="tabulate the cache, run nothing")
    args = p.parse_args(argv)
    refresh = set(args.refresh.split(",")) - {""}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in [s for s in args.sets.split(",") if s]:
        rows[name] = {}
        for method in [m for m in args.methods.split(",") if m]:
            rows[name][method] = []
            for seed in seeds if method == "tbptt" else [0]:
                if method == "majority":  # no cache: it takes no time
                    rows[name][method].append(run_majority(name))
                    continue
                try:
                    r = cached(name, method, seed, method in refresh, args.cached_only)
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

"""tbptt's default sequence classifier against 1-NN DTW on UCR/UEA sets (not run in CI).

    pip install torch==2.13.0 -e ".[bench]"
    python benchmarks/classify.py                          # 4 sets, seed 0
    python benchmarks/classify.py --sets ArrowHead --seeds 0,1,2 --refresh tbptt
    python benchmarks/classify.py --sets ArrowHead --methods tbptt-m3 --flags "--members 3" --cv 4
    python benchmarks/classify.py --sets ArrowHead --methods tbptt-v5 --vote 5 --cv 4

``--vote K`` predicts each test (or held-out) sequence from K windows of ``--vote-crop`` of its
steps, averaging their class probabilities (window voting, Le Guennec et al., 2016); name such a
method apart (``tbptt-LABEL``), as its cache is kept by the label. ``--cv K`` scores tbptt (or a variant) by stratified K-fold cross-validation of the *training*
split only, to choose between variants without reading the test split (a run's own validation
split holds 12 to 20 sequences on the smaller sets: too few to choose on).

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
``dtw`` pair by pair for PLAID's variable lengths, which sktime's classifier refuses), the standard
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


def _nearest_dtw(xte: pd.DataFrame, xtr: pd.DataFrame) -> np.ndarray:
    """Index of each test sequence's nearest training sequence under full-window DTW.

    tslearn's numba ``dtw`` pair by pair, each sequence at its own length (its ``cdist_dtw`` on
    NaN-padded arrays had not finished PLAID in 30 minutes); progress is printed every 50 rows.
    """
    from tslearn.metrics import dtw

    train = [g.to_numpy() for _, g in xtr.groupby(level=0)]  # each (T_i, C)
    nearest = []
    for i, (_, g) in enumerate(xte.groupby(level=0)):
        query = g.to_numpy()
        nearest.append(int(np.argmin([dtw(query, s) for s in train])))
        if (i + 1) % 50 == 0:
            print(f"DTW: {i + 1} test sequences done", flush=True)
    return np.array(nearest)


def run_dtw(name: str) -> dict[str, Any]:
    """1-NN DTW: sktime's classifier; tslearn's for variable lengths (sktime's refuses them)."""
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    t0 = time.perf_counter()
    if _equal_length(xtr, xte):
        from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier

        clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
        pred = clf.fit(xtr, ytr).predict(xte)
    else:
        pred = ytr[_nearest_dtw(xte, xtr)]
    return {**scores(yte, np.asarray(pred).astype(str)), "seconds": time.perf_counter() - t0}


def run_majority(name: str) -> dict[str, Any]:
    """The majority class of the training split, predicted for every test sequence."""
    (_, ytr), (_, yte) = load_split(name, "train"), load_split(name, "test")
    labels, counts = np.unique(ytr, return_counts=True)
    return {**scores(yte, np.full(len(yte), labels[counts.argmax()])), "seconds": 0.0}


VOTE: tuple[int, float] = (1, 1.0)
"""``--vote K --vote-crop R``: predict each test sequence from K windows of R of its steps."""


def windows(x: pd.DataFrame, k: int, r: float) -> pd.DataFrame:
    """Each sequence of ``x`` as ``k`` windows of ``ceil(r T)`` of its ``T`` steps at evenly
    spaced starts (the first at 0, the last at the end), numbered ``k i + j`` (window voting,
    Le Guennec, Malinowski & Tavenard, 2016, "Data augmentation for time series classification
    using convolutional neural networks")."""
    parts = []
    for i, g in x.groupby(level=0, sort=False):
        n = len(g)
        keep = max(1, int(np.ceil(round(r * n, 6))))
        for j, start in enumerate(np.linspace(0, n - keep, k).round().astype(int)):
            w = g.iloc[start : start + keep]
            parts.append(w.set_axis(pd.MultiIndex.from_arrays(
                [np.full(keep, k * int(i) + j), w.index.get_level_values(1)]
            )))  # fmt: skip
    return pd.concat(parts)


def _voted(pred: pd.DataFrame, k: int) -> dict[Any, str]:
    """The label of each sequence from its ``k`` windows' mean class probabilities."""
    probs = pred.filter(like="p_")
    mean = probs.groupby(pred["id"].to_numpy() // k).mean()
    return dict(zip(mean.index, mean.idxmax(axis=1).str[2:]))


def _fit_predict(
    work: Path,
    seed: int,
    flags: tuple[str, ...],
    train: tuple[pd.DataFrame, np.ndarray],
    test: pd.DataFrame,
    tag: str = "",
) -> tuple[np.ndarray, dict[str, Any], float]:
    """``tbptt train`` on ``train`` then ``tbptt predict`` on ``test`` (in ``work``): the
    predicted labels in ``test``'s order, the run's validation scores and training seconds."""
    work.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv = work / f"train{tag}.csv", work / f"test{tag}.csv"
    long_table(*train).to_csv(train_csv, index=False)
    k, r = VOTE
    long_table(windows(test, k, r) if k > 1 else test, None).to_csv(test_csv, index=False)
    runs, run_name, log = work / "runs", f"s{seed}{tag}", work / f"s{seed}{tag}.log"
    shutil.rmtree(runs / run_name, ignore_errors=True)
    log.unlink(missing_ok=True)
    cols = ["--target", "label", "--id", "id", "--time", "t", "--task", "classify"]
    fit = ["--seed", str(seed), "--runs-dir", str(runs), "--name", run_name, *flags]
    t0 = time.perf_counter()
    tbptt_command(["train", "--data", str(train_csv), *cols, *fit], log)
    seconds = time.perf_counter() - t0
    val = json.loads((runs / run_name / "summary.json").read_text())["scores"]["model"]
    out = work / f"pred-s{seed}{tag}.csv"
    tbptt_command(
        ["predict", str(runs / run_name), "--data", str(test_csv), "--out", str(out)], log
    )
    val["predict_seconds"] = time.perf_counter() - t0 - seconds
    pool = runs / run_name / "dtw_pool.npz"  # the 1-NN DTW pool: also the network alone
    if pool.is_file():
        aside = pool.with_name("aside.npz")
        pool.rename(aside)
        try:
            alone = work / f"pred-s{seed}{tag}-network.csv"
            tbptt_command(
                ["predict", str(runs / run_name), "--data", str(test_csv), "--out", str(alone)], log
            )
        finally:
            aside.rename(pool)
        val["network"] = _labels(pd.read_csv(alone), test, k)
    return _labels(pd.read_csv(out), test, k), val, seconds


def _labels(pred: pd.DataFrame, test: pd.DataFrame, k: int) -> np.ndarray:
    """The predicted label of each test sequence, in ``test``'s order (voted over windows)."""
    order = long_table(test, None)["id"].unique()
    by_id = _voted(pred, k) if k > 1 else dict(zip(pred["id"], pred["yhat"].astype(str)))
    if len(by_id) != len(order):
        raise ValueError(f"{len(by_id)} predictions for {len(order)} test sequences.")
    return np.array([by_id[i] for i in order])


def run_tbptt(
    name: str, seed: int, method: str = "tbptt", flags: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The default command line (plus ``flags``) on one set; test scores, the run's own
    validation scores (``val_*``, what a run decides on) and the training seconds."""
    (xtr, ytr), (xte, yte) = load_split(name, "train"), load_split(name, "test")
    yhat, val, seconds = _fit_predict(CACHE / name / method, seed, flags, (xtr, ytr), xte)
    out = {
        **scores(yte, yhat),
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "seconds": seconds,
        "predict_seconds": val["predict_seconds"],
    }
    if "network" in val:  # a pooled run (1-NN DTW): the network alone on the same test split
        out["network_accuracy"] = scores(yte, val["network"])["accuracy"]
    return out


def _subset(x: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The sequences ``keep`` (positions) of ``x``, renumbered 0..n-1 in that order."""
    ids = x.index.get_level_values(0).unique()[keep]
    sub = x.loc[ids]
    new = dict(zip(ids, range(len(ids))))
    return sub.set_axis(
        pd.MultiIndex.from_arrays(
            [sub.index.get_level_values(0).map(new), sub.index.get_level_values(1)]
        )
    )


def run_cv(
    name: str, seed: int, folds: int, method: str = "tbptt", flags: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Stratified ``folds``-fold cross-validation on the TRAINING split only (the test split is
    never read): each fold is predicted by a run trained on the other folds (which holds out
    its own validation as usual); scores over every training sequence, each predicted once.
    The choice between variants is made on these, not on a run's 12-20 validation sequences."""
    from sklearn.model_selection import StratifiedKFold

    xtr, ytr = load_split(name, "train")
    yhat = np.empty(len(ytr), dtype=object)
    seconds = 0.0
    split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(ytr)), ytr)
    for f, (fit_idx, held) in enumerate(split):
        pred, _, sec = _fit_predict(
            CACHE / name / f"{method}-cv",
            seed,
            flags,
            (_subset(xtr, fit_idx), ytr[fit_idx]),
            _subset(xtr, held),
            tag=f"f{f}",
        )
        yhat[held] = pred
        seconds += sec
    return {**scores(ytr, yhat.astype(str)), "seconds": seconds, "folds": folds}


def cached(
    name: str,
    method: str,
    seed: int,
    refresh: bool,
    cached_only: bool = False,
    flags: tuple[str, ...] = (),
    cv: int = 0,
) -> dict[str, Any]:
    """One method's scores on one set, from the cache or computed now (``tbptt-LABEL``: a
    variant of tbptt, run with ``flags``, or with another checkout's ``PYTHONPATH``)."""
    path = CACHE / name / f"{method}{f'-cv{cv}' if cv else ''}-s{seed}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    if cached_only:
        raise FileNotFoundError(f"{path} (--cached-only)")
    if method == "dtw":
        result = run_dtw(name)
    elif cv:
        result = run_cv(name, seed, cv, method, flags)
    else:
        result = run_tbptt(name, seed, method, flags)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def report(rows: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """Markdown: one row per set and method, mean ± sd over seeds (tbptt: test and validation
    scores, the network alone where a run pooled it with 1-NN DTW, training and prediction
    seconds; DTW: its fit+predict seconds)."""
    lines = [
        "| set | method | seeds | test accuracy | test macro-F1 | network alone (pooled runs) "
        "| validation accuracy | s | predict s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(rs: list[dict[str, float]], k: str) -> str:
        v = [x[k] for x in rs if k in x]
        if not v:
            return "-"
        return f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")

    for name, r in rows.items():
        for method, rs in r.items():
            if rs:
                lines.append(
                    f"| {name} | {method} | {len(rs)} | {cell(rs, 'accuracy')} "
                    f"| {cell(rs, 'macro_f1')} | {cell(rs, 'network_accuracy')} "
                    f"| {cell(rs, 'val_accuracy')} | {cell(rs, 'seconds')} "
                    f"| {cell(rs, 'predict_seconds')} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated UCR/UEA names")
    p.add_argument(
        "--methods",
        default="tbptt,dtw,majority",
        help="tbptt, tbptt-LABEL (a variant: --flags, or another PYTHONPATH), dtw, majority",
    )
    p.add_argument("--flags", default="", help="extra tbptt train flags for tbptt-LABEL methods")
    p.add_argument("--seeds", default="0", help="comma-separated seeds for tbptt")
    p.add_argument("--refresh", default="", help="methods to rerun instead of reading the cache")
    p.add_argument("--out", help="also write the table to this Markdown file")
    p.add_argument("--cached-only", action="store_true", help="tabulate the cache, run nothing")
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        help="K: score tbptt by stratified K-fold cross-validation on the training split only "
        "(to choose between variants; the test split is not read)",
    )
    p.add_argument(
        "--vote",
        type=int,
        default=1,
        help="K: predict each test (or held-out) sequence from K windows of --vote-crop of its "
        "steps, their class probabilities averaged (for tbptt-LABEL methods)",
    )
    p.add_argument("--vote-crop", type=float, default=0.9, help="R: each window's fraction")
    args = p.parse_args(argv)
    global VOTE
    VOTE = (args.vote, args.vote_crop)
    refresh = set(args.refresh.split(",")) - {""}
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in [s for s in args.sets.split(",") if s]:
        rows[name] = {}
        for method in [m for m in args.methods.split(",") if m]:
            cv = args.cv if method.startswith("tbptt") else 0
            label = f"{method} ({cv}-fold CV of the training split)" if cv else method
            rows[name][label] = []
            for seed in seeds if method.startswith("tbptt") else [0]:
                if method == "majority":  # no cache: it takes no time
                    rows[name][label].append(run_majority(name))
                    continue
                try:
                    flags = tuple(args.flags.split()) if method.startswith("tbptt-") else ()
                    r = cached(name, method, seed, method in refresh, args.cached_only, flags, cv)
                except Exception as e:  # reported, the other sets still run
                    print(f"{name} {method} seed {seed}: FAILED {type(e).__name__}: {e}")
                    continue
                rows[name][label].append(r)
                print(f"{name} {method} seed {seed}: {r}", flush=True)
    text = report(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""tbptt's default forecaster against its peers on public real series (not run in CI).

    pip install torch==2.13.0 -e ".[bench]"
    python benchmarks/forecast.py                       # everything: 11 datasets, 3 seeds
    python benchmarks/forecast.py --methods tbptt --refresh tbptt --datasets co2,solar
    python benchmarks/forecast.py --group unseen --methods tbptt,auto_ets,auto_arima

Each method's result for a (dataset, seed) is cached as JSON under ``benchmarks/.cache/forecast``
(gitignored), so the peers run once; ``--refresh M`` reruns method ``M``. The protocol is in
``forecast_protocol.py``, the series in ``forecast_data.py``, the peers in ``forecast_peers.py``
and tbptt's command lines in ``forecast_tbptt.py``. The output is the Markdown tables of
``docs/quality.md``: per dataset the one-step and horizon MASE (mean over a panel's ids; mean
over seeds), the horizon MASE relative to seasonal naive, the training time, and the goals.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from forecast_data import GROUPS, load
from forecast_peers import PEERS
from forecast_protocol import holdout_size, mase
from forecast_tbptt import run_tbptt

METHODS = ["tbptt", *PEERS]
CACHE = Path(__file__).resolve().parent / ".cache" / "forecast"


def run_method(
    method: str,
    name: str,
    seed: int,
    refresh: bool,
    cached_only: bool = False,
    tbptt_args: tuple[str, ...] = (),
    tag: str = "",
) -> dict[str, Any]:
    """One method's predictions on one dataset and seed, from the cache or computed now;
    ``tbptt_args``: options added to tbptt's command line, cached under ``tbptt{tag}``."""
    seeded = method == "tbptt" or PEERS[method][1]
    cached = f"tbptt{tag}" if method == "tbptt" else method
    path = CACHE / name / f"{cached}-s{seed if seeded else 0}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    if cached_only:
        raise FileNotFoundError(f"{path} (--cached-only)")
    spec, frame = load(name)
    sizes = frame.groupby("id", sort=False).size()
    n_train = {str(k): int(n) - holdout_size(int(n), spec.horizon) for k, n in sizes.items()}
    full = {str(k): g[spec.target].to_numpy(float) for k, g in frame.groupby("id", sort=False)}
    if method == "tbptt":
        result = run_tbptt(spec, frame, n_train, seed, CACHE / name / cached, tbptt_args)
    else:
        work = CACHE / name / method
        work.mkdir(parents=True, exist_ok=True)
        result = PEERS[method][0](full, n_train, spec.season, spec.horizon, seed=seed, work=work)
    result["n_train"] = n_train
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def score(name: str, result: dict[str, Any]) -> dict[str, float]:
    """Mean over a dataset's ids of one-step and horizon MASE."""
    spec, frame = load(name)
    one, hor = [], []
    for key, g in frame.groupby("id", sort=False):
        y = g[spec.target].to_numpy(float)
        n = result["n_train"][str(key)]
        pred = result["ids"][str(key)]
        one.append(mase(y[n:], np.asarray(pred["one_step"]), y[:n], spec.season))
        hor.append(mase(y[n : n + spec.horizon], np.asarray(pred["forecast"]), y[:n], spec.season))
    return {"one_step": float(np.mean(one)), "horizon": float(np.mean(hor))}


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def report(table: dict[str, dict[str, list[dict[str, float]]]], methods: list[str]) -> str:
    """The Markdown tables: one-step MASE, horizon MASE relative to seasonal naive, seconds."""
    names = list(table)
    lines = ["### One-step-ahead MASE over the holdout (mean ± sd over seeds)", ""]
    lines += ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for n in names:
        cells = [_cell([r["one_step"] for r in table[n].get(m, [])]) for m in methods]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    means = [np.mean([np.mean([r["one_step"] for r in table[n][m]]) for n in names])
             if all(table[n].get(m) for n in names) else math.nan for m in methods]  # fmt: skip
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    lines += ["", "### H-step MASE relative to seasonal naive (< 1: better)", ""]
    lines += ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    rel: dict[str, list[float]] = {m: [] for m in methods}
    for n in names:
        base = table[n]["seasonal_naive"][0]["horizon"]
        cells = []
        for m in methods:
            vals = [r["horizon"] / base for r in table[n].get(m, [])]
            if vals:
                rel[m].append(float(np.mean(vals)))
            cells.append(_cell(vals))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    geo = [math.exp(np.mean(np.log(np.maximum(rel[m], 1e-12)))) if len(rel[m]) == len(names)
           else math.nan for m in methods]  # fmt: skip
    lines.append("| **geometric mean** | " + " | ".join(f"**{v:.3f}**" for v in geo) + " |")
    lines += ["", *goals(table, names, dict(zip(methods, means)), dict(zip(methods, geo)))]
    seeds = [f"{m}: " + ", ".join(f"{n} {len(table[n].get(m, []))}" for n in names)
             for m in methods if m == "tbptt" or PEERS[m][1]]  # fmt: skip
    lines += ["", "Seeds run per dataset (the cells average them): " + "; ".join(seeds) + "."]
    lines += ["", "### Training time, seconds (mean over seeds)", ""]
    lines += ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for n in names:
        cells = [f"{np.mean([r['seconds'] for r in table[n][m]]):.1f}" if table[n].get(m)
                 else "-" for m in methods]  # fmt: skip
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(
    table: dict[str, dict[str, list[dict[str, float]]]],
    names: list[str],
    mean_one: dict[str, float],
    geo_rel: dict[str, float],
) -> list[str]:
    """The issue's three forecasting goals for tbptt, each said met or not, with the numbers."""
    if "tbptt" not in mean_one:
        return []
    lost = [
        f"{n} ({np.mean([r['one_step'] for r in table[n]['tbptt']]):.3f} vs "
        f"{table[n]['seasonal_naive'][0]['one_step']:.3f})"
        for n in names
        if table[n].get("tbptt")
        and np.mean([r["one_step"] for r in table[n]["tbptt"]])
        >= table[n]["seasonal_naive"][0]["one_step"]
    ]
    darts_one, darts_geo = mean_one.get("darts_lstm", math.nan), geo_rel.get("darts_lstm", math.nan)

    def verdict(ok: bool, target: float = 0.0) -> str:
        if math.isnan(target):
            return "not measured (Darts not run on this group)"
        return "met" if ok else "NOT met"

    return [
        "### Goals",
        "",
        "| goal | tbptt | target | |",
        "|---|---|---|---|",
        f"| beats seasonal naive one-step on every series | loses on {len(lost)}: "
        f"{', '.join(lost) or 'none'} | 0 | {verdict(not lost)} |",
        f"| mean one-step MASE <= Darts LSTM's | {mean_one['tbptt']:.3f} | {darts_one:.3f} "
        f"| {verdict(mean_one['tbptt'] <= darts_one, darts_one)} |",
        f"| horizon MASE rel. seasonal naive, geometric mean <= Darts' | {geo_rel['tbptt']:.3f} "
        f"| {darts_geo:.3f} | {verdict(geo_rel['tbptt'] <= darts_geo, darts_geo)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--group",
        choices=sorted(GROUPS),
        default="tuning",
        help="tuning: the 11 series the defaults were chosen on; unseen: the held-out ones; fresh: 6 more, run once after the ensemble was chosen",
    )
    p.add_argument("--datasets", help="comma-separated names (default: the whole --group)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--refresh", default="", help="methods to rerun instead of reading the cache")
    p.add_argument("--out", help="also write the tables to this Markdown file")
    p.add_argument("--cached-only", action="store_true", help="tabulate the cache, run nothing")
    p.add_argument(
        "--tbptt-args",
        default="",
        help="options added to tbptt train (e.g. '--members 1'), to measure a default's choice",
    )
    p.add_argument("--tag", default="", help="tbptt's cache name suffix for --tbptt-args")
    args = p.parse_args(argv)
    if args.tbptt_args and not args.tag:
        p.error("--tbptt-args needs --tag NAME, so its results are cached apart from the default")
    names = [n for n in (args.datasets or ",".join(GROUPS[args.group])).split(",") if n]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            p.error(f"--methods: {m!r} is not known; choose from {METHODS}")
    refresh = set(args.refresh.split(",")) - {""}
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    shown = [m for m in METHODS if m in methods or m == "seasonal_naive"]
    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in names:
        table[name] = {}
        for m in shown:
            seeded = m == "tbptt" or PEERS[m][1]
            rows = []
            for seed in seeds if seeded else seeds[:1]:
                try:
                    result = run_method(
                        m,
                        name,
                        seed,
                        m in refresh,
                        args.cached_only,
                        tuple(args.tbptt_args.split()),
                        args.tag,
                    )
                except Exception as e:  # one failure is reported, not the end of the run
                    print(f"{name} {m} seed {seed}: FAILED {type(e).__name__}: {e}", flush=True)
                    continue
                rows.append({**score(name, result), "seconds": result["seconds"]})
                print(f"{name} {m} seed {seed}: {rows[-1]}", flush=True)
            table[name][m] = rows
    text = report(table, shown)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

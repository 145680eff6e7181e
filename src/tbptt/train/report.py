"""A run's report folder: config, metrics (JSON lines, CSV, summary JSON), plots, sample.

Layout of ``runs/NAME/``::

    config.toml  config.json      the configuration (rerun with --config config.toml)
    metrics.jsonl metrics.csv     every training/validation record
    summary.json                  final numbers, baselines, timing, files
    loss.png                      train and validation loss against updates and wall time
    sample.txt                    text: a generated sample
    predictions.png/.csv          series: one-step predictions and a forecast
    checkpoints/step-*.pt         resumable checkpoints
    tb/                           TensorBoard logs (when installed)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tbptt.train.metrics import read_jsonl, write_csv
from tbptt.train.progress import format_duration

__all__ = ["plot_losses", "plot_predictions", "summarize", "write_metrics_files"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_metrics_files(run_dir: str | Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` -> ``metrics.csv``; returns the records."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    records = read_jsonl(path) if path.exists() else []
    if records:
        write_csv(records, run_dir / "metrics.csv")
    return records


def plot_losses(
    records: list[dict[str, Any]],
    path: str | Path,
    metric: str = "loss",
    title: str = "",
    baselines: dict[str, float] | None = None,
) -> Path | None:
    """Train and validation ``metric`` against updates (left) and wall time (right) as a PNG,
    with each of ``baselines`` (label -> value) as a dashed line. Returns ``None`` (and writes
    nothing) when matplotlib is not installed or nothing was logged."""
    plt = _pyplot()
    train = [r for r in records if r.get("kind") == "train" and metric in r]
    val = [r for r in records if r.get("kind") == "val" and metric in r]
    if plt is None or not (train or val):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, xkey, xlabel in ((axes[0], "update", "updates"), (axes[1], "time", "wall time (s)")):
        for rows, label, style in ((train, "train", "-"), (val, "validation", "o-")):
            if rows:
                ax.plot(
                    [r[xkey] for r in rows],
                    [r[metric] for r in rows],
                    style,
                    label=label,
                    markersize=4,
                )
        for i, (label, value) in enumerate((baselines or {}).items()):
            ax.axhline(value, ls="--", lw=1, color=f"C{i + 2}", label=label)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_predictions(
    values: np.ndarray,
    one_step: np.ndarray,
    forecast: np.ndarray,
    n_train: int,
    path: str | Path,
    title: str = "",
    start: float = 0.0,
    step_unit: str = "step",
    unit: str = "",
) -> Path | None:
    """The series, its one-step-ahead predictions and a forecast past its end, as a PNG
    (x: ``start + step`` in ``step_unit``s)."""
    plt = _pyplot()
    if plt is None:
        return None
    t = start + np.arange(len(values))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(t, values, color="black", lw=1, label="data")
    ax.plot(t, one_step, color="tab:blue", lw=1, label="one-step prediction")
    if len(forecast):
        ft = start + np.arange(len(values), len(values) + len(forecast))
        ax.plot(ft, forecast, color="tab:red", lw=1, label="forecast")
    ax.axvline(start + n_train - 0.5, color="gray", ls="--", lw=1)
    ax.text(start + n_train, ax.get_ylim()[1], " validation", va="top", color="gray")
    ax.set_xlabel(step_unit)
    if unit:
        ax.set_ylabel(unit)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def summarize(run_dir: str | Path) -> str:
    """A human-readable summary of a run folder (what ``tbptt report RUN`` prints)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist.")
    if not any((run_dir / name).exists() for name in ("run.json", "summary.json", "config.json")):
        raise FileNotFoundError(
            f"{str(run_dir)!r} is not a run folder (no run.json, config.json or summary.json). "
            "Pass the folder of a run (runs/NAME)."
        )
    lines = [f"run: {run_dir}"]
    summary_path = run_dir / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    cfg: dict[str, Any] = summary.get("config") or {}
    if not cfg and (run_dir / "config.json").exists():
        cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    if cfg:
        rule = cfg.get("rule", "?")
        trunc = f"TBPTT(k1={cfg.get('k1')}, k2={cfg.get('k2')})" if rule == "tbptt" else rule
        data = cfg.get("corpus") if cfg.get("task") == "text" else cfg.get("series")
        data = cfg.get("data") or data  # a --data run: its file
        lines.append(
            f"task: {cfg.get('task')} on {data}; {cfg.get('cell')} {cfg.get('layers')}x"
            f"{cfg.get('hidden')}; {trunc} mode={cfg.get('mode')}; batch {cfg.get('batch_size')}; "
            f"{cfg.get('optimizer')} lr {cfg.get('lr')} ({cfg.get('schedule')})"
        )
    for key in ("data", "model"):
        if key in summary:
            lines.append(f"{key}: {summary[key]}")
    status = summary.get("status")
    if status:
        lines.append(f"status: {status}")
    res = summary.get("result") or {}
    if res:
        lines.append(
            f"trained: {res.get('updates')} updates ({res.get('steps')} optimizer steps, "
            f"{res.get('skipped', 0)} skipped), {res.get('epochs')} epochs, "
            f"{res.get('tokens'):,} steps seen, {format_duration(res.get('seconds', 0.0))} "
            f"({res.get('stop_reason')})"
        )
    hidden = {"tokens", "epoch", "time", "skipped", "eval_seconds"}
    for key, title in (("train", "train (last log window)"), ("val", "validation")):
        m = summary.get(key)
        if m:
            lines.append(
                f"{title}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in m.items() if k not in hidden)
            )
    base = summary.get("baselines")
    if base:
        flat = {k: v for k, v in base.items() if not isinstance(v, dict)}  # scores: the verdict
        lines.append("baselines: " + ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items()))
    if "verdict" in summary:
        lines.append(summary["verdict"])
    records = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    if records and not res:
        last = records[-1]
        lines.append(
            f"metrics so far: {len(records)} records, last at update {last.get('update')} "
            "(no summary.json: the run has not finished)"
        )
    ckpts = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    if ckpts:
        lines.append(f"checkpoints: {', '.join(p.name for p in ckpts)}")
    files = [
        p.name
        for p in sorted(run_dir.iterdir())
        if p.is_file() and p.suffix in (".png", ".csv", ".txt", ".json", ".toml", ".npz", ".pt")
    ]
    if files:
        lines.append(f"files: {', '.join(files)}")
    sample = run_dir / "sample.txt"
    if sample.exists():
        text = sample.read_text(encoding="utf-8")
        lines.append("sample:\n" + "\n".join("  " + ln for ln in text[:400].splitlines()))
    return "\n".join(lines)

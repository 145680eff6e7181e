"""What a finished ``tbptt train`` run writes and prints: the verdict against its baselines,
a text sample, the series predictions, ``summary.json``, the metrics files and plots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["after_training", "finish_report", "sample_text", "series_verdict", "write_predictions"]


def after_training(
    trainer: Any,
    job: Any,
    cfg: Any,
    run_dir: Path,
    summary: dict[str, Any],
    result: Any,
    t_start: float,
) -> int:
    """The sample or predictions, the report files, the final lines."""
    summary.update(
        status="finished",
        result={
            "updates": result.updates,
            "steps": result.steps,
            "skipped": result.skipped,
            "epochs": result.epochs,
            "tokens": result.tokens,
            "seconds": round(result.seconds, 2),
            "stop_reason": result.stop_reason,
            "process_seconds": round(time.perf_counter() - t_start, 2),
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "best_update": result.best_update,
        },
        train=result.train,
        val=result.val,
        engine=trainer.engine.stats,  # which fast paths ran, and why runs were split
    )
    if cfg.task == "text":
        text = sample_text(trainer.model, job.extra["vocab"], cfg)
        (run_dir / "sample.txt").write_text(text, encoding="utf-8")
        summary["verdict"] = text_verdict(result.val, job.baselines)
    elif cfg.data is not None:
        from tbptt.tabular.commands import after_training

        summary["verdict"] = after_training(trainer.model, cfg, job.extra, run_dir, summary)
    else:
        summary["verdict"] = series_verdict(result.val, job.baselines, cfg.series)
        write_predictions(trainer.model, cfg, job.extra, run_dir)
    finish_report(run_dir, cfg, summary)
    print(summary["verdict"])
    if cfg.task == "text":
        print(f"sample (temperature {cfg.temperature}):\n{text}")
    print(f"report: tbptt report {run_dir}")
    return 0


def text_verdict(val: dict[str, float] | None, base: dict[str, float]) -> str:
    if not val:
        return "no validation data"
    bpc, uni = val["bpc"], base["unigram_bpc"]
    return (
        f"validation: {bpc:.3f} bits per char (perplexity {val['ppl']:.2f}); unigram baseline "
        f"{uni:.3f} bits per char; the model needs {bpc / uni:.0%} of the baseline's bits "
        f"({1 - bpc / uni:.0%} fewer)"
    )


def series_verdict(val: dict[str, float] | None, base: dict[str, float], name: str) -> str:
    if not val:
        return "no validation data"
    return (
        f"validation ({name}, one step ahead): RMSE {val['rmse']:.4g}, MAE {val['mae']:.4g} | "
        f"naive (last value): RMSE {base['naive_rmse']:.4g}, MAE {base['naive_mae']:.4g} | "
        f"seasonal naive: RMSE {base['seasonal_naive_rmse']:.4g}, "
        f"MAE {base['seasonal_naive_mae']:.4g}"
    )


def finish_report(run_dir: Path, cfg: Any, summary: dict[str, Any]) -> None:
    from tbptt.train.report import plot_losses, write_metrics_files

    records = write_metrics_files(run_dir)
    metric = {"text": "bpc", "classify": "loss"}.get(cfg.task, "rmse")
    title = f"{cfg.task}: {cfg.cell} {cfg.layers}x{cfg.hidden}, {cfg.rule} k1={cfg.k1} k2={cfg.k2}"
    base = summary.get("baselines") or {}
    if cfg.task == "text":
        lines = {"unigram": base["unigram_bpc"]} if "unigram_bpc" in base else {}
    else:
        lines = {
            name: base[f"{key}_rmse"]
            for name, key in (("naive", "naive"), ("seasonal naive", "seasonal_naive"))
            if f"{key}_rmse" in base
        }
    png = plot_losses(records, run_dir / "loss.png", metric=metric, title=title, baselines=lines)
    summary["files"] = sorted(p.name for p in run_dir.iterdir() if p.is_file())
    if png is None:
        summary["note"] = "loss.png not written (matplotlib is not installed)"
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def sample_text(model: Any, vocab: str, cfg: Any, prompt: str | None = None, chars: int = 0) -> str:
    import torch

    prompt = cfg.prompt if prompt is None else prompt
    chars = chars or cfg.sample_chars
    stoi = {c: i for i, c in enumerate(vocab)}
    if prompt == "\n" and "\n" not in stoi:  # the default prompt, for a corpus without newlines
        prompt = ""
    unknown = sorted({c for c in prompt if c not in stoi})
    if unknown:
        raise ValueError(
            f"prompt contains characters the model never saw: {unknown!r}. Use characters of "
            "the training corpus."
        )
    if not prompt:
        prompt = "\n" if "\n" in stoi else vocab[0]
    device = next(model.parameters()).device
    ids = torch.tensor([stoi[c] for c in prompt], device=device)
    g = torch.Generator().manual_seed(cfg.seed)
    out = model.sample(ids, chars, temperature=cfg.temperature, generator=g)
    return prompt + "".join(vocab[i] for i in out.tolist())


def write_predictions(
    model: Any, cfg: Any, extra: dict[str, Any], run_dir: Path, horizon: int = 0
) -> None:
    import numpy as np

    from tbptt.train.jobs import series_predictions
    from tbptt.train.report import plot_predictions

    horizon = horizon or int(extra.get("season", 12)) * 2
    pred = series_predictions(model, cfg, extra, horizon=horizon)
    n_train = int(extra["n_train"])
    rows = ["step,value,one_step_prediction,forecast,split"]
    for t, (v, p) in enumerate(zip(pred["values"], pred["one_step"])):
        split = "train" if t < n_train else "val"
        rows.append(f"{t},{v:.6g},{'' if np.isnan(p) else f'{p:.6g}'},,{split}")
    for i, f in enumerate(pred["forecast"]):
        rows.append(f"{len(pred['values']) + i},,,{f:.6g},forecast")
    (run_dir / "predictions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plot_predictions(
        pred["values"],
        pred["one_step"],
        pred["forecast"],
        n_train,
        run_dir / "predictions.png",
        title=f"{cfg.series}: one-step predictions and a {horizon}-step forecast",
        start=float(extra.get("start", 0.0)),
        step_unit=str(extra.get("step_unit", "step")),
        unit=str(extra.get("unit", "")),
    )

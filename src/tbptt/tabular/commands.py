"""The command-line side of the data door (``tbptt train --data``, ``tbptt predict --data``);
``tbptt.cli`` only wires the arguments to these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tbptt.tabular.dataset import resolve_data
from tbptt.tabular.guard import OneStepGuard, fit_guard
from tbptt.tabular.predict import Predictor
from tbptt.tabular.report import evaluate_run, write_outputs

__all__ = ["after_training", "predict_run"]


def after_training(
    model: Any, cfg: Any, extra: dict[str, Any], run_dir: Path, summary: dict[str, Any]
) -> str:
    """Score the trained (best) model on its validation data next to the baselines, write
    predictions.csv and the plots; the verdict lines (also in ``summary``). A forecast run
    first chooses its one-step guard on that validation data (``guard.py``), saved in
    ``run_dir`` and used by everything that predicts from the run."""
    pred = Predictor(model, cfg, extra)
    data: Any = cfg.data
    if extra.get("streamed"):  # a streamed file: its sample of ids (the validation data)
        from tbptt.tabular.dataset import _read

        data = _read(resolve_data(cfg.data), cfg.id)[0]
    if pred.spec.task == "forecast":
        pred.guard = fit_guard(pred, pred.panel(data), np.asarray(extra["n_train"]))
        pred.guard.save(run_dir)
        summary["one_step_guard"] = pred.guard.choice
    result = evaluate_run(pred, data)
    summary["scores"] = {"model": result["model"], "baselines": result["baselines"]}
    summary["data_notes"] = extra.get("notes", "")
    write_outputs(pred, result, run_dir)
    return str(result["verdict"])


def predict_run(
    model: Any,
    cfg: Any,
    extra: dict[str, Any],
    run_dir: Path,
    data: str | None,
    out: str | None,
    horizon: int,
) -> str:
    """``tbptt predict RUN --data FILE --out OUT.csv [--horizon H]``: the table of predictions
    (see :meth:`Predictor.predict_frame`); without --data the run's own file, whose validation
    scores are printed too. Returns what to print."""
    pred = Predictor(model, cfg, extra, OneStepGuard.read(run_dir))
    lines = []
    path = data or cfg.data
    if data is None or resolve_data(data) == resolve_data(cfg.data):
        lines.append(evaluate_run(pred, path)["verdict"])
    panel = pred.panel(path)
    h = (horizon or int(cfg.horizon or 0)) if pred.spec.task == "forecast" else 0
    frame = pred.predict_frame(panel, h)
    if h and len(panel.ids) == 1 and len(pred.spec.targets) == 1:
        values = frame.loc[frame["kind"] == "forecast", "yhat"]
        lines.append(f"forecast ({h} steps): " + " ".join(f"{v:.4g}" for v in values))
    target = Path(out) if out else run_dir / "predictions.csv"
    if out and target.exists() and target.is_dir():
        raise ValueError(f"--out {out!r} is a folder; give a file name such as predictions.csv.")
    frame.to_csv(target, index=False)
    lines.append(f"wrote {target} ({len(frame)} rows: {', '.join(frame.columns)})")
    return "\n".join(lines)

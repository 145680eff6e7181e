"""The command-line side of the data door (``tbptt train --data``, ``tbptt predict --data``);
``tbptt.cli`` only wires the arguments to these functions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tbptt.tabular.dataset import resolve_data
from tbptt.tabular.file_scores import FileScores
from tbptt.tabular.guard import fit_guard
from tbptt.tabular.io import file_digest
from tbptt.tabular.neighbours import fit_run_pool, pool_summary
from tbptt.tabular.predict import Predictor
from tbptt.tabular.refit import REFIT_ONE_STEP, chosen_model, run_predictor, run_refit
from tbptt.tabular.report import evaluate_run, write_outputs
from tbptt.tabular.streamed import panel_blocks

__all__ = ["after_training", "predict_run", "validation_data"]


def after_training(
    model: Any, cfg: Any, extra: dict[str, Any], run_dir: Path, summary: dict[str, Any]
) -> str:
    """Score the trained (best) model on its validation data next to the baselines, write
    predictions.csv and the plots; the verdict lines (also in ``summary``). A forecast run
    first chooses its one-step guard on that validation data (``guard.py``), a classify run
    its 1-NN DTW pool (``neighbours.py``), saved in ``run_dir`` and used by everything that
    predicts from the run."""
    pred = Predictor(model, cfg, extra)
    data = validation_data(cfg, extra)
    if pred.spec.task == "forecast":
        pred.guard = fit_guard(pred, pred.panel(data), np.asarray(extra["n_train"]))
        pred.guard.save(run_dir)
        summary["one_step_guard"] = pred.guard.choice
    if pred.spec.task == "classify" and getattr(cfg, "dtw_pool", None) == "on":
        start = time.perf_counter()
        try:
            pred.pool = fit_run_pool(pred, pred.panel(data))
            summary["dtw_pool"] = pool_summary(pred.pool)
        except ImportError as e:  # dtaidistance gone since the run started: the network alone
            summary["dtw_pool"] = {"used": False, "why": str(e)}
        summary["dtw_pool"]["seconds"] = time.perf_counter() - start
        if pred.pool is not None:
            pred.pool.save(run_dir)
    result = evaluate_run(pred, data)
    summary["scores"] = {"model": result["model"], "baselines": result["baselines"]}
    summary["data_notes"] = extra.get("notes", "")
    write_outputs(pred, result, run_dir)
    verdict = str(result["verdict"])
    best = (summary.get("result") or {}).get("best_update")
    if pred.spec.task == "forecast" and getattr(cfg, "refit", None) == "on" and best:
        verdict += "\n" + _refit(cfg, extra, run_dir, summary, int(best), data)
    return verdict


def _refit(
    cfg: Any, extra: dict[str, Any], run_dir: Path, summary: dict[str, Any], best: int, data: Any
) -> str:
    """``--refit on``: train the final model on every step (``refit.py``), record it in
    ``summary["refit"]`` and write its predictions.csv (what ``tbptt predict RUN`` writes;
    predictions.png stays the chosen model's on its held-out tail); the line to print. The
    refit is not scored on the validation tail: it trained on those steps."""
    model, info = run_refit(cfg, best, run_dir)
    refit = run_predictor(model, cfg, extra, run_dir, refit=True)
    frame = refit.predict_frame(refit.panel(data), int(cfg.horizon or 0))
    frame.to_csv(run_dir / "predictions.csv", index=False)
    summary["refit"] = info
    return (
        f"final model: refit on all {info['steps']} steps for {info['updates']} updates "
        f"({info['seconds']:.1f} s); predict and tbptt.load take one step from "
        f"{'its mean with the chosen model' if REFIT_ONE_STEP == 'average' else 'it'} (the "
        "horizon from the chosen model). The validation scores above are the chosen model's "
        "(the refit trained on those steps)."
    )


def validation_data(cfg: Any, extra: dict[str, Any]) -> Any:
    """The data a run's validation scores come from: its file, or for a streamed file the
    sample of whole ids the run validated on."""
    if extra.get("streamed"):
        from tbptt.tabular.dataset import _read

        return _read(resolve_data(cfg.data), cfg.id)[0]
    return cfg.data


def predict_run(
    model: Any,
    cfg: Any,
    extra: dict[str, Any],
    run_dir: Path,
    data: str | None,
    out: str | None,
    horizon: int,
    refit: bool = False,
) -> str:
    """``tbptt predict RUN --data FILE --out OUT.csv [--horizon H]``: the table of predictions
    (see :meth:`Predictor.predict_frame`; a large Parquet file streamed in blocks of ids; a
    Parquet file where OUT ends in ``.parquet``) and,
    next to it in OUT.scores.json and printed, the scores: the run's validation scores on its
    own file (the default), the same metrics on every row with a target of another file
    (:mod:`tbptt.tabular.file_scores`). Returns what to print. The one-step forecasts are what
    the run's guard chose (``guard.py``). ``refit``: ``model`` is the run's refit on every step
    (``refit.py``), which predicts; the validation scores are still those of the model chosen
    on the tail."""
    pred = run_predictor(model, cfg, extra, run_dir, refit)
    path = data or cfg.data
    target = Path(out) if out else run_dir / "predictions.csv"
    if out and target.exists() and target.is_dir():
        raise ValueError(f"--out {out!r} is a folder; give a file name such as predictions.csv.")
    if not target.parent.is_dir():
        raise ValueError(f"--out {out!r}: no folder {str(target.parent)!r}; create it first.")
    own = data is None or resolve_data(data) == resolve_data(cfg.data)
    scores: dict[str, Any] = {}
    if own:  # the validation scores of the model chosen on the tail (not of a refit)
        scorer = Predictor(chosen_model(run_dir), cfg, extra, pred.guard) if refit else pred
        result = evaluate_run(scorer, validation_data(cfg, extra))
        scores = {"data": "validation", "task": pred.spec.task, "verdict": result["verdict"]}
        scores.update(model=result["model"], baselines=result["baselines"])
    other = None if own else FileScores(pred, Path(path).name, run_dir)
    h = (horizon or int(cfg.horizon or 0)) if pred.spec.task == "forecast" else 0
    rows, ids = 0, 0
    methods: list[str] = []  # the horizon guard's choice per sequence (horizon.py)
    partial = target.with_name(target.name + ".partial")  # OUT.csv is replaced when complete
    try:
        with _TableWriter(partial, parquet=target.suffix.lower() in (".parquet", ".pq")) as out_:
            for panel in panel_blocks(pred, path):
                frame = pred.predict_frame(panel, h)
                out_.write(frame)
                rows, ids = rows + len(frame), ids + len(panel.ids)
                methods += getattr(pred, "methods", []) if h else []
                if other is not None:
                    other.add(panel, frame)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    scores = other.result() if other is not None else scores
    lines = [scores["verdict"]]
    saved = extra.get("data_digest")
    if own and saved is not None and file_digest(resolve_data(cfg.data)) != saved:
        warning = f"WARNING: {cfg.data!r} has changed since the run trained on it; "
        lines.insert(0, warning + "these are not the run's validation scores.")
    if h and h != int(cfg.horizon or 0) and methods:  # the report's lines are for its horizon
        used = ["the model's recursion" if m == "model" else m.replace("_", " ") for m in methods]
        lines.append(
            f"forecast over {h} steps (the lines above are for the run's {cfg.horizon}): the "
            f"backtest at {h} steps chose, per sequence: "
            + ", ".join(f"{m} ({used.count(m)})" for m in sorted(set(used)))
        )
    if h and ids == 1 and len(pred.spec.targets) == 1:
        values = frame.loc[frame["kind"] == "forecast", "yhat"]
        lines.append(f"forecast ({h} steps): " + " ".join(f"{v:.4g}" for v in values))
    lines.append(f"wrote {target} ({rows} rows: {', '.join(frame.columns)})")
    if "model" in scores:
        scores_path = target.with_suffix(".scores.json")
        scores_path.write_text(json.dumps(scores, indent=2, default=str) + "\n", encoding="utf-8")
        lines.append(f"wrote {scores_path}")
    return "\n".join(lines)


class _TableWriter:
    """Blocks of a table appended to one file: CSV (one header), or Parquet (pyarrow, each
    block cast to the first one's schema) where the name ends in ``.parquet``/``.pq``."""

    def __init__(self, path: Path, parquet: bool) -> None:
        self.path, self.parquet = path, parquet
        self._fh: Any = None
        self._writer: Any = None

    def __enter__(self) -> _TableWriter:
        if not self.parquet:
            self._fh = open(self.path, "w", encoding="utf-8", newline="")
        return self

    def write(self, frame: Any) -> None:
        if not self.parquet:
            frame.to_csv(self._fh, index=False, header=self._fh.tell() == 0)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._writer is not None:
            self._writer.close()

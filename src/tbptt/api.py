"""``tbptt.load(RUN)``: a trained run's model with its preparation, ready to use in Python.

>>> import tbptt
>>> callable(tbptt.load)
True

For runs trained with ``tbptt train --data``: ``.predict(data)`` returns the same table as
``tbptt predict RUN --data FILE`` (``id, t, kind, yhat`` for forecasts; ``id, yhat`` and one
probability column per class for classifiers), ``.forecast(h)`` the ``h`` steps past the end of
each sequence of the run's file (or of ``data``). For text runs: ``.generate(prompt, chars)``.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = ["Loaded", "load"]


class Loaded:
    """A trained run: ``model`` (eval mode), ``config`` (its RunConfig), ``path`` (its folder),
    ``refit`` (whether ``model`` is the run's refit on every step, ``tbptt.tabular.refit``)."""

    def __init__(self, model: nn.Module, config: Any, extra: dict[str, Any], path: Path) -> None:
        self.model, self.config, self.extra, self.path = model, config, extra, path
        self.refit = False  # a forecast run's refit on every step (``--refit on``)

    def _predictor(self) -> Any:
        if self.config.data is None:
            raise ValueError(
                f"run {str(self.path)!r} is a {self.config.task} run, not trained with --data; "
                "predict() and forecast() serve --data runs (text runs: generate())."
            )
        from tbptt.tabular.refit import run_predictor

        return run_predictor(self.model, self.config, self.extra, self.path, self.refit)

    def predict(
        self, data: str | Path | pd.DataFrame | None = None, horizon: int | None = None
    ) -> pd.DataFrame:
        """The predictions table for ``data`` (a file or DataFrame; default: the run's file),
        with ``horizon`` forecast rows per sequence (forecast runs; default: the run's horizon,
        as ``tbptt predict``)."""
        if horizon is not None and (
            isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0
        ):
            raise ValueError(
                f"horizon must be a whole number of steps >= 0 (0: no forecast rows), got "
                f"{horizon!r}."
            )
        p = self._predictor()
        if horizon is None:
            horizon = int(self.config.horizon or 0) if p.spec.task == "forecast" else 0
        try:
            return p.predict_frame(p.panel(self.config.data if data is None else data), horizon)
        except ValueError as e:
            raise ValueError(in_python_words(str(e))) from e

    def forecast(self, h: int, data: str | Path | pd.DataFrame | None = None) -> pd.DataFrame:
        """The ``h`` steps past the end of each sequence: columns ``id, t, yhat``."""
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"h must be a positive integer (steps to forecast), got {h!r}.")
        task = self._predictor().spec.task
        if task != "forecast":
            raise ValueError(
                f"forecast() needs a forecast run; {str(self.path)!r} is a {task} run: "
                "use predict() for its table."
            )
        out = self.predict(data, h)
        return out[out["kind"] == "forecast"].drop(columns="kind").reset_index(drop=True)

    def generate(
        self, prompt: str = "\n", chars: int = 600, temperature: float = 0.8, seed: int = 0
    ) -> str:
        """Text runs: ``chars`` characters sampled after ``prompt``."""
        if self.config.task != "text":
            raise ValueError(
                f"generate() needs a text run; {str(self.path)!r} is a {self.config.task} run."
            )
        from dataclasses import replace

        from tbptt.train.finish import sample_text

        cfg = replace(self.config, temperature=temperature, seed=seed)
        return sample_text(self.model, self.extra["vocab"], cfg, prompt=prompt, chars=chars)


_FLAG_WORDS = {
    "--data:": "data:",
    "--target": "the run's target column",
    "--time": "the run's time column",
    "--id": "the run's id column",
    "--features": "the run's feature column",
    "--known": "the run's known feature column",
    "--horizon": "horizon",
}


def in_python_words(message: str) -> str:
    """A data error worded for the command line (``--time 'date': ...``) as said to a caller
    of :meth:`Loaded.predict`, whose columns are the run's own.

    >>> in_python_words("--time 'date': no column 'date' in the file (columns: y).")
    "the run's time column 'date': no column 'date' in the data (columns: y)."
    """
    for flag, words in _FLAG_WORDS.items():
        message = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", words, message)
    return message.replace("in the file", "in the data")


def load(run: str | Path) -> Loaded:
    """The trained model of a run folder (its best checkpoint by validation, else the newest;
    a forecast run trained with ``--refit on``: its refit on every step) or of a checkpoint
    file, with its preparation."""
    from tbptt.train.checkpoint import latest_checkpoint, load_checkpoint
    from tbptt.train.config import RunConfig
    from tbptt.train.jobs import build_model
    from tbptt.train.run import RunFolder, run_dir_of

    path = Path(run)
    if not path.exists():
        from tbptt.train.checkpoint import CheckpointError

        raise CheckpointError(
            f"run {str(run)!r} does not exist. Pass a run folder (runs/NAME) or a checkpoint "
            "file (runs/NAME/checkpoints/step-00000100.pt)."
        )
    ckpt = RunFolder.read(path).model_checkpoint() if path.is_dir() else latest_checkpoint(path)
    payload = load_checkpoint(ckpt)
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in (payload.get("config") or {}).items() if k in names})
    extra = payload.get("extra") or {}
    model = build_model(cfg, extra)
    refit = None
    if path.is_dir() and cfg.data is not None:  # a forecast run refit on every step
        from tbptt.tabular.refit import refit_weights

        refit = refit_weights(path)
    model.load_state_dict(payload["model"] if refit is None else refit)
    model.eval()
    loaded = Loaded(model, cfg, extra, run_dir_of(ckpt))
    loaded.refit = refit is not None
    return loaded

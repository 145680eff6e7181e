"""The ``tbptt`` command: ``train``, ``generate``, ``predict``, ``report``.

Each subcommand is a ``*_parser(subparsers)`` / ``*_command(args) -> exit code`` pair.
Exit codes: 0 done; 1 training stopped on NaN/inf; 2 bad options, data or checkpoint;
130 interrupted (Ctrl-C / SIGTERM; a checkpoint was saved). User docs: ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from tbptt.diagnostics.cli import add_diagnostics_commands

__all__ = ["build_parser", "main"]

EXAMPLES = """\
examples:
  tbptt train                                  # char-level LSTM on Shakespeare, ~2 minutes
  tbptt train --minutes 10 --hidden 512        # longer, bigger
  tbptt train --k1 32 --k2 96 --mode recompute # decoupled TBPTT(k1, k2)
  tbptt train --task series                    # yearly sunspots vs naive baselines
  tbptt train --data my.csv --target y --id store --time date   # your own sequences
  tbptt predict runs/forecast-20250101-120000 --data my.csv --out out.csv --horizon 14
  tbptt train --config run.toml --lr 1e-3      # a TOML file; flags override it
  tbptt train --resume runs/text-20250101-120000
  tbptt explain --k1 4 --k2 8                  # a picture of what TBPTT(4, 8) trains
  tbptt suggest sunspots                       # ACF/PACF: candidate lengths for a series
  tbptt bias --task influence                  # how biased is the truncated gradient?
  tbptt sweep --k1s 16,32 --k2s 32,64          # grid search over (k1, k2) with Optuna
  tbptt generate runs/text-20250101-120000 --prompt "ROMEO:"
  tbptt predict runs/series-20250101-120000 --horizon 22
  tbptt report runs/text-20250101-120000
"""


def _err(msg: str) -> None:
    print(f"tbptt: error: {msg}", file=sys.stderr)


# -- train -------------------------------------------------------------------------------------


def _field_type(annotation: str) -> Any:
    if "bool" in annotation:
        return bool
    if "int" in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def _rule_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def train_parser(sub: Any) -> argparse.ArgumentParser:
    from tbptt.train.config import GROUPS, RunConfig

    p = sub.add_parser(
        "train",
        help="train a model (default: a character-level LSTM on Shakespeare, ~2 minutes)",
        description=(
            "Train a recurrent model with truncated backpropagation through time. With no "
            "options: a character-level LSTM language model on Shakespeare's plays for about 2 "
            "minutes, then the validation bits per character next to the unigram baseline and "
            "a sample. Options come from the task's defaults, then --config FILE, then flags."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="TOML file of options (flags override it)")
    p.add_argument(
        "--resume",
        metavar="PATH",
        help="continue a run exactly: its folder (newest checkpoint) or a checkpoint file",
    )
    groups = {k: p.add_argument_group(v) for k, v in GROUPS.items()}
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        group = groups[f.metadata["group"]]
        help_text = f.metadata["help"]
        if f.name == "rule_options":
            group.add_argument(
                "--rule-option",
                dest="rule_options",
                metavar="KEY=VALUE",
                action="append",
                type=_rule_option,
                default=argparse.SUPPRESS,
                help=help_text + "; repeatable",
            )
            continue
        kind = _field_type(str(f.type))
        if kind is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        choices = f.metadata.get("choices")
        metavar = (
            None
            if choices
            else f.metadata.get("metavar") or {int: "N", float: "X"}.get(kind, f.name.upper())
        )
        default_note = "" if f.default is None else f" (default: {f.default!r})"
        group.add_argument(
            flag,
            type=kind,
            choices=choices,
            metavar=metavar,
            default=argparse.SUPPRESS,
            help=help_text + default_note,
        )
    p.set_defaults(command=train_command)
    return p


def _run_dir_of_checkpoint(ckpt: Path) -> Path:
    from tbptt.train.run import run_dir_of

    return run_dir_of(ckpt)


def _config_diff(saved: dict[str, Any], now: dict[str, Any], allowed: frozenset[str]) -> list[str]:
    keys = (set(saved) | set(now)) - allowed
    return [
        f"{k}={saved.get(k)!r} (now {now.get(k)!r})"
        for k in sorted(keys)
        if saved.get(k) != now.get(k)
    ]


def train_command(args: argparse.Namespace) -> int:
    """``tbptt train``: parse the options, run the training in its run folder, report."""
    from tbptt.train import CheckpointError, NonFiniteError, TrainingInterrupted

    try:
        cfg, ckpt, run = _train_config(args)
        device = _seed_and_threads(cfg)
        job, trainer, run = _prepare_run(cfg, ckpt, run, device)
    except (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, CheckpointError) as e:
        _err(str(e))
        return 2
    t_start = time.perf_counter()
    summary = _log_start(trainer, job, cfg, run, resumed=ckpt is not None)
    try:
        result = trainer.fit(
            job.train,
            job.val,
            updates=cfg.updates,
            minutes=cfg.minutes,
            epochs=cfg.epochs,
            eval_every=cfg.eval_every,
            resume=ckpt,
        )
    except TrainingInterrupted as e:
        print(f"{e.args[0]}\nResume with: tbptt train --resume {run.path}", file=sys.stderr)
        _finish_report(run.path, cfg, {**summary, "status": f"interrupted: {e.args[0]}"})
        return 130
    except NonFiniteError as e:
        _err(str(e))
        _finish_report(run.path, cfg, {**summary, "status": f"stopped: {e}"})
        return 1
    except CheckpointError as e:
        _err(str(e))
        return 2
    except torch_out_of_memory() as e:
        _err(f"out of memory at update {trainer.counters.updates} ({_first_line(e)}). {_OOM_FIX}")
        if not run.checkpoints():
            run.discard()
        return 2
    try:
        return _after_training(trainer, job, cfg, run.path, summary, result, t_start)
    except KeyboardInterrupt:
        print(
            f"tbptt: interrupted after training; the final checkpoint is {result.checkpoint}.",
            file=sys.stderr,
        )
        return 130
    finally:
        run.release()


_OOM_FIX = (
    "Lower --batch-size, --k2 or --chunk-len (with --rule bptt: use --rule tbptt or "
    "--activation-checkpointing sqrt)."
)


def torch_out_of_memory() -> type[BaseException]:
    """The exception torch raises when an allocation fails (``torch.OutOfMemoryError``)."""
    import torch

    return getattr(torch, "OutOfMemoryError", MemoryError)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _resolve_corpus(corpus: str) -> str:
    """A corpus given as a path is stored absolute, so a run resumes from any directory."""
    if corpus in ("auto", "shakespeare", "stdlib"):
        return corpus
    return str(Path(corpus).expanduser().resolve())


def _train_config(args: argparse.Namespace) -> tuple[Any, Path | None, Any]:
    """The run's configuration (task defaults < saved run < --config < flags), the checkpoint
    to resume from and the run: its opened (locked) :class:`RunFolder` when resuming, else the
    path of the folder to claim."""
    from tbptt.train import CheckpointError, Trainer
    from tbptt.train.checkpoint import latest_checkpoint, load_checkpoint
    from tbptt.train.config import RunConfig, load_toml, merge
    from tbptt.train.run import RunFolder, run_dir_of

    names = {f.name for f in fields(RunConfig)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    if "rule_options" in flags:
        flags["rule_options"] = dict(flags["rule_options"])
    if "corpus" in flags:
        flags["corpus"] = _resolve_corpus(flags["corpus"])
    toml = load_toml(args.config) if args.config else {}
    if "corpus" in toml:
        toml["corpus"] = _resolve_corpus(str(toml["corpus"]))
    ckpt: Path | None = None
    if args.resume:
        given = Path(args.resume)
        if given.is_file():  # a checkpoint file: read it before touching its folder
            ckpt = latest_checkpoint(given)
            payload = load_checkpoint(ckpt)
            run = RunFolder.open(run_dir_of(ckpt))
        else:
            run = RunFolder.open(given)
            ckpt = run.latest()
            payload = load_checkpoint(ckpt)
        run.check_owner(payload, ckpt)
        saved = payload.get("config") or {}
        base = RunConfig(**{k: v for k, v in saved.items() if k in names})
    else:
        data = flags.get("data") or toml.get("data")
        task = flags.get("task") or toml.get("task") or ("auto" if data else "text")
        base = RunConfig(task=task)
    cfg = merge(merge(base, toml, f"config file {args.config}"), flags, "flags")
    if ckpt is None and cfg.task == "series":  # the built-in series go through the data door
        from tbptt.tabular.dataset import builtin_series_config

        cfg = builtin_series_config(cfg)
    if ckpt is None and cfg.data is not None:  # sizes, lengths, budget chosen from the data
        from tbptt.tabular.dataset import data_defaults, resolve_data

        cfg = data_defaults(merge(cfg, {"data": resolve_data(cfg.data)}))
    cfg = cfg.resolved()
    if ckpt is not None:
        diff = _config_diff(saved, cfg.to_dict(), Trainer.resume_may_change)
        if diff:
            raise CheckpointError(
                f"checkpoint {str(ckpt)!r} was saved by a run with other settings: "
                + ", ".join(diff)
                + ". Resume with the same settings (drop those flags), or start a new run."
            )
        return cfg, ckpt, run
    if cfg.task == "text" and cfg.corpus == "auto":  # save what "auto" chose
        from tbptt.datasets import default_corpus

        cfg = merge(cfg, {"corpus": default_corpus()})
    if cfg.name is None:
        cfg = merge(cfg, {"name": f"{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"})
    return cfg, None, Path(cfg.runs_dir) / str(cfg.name)


def _seed_and_threads(cfg: Any) -> Any:
    """The device; torch's threads (half the cores on a CPU by default: torch's threads
    busy-wait, and on a shared machine every core is often slower than half) and the seeds."""
    import numpy as np
    import torch

    from tbptt.train.loop import resolve_device

    device = resolve_device(cfg.device)
    threads = cfg.threads or (max(1, (os.cpu_count() or 2) // 2) if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    return device


def _prepare_run(cfg: Any, ckpt: Path | None, run: Any, device: Any) -> tuple[Any, Any, Any]:
    """Load the data, build the model and the trainer, check the memory, then claim the run
    folder (a new run) or take its lock (a resumed one). Nothing is written before the last
    step, so bad options never leave a folder behind."""
    from tbptt.train.config import to_toml
    from tbptt.train.jobs import build_job, build_rule
    from tbptt.train.memory import check_fits
    from tbptt.train.run import RunFolder

    job = build_job(cfg)
    rule, rule_engine_options = build_rule(cfg)
    vocab = set(job.extra.get("vocab", ""))
    if cfg.task == "text" and cfg.prompt != "\n" and not set(cfg.prompt) <= vocab:
        raise ValueError(  # the default prompt falls back to the corpus's first character
            f"--prompt {cfg.prompt!r} has characters the corpus does not: "
            f"{sorted(set(cfg.prompt) - vocab)!r}. Use characters of the training corpus."
        )
    check_fits(job.model, int(cfg.batch_size), _steps_kept(cfg, job), device)
    engine_options: dict[str, Any] = {**job.engine_options, **rule_engine_options}
    ac = cfg.activation_checkpointing
    if ac is not None:
        engine_options["checkpoint"] = "sqrt" if ac == "sqrt" else int(ac)
    if ckpt is None:  # a new run: claim its folder (exactly one of two racing processes wins)
        run = RunFolder.claim(run)
        run.write_config(cfg.to_dict(), to_toml(cfg))
    try:
        trainer = _make_trainer(cfg, job, rule, engine_options, run)
    except BaseException:
        if ckpt is None:
            run.discard()
        raise
    return job, trainer, run


def _steps_kept(cfg: Any, job: Any) -> int:
    """Steps whose activations one backward keeps (per row), for the memory check."""
    import math

    if cfg.rule != "bptt":
        return max(int(cfg.k1), int(cfg.k2)) + int(cfg.chunk_len)
    steps = int(getattr(job.train, "steps_per_row", cfg.chunk_len))
    ac = cfg.activation_checkpointing
    if ac == "sqrt":
        return 2 * math.isqrt(steps) + 1
    return steps if ac is None else int(ac) + steps // int(ac)


def _make_trainer(cfg: Any, job: Any, rule: Any, engine_options: dict[str, Any], run: Any) -> Any:
    import warnings

    import torch

    from tbptt.train import Trainer

    optimizer: torch.optim.Optimizer | None = None
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            job.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(
            job.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(
            job.model,
            job.loss_fn,
            rule,
            optimizer=optimizer,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            schedule=cfg.schedule,
            warmup=cfg.warmup,
            min_lr_ratio=cfg.min_lr_ratio,
            clip=cfg.clip or None,
            amp=cfg.amp,
            device=cfg.device,
            mode=cfg.mode,
            engine_options=engine_options,
            metrics=job.metrics,
            run_dir=run,
            checkpoint_every=cfg.checkpoint_every,
            keep_checkpoints=cfg.keep_checkpoints,
            keep_best=True,
            patience=cfg.patience,
            max_nonfinite=cfg.max_nonfinite,
            log_every=cfg.log_every,
            progress={"auto": None, "on": True, "off": False}[cfg.progress],
            tensorboard={"auto": None, "on": True, "off": False}[cfg.tensorboard],
            config=cfg.to_dict(),
            extra=job.extra,
        )
    for w in caught:  # one line each (--amp fp16 on a CPU), not Python's warning with its source
        print(f"tbptt: warning: {w.message}", file=sys.stderr)
    return trainer


def _log_start(trainer: Any, job: Any, cfg: Any, run: Any, resumed: bool) -> dict[str, Any]:
    """The opening lines (folder, data, model, truncation); the summary's first entries."""
    import torch

    n_params = sum(p.numel() for p in job.model.parameters())
    model_desc = (
        f"{cfg.cell.upper()} {cfg.layers}x{cfg.hidden}"
        + (f", embedding {cfg.embed}" if cfg.task == "text" else "")
        + f", {n_params:,} parameters on {trainer.device}"
        + (f" ({torch.get_num_threads()} threads)" if trainer.device.type == "cpu" else "")
    )
    budget = ", ".join(
        f"{k} {v}"
        for k, v in (("updates", cfg.updates), ("minutes", cfg.minutes), ("epochs", cfg.epochs))
        if v is not None
    )
    log = trainer.progress.message
    log(f"run folder: {run.path}" + (" (resumed)" if resumed else "") + f", run {run.run_id[:8]}")
    log(f"data: {job.description['data']}")
    log(f"model: {model_desc}")
    log(
        f"truncation: {trainer.rule!r}, mode={cfg.mode}, batch {cfg.batch_size} rows x "
        f"{cfg.chunk_len} steps per chunk; {cfg.optimizer} lr {cfg.lr} {cfg.schedule}; "
        f"budget: {budget}"
    )
    return {
        "run_id": run.run_id,
        "config": cfg.to_dict(),
        "data": job.description["data"],
        "model": model_desc,
        "baselines": job.baselines,
    }


def _after_training(
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
        },
        train=result.train,
        val=result.val,
        engine=trainer.engine.stats,  # which fast paths ran, and why runs were split
    )
    if cfg.task == "text":
        text = _sample(trainer.model, job.extra["vocab"], cfg)
        (run_dir / "sample.txt").write_text(text, encoding="utf-8")
        summary["verdict"] = _text_verdict(result.val, job.baselines)
    elif cfg.data is not None:
        from tbptt.tabular.commands import after_training

        summary["verdict"] = after_training(trainer.model, cfg, job.extra, run_dir, summary)
    else:
        summary["verdict"] = _series_verdict(result.val, job.baselines, cfg.series)
        _write_predictions(trainer.model, cfg, job.extra, run_dir)
    _finish_report(run_dir, cfg, summary)
    print(summary["verdict"])
    if cfg.task == "text":
        print(f"sample (temperature {cfg.temperature}):\n{text}")
    print(f"report: tbptt report {run_dir}")
    return 0


def _text_verdict(val: dict[str, float] | None, base: dict[str, float]) -> str:
    if not val:
        return "no validation data"
    bpc, uni = val["bpc"], base["unigram_bpc"]
    return (
        f"validation: {bpc:.3f} bits per char (perplexity {val['ppl']:.2f}); unigram baseline "
        f"{uni:.3f} bits per char; the model needs {bpc / uni:.0%} of the baseline's bits "
        f"({1 - bpc / uni:.0%} fewer)"
    )


def _series_verdict(val: dict[str, float] | None, base: dict[str, float], name: str) -> str:
    if not val:
        return "no validation data"
    return (
        f"validation ({name}, one step ahead): RMSE {val['rmse']:.4g}, MAE {val['mae']:.4g} | "
        f"naive (last value): RMSE {base['naive_rmse']:.4g}, MAE {base['naive_mae']:.4g} | "
        f"seasonal naive: RMSE {base['seasonal_naive_rmse']:.4g}, "
        f"MAE {base['seasonal_naive_mae']:.4g}"
    )


def _finish_report(run_dir: Path, cfg: Any, summary: dict[str, Any]) -> None:
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


def _sample(model: Any, vocab: str, cfg: Any, prompt: str | None = None, chars: int = 0) -> str:
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


def _write_predictions(
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


# -- generate / predict / report -----------------------------------------------------------------


def _load_run(path: str) -> tuple[Any, Any, dict[str, Any], Path]:
    """(model, config, extra, run folder) from a run folder or checkpoint file."""
    from tbptt.train.checkpoint import latest_checkpoint, load_checkpoint
    from tbptt.train.config import RunConfig
    from tbptt.train.jobs import build_model

    if Path(path).is_dir():  # a run folder: its best checkpoint by validation, else the newest
        from tbptt.train.run import RunFolder

        ckpt = RunFolder.read(path).model_checkpoint()
    else:
        ckpt = latest_checkpoint(path)
    payload = load_checkpoint(ckpt)
    names = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in (payload.get("config") or {}).items() if k in names})
    extra = payload.get("extra") or {}
    model = build_model(cfg, extra)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, cfg, extra, _run_dir_of_checkpoint(ckpt)


def generate_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="sample text from a trained character model",
        description="Sample text from the newest checkpoint of a text run.",
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME) or checkpoint file")
    p.add_argument("--prompt", default="\n", help="text to start from (default: a newline)")
    p.add_argument("--chars", type=int, default=600, help="characters to generate (default 600)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    p.set_defaults(command=generate_command)
    return p


def generate_command(args: argparse.Namespace) -> int:
    from tbptt.train.checkpoint import CheckpointError

    try:
        model, cfg, extra, _ = _load_run(args.run)
        if cfg.task != "text":
            raise ValueError(f"{args.run} is a {cfg.task} run; use `tbptt predict` for series.")
        if args.chars < 1 or args.temperature <= 0:
            raise ValueError(
                f"--chars must be >= 1 and --temperature > 0, got {args.chars} and "
                f"{args.temperature}."
            )
        cfg.seed, cfg.temperature = args.seed, args.temperature
        print(_sample(model, extra["vocab"], cfg, prompt=args.prompt, chars=args.chars))
    except (CheckpointError, ValueError) as e:
        _err(str(e))
        return 2
    return 0


def predict_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="one-step predictions and a forecast from a trained series model",
        description=(
            "Run the newest checkpoint of a series run over its series (state carried from the "
            "start), print its validation errors next to the naive baselines and a forecast, "
            "and write predictions.csv / predictions.png to the run folder."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME) or checkpoint file")
    p.add_argument("--horizon", type=int, default=0, help="forecast steps (default: 2 seasons)")
    p.add_argument(
        "--data",
        metavar="FILE",
        help="runs trained with --data: the file to predict (default: the run's own file)",
    )
    p.add_argument(
        "--out",
        metavar="OUT.csv",
        help="runs trained with --data: where to write the predictions (default: RUN/predictions.csv)",
    )
    p.set_defaults(command=predict_command)
    return p


def predict_command(args: argparse.Namespace) -> int:
    import numpy as np

    from tbptt.datasets import load_series
    from tbptt.train.checkpoint import CheckpointError
    from tbptt.train.jobs import series_baselines, series_predictions

    try:
        model, cfg, extra, run_dir = _load_run(args.run)
        if cfg.data is not None:
            from tbptt.tabular.commands import predict_run

            if args.horizon < 0:
                raise ValueError(f"--horizon must be >= 0, got {args.horizon}.")
            print(predict_run(model, cfg, extra, run_dir, args.data, args.out, args.horizon))
            return 0
        if cfg.task != "series":
            raise ValueError(f"{args.run} is a {cfg.task} run; use `tbptt generate` for text.")
        if args.horizon < 0:
            raise ValueError(f"--horizon must be >= 0, got {args.horizon}.")
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        _err(str(e))
        return 2
    horizon = args.horizon or int(extra.get("season", 12)) * 2
    pred = series_predictions(model, cfg, extra, horizon=horizon)
    n_train = int(extra["n_train"])
    err = pred["values"][n_train:] - pred["one_step"][n_train:]
    base = series_baselines(load_series(cfg.series), n_train)
    print(
        _series_verdict(
            {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))},
            base,
            cfg.series,
        )
    )
    print(f"forecast ({horizon} steps): " + " ".join(f"{v:.4g}" for v in pred["forecast"]))
    _write_predictions(model, cfg, extra, run_dir, horizon)
    print(f"wrote {run_dir / 'predictions.csv'} and {run_dir / 'predictions.png'}")
    return 0


def report_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="summarise a run folder",
        description="Print a summary of a run folder (config, results, baselines, files).",
    )
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME)")
    p.add_argument("--json", action="store_true", help="print summary.json instead")
    p.set_defaults(command=report_command)
    return p


def report_command(args: argparse.Namespace) -> int:
    from tbptt.train.report import summarize

    run = Path(args.run)
    try:
        if args.json:
            path = run / "summary.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist (the run has not finished).")
            print(path.read_text(encoding="utf-8"), end="")
        else:
            print(summarize(run))
    except FileNotFoundError as e:
        _err(str(e))
        return 2
    return 0


# -- main ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tbptt`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tbptt",
        description=(
            "Train recurrent networks with exact truncated backpropagation through time "
            "(TBPTT(k1, k2), full BPTT, stateful streams)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from tbptt import __version__

    parser.add_argument("--version", action="version", version=f"tbptt {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for make in (train_parser, generate_parser, predict_parser, report_parser):
        make(sub)
    add_diagnostics_commands(sub)  # suggest, sweep, bias, explain
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tbptt`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    try:
        return int(args.command(args))
    except KeyboardInterrupt:
        print("tbptt: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

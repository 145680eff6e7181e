"""The ``tbptt train`` command: parse the options (task defaults < saved run < ``--config`` <
flags), prepare the run (data and model, memory check, the run folder claimed), train with
:class:`~tbptt.train.Trainer`, then report (:mod:`tbptt.train.finish`). User docs:
``docs/cli.md``."""

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

from tbptt.train.finish import after_training, finish_report

__all__ = ["print_error", "steps_kept", "train_command", "train_parser"]


TRAIN_EXAMPLES = """\
examples:
  tbptt train                                  # char-level LSTM on Shakespeare, ~2 minutes
  tbptt train --minutes 10 --hidden 512        # longer, bigger
  tbptt train --k1 32 --k2 96 --mode recompute # decoupled TBPTT(k1, k2)
  tbptt train --task series                    # yearly sunspots vs naive baselines
  tbptt train --data my.csv --target y --id store --time date   # your own sequences
  tbptt train --cell mingru --rule online --k1 50              # exact online gradients
  tbptt train --config run.toml --lr 1e-3      # a TOML file; flags override it
  tbptt train --resume runs/text-20250101-120000
"""


def print_error(msg: str) -> None:
    """The one line every command prints for bad input: ``tbptt: error: ...``."""
    print(f"tbptt: error: {msg}", file=sys.stderr)


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
        epilog=TRAIN_EXAMPLES,
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
    from tbptt.train import CheckpointError

    try:
        cfg, ckpt, run, digest = _train_config(args)
        device = _seed_and_threads(cfg)
        job, trainer, run = _prepare_run(cfg, ckpt, run, device, digest)
    except (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, CheckpointError) as e:
        print_error(str(e))
        return 2
    try:  # the run folder's lock is let go however training ends
        return _fit_and_finish(trainer, job, cfg, ckpt, run)
    finally:
        run.release()


def _fit_and_finish(trainer: Any, job: Any, cfg: Any, ckpt: Any, run: Any) -> int:
    """Train, then write the report; the exit code (a clear line for each way it can stop)."""
    from tbptt.train import CheckpointError, NonFiniteError, TrainingInterrupted
    from tbptt.train.checkpoint import CheckpointWriteError

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
        finish_report(run.path, cfg, {**summary, "status": f"interrupted: {e.args[0]}"})
        return 130
    except NonFiniteError as e:
        print_error(str(e))
        finish_report(run.path, cfg, {**summary, "status": f"stopped: {e}"})
        return 1
    except CheckpointWriteError as e:  # a full disk: not bad input, and nothing is lost
        print_error(e.explain(f"then resume with: tbptt train --resume {run.path}"))
        return 1
    except CheckpointError as e:
        print_error(str(e))
        return 2
    except torch_out_of_memory() as e:
        print_error(
            f"out of memory at update {trainer.counters.updates} ({_first_line(e)}). {_OOM_FIX}"
        )
        if not run.checkpoints():
            run.discard()
        return 2
    try:
        return after_training(trainer, job, cfg, run.path, summary, result, t_start)
    except OSError as e:  # a full disk while writing the report: the checkpoints are written
        named = isinstance(e.filename, str)
        where, what = (
            (Path(e.filename), "the report file") if named else (run.path, "the report in")
        )
        failed = CheckpointWriteError(where, e, what=what)
        print_error(failed.explain(f"then write it again with: tbptt train --resume {run.path}"))
        return 1
    except KeyboardInterrupt:
        print(
            f"tbptt: interrupted after training; the final checkpoint is {result.checkpoint}.",
            file=sys.stderr,
        )
        return 130


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


def _train_config(args: argparse.Namespace) -> tuple[Any, Path | None, Any, str | None]:
    """The run's configuration (task defaults < saved run < --config < flags), the checkpoint
    to resume from, the run (its opened, locked :class:`RunFolder` when resuming, else the
    path of the folder to claim) and the digest of the data file the checkpoint trained on."""
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
        return cfg, ckpt, run, (payload.get("extra") or {}).get("data_digest")
    if cfg.task == "text" and cfg.corpus == "auto":  # save what "auto" chose
        from tbptt.datasets import default_corpus

        cfg = merge(cfg, {"corpus": default_corpus()})
    if cfg.name is None:
        cfg = merge(cfg, {"name": f"{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"})
    return cfg, None, Path(cfg.runs_dir) / str(cfg.name), None


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


def _prepare_run(
    cfg: Any, ckpt: Path | None, run: Any, device: Any, digest: str | None = None
) -> tuple[Any, Any, Any]:
    """Load the data (for a resumed run: the file whose ``digest`` the checkpoint saved),
    build the model and the trainer, check the memory, then claim the run folder (a new run)
    or take its lock (a resumed one). Nothing is written before the last step, so bad options
    never leave a folder behind."""
    from tbptt.train.config import to_toml
    from tbptt.train.jobs import build_job, build_rule
    from tbptt.train.memory import check_fits
    from tbptt.train.run import RunFolder

    job = build_job(cfg)
    if ckpt is not None:
        _check_same_data(job, digest, ckpt, cfg)
    rule, rule_engine_options = build_rule(cfg)
    vocab = set(job.extra.get("vocab", ""))
    if cfg.task == "text" and cfg.prompt != "\n" and not set(cfg.prompt) <= vocab:
        raise ValueError(  # the default prompt falls back to the corpus's first character
            f"--prompt {cfg.prompt!r} has characters the corpus does not: "
            f"{sorted(set(cfg.prompt) - vocab)!r}. Use characters of the training corpus."
        )
    check_fits(job.model, int(cfg.batch_size), steps_kept(cfg, job), device)
    warn_long_k1(cfg, job, [int(cfg.k1)], "--k1")
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


def _check_same_data(job: Any, saved: str | None, ckpt: Path, cfg: Any) -> None:
    """A resumed ``--data`` run trains on the file it started with: a changed file (another
    digest than the ``saved`` one of its checkpoint) is refused, as resuming would mix two
    data sets."""
    from tbptt.train.checkpoint import CheckpointError

    now = job.extra.get("data_digest")
    if now is not None and saved is not None and now != saved:
        run_dir = str(_run_dir_of_checkpoint(ckpt))
        raise CheckpointError(
            f"--data {cfg.data!r} has changed since run {run_dir!r} started (its bytes differ "
            "from the file it trained on); resuming would mix two data sets. Restore that file, "
            "or start a new run (another --name) on the new one."
        )


def warn_long_k1(cfg: Any, job: Any, k1s: list[int], flag: str) -> None:
    """Print one warning line when forward lengths ``k1s`` (given with ``flag``) are longer
    than each of the job's training rows: those updates are full BPTT over a row, not
    truncated (``tbptt train --k1``, ``tbptt sweep --lengths/--k1s``)."""
    steps = getattr(job.train, "steps_per_row", None)
    if cfg.rule == "bptt" or steps is None:
        return
    row = int(steps)
    long = sorted({k for k in k1s if k > row})
    if not long:
        return
    many = len(long) > 1
    what = (
        f"{flag} {','.join(map(str, long))} are" if many else f"{flag} {long[0]} is"
    ) + f" longer than each of the {cfg.batch_size} rows ({row:,} steps)"
    print(
        f"tbptt: warning: {what}: every update {'of those ' if many else ''}is full BPTT over "
        f"a row. Lower {flag} (or --batch-size, for longer rows) for truncated updates.",
        file=sys.stderr,
    )


def steps_kept(cfg: Any, job: Any) -> int:
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
        + (f", an ensemble of {cfg.members}" if (cfg.members or 1) > 1 else "")
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

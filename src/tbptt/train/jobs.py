"""What ``tbptt train`` trains: the data, model, loss and metrics a :class:`RunConfig` asks for.

- ``text``: a character-level language model (:class:`~tbptt.models.CharRNN`) on a corpus cut
  into documents; the last ``val_fraction`` of every document is held out. Training uses the
  language-model layout (:class:`tbptt.data.TokenBatcher`: B contiguous rows, a reset at each
  document's start). Baseline: the unigram entropy of the training characters, in bits.
- ``series``: a next-step forecaster (:class:`~tbptt.models.SeriesRNN`) on a standardised series;
  the last ``val_fraction`` of the series is held out, and evaluated with the state carried over
  the whole series (the training part warms the state up, only validation targets count).
  Baselines: naive (the last value) and seasonal naive (the value one season back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tbptt import losses
from tbptt.chunk import Chunk
from tbptt.data import TokenBatcher
from tbptt.datasets import Series, load_series, load_text, unigram_entropy_bits
from tbptt.models import CharRNN, SeriesRNN
from tbptt.online import Online
from tbptt.train.config import DATA_TASKS, RunConfig
from tbptt.train.metrics import Metrics, SeriesMetrics, TokenMetrics
from tbptt.truncation import BPTT, TBPTT, TruncationRule

__all__ = ["Job", "build_job", "build_model", "build_rule", "series_predictions"]


@dataclass
class Job:
    """A ready-to-train task."""

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    metrics: Metrics
    train: Any  # a re-iterable stream of Chunks with state_dict (a tbptt.data batcher)
    val: Any  # an iterable of Chunks
    extra: dict[str, Any]  # saved in checkpoints: vocabulary, normalisation
    baselines: dict[str, float] = field(default_factory=dict)
    description: dict[str, str] = field(default_factory=dict)
    engine_options: dict[str, Any] = field(default_factory=dict)


def build_rule(cfg: RunConfig) -> tuple[TruncationRule, dict[str, Any]]:
    """The truncation rule and the engine options it needs.

    ``artbp`` and ``variable`` are the hook for the estimators (ARTBP, Tallec & Ollivier 2017;
    variable-length BPTT, Merity et al. 2018): they are looked up as ``tbptt.ARTBP`` /
    ``tbptt.VariableLength`` (or in ``tbptt.truncation``) and built with ``rule_options``.
    """
    opts = dict(cfg.rule_options or {})
    if cfg.rule == "tbptt":
        assert cfg.k1 is not None
        return TBPTT(cfg.k1, cfg.k2), {}
    if cfg.rule == "bptt":
        return BPTT(), {}
    if cfg.rule == "online":
        assert cfg.k1 is not None
        if cfg.cell not in ("mingru", "lru"):
            raise ValueError(
                f"rule='online' (exact online gradients) needs cell 'mingru' or 'lru', got "
                f"cell={cfg.cell!r}. Pass --cell mingru (or lru), or use --rule tbptt."
            )
        if cfg.k2 not in (None, cfg.k1):
            raise ValueError(
                f"rule='online' reaches the whole past, so it takes no k2, got k2={cfg.k2!r}. "
                "Leave --k2 out."
            )
        return Online(cfg.k1), {}
    import tbptt
    import tbptt.truncation as trunc

    name = {"artbp": "ARTBP", "variable": "VariableLength"}[cfg.rule]
    cls = getattr(tbptt, name, None) or getattr(trunc, name, None)
    if cls is None:
        raise ValueError(
            f"rule={cfg.rule!r} needs tbptt.{name}, which this installation does not have yet. "
            "Use rule='tbptt' or 'bptt', or update tbptt."
        )
    if cfg.rule == "variable":
        opts.setdefault("bptt", cfg.k1)
    opts.setdefault("seed", cfg.seed)
    try:
        rule = cls(**opts)
    except (TypeError, ValueError) as e:
        raise ValueError(f"rule_options={opts!r} do not fit {name}: {e}") from e
    # an unbiased estimator (ARTBP) is unbiased for the sum of its chunk's losses
    engine_options = {"reduction": "sum"} if getattr(rule, "needs_sum_reduction", False) else {}
    return rule, engine_options


def build_model(cfg: RunConfig, extra: dict[str, Any]) -> nn.Module:
    """The model of a run (also used to rebuild it from a checkpoint's config and extra)."""
    assert cfg.hidden is not None
    if cfg.task in DATA_TASKS:
        from tbptt.tabular.job import build_data_model

        return build_data_model(cfg, extra)
    if cfg.task == "text":
        return CharRNN(
            len(extra["vocab"]),
            embed=cfg.embed,
            hidden=cfg.hidden,
            layers=cfg.layers,
            cell=cfg.cell,
            dropout=cfg.dropout,
        )
    return SeriesRNN(1, hidden=cfg.hidden, layers=cfg.layers, cell=cfg.cell, dropout=cfg.dropout)


def build_job(cfg: RunConfig) -> Job:
    """Load the data and build everything ``cfg`` describes (seed torch first)."""
    if cfg.task in DATA_TASKS:  # --data FILE: tbptt.tabular owns these
        from tbptt.tabular.job import build_data_job

        return build_data_job(cfg)
    return _text_job(cfg) if cfg.task == "text" else _series_job(cfg)


def _split_docs(docs: list[str], fraction: float) -> tuple[list[str], list[str]]:
    train, val = [], []
    for d in docs:
        k = max(1, round(len(d) * fraction)) if len(d) > 1 else 0
        train.append(d[: len(d) - k])
        val.append(d[len(d) - k :])
    return [d for d in train if d], [d for d in val if d]


def _encode(docs: list[str], stoi: dict[str, int]) -> tuple[Tensor, list[int]]:
    starts, pos = [], 0
    for d in docs:
        starts.append(pos)
        pos += len(d)
    ids = np.fromiter((stoi[ch] for d in docs for ch in d), dtype=np.int64, count=pos)
    return torch.from_numpy(ids), starts


def _text_job(cfg: RunConfig) -> Job:
    assert cfg.val_fraction is not None and cfg.batch_size is not None
    assert cfg.chunk_len is not None
    text = load_text(cfg.corpus)
    train_docs, val_docs = _split_docs(text.docs, cfg.val_fraction)
    vocab = "".join(sorted(set("".join(text.docs))))
    stoi = {ch: i for i, ch in enumerate(vocab)}
    train_ids, train_starts = _encode(train_docs, stoi)
    val_ids, val_starts = _encode(val_docs, stoi)
    unigram = unigram_entropy_bits("".join(train_docs))
    train = TokenBatcher(
        train_ids,
        batch_size=cfg.batch_size,
        chunk_len=cfg.chunk_len,
        doc_starts=train_starts,
        shuffle=cfg.shuffle and len(train_starts) > 1,
        seed=cfg.seed,
    )
    val_rows = max(1, min(cfg.batch_size, (len(val_ids) - 1) // 256))
    val = TokenBatcher(val_ids, batch_size=val_rows, chunk_len=256, doc_starts=val_starts)
    extra = {"vocab": vocab}
    return Job(
        model=build_model(cfg, extra),
        loss_fn=losses.cross_entropy,
        metrics=TokenMetrics(),
        train=train,
        val=val,
        extra=extra,
        baselines={"unigram_bpc": unigram},
        description={
            "data": f"{text.source}: {len(train_ids):,} training and {len(val_ids):,} "
            f"validation characters, vocabulary {len(vocab)}",
        },
    )


def _series_job(cfg: RunConfig) -> Job:
    assert cfg.val_fraction is not None and cfg.batch_size is not None
    assert cfg.chunk_len is not None
    s = load_series(cfg.series)
    v = s.values
    n_val = max(2, round(len(v) * cfg.val_fraction))
    n_train = len(v) - n_val
    mean, std = float(v[:n_train].mean()), float(v[:n_train].std())
    z = torch.from_numpy((v - mean) / std).to(torch.get_default_dtype()).unsqueeze(-1)  # (T, 1)
    train = TokenBatcher(z[:n_train], batch_size=cfg.batch_size, chunk_len=cfg.chunk_len)
    # validation: the whole series in one row, state carried; only validation targets count
    x, y = z[:-1].unsqueeze(0), z[1:].unsqueeze(0)  # (1, T-1, 1)
    mask = (torch.arange(1, len(v)) >= n_train).unsqueeze(0)  # target index >= n_train
    val = [
        Chunk(x[:, a : a + 64], y[:, a : a + 64], None, mask[:, a : a + 64])
        for a in range(0, x.shape[1], 64)
    ]
    extra = {
        "mean": mean,
        "std": std,
        "n_train": n_train,
        "season": s.season,
        "start": s.start,
        "step_unit": s.step_unit,
        "unit": s.unit,
    }
    return Job(
        model=build_model(cfg, extra),
        loss_fn=losses.mse,
        metrics=SeriesMetrics(std),
        train=train,
        val=val,
        extra=extra,
        baselines=series_baselines(s, n_train),
        description={
            "data": f"{s.source}: {n_train} training and {n_val} validation steps (unit: {s.unit})",
        },
    )


def series_baselines(s: Series, n_train: int) -> dict[str, float]:
    """Errors on the validation targets ``values[n_train:]`` of the naive forecast (the previous
    value) and the seasonal-naive one (the value ``season`` steps back), in the data's units."""
    v = s.values
    t = np.arange(n_train, len(v))
    out = {}
    for name, pred in (("naive", v[t - 1]), ("seasonal_naive", v[t - s.season])):
        err = v[t] - pred
        out[f"{name}_mse"] = float(np.mean(err**2))
        out[f"{name}_rmse"] = float(math.sqrt(np.mean(err**2)))
        out[f"{name}_mae"] = float(np.mean(np.abs(err)))
    return out


@torch.no_grad()
def series_predictions(
    model: nn.Module, cfg: RunConfig, extra: dict[str, Any], horizon: int = 0
) -> dict[str, np.ndarray]:
    """One-step-ahead predictions over the whole series (state carried from its start) and a
    free-running forecast of ``horizon`` steps past its end, in the data's units.

    Returns ``values`` (T,), ``one_step`` (T,) (``one_step[t]`` predicts ``values[t]``, NaN at 0)
    and ``forecast`` (horizon,).
    """
    s = load_series(cfg.series)
    mean, std = extra["mean"], extra["std"]
    p = next(model.parameters())
    z = torch.from_numpy((s.values - mean) / std).view(1, -1, 1).to(p.device, p.dtype)
    was = model.training
    model.eval()
    y, state = model(z, None)  # (1, T, 1): y[t] predicts z[t+1]
    one_step = np.full(len(s.values), np.nan)
    one_step[1:] = y[0, :-1, 0].cpu().double().numpy() * std + mean
    forecast = []
    nxt = y[:, -1:]
    for _ in range(horizon):
        forecast.append(float(nxt[0, 0, 0]) * std + mean)
        nxt, state = model(nxt, state)
    model.train(was)
    return {"values": s.values, "one_step": one_step, "forecast": np.asarray(forecast)}

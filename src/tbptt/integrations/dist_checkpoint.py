"""Checkpoints of a data-parallel run: one file per rank, written and read on every rank.

Each rank writes ``directory/rank{r:05d}-of-{world:05d}.pt`` with the model, the optimizer, its
engine's stream (carried state, retained window) and its data position. A file per rank needs no
gathering and no shared file system: on several machines each rank's file stays on the machine
that runs that rank.

The ranks must continue from the *same* point, or their replicas diverge silently. So every file
carries the run's identity (``run_id``, drawn by rank 0 and shared), the update count and the
stream position of its engine, and a digest of the configuration (the model's parameter shapes,
the truncation rule, the mode and the caller's ``config``). Saving and loading both compare these
across the ranks; if any rank differs, every rank raises the same ``ValueError`` naming each
rank's values, before anything is written or trained. Files are written as the single-process
trainer writes its checkpoints: a temporary file, fsync, rename, fsync of the folder.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
import uuid
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tbptt.data.base import ChunkStream
from tbptt.engine import Engine
from tbptt.integrations.distributed import (
    DistributedEngine,
    Group,
    _check_saved_world,
    _world,
    check_sharding,
)
from tbptt.train.checkpoint import fsync_dir

__all__ = ["load_checkpoint", "save_checkpoint"]

_FILE = "rank{rank:05d}-of-{world:05d}.pt"
_FILE_RE = re.compile(r"rank(\d{5})-of-(\d{5})\.pt$")


def _digest(model: nn.Module, inner: Engine, config: dict[str, Any] | None) -> str:
    """A short hash of what must be the same on every rank and across a resume."""
    described = {
        "params": [(n, list(p.shape)) for n, p in model.named_parameters()],
        "rule": repr(inner.rule),
        "mode": inner.mode,
        "config": config or {},
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _agree(fields: dict[str, Any], what: str, fix: str, group: Group) -> None:
    """Every rank holds the same ``fields``, or every rank raises the same ``ValueError``."""
    _, world = _world(group)
    if world == 1:
        return
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, fields, group=group)
    if all(g == gathered[0] for g in gathered):
        return
    differ = sorted({k for g in gathered for k in g if g.get(k) != gathered[0].get(k)})
    detail = "; ".join(
        f"rank {r}: " + ", ".join(f"{k}={g.get(k)!r}" for k in differ)
        for r, g in enumerate(gathered)
    )
    raise ValueError(f"{what}: the ranks disagree on {', '.join(differ)} ({detail}). {fix}")


def _shared_run_id(directory: str, rank: int, world: int, group: Group) -> str:
    """The run's identity: the one already in ``directory`` (rank 0's file), else a new one;
    rank 0 decides and every rank gets its answer."""
    run_id = None
    if rank == 0:
        previous = os.path.join(directory, _FILE.format(rank=0, world=world))
        if os.path.exists(previous):
            try:
                run_id = torch.load(previous, map_location="cpu", weights_only=True).get("run_id")
            except Exception:
                run_id = None  # unreadable: the new checkpoint starts a new identity
        run_id = run_id or uuid.uuid4().hex
    if world == 1:
        assert run_id is not None
        return run_id
    box = [run_id]
    dist.broadcast_object_list(box, src=0, group=group)
    return str(box[0])


def _write_atomic(payload: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(path)
    for orphan in glob.glob(f"{path}.*.tmp"):  # a killed earlier save of this rank
        os.unlink(orphan)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # never a half-written checkpoint under the real name
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def save_checkpoint(
    directory: str | os.PathLike[str],
    *,
    model: nn.Module,
    engine: Engine | DistributedEngine,
    optimizer: torch.optim.Optimizer | None = None,
    data: ChunkStream | None = None,
    extra: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    group: Group = None,
) -> str:
    """Save every rank's training state; call it on every rank at the same update.

    Refuses (on every rank, before writing) when the ranks are not at the same update and stream
    position. ``config``: plain data describing the run (learning rate, ...); a resume must
    pass the same. Returns this rank's file name. Ends with a barrier, so the checkpoint is
    complete on return.
    """
    rank, world = _world(group)
    if data is not None:
        check_sharding(data, group=group)
    inner = engine.engine if isinstance(engine, DistributedEngine) else engine
    if not isinstance(inner, Engine):
        raise TypeError(f"engine must be a tbptt.Engine or DistributedEngine, got {engine!r}.")
    point = {"updates": inner.updates_done, "position": inner.position}
    _agree(
        {**point, "config": _digest(model, inner, config)},
        "save_checkpoint",
        "Call it on every rank after the same update, with the same model and config.",
        group,
    )
    folder = os.fspath(directory)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, _FILE.format(rank=rank, world=world))
    payload = {
        "format": 1,
        "run_id": _shared_run_id(folder, rank, world, group),
        **point,
        "config_digest": _digest(model, inner, config),
        "rank": rank,
        "world_size": world,
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "engine": inner.state_dict(),
        "data": None if data is None else data.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "extra": extra,
    }
    _write_atomic(payload, path)
    if world > 1:
        dist.barrier(group=group)
    return path


def _find_file(folder: str, rank: int, world: int, streams: bool) -> str:
    found = sorted(glob.glob(os.path.join(folder, "rank*-of-*.pt")))
    worlds = sorted({int(m.group(2)) for f in found if (m := _FILE_RE.search(f))})
    if not worlds:
        raise FileNotFoundError(
            f"directory: no checkpoint files (rank*-of-*.pt) in {folder!r}. Pass the directory "
            "given to save_checkpoint."
        )
    path = os.path.join(folder, _FILE.format(rank=rank, world=world))
    if os.path.exists(path):
        return path
    if not streams:  # any rank's file has the weights
        return next(f for f in found if _FILE_RE.search(f))
    if world not in worlds:
        _check_saved_world(worlds[0] if len(worlds) == 1 else worlds, world)
    raise FileNotFoundError(
        f"directory: {folder!r} has no file for rank {rank} of {world} "
        f"({os.path.basename(path)}). On several machines, each rank's file is on the "
        "machine that ran that rank: resume with the same --node_rank per machine."
    )


def load_checkpoint(
    directory: str | os.PathLike[str],
    *,
    model: nn.Module,
    engine: Engine | DistributedEngine,
    optimizer: torch.optim.Optimizer | None = None,
    data: ChunkStream | None = None,
    streams: bool = True,
    config: dict[str, Any] | None = None,
    group: Group = None,
) -> dict[str, Any] | None:
    """Restore what :func:`save_checkpoint` saved, on every rank; returns the saved ``extra``.

    The run continues exactly (same updates, same parameters) when resumed with the same world
    size; another world size raises a ``ValueError`` naming both. Before anything is loaded, the
    ranks' files must agree on the run, the update, the stream position and the configuration
    (pass the ``config`` given to :func:`save_checkpoint`); otherwise every rank raises the same
    ``ValueError``. ``streams=False`` loads only the model and optimizer, on any world size, and
    leaves the engine and data at the start of new streams.
    """
    rank, world = _world(group)
    path = _find_file(os.fspath(directory), rank, world, streams)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    saved = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != 1:
        raise ValueError(f"{path!r} is not a file written by tbptt save_checkpoint.")
    inner = engine.engine if isinstance(engine, DistributedEngine) else engine
    fields = {k: saved.get(k) for k in ("run_id", "updates", "position")}
    _agree(
        fields,
        f"load_checkpoint({os.fspath(directory)!r})",
        "The rank files come from different saves: resume from one save_checkpoint call's "
        "files (all ranks' files of the same directory, written together).",
        group,
    )
    digest = saved.get("config_digest")
    if digest is not None and digest != _digest(model, inner, config):
        raise ValueError(
            f"load_checkpoint: {path!r} was saved with another model, truncation rule, mode or "
            "config. Resume with the same settings as the run that saved it."
        )
    _restore(saved, model, inner, optimizer, data, streams, world, group)
    extra: dict[str, Any] | None = saved["extra"]
    return extra


def _restore(
    saved: dict[str, Any],
    model: nn.Module,
    inner: Engine,
    optimizer: torch.optim.Optimizer | None,
    data: ChunkStream | None,
    streams: bool,
    world: int,
    group: Group,
) -> None:
    model.load_state_dict(saved["model"])
    if optimizer is not None:
        if saved["optimizer"] is None:
            raise ValueError(
                "optimizer: the checkpoint has no optimizer state (save_checkpoint was called "
                "without optimizer=). Pass optimizer=None, or save it next time."
            )
        optimizer.load_state_dict(saved["optimizer"])
    if not streams:
        return
    _check_saved_world(saved["world_size"], world)
    inner.load_state_dict(saved["engine"])
    if data is not None:
        check_sharding(data, group=group)
        if saved["data"] is None:
            raise ValueError(
                "data: the checkpoint has no data position (save_checkpoint was called "
                "without data=). Pass data=None, or save it next time."
            )
        data.load_state_dict(saved["data"])
    torch.set_rng_state(saved["rng"].cpu())
    if saved["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in saved["cuda_rng"]])

"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, checked on load.

A checkpoint is a dict of tensors and plain Python (model, optimizer, scheduler, RNG states,
data-stream position, the engine's carried state, the trainer's counters and the config).
Files are named ``step-00000123.pt`` in a run's ``checkpoints/`` folder; writing goes to a
temporary file in the same folder, flushed to disk, then ``os.replace``-d into place and the
folder fsynced, so a crash or a full disk never leaves a half-written checkpoint under a real name
and never touches the previous ones. An existing file is never written over. Which files belong
to a run, and pruning, are the run folder's business (:mod:`tbptt.train.run`).
"""

from __future__ import annotations

import errno
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "CheckpointError",
    "CheckpointWriteError",
    "capture_rng",
    "checkpoint_path",
    "find_checkpoints",
    "fsync_dir",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "step_of",
]

FORMAT = "tbptt-train-checkpoint/1"
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, or does not belong to this run."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (a full disk, a folder without write permission): its
    temporary file is removed, nothing under a checkpoint's name was written or replaced. Also
    an ``OSError``, as the failed write it stands for."""

    def __init__(self, path: Path, error: OSError, what: str = "checkpoint") -> None:
        self.path, self.error, self.what = path, error, what
        super().__init__(self.explain("then resume"))

    def explain(self, then: str) -> str:
        """One line: which file, why, that nothing was lost, the fix and ``then``."""
        e = self.error
        fix = (
            "free space on that disk"
            if e.errno in (errno.ENOSPC, errno.EDQUOT)
            else "make the folder writable"
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
            else "fix the folder"
        )
        return (
            f"could not write {self.what} {str(self.path)!r} ({e.strerror or e}); the "
            f"checkpoints written before are intact. {fix[0].upper()}{fix[1:]}, {then}."
        )


def checkpoint_path(folder: str | Path, updates: int) -> Path:
    """``folder/step-<updates, 8 digits>.pt``."""
    return Path(folder) / f"step-{updates:08d}.pt"


def find_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoints in ``folder``, oldest first (by update count in the name)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(path: str | Path) -> Path:
    """The checkpoint to resume from: ``path`` itself if it is a file, else the newest in
    ``path/checkpoints`` (a run folder) or in ``path`` (a checkpoints folder)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise CheckpointError(
            f"resume={str(path)!r} does not exist. Pass a run folder (runs/NAME) or a "
            "checkpoint file (runs/NAME/checkpoints/step-00000100.pt)."
        )
    if (p / "run.json").is_file():  # a run folder: its own timeline, never a foreign file
        from tbptt.train.run import RunFolder

        return RunFolder.read(p).latest()
    for folder in (p / "checkpoints", p):
        found = find_checkpoints(folder)
        if found:
            return found[-1]
    raise CheckpointError(
        f"resume={str(path)!r} holds no checkpoint (no step-*.pt in {p / 'checkpoints'}). "
        "Start a new run without --resume, or pass the folder of a run that saved one."
    )


def step_of(path: str | Path) -> int | None:
    """The update count in a checkpoint's name (``step-00000123.pt`` -> 123), else ``None``."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without directory fsync
        pass
    finally:
        os.close(fd)


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically and durably. Returns ``path``.

    Refuses (:class:`FileExistsError`) to write over an existing file: a checkpoint, once
    written, is never replaced by other contents.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(
            f"checkpoint {str(path)!r} exists; checkpoints are never written over. Move it "
            "away, or save under another name."
        )
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointWriteError(path, e) from e
        raise
    fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a clear :class:`CheckpointError` if the
    file is unreadable, truncated, or not a tbptt training checkpoint."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.") from None
    except Exception as e:
        mine = step_of(path)
        older = [
            p
            for p in find_checkpoints(path.parent)
            if p != path and (mine is None or (step_of(p) or 0) < mine)
        ]
        good = next((p for p in reversed(older) if _readable(p)), None)
        if good is not None:
            hint = f" The previous checkpoint {str(good)!r} is intact: resume from it with --resume {good}."
        elif older:
            hint = " The older checkpoints of this folder cannot be read either: start a new run."
        else:
            hint = " There is no older checkpoint: start a new run."
        lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
        detail = next((ln.strip() for ln in lines if "WeightsUnpickler error" in ln), None)
        detail = detail or (lines[0] if lines else "no detail")
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or incomplete and cannot be read "
            f"({type(e).__name__}: {detail}).{hint}"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a tbptt training checkpoint (format {got!r}, expected "
            f"{FORMAT!r}). Pass a step-*.pt file written by `tbptt train` or Trainer.fit."
        )
    return payload


def _readable(path: Path) -> bool:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


# -- random number generators ----------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of torch's (CPU and CUDA), Python's and NumPy's global generators, as tensors
    and plain Python (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=False)
    assert isinstance(np_state, dict)
    inner = np_state["state"]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(inner["key"].astype(np.int64)),
            "pos": int(inner["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
    }


def restore_rng(saved: dict[str, Any]) -> None:
    """Put back the generators captured by :func:`capture_rng`."""
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
    py = saved["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = saved["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )

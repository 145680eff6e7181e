"""The run folder: one object owns everything a training run keeps on disk.

A run folder (``runs/NAME``) holds ``run.json`` (the run's identity and its checkpoint
timeline), ``config.json`` / ``config.toml``, ``metrics.jsonl``, ``checkpoints/`` and the reports.
:class:`RunFolder` is the only code that claims, names, prunes or moves these files:

- **Claimed once.** :meth:`RunFolder.claim` creates ``run.json`` with ``O_EXCL``: of two
  processes starting a run in the same folder, exactly one wins; the other gets a
  :class:`RunFolderError`. While a process trains, it holds an exclusive lock on ``.lock``, so a
  second ``--resume`` of the same run is refused too.
- **An identity.** Every run has a ``run_id``, written in ``run.json``, ``config.json`` and every
  checkpoint. Resuming refuses a checkpoint of another run.
- **A timeline, never overwritten.** ``run.json`` lists the run's own checkpoints in order.
  Keep-N pruning removes only files of that list, never a file it does not know. Resuming from
  an older checkpoint moves the newer ones, and the metrics records after it, into
  ``abandoned-N/`` (nothing is deleted), so a new checkpoint never replaces a file of the
  abandoned timeline; no checkpoint file is ever written over.
- **Durable.** Files are written to a temporary name, fsynced, renamed, and the folder is
  fsynced; temporary files left by a killed process are removed when the run is next opened.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp()) / "demo"
>>> run = RunFolder.claim(folder, config={"lr": 0.1})
>>> len(run.run_id), run.checkpoints()
(32, [])
>>> RunFolder.claim(folder)
Traceback (most recent call last):
...
tbptt.train.run.RunFolderError: run folder ... already holds run ...
>>> run.release()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tbptt.train.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    checkpoint_path,
    find_checkpoints,
    fsync_dir,
    save_checkpoint,
    step_of,
)
from tbptt.train.metrics import read_jsonl

__all__ = ["RUN_FILE", "RunFolder", "RunFolderError", "run_dir_of"]

RUN_FILE = "run.json"
_FORMAT = "tbptt-run/1"


class RunFolderError(CheckpointError):
    """A run folder is taken, in use, or does not hold what was asked for."""


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder of a checkpoint file (``RUN/checkpoints/step-*.pt`` -> ``RUN``)."""
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``path/.lock``: the file descriptor, or ``None`` if
    another process holds it. Released when the descriptor is closed or the process ends."""
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


class RunFolder:
    """The files of one training run (see the module docstring). Build it with :meth:`claim`
    (a new run), :meth:`open` (continue a run: locked) or :meth:`read` (look at a run)."""

    def __init__(self, path: Path, meta: dict[str, Any], lock_fd: int | None) -> None:
        self.path = path
        self.meta = meta
        self._lock_fd = lock_fd

    # -- claiming and opening ----------------------------------------------------------------
    @classmethod
    def claim(cls, path: str | Path, config: dict[str, Any] | None = None) -> RunFolder:
        """Start a new run in ``path`` (created if needed). Raises :class:`RunFolderError` if
        the folder already holds a run (or another process claims it first)."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(
                f"run folder {str(path)!r} cannot be created ({e.strerror}). Choose a writable "
                "--runs-dir (and --name)."
            ) from None
        if (path / RUN_FILE).exists():
            raise cls._taken(path, None)
        if cls.holds_run(path):
            raise cls._taken(path, "a run of an older tbptt version")
        try:
            fd = os.open(path / RUN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise cls._taken(path, None) from None
        os.close(fd)
        lock_fd = _lock(path)
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "run_id": uuid.uuid4().hex,
            "created": _now(),
            "checkpoints": [],
            "best": None,
            "abandoned": [],
        }
        run = cls(path, meta, lock_fd)
        run._save_meta()
        if config is not None:
            run.write_config(config)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Continue the run in ``path``: take its lock (a :class:`RunFolderError` if another
        process holds it) and remove temporary files a killed process left behind. A folder
        written by an older tbptt (checkpoints, no ``run.json``) is given an identity."""
        path = Path(path)
        if not path.is_dir():
            raise RunFolderError(
                f"run folder {str(path)!r} does not exist. Pass the folder of an existing run "
                "(runs/NAME)."
            )
        if not cls.holds_run(path):
            raise RunFolderError(
                f"{str(path)!r} is not a run folder (no run.json, checkpoints or metrics). Pass "
                "the folder of a run (runs/NAME) or one of its checkpoints."
            )
        lock_fd = _lock(path)
        if lock_fd is None:
            raise RunFolderError(
                f"run folder {str(path)!r} is in use by another process (pid "
                f"{_read_pid(path)}). Wait for it to finish or stop it, then resume."
            )
        run = cls(path, cls._read_meta(path, adopt=True), lock_fd)
        run._remove_orphans()
        run._adopt_unlisted()
        return run

    @classmethod
    def read(cls, path: str | Path) -> RunFolder:
        """Look at the run in ``path`` without locking it (reports, predictions, loading)."""
        path = Path(path)
        if not path.is_dir():
            raise RunFolderError(f"run folder {str(path)!r} does not exist.")
        if not cls.holds_run(path):
            raise RunFolderError(cls._not_a_run(path))
        return cls(path, cls._read_meta(path, adopt=False), None)

    @staticmethod
    def holds_run(path: str | Path) -> bool:
        """Whether ``path`` holds a run (of this or an older tbptt version)."""
        path = Path(path)
        return (
            (path / RUN_FILE).exists()
            or bool(find_checkpoints(path / "checkpoints"))
            or (path / "metrics.jsonl").exists()
        )

    @classmethod
    def _not_a_run(cls, path: Path) -> str:
        """Why ``path`` (a folder without a run) cannot be read as one, and what to pass."""
        runs = sorted(
            (p for p in path.iterdir() if p.is_dir() and cls.holds_run(p)),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        if not runs:
            return (
                f"{str(path)!r} is not a run folder (no run.json, checkpoints or metrics). Pass "
                "the folder of a run (runs/NAME) or a checkpoint file."
            )
        names = [p.name for p in runs]
        shown = ", ".join(names[-5:]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (
            f"{str(path)!r} is a folder of runs ({shown}), not a run. Pass one of them, e.g. "
            f"{str(runs[-1])!r} (the newest)."
        )

    @staticmethod
    def _taken(path: Path, what: str | None) -> RunFolderError:
        if what is None:
            try:
                what = f"run {json.loads((path / RUN_FILE).read_text())['run_id'][:8]}"
            except (OSError, ValueError, KeyError, TypeError):
                what = "a run being started by another process"
        return RunFolderError(
            f"run folder {str(path)!r} already holds {what}. Continue it with "
            f"`tbptt train --resume {path}` (resume= in Trainer.fit), or choose another --name."
        )

    @staticmethod
    def _read_meta(path: Path, adopt: bool) -> dict[str, Any]:
        file = path / RUN_FILE
        if file.exists():
            try:
                meta = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as e:
                raise RunFolderError(f"{str(file)!r} is not valid JSON ({e}).") from e
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise RunFolderError(f"{str(file)!r} is not a tbptt run file.")
            return meta
        # a run folder of an older tbptt: its checkpoints become the timeline
        legacy = [p.name for p in find_checkpoints(path / "checkpoints")]
        meta = {
            "format": _FORMAT,
            "run_id": uuid.uuid4().hex,
            "created": _now(),
            "checkpoints": legacy,
            "legacy": legacy,
            "best": None,
            "abandoned": [],
        }
        if adopt:
            _write_json(file, meta)
        return meta

    def release(self) -> None:
        """Let go of the lock (other processes may resume the run)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def discard(self) -> None:
        """Undo :meth:`claim` for a run that never trained: remove its own files (run.json,
        the config, the lock) and the folder if that leaves it empty. A run with checkpoints or
        metrics is never discarded."""
        if self.checkpoints() or self.metrics_path.exists():
            return
        for name in (RUN_FILE, "config.json", "config.toml"):
            (self.path / name).unlink(missing_ok=True)
        self.release()
        (self.path / ".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    # -- identity and config -----------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: dict[str, Any], toml: str | None = None) -> None:
        """``config.json`` (with the run's id) and, if given, ``config.toml``."""
        _write_json(self.path / "config.json", {**config, "run_id": self.run_id})
        if toml is not None:
            (self.path / "config.toml").write_text(toml, encoding="utf-8")

    def _save_meta(self) -> None:
        _write_json(self.path / RUN_FILE, self.meta)

    def _save_timeline(self) -> None:
        """``run.json`` after a checkpoint was written; a full disk is a
        :class:`CheckpointWriteError` (the record on disk still lists the earlier ones)."""
        try:
            self._save_meta()
        except OSError as e:
            raise CheckpointWriteError(self.path / RUN_FILE, e, "the run's record") from e

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """The run's own checkpoints that exist, oldest first."""
        paths = [self.checkpoints_dir / name for name in self.meta["checkpoints"]]
        return [p for p in paths if p.is_file()]

    def latest(self) -> Path:
        """The newest checkpoint of the run (a :class:`RunFolderError` if it has none)."""
        found = self.checkpoints()
        if not found:
            raise RunFolderError(
                f"run folder {str(self.path)!r} holds no checkpoint of its run yet. Start a new "
                "run (another --name), or pass the folder of a run that saved one."
            )
        return found[-1]

    def best(self) -> Path | None:
        """The checkpoint of the best validation so far, if one was kept."""
        best = self.meta.get("best")
        path = self.checkpoints_dir / best["file"] if best else None
        return path if path is not None and path.is_file() else None

    def model_checkpoint(self) -> Path:
        """What to predict with: the best checkpoint by validation, else the newest."""
        return self.best() or self.latest()

    def check_owner(self, payload: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint that another run wrote."""
        owner = payload.get("run_id")
        if owner is None and path.name in self.meta.get("legacy", ()):
            return
        if owner != self.run_id:
            raise RunFolderError(
                f"checkpoint {str(path)!r} belongs to run {str(owner)[:8]}, not to run "
                f"{self.run_id[:8]} of {str(self.path)!r}. Resume the run that wrote it from its "
                "own folder, or start a new run."
            )

    def save(self, payload: dict[str, Any], updates: int, keep: int | None) -> Path:
        """Write the checkpoint of update ``updates`` and add it to the timeline; then remove
        the run's own checkpoints beyond the newest ``keep``."""
        path = checkpoint_path(self.checkpoints_dir, updates)
        self._set_aside(path)
        save_checkpoint({**payload, "run_id": self.run_id}, path)
        names = [n for n in self.meta["checkpoints"] if n != path.name] + [path.name]
        self.meta["checkpoints"] = names[-keep:] if keep else names
        self._save_timeline()
        for old in names[: -keep if keep else 0]:  # removed once run.json no longer lists them
            (self.checkpoints_dir / old).unlink(missing_ok=True)
        return path

    def save_best(self, payload: dict[str, Any], updates: int, metric: str, value: float) -> Path:
        """Keep this checkpoint as the best by validation (the previous best is removed)."""
        path = self.checkpoints_dir / f"best-{updates:08d}.pt"
        own = self.meta.get("best") or {}
        if own.get("file") == path.name and own.get("update") == updates and path.is_file():
            return path  # this timeline's best of this very update (a finished run resumed)
        self._set_aside(path)
        save_checkpoint({**payload, "run_id": self.run_id}, path)
        previous = self.best()
        self.meta["best"] = {"file": path.name, "update": updates, "metric": metric, "value": value}
        self._save_timeline()
        if previous is not None and previous != path:
            previous.unlink(missing_ok=True)
        return path

    def _set_aside(self, path: Path) -> None:
        """A file already at ``path`` (another timeline's, or foreign) is moved, not replaced."""
        if path.exists():
            self._abandon_files([path], reason=f"{path.name} was in the way of a new checkpoint")

    # -- timelines -----------------------------------------------------------------------------
    def rewind(self, updates: int) -> Path | None:
        """Continue from update ``updates``: the run's checkpoints after it, and the metrics
        records after it, move to ``abandoned-N/``. Returns that folder (``None``: nothing to
        move)."""
        later = [p for p in self.checkpoints() if (step_of(p) or 0) > updates]
        best = self.best()
        if best is not None and self.meta["best"]["update"] > updates:
            later.append(best)
            self.meta["best"] = None
        records = read_jsonl(self.metrics_path) if self.metrics_path.exists() else []
        dropped = [r for r in records if r.get("update", 0) > updates]
        if not later and not dropped:
            return None
        folder = self._abandon_files(later, reason=f"resumed from update {updates}")
        if dropped:
            with open(folder / "metrics.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in dropped)
            kept = [r for r in records if r.get("update", 0) <= updates]
            tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.metrics_path)
            fsync_dir(self.path)
        return folder

    def restart(self) -> Path:
        """Start the run over in the same folder: every file of the old one moves to
        ``abandoned-N/`` and the run gets a new identity."""
        files = [p for p in self.path.iterdir() if p.name not in (RUN_FILE, ".lock")]
        files = [p for p in files if not p.name.startswith("abandoned-")]
        folder = self._abandon_files(files, reason=f"restarted; was run {self.run_id[:8]}")
        self.meta.update(run_id=uuid.uuid4().hex, created=_now(), checkpoints=[], best=None)
        self.meta.pop("legacy", None)
        self._save_meta()
        return folder

    def _abandon_files(self, files: list[Path], reason: str) -> Path:
        n = len(self.meta["abandoned"]) + 1
        while (self.path / f"abandoned-{n}").exists():
            n += 1
        folder = self.path / f"abandoned-{n}"
        folder.mkdir()
        for f in files:
            shutil.move(str(f), str(folder / f.name))
        self.meta["checkpoints"] = [
            name for name in self.meta["checkpoints"] if (self.checkpoints_dir / name).exists()
        ]
        self.meta["abandoned"].append({"folder": folder.name, "reason": reason, "at": _now()})
        self._save_meta()
        return folder

    def _adopt_unlisted(self) -> None:
        """A process killed between writing a checkpoint and listing it in ``run.json`` left
        a checkpoint of this run off the timeline: put it back (its payload names the run)."""
        listed = set(self.meta["checkpoints"])
        unlisted = [p for p in find_checkpoints(self.checkpoints_dir) if p.name not in listed]
        mine = [p for p in unlisted if _owner(p) == self.run_id]
        if mine:
            names = {*listed, *(p.name for p in mine)}
            self.meta["checkpoints"] = sorted(names, key=lambda n: step_of(n) or 0)
            self._save_meta()

    def _remove_orphans(self) -> None:
        """Temporary files of writes a killed process never finished (we hold the lock)."""
        for folder in (self.path, self.checkpoints_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)


def _owner(path: Path) -> str | None:
    """The run id a checkpoint file names, or ``None`` (unreadable, or none)."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return payload.get("run_id") if isinstance(payload, dict) else None


def _read_pid(path: Path) -> str:
    try:
        return (path / ".lock").read_text().strip() or "unknown"
    except OSError:
        return "unknown"

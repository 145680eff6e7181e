"""The :class:`Trainer`'s state on disk: claiming or reopening its run folder, checkpoints it
can resume exactly, the best validation's weights, and the data stream's position."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tbptt.chunk import Chunk
from tbptt.train.checkpoint import (
    CheckpointError,
    capture_rng,
    checkpoint_path,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from tbptt.train.records import Counters, TrainerFields
from tbptt.train.run import RUN_FILE, RunFolder, RunFolderError, run_dir_of


class DataCursor:
    """Iterate a training stream epoch by epoch and save/restore the position.

    Streams with ``state_dict``/``load_state_dict`` (the ``tbptt.data`` batchers) save their own
    position; other re-iterable collections of chunks (a list) are replayed, skipping the chunks
    already consumed in the current epoch.
    """

    def __init__(self, stream: Iterable[Chunk]) -> None:
        if isinstance(stream, Iterator):
            raise TypeError(
                "train must be re-iterable (a tbptt.data batcher, a list of Chunks, ...), got a "
                "one-shot iterator. Wrap a generator function in a class with __iter__, or pass "
                "list(...)."
            )
        self.stream = stream
        self.stateful = callable(getattr(stream, "state_dict", None))

    def epoch(self, skip: int) -> Iterator[Chunk]:
        it = iter(self.stream)
        if not self.stateful and skip:
            it = itertools.islice(it, skip, None)
        return it

    def state_dict(self) -> Any:
        return self.stream.state_dict() if self.stateful else None  # type: ignore[attr-defined]

    def load_state_dict(self, saved: Any) -> None:
        if self.stateful:
            self.stream.load_state_dict(saved)  # type: ignore[attr-defined]


def to_device(tree: Any, device: torch.device) -> Any:
    if isinstance(tree, Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_device(v, device) for v in tree]
    if isinstance(tree, tuple):
        return tuple(to_device(v, device) for v in tree)
    return tree


class StateMixin(TrainerFields):
    def _open_run(self, ckpt: Path | None, restart: bool) -> bool:
        """Claim the run folder, or open it to continue ``ckpt``; True if this call did."""
        if self.run_dir is None or self.run is not None:
            return False
        same = ckpt is not None and run_dir_of(ckpt).resolve() == self.run_dir.resolve()
        if same:
            self.run = RunFolder.open(self.run_dir)
        elif restart and RunFolder.holds_run(self.run_dir):
            self.run = RunFolder.open(self.run_dir)
            self.run.restart()
            self.run.write_config(self.config)
        else:
            try:
                self.run = RunFolder.claim(self.run_dir, self.config)
            except RunFolderError as e:
                raise RunFolderError(
                    f"{e} Or pass restart=True to start over (the old files are kept in "
                    "abandoned-N/)."
                ) from None
        return True

    def _last_good(self) -> str:
        found = self.run.checkpoints() if self.run is not None else []
        if found:
            return f"The last checkpoint written, {str(found[-1])!r}, is kept."
        return "No checkpoint was written before it (nothing to resume from)."

    def _keep_best(self, key: str, metrics: dict[str, float]) -> None:
        """A new best validation: remember its weights (and save them, with a run folder)."""
        c = self.counters
        c.best_update, c.best_metrics, c.evals_since_best = c.updates, dict(metrics), 0
        if not self.keep_best:
            return
        self._best_weights = {
            k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
        }
        if self.run is not None:
            self.run.save_best(self.state_dict(), c.updates, key, metrics[key])

    def _restore_best(self) -> int | None:
        """``keep_best``: load the best validation's weights into the model; their update."""
        c = self.counters
        if not self.keep_best or c.best_update is None:
            return None
        if c.best_update == c.updates:
            return c.updates
        weights = self._best_weights
        saved = self.run.best() if self.run is not None else None
        if weights is None and saved is not None:
            weights = load_checkpoint(saved)["model"]  # a resumed run
        if weights is None:
            return None
        self.model.load_state_dict(weights)
        return c.best_update

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see :mod:`tbptt.train.checkpoint`)."""
        if not callable(getattr(self.engine, "state_dict", None)):
            raise RuntimeError(
                "this tbptt.Engine has no state_dict(); checkpoints need an engine that can save "
                "its carried state. Update tbptt."
            )
        counters = asdict(self.counters)
        counters["elapsed"] = self.elapsed()
        return {
            "config": self.config,
            "extra": self.extra,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "engine": self.engine.state_dict(),
            "data": self._cursor.state_dict() if self._cursor is not None else None,
            "counters": counters,
            "rng": capture_rng(),
            "torch_version": str(torch.__version__),
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Save to ``path`` (default: the run folder's ``checkpoints/step-<updates>.pt``,
        keeping the newest ``keep_checkpoints`` of the run) atomically; never over a file."""
        self.counters.last_checkpoint = self.counters.updates
        if path is not None:
            run_id = self.run.run_id if self.run is not None else None
            out = save_checkpoint({**self.state_dict(), "run_id": run_id}, path)
        elif self.run is not None:
            out = self.run.save(self.state_dict(), self.counters.updates, self.keep_checkpoints)
        else:
            return None
        self._notify("on_checkpoint", out)
        return out

    def _final_checkpoint(self) -> Path | None:
        if self.run is None:
            return None
        path = checkpoint_path(self.run.checkpoints_dir, self.counters.updates)
        if (
            path in self.run.checkpoints()
            and self.counters.last_checkpoint == self.counters.updates
        ):
            return path
        return self.save_checkpoint()

    def load_checkpoint(self, path: str | Path, cursor: DataCursor | None = None) -> dict[str, Any]:
        """Restore a checkpoint saved by :meth:`save_checkpoint`; errors are
        :class:`~tbptt.train.checkpoint.CheckpointError` naming what does not match."""
        payload = load_checkpoint(path)
        folder = run_dir_of(Path(path))
        if self.run is not None and folder.resolve() == self.run.path.resolve():
            self.run.check_owner(payload, Path(path))
        elif (folder / RUN_FILE).is_file():
            RunFolder.read(folder).check_owner(payload, Path(path))
        self._check_config(payload.get("config") or {}, path)
        try:
            self.model.load_state_dict(payload["model"])
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a model of another shape: "
                f"{str(e).splitlines()[0]} Build the model as in the run that saved it."
            ) from e
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
                self._loss_scale = float(self.scaler.get_scale())
            self.engine.load_state_dict(to_device(payload["engine"], self.device))
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(
                f"checkpoint {str(path)!r} does not fit this trainer: {e} Resume with the same "
                "optimizer, schedule and truncation rule as the run that saved it."
            ) from e
        if cursor is not None:
            self._cursor = cursor
            try:
                cursor.load_state_dict(payload["data"])
            except (ValueError, TypeError) as e:
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: the data stream's position does not fit the "
                    f"data given ({e})."
                ) from e
        saved = payload["counters"]
        names = {f.name for f in fields(Counters)}
        self.counters = Counters(**{k: v for k, v in saved.items() if k in names})
        self.extra.update(payload.get("extra") or {})
        restore_rng(payload["rng"])
        return payload

    def _check_config(self, saved: dict[str, Any], path: str | Path) -> None:
        if not self.config or not saved:
            return
        keys = (set(saved) | set(self.config)) - self.resume_may_change
        diff = [
            f"{k}={saved.get(k)!r} (now {self.config.get(k)!r})"
            for k in sorted(keys)
            if saved.get(k) != self.config.get(k)
        ]
        if diff:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was saved by a run with other settings: "
                + ", ".join(diff)
                + ". Resume with the same settings (drop those flags), or start a new run "
                "with another --name."
            )

"""TBPTT(k1, k2) over stateful streams inside ``lightning.Trainer`` (Lightning 2.x).

Lightning 2.0 removed ``truncated_bptt_steps``. :class:`TBPTTModule` gives it back, exact and
with k2 != k1, resets and the engine's modes: write the model (``forward(x, state) ->
(y, state)``), the per-step loss and ``configure_optimizers``; feed it ``tbptt.Chunk`` batches
from a ``TokenBatcher``/``StreamBatcher`` through ``ChunkDataset`` and
``DataLoader(batch_size=None)``::

    class CharLM(TBPTTModule):
        def __init__(self):
            super().__init__(TBPTT(25, 50), gradient_clip_val=1.0)
            self.embed, self.lstm = nn.Embedding(256, 32), nn.LSTM(32, 128, batch_first=True)
            self.head = nn.Linear(128, 256)

        def forward(self, x, state):                    # x (B, T) -> (B, T, 256)
            y, state = self.lstm(self.embed(x), state)
            return self.head(y), state

        def loss(self, y, targets):                     # -> (B, T) per-step losses
            return tbptt.losses.cross_entropy(y, targets)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    loader = DataLoader(ChunkDataset(TokenBatcher(tokens, batch_size=16, chunk_len=25)),
                        batch_size=None)
    lightning.Trainer(max_epochs=3).fit(CharLM(), loader)

It uses manual optimisation: ``training_step`` feeds the chunk to a :class:`tbptt.Engine`, which
runs the forward and the backward passes itself (several per update in stored mode with
k2 > k1); for each update it clips with ``self.clip_gradients`` and steps with
``self.optimizers().step()``, so Lightning counts the steps, runs its optimizer hooks and
applies the precision plugin's step ("32", "64", "bf16-mixed": the forward runs under
Lightning's autocast). The stream is flushed at each epoch's end (its last short chunk is
trained and the state starts anew), in the epoch's last ``training_step``; a batch with another
number of rows (the short last batch of ``DataLoader(drop_last=False)``) ends the stream too and
starts a new one. Lightning's ``max_steps`` counts updates, checked between batches: make a
batch hold one update (``chunk_len = k1``) to stop exactly. Every update's loss reaches the
loggers, at its own ``global_step`` (``self.log`` would keep only the last one of a batch).

Migrating from Lightning 1.x's ``truncated_bptt_steps=k``: pass ``TBPTT(k)`` and
``stream_per_batch=True``. Each batch ``(B, T, ...)`` is then its own stream, as in 1.x: it is
split along time into chunks of k steps, the hidden state is carried from chunk to chunk within
the batch only (each batch starts from the initial state), every chunk gets its own backward and
optimizer step, and the batch's last, shorter chunk is trained at the batch's end. Batches can be
plain ``(x, y)`` tuples from any ``DataLoader``; ``training_step`` receives the whole batch
(1.x called it once per chunk, with ``hiddens``).

On several devices use :class:`TBPTTDDPStrategy` (``Trainer(strategy=TBPTTDDPStrategy())``): it
is Lightning's DDP without the ``DistributedDataParallel`` wrapper, whose per-backward hooks
do not fit updates with several backward passes; the module then averages the gradient once
per update (:class:`tbptt.integrations.distributed.DistributedEngine`). Build each rank's
batcher with ``world_size=self.trainer.world_size, rank=self.global_rank``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from tbptt.chunk import Chunk
from tbptt.data.dataset import ChunkDataset
from tbptt.engine import Engine, Mode, Update
from tbptt.integrations.distributed import DistributedEngine, broadcast_parameters
from tbptt.state import State
from tbptt.truncation import TruncationRule, is_real
from tbptt.unroll import Path

__all__ = ["TBPTTDDPStrategy", "TBPTTModule"]


class TBPTTDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy without the ``DistributedDataParallel`` wrapper.

    DDP reduces gradients from hooks that fire during *each* backward pass; a TBPTT update may
    run several (stored mode, k2 > k1). With this strategy the processes, devices and samplers
    are Lightning's, the parameters are broadcast from rank 0 at the start, and
    :class:`TBPTTModule` averages each update's gradient once, explicitly. Use it as
    ``Trainer(accelerator=..., devices=2, strategy=TBPTTDDPStrategy())``; it takes
    ``DDPStrategy``'s arguments (e.g. ``process_group_backend="gloo"``,
    ``start_method="spawn"``).
    """

    def configure_ddp(self) -> None:
        assert isinstance(self.model, pl.LightningModule)
        broadcast_parameters(self.model)


class TBPTTModule(pl.LightningModule):
    """A LightningModule trained with TBPTT(k1, k2) over stateful streams (manual optimisation).

    Subclass it and define ``forward(x, state) -> (y, state)``, ``loss(y, targets) -> (B, L)``
    and ``configure_optimizers`` (one optimizer). Batches are ``tbptt.Chunk`` (inputs (B, T, ...),
    targets, reset (B, T), mask (B, T)), consecutive batches continuing the same B streams.

    Args:
        rule: the truncation rule, e.g. ``TBPTT(25, 50)`` or ``BPTT()``.
        mode, path, checkpoint, reduction, init_state, state_batch_dim: as :class:`tbptt.Engine`.
        gradient_clip_val, gradient_clip_algorithm: clipping applied to each update
            (``Trainer``'s own clipping arguments do not apply to manual optimisation).
        average: on several processes, how the ranks' gradients are combined (see
            :class:`~tbptt.integrations.distributed.DistributedEngine`).
        log_name: the name every update's loss is logged under (None: do not log).
        stream_per_batch: each batch is its own stream, flushed at the batch's end (Lightning
            1.x's ``truncated_bptt_steps`` semantics); False: consecutive batches continue the
            same B streams until the epoch ends or the number of rows changes.

    Override :meth:`on_tbptt_update` to act after each optimizer step (e.g. step a scheduler).
    """

    def __init__(
        self,
        rule: TruncationRule,
        *,
        mode: Mode = "stored",
        path: Path = "auto",
        checkpoint: int | Literal["sqrt"] | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        init_state: State = None,
        state_batch_dim: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
        average: Literal["tokens", "ranks", "sum"] | None = None,
        log_name: str | None = "train_loss",
        stream_per_batch: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(rule, TruncationRule):
            raise TypeError(
                f"rule must be a truncation rule such as TBPTT(k1, k2) or BPTT(), got {rule!r}."
            )
        if gradient_clip_algorithm not in ("norm", "value"):
            raise ValueError(
                f"gradient_clip_algorithm must be 'norm' or 'value', got {gradient_clip_algorithm!r}."
            )
        if gradient_clip_val is not None and not (
            is_real(gradient_clip_val) and 0 < gradient_clip_val < math.inf
        ):
            raise ValueError(
                f"gradient_clip_val must be None or a positive number, got {gradient_clip_val!r}. "
                "Pass e.g. gradient_clip_val=1.0, or None for no clipping."
            )
        if log_name is not None and (not isinstance(log_name, str) or not log_name):
            raise TypeError(f"log_name must be a non-empty string or None, got {log_name!r}.")
        if not isinstance(stream_per_batch, bool):
            raise TypeError(f"stream_per_batch must be True or False, got {stream_per_batch!r}.")
        self.stream_per_batch = stream_per_batch
        self.automatic_optimization = False
        self.tbptt_rule = rule
        self._engine_kwargs: dict[str, Any] = {
            "mode": mode,
            "path": path,
            "checkpoint": checkpoint,
            "reduction": reduction,
            "init_state": init_state,
            "state_batch_dim": state_batch_dim,
        }
        self.gradient_clip_val = None if gradient_clip_val is None else float(gradient_clip_val)
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.average = average
        self.log_name = log_name
        self._engine: Engine | DistributedEngine | None = None
        self._pending_engine_state: dict[str, Any] | None = None
        self._pending_data_state: dict[str, Any] | None = None
        self._flushing = False
        self._flushed = False

    # -- to write ---------------------------------------------------------------------------
    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The recurrent model: ``x`` (B, T, ...) and the carried state -> (y, new state)."""
        raise NotImplementedError("Define forward(x, state) -> (y, state) in your TBPTTModule.")

    def loss(self, y: Tensor, targets: Tensor) -> Tensor:
        """Per-step losses (B, T), e.g. ``tbptt.losses.cross_entropy(y, targets)``."""
        raise NotImplementedError(
            "Define loss(y, targets) -> (B, T) per-step losses in your TBPTTModule, e.g. "
            "return tbptt.losses.cross_entropy(y, targets)."
        )

    def on_tbptt_update(self, update: Update) -> None:
        """Called after each update's optimizer step; logs the (global) loss by default.

        Every update goes to the loggers under ``log_name`` at its own ``global_step``; the
        progress bar shows the latest.
        """
        if self.log_name is None or not update.finite or self._trainer is None:
            return
        loss = float(update.loss)
        for logger in self.loggers:
            logger.log_metrics({self.log_name: loss}, step=self.trainer.global_step)
        if not self._flushing:  # Lightning refuses step-level self.log at the epoch's end
            self.log(self.log_name, loss, prog_bar=True, logger=False, on_step=True)

    # -- the engine -------------------------------------------------------------------------
    @property
    def engine(self) -> Engine | DistributedEngine:
        """The engine that carries the streams (made on first use; wrapped on several ranks)."""
        if self._engine is None:
            engine = Engine(self, self.loss, self.tbptt_rule, **self._engine_kwargs)
            world = self.trainer.world_size if self._trainer is not None else 1
            self._engine = (
                DistributedEngine(engine, average=self.average, broadcast=False)
                if world > 1
                else engine
            )
            if self._pending_engine_state is not None:
                _inner(self._engine).load_state_dict(self._pending_engine_state)
                self._pending_engine_state = None
        return self._engine

    def on_fit_start(self) -> None:
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.scaler is not None:
            raise ValueError(
                "precision='16-mixed' scales the loss before backward, but the tbptt engine runs "
                "the backward itself, so the gradients would not be scaled consistently. Use "
                "precision='bf16-mixed' (no loss scaling) or '32'."
            )
        if isinstance(self.trainer.strategy.model, DistributedDataParallel):
            raise ValueError(
                "strategy: the module is wrapped in DistributedDataParallel, whose hooks reduce "
                "gradients during every backward pass; a TBPTT update runs several. Use "
                "Trainer(strategy=tbptt.integrations.lightning.TBPTTDDPStrategy()), which "
                "averages each update's gradient once."
            )

    def _tbptt_step(self, update: Update) -> None:
        opt = self.optimizers()
        if isinstance(opt, list):
            raise ValueError(
                f"configure_optimizers returned {len(opt)} optimizers; TBPTTModule steps one. "
                "Put the parameter groups in a single optimizer."
            )
        if update.finite:
            if self.gradient_clip_val is not None:
                self.clip_gradients(
                    opt.optimizer,
                    gradient_clip_val=self.gradient_clip_val,
                    gradient_clip_algorithm=self.gradient_clip_algorithm,
                )
            groups = opt.optimizer.param_groups
            if update.lr_scale != 1.0:
                saved = [g["lr"] for g in groups]
                for g in groups:
                    g["lr"] = g["lr"] * update.lr_scale
            opt.step()
            if update.lr_scale != 1.0:
                for g, lr in zip(groups, saved):
                    g["lr"] = lr
        self.on_tbptt_update(update)

    def training_step(self, batch: Chunk | tuple[Tensor, ...], batch_idx: int) -> None:
        """Feed the chunk to the engine; clip and step the optimizer once per update."""
        if not isinstance(batch, (tuple, list)) or not 2 <= len(batch) <= 4:
            raise TypeError(
                "batch must be a tbptt.Chunk (inputs, targets, reset, mask), as given by "
                "DataLoader(ChunkDataset(batcher), batch_size=None); got "
                f"{type(batch).__name__}. Note batch_size=None: the batcher already batches."
            )
        rows = batch[0].shape[0] if isinstance(batch[0], Tensor) and batch[0].dim() else None
        if rows is not None and _inner(self.engine).batch_size not in (None, rows):
            self._end_stream()  # e.g. the short last batch of DataLoader(drop_last=False)
        for update in self.engine.feed(*batch):
            self._tbptt_step(update)
        if self.stream_per_batch:
            self._end_stream()  # Lightning 1.x: the batch's last, shorter chunk; state anew
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._flush()  # here, not in on_train_epoch_end, so that Lightning counts its steps

    def _end_stream(self) -> None:
        """Train what is pending as the stream's last chunk; the next batch starts a new one."""
        for update in self.engine.flush():
            self._tbptt_step(update)

    def _flush(self) -> None:
        self._flushing = True
        try:
            self._end_stream()
        finally:
            self._flushing = False
            self._flushed = True

    def on_train_epoch_end(self) -> None:
        """End the streams if the last batch did not (a loader without ``len``).

        Lightning does not count optimizer steps taken here in ``global_step``; with a sized
        loader the flush happens in the epoch's last ``training_step`` instead.
        """
        max_steps = self.trainer.max_steps
        stopped = max_steps is not None and 0 <= max_steps <= self.trainer.global_step
        if not self._flushed and not stopped:
            self._flush()

    # -- checkpoints ------------------------------------------------------------------------
    def _dataset(self) -> ChunkDataset | None:
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        dataset = getattr(loader, "dataset", None)
        return dataset if isinstance(dataset, ChunkDataset) else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the stream (carried state, retained window) and the data position."""
        checkpoint["tbptt_engine"] = _inner(self.engine).state_dict()
        dataset = self._dataset()
        checkpoint["tbptt_data"] = None if dataset is None else dataset.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore them when training resumes (the engine on first use, the data at epoch start)."""
        self._engine = None
        self._pending_engine_state = checkpoint.get("tbptt_engine")
        self._pending_data_state = checkpoint.get("tbptt_data")

    def on_train_epoch_start(self) -> None:
        """Point the ``ChunkDataset`` at this epoch (restoring a saved position first).

        Lightning stops reading a loader after ``len(loader)`` batches, so the batcher never
        sees its epoch end by itself: ``set_epoch`` moves it to the epoch's start (its own
        seeded shuffle), and keeps the position within the current epoch when resuming.
        """
        self._flushed = False
        dataset = self._dataset()
        if dataset is None:
            return
        if self._pending_data_state is not None:
            dataset.load_state_dict(self._pending_data_state)
            self._pending_data_state = None
        dataset.set_epoch(self.trainer.current_epoch)


def _inner(engine: Engine | DistributedEngine) -> Engine:
    return engine.engine if isinstance(engine, DistributedEngine) else engine

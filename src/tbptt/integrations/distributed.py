"""Data-parallel TBPTT with ``torch.distributed``, launched with ``torchrun``.

Each rank trains its own shard of the streams (build the batcher with ``world_size`` and
``rank``) and carries its own recurrent state; the ranks keep identical parameters by averaging
the gradient once per update, before the optimizer step::

    info = init_distributed()                      # reads torchrun's RANK, WORLD_SIZE, ...
    data = TokenBatcher(tokens, batch_size=16, chunk_len=25,
                        world_size=info.world_size, rank=info.rank)
    model = CharLSTM().to(info.device)
    engine = DistributedEngine(Engine(model, losses.cross_entropy, TBPTT(25, 50)))
    for chunk in data:
        for update in engine.feed(*chunk.to(info.device)):   # gradients already averaged
            opt.step()

Why not ``DistributedDataParallel``: DDP all-reduces from hooks that fire as each parameter's
gradient is accumulated during *a* backward pass. One TBPTT update may run several backward
passes (stored mode with k2 > k1 runs the loss backward and then one chained backward per
graph break inside the window) and accumulates into a parameter several times, so DDP would
reduce too often or error ("marked ready twice"), and ``no_sync`` tricks would have to know
which backward is last. Instead :func:`all_reduce_gradients` averages the finished gradient of
the update explicitly, flattened into a few buckets: one collective per bucket, once per update,
exact whatever the engine did inside the update. The parameters are broadcast from rank 0 once
at the start, as DDP does. This costs the overlap of communication with the backward that DDP
gets; for recurrent models the all-reduce of one update's gradient is small next to the k1-step
forward and k2-step backward.

Exactness: with ``average="tokens"`` (the default for ``reduction="mean"``) the averaged
gradient is the gradient of the mean loss over *all* ranks' injected, unmasked steps, i.e. what
one process training on the union of the ranks' rows computes, even when masks give the ranks
different token counts. ``average="ranks"`` is DDP's plain mean of the ranks' gradients (equal
to "tokens" when every rank has the same number of unmasked steps per update).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._utils import _unflatten_dense_tensors

from tbptt.data.base import ChunkStream
from tbptt.engine import Engine, Update

if TYPE_CHECKING:  # resolved at run time by __getattr__ below (the modules import each other)
    from tbptt.integrations.dist_checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "DistInfo",
    "DistributedEngine",
    "all_reduce_gradients",
    "broadcast_parameters",
    "check_sharding",
    "init_distributed",
    "load_checkpoint",
    "save_checkpoint",
]

Average = Literal["tokens", "ranks", "sum"]
Group = Any  # torch.distributed.ProcessGroup (or None for the default group)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the world size, its local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: a single process without a process group


def _world(group: Group = None) -> tuple[int, int]:
    """(rank, world_size) in ``group``; (0, 1) without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _comm_device(group: Group = None) -> torch.device:
    """The device collectives of small tensors must use: the current GPU for NCCL, else CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> DistInfo:
    """Initialise the default process group from the environment ``torchrun`` sets.

    Args:
        backend: ``"nccl"`` (GPUs), ``"gloo"`` (CPU), or ``None``: NCCL when CUDA is available,
            else gloo.

    Without torchrun's variables (``RANK``, ``WORLD_SIZE``) it starts no group and returns a
    single-process :class:`DistInfo`, so the same script runs with ``python`` too. With NCCL it
    also selects the GPU ``LOCAL_RANK``. Returns the rank, world size, local rank and device.
    """
    cuda = torch.cuda.is_available()
    if backend not in (None, "nccl", "gloo", "mpi", "ucc"):
        raise ValueError(
            f"backend must be 'nccl' (GPUs), 'gloo' (CPU) or None (pick), got {backend!r}."
        )
    if backend == "nccl" and not cuda:
        raise ValueError(
            "backend='nccl' needs CUDA GPUs, but torch.cuda.is_available() is False. Use "
            "backend='gloo' on CPU (or backend=None to pick)."
        )
    if dist.is_available() and dist.is_initialized():
        chosen: str = str(dist.get_backend())
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        chosen = backend or ("nccl" if cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", 0))
        if chosen == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(chosen)
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        device = torch.device("cuda", 0) if cuda and backend != "gloo" else torch.device("cpu")
        return DistInfo(0, 1, 0, device, None)
    device = torch.device("cuda", local) if chosen == "nccl" else torch.device("cpu")
    return DistInfo(rank, world, local, device, chosen)


def _params(params: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(params, nn.Module):
        return [p for p in params.parameters() if p.requires_grad]
    out = list(params)
    if not all(isinstance(p, Tensor) for p in out):
        raise TypeError(
            "params must be an nn.Module or an iterable of tensors (e.g. model.parameters()), "
            f"got an iterable containing {sorted({type(p).__name__ for p in out})}."
        )
    return [p for p in out if p.requires_grad]


def _buckets(params: Sequence[Tensor], cap_bytes: float) -> list[list[Tensor]]:
    """Group parameters by (device, dtype), in order, into buckets of at most ``cap_bytes``."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    buckets: list[list[Tensor]] = []
    for group in groups.values():
        current: list[Tensor] = []
        size = 0
        for p in group:
            nbytes = p.numel() * p.element_size()
            if current and size + nbytes > cap_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            buckets.append(current)
    return buckets


def all_reduce_gradients(
    params: nn.Module | Iterable[Tensor],
    *,
    op: Literal["mean", "sum"] = "mean",
    weight: float | Tensor | None = None,
    group: Group = None,
    bucket_cap_mb: float = 25.0,
) -> None:
    """Average (or sum) the parameters' ``.grad`` over the ranks, in place, in a few buckets.

    Call it once per update, after the engine's backward and before clipping and the optimizer
    step (:class:`DistributedEngine` does it for you). The gradients are flattened into buckets
    of at most ``bucket_cap_mb`` per (device, dtype), each reduced by one ``all_reduce``.

    Args:
        params: the model, or its parameters (those without ``requires_grad`` are skipped).
        op: ``"mean"``: the average over ranks, weighted by ``weight`` if given:
            ``sum_r w_r g_r / sum_r w_r`` (pass the update's ``trained_count`` to get the gradient
            of the mean loss over every rank's tokens); ``"sum"``: the sum over ranks (for
            ``reduction="sum"``, the gradient of the total loss).
        weight: this rank's weight for ``op="mean"`` (a number or a 0-d tensor, >= 0).
        group: the process group (default: the world).
        bucket_cap_mb: the largest bucket, in MiB.

    A parameter whose ``.grad`` is None on some ranks counts as zero there; one whose ``.grad``
    is None on every rank keeps None (so optimizers skip it, as they would on one process).
    Without a process group (or with one rank) the gradients are left as they are.
    """
    if op not in ("mean", "sum"):
        raise ValueError(f"op must be 'mean' or 'sum', got {op!r}.")
    if weight is not None and op == "sum":
        raise ValueError(
            "weight is only used with op='mean' (a weighted average); with op='sum' the "
            "gradients are summed as they are. Drop weight, or use op='mean'."
        )
    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight < 0:
        raise ValueError(f"weight must be >= 0 (e.g. the update's token count), got {weight!r}.")
    if not isinstance(bucket_cap_mb, (int, float)) or bucket_cap_mb <= 0:
        raise ValueError(f"bucket_cap_mb must be a positive number of MiB, got {bucket_cap_mb!r}.")
    plist = _params(params)
    _, world = _world(group)
    if world == 1:
        return
    for p in plist:
        if p.grad is not None and p.grad.is_sparse:
            raise TypeError(
                "all_reduce_gradients averages dense gradients, but a parameter of shape "
                f"{tuple(p.shape)} has a sparse .grad (nn.Embedding(sparse=True)?). Build the "
                "layer with sparse=False."
            )
    for bucket in _buckets(plist, bucket_cap_mb * 2**20):
        _reduce_bucket(bucket, op, weight, world, group)


def _reduce_bucket(
    bucket: list[Tensor], op: str, weight: float | Tensor | None, world: int, group: Group
) -> None:
    ref = bucket[0]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket]
    present = torch.tensor(
        [p.grad is not None for p in bucket], dtype=ref.dtype, device=ref.device
    )  # (n,)
    parts = [g.reshape(-1) for g in grads] + [present]
    w = None
    if weight is not None:
        w = torch.as_tensor(weight, dtype=ref.dtype, device=ref.device).reshape(1)
        parts = [g.reshape(-1) * w for g in grads] + [present, w]
    flat = torch.cat(parts)  # (numel + n [+ 1],)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    numel = sum(p.numel() for p in bucket)
    summed = flat[:numel]
    if op == "mean":
        if w is None:
            summed = summed / world
        else:
            total = flat[-1]
            summed = summed / torch.where(total > 0, total, torch.ones_like(total))
    anywhere = (flat[numel : numel + len(bucket)] > 0).tolist()
    for p, g, has in zip(bucket, _unflatten_dense_tensors(summed, bucket), anywhere):
        if not has:
            p.grad = None
        elif p.grad is not None:
            p.grad.copy_(g)
        else:
            p.grad = g.view_as(p)


def broadcast_parameters(module: nn.Module, *, src: int = 0, group: Group = None) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (so all start identical)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}.")
    if _world(group)[1] == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src, group=group)


def check_sharding(data: ChunkStream, *, group: Group = None) -> None:
    """Check that a batcher was built for this rank: ``world_size`` and ``rank`` as the group's.

    Without it every rank would train the same rows (the usual slip: forgetting to pass them).
    """
    if not isinstance(data, ChunkStream):
        raise TypeError(f"data must be a StreamBatcher or TokenBatcher, got {type(data).__name__}.")
    rank, world = _world(group)
    if (data.world_size, data.rank) != (world, rank):
        raise ValueError(
            f"data was built with world_size={data.world_size}, rank={data.rank}, but this "
            f"process is rank {rank} of {world}. Build it with world_size={world}, rank={rank} "
            "(e.g. TokenBatcher(..., world_size=info.world_size, rank=info.rank)) so that each "
            "rank trains its own shard of the streams."
        )


def _check_same_shapes(inputs: Tensor, targets: Tensor, group: Group) -> None:
    """Every rank must feed pieces of the same shape (same rows, same steps)."""
    _, world = _world(group)
    if world == 1:
        return
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        return  # Engine.feed names the bad argument
    dims = 6
    mine = torch.tensor(
        [
            *[*inputs.shape[:2], -1, -1][:2],
            inputs.dim(),
            math.prod(inputs.shape[2:]),
            targets.dim(),
            math.prod(targets.shape[2:]),
        ],
        dtype=torch.int64,
    )
    device = _comm_device(group)
    everyone = [torch.zeros(dims, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(everyone, mine.to(device), group=group)
    shapes = torch.stack(everyone).cpu()  # (world, dims)
    if bool((shapes == shapes[0]).all()):
        return
    seen = ", ".join(f"rank {r}: (B, T) = {tuple(shapes[r, :2].tolist())}" for r in range(world))
    raise ValueError(
        f"inputs: the ranks fed pieces of different shapes ({seen}; or different feature "
        "sizes). Every rank must feed the same number of rows and steps each time: the ranks run "
        "their updates in lockstep and average their gradients once per update. Build each "
        "rank's batcher with the same batch_size and chunk_len, and world_size and rank "
        "(TokenBatcher(..., world_size=info.world_size, rank=info.rank))."
    )


class DistributedEngine:
    """An :class:`~tbptt.Engine` whose updates carry the gradient averaged over the ranks.

    Each rank feeds its own shard of the streams (same shapes on every rank) and keeps its own
    carried state. ``feed``/``flush`` yield each update after its backward *and* the gradient
    all-reduce (:func:`all_reduce_gradients`, once per update, however many backward passes
    the update ran), so the loop body clips and steps exactly as on one process.

    Args:
        engine: the rank's engine (built with ``zero_grad=True``, the default).
        average: ``"tokens"``: weight each rank's gradient by its number of trained, unmasked
            steps, giving the gradient of the mean loss over all ranks' steps, i.e. that of one
            process training on the union of the rows (default for ``reduction="mean"``);
            ``"ranks"``: the plain mean of the ranks' gradients, as DDP (the same when every
            rank has the same count); ``"sum"``: the sum (default for ``reduction="sum"``:
            the gradient of the summed loss over every rank).
        group: the process group (default: the world).
        broadcast: copy rank 0's parameters and buffers to every rank now.
        check_shapes: check on every ``feed`` that all ranks fed the same shapes (one tiny
            collective); a mismatch would otherwise hang or bias the average.
        bucket_cap_mb: the gradient bucket size for the all-reduce.

    The yielded :class:`~tbptt.Update` reports the *global* ``loss``, ``trained_count``,
    ``report_sum``, ``report_count`` and ``finite`` (the same on every rank, so any rank may
    log them); ``outputs`` stay this rank's. A rank whose loss was not finite ran no backward
    and contributes no gradient; ``update.finite`` is then False on every rank.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        average: Average | None = None,
        group: Group = None,
        broadcast: bool = True,
        check_shapes: bool = True,
        bucket_cap_mb: float = 25.0,
    ) -> None:
        if not isinstance(engine, Engine):
            raise TypeError(
                f"engine must be a tbptt.Engine, got {type(engine).__name__}. Wrap the engine: "
                "DistributedEngine(Engine(model, loss_fn, TBPTT(k1, k2)))."
            )
        if average is None:
            average = "tokens" if engine.reduction == "mean" else "sum"
        if average not in ("tokens", "ranks", "sum"):
            raise ValueError(f"average must be 'tokens', 'ranks' or 'sum', got {average!r}.")
        if average == "tokens" and engine.reduction == "sum":
            raise ValueError(
                "average='tokens' weights each rank's mean gradient by its token count, but the "
                "engine has reduction='sum' (its gradients are already sums). Use average='sum' "
                "(the gradient of the summed loss over all ranks) or average='ranks'."
            )
        if not engine.zero_grad:
            raise ValueError(
                "engine was built with zero_grad=False, so .grad would hold earlier updates' "
                "already-averaged gradients too and they would be averaged again. Build the "
                "Engine with zero_grad=True (the default) and accumulate yourself if needed."
            )
        self.engine = engine
        self.average: Average = average
        self.group = group
        self.check_shapes = check_shapes
        self.bucket_cap_mb = bucket_cap_mb
        self.rank, self.world_size = _world(group)
        if broadcast and isinstance(engine.model, nn.Module):
            broadcast_parameters(engine.model, group=group)

    def feed(
        self,
        inputs: Tensor,
        targets: Tensor,
        reset: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[Update]:
        """As :meth:`tbptt.Engine.feed`; every rank must feed the same shapes at the same time."""
        if self.check_shapes:
            _check_same_shapes(inputs, targets, self.group)
        return self._reduced(self.engine.feed(inputs, targets, reset, mask))

    def flush(self) -> Iterator[Update]:
        """As :meth:`tbptt.Engine.flush` (every rank flushes at the same point of the stream)."""
        return self._reduced(self.engine.flush())

    def reset_stream(self) -> None:
        """Forget the stream without an update (on every rank)."""
        self.engine.reset_stream()

    def _reduced(self, updates: Iterator[Update]) -> Iterator[Update]:
        for update in updates:
            yield self._reduce(update)

    def _reduce(self, update: Update) -> Update:
        if self.world_size == 1:
            return update
        device = _comm_device(self.group)
        finite = 1.0 if update.finite else 0.0
        count = update.trained_count.to(device, torch.float64) * finite
        stats = torch.stack(
            [
                update.loss.to(device, torch.float64).nan_to_num()
                * (count if self.engine.reduction == "mean" else finite),
                count,
                update.report_sum.to(device, torch.float64),
                update.report_count.to(device, torch.float64),
                torch.tensor(finite, dtype=torch.float64, device=device),
            ]
        )
        dist.all_reduce(stats, group=self.group)
        params = self.engine._parameters()
        if self.average == "sum":
            all_reduce_gradients(
                params, op="sum", group=self.group, bucket_cap_mb=self.bucket_cap_mb
            )
        else:
            weight: float | Tensor = finite
            if self.average == "tokens":
                weight = update.trained_count * finite
            all_reduce_gradients(
                params, weight=weight, group=self.group, bucket_cap_mb=self.bucket_cap_mb
            )
        loss_sum, total, report_sum, report_count, finite_ranks = stats.unbind()
        loss = loss_sum / total.clamp(min=1) if self.engine.reduction == "mean" else loss_sum
        dtype = update.loss.dtype
        return dataclasses.replace(
            update,
            loss=loss.to(update.loss.device, dtype),
            trained_count=total.to(update.trained_count.device, update.trained_count.dtype),
            report_sum=report_sum.to(update.report_sum.device, update.report_sum.dtype),
            report_count=report_count.to(update.report_count.device, update.report_count.dtype),
            finite=bool(finite_ranks == self.world_size),
        )

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This rank's engine state, with the rank and world size it belongs to."""
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "engine": self.engine.state_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue this rank's stream; the world size and rank must be those that saved it."""
        _check_saved_world(saved.get("world_size"), self.world_size)
        if saved.get("rank") != self.rank:
            raise ValueError(
                f"saved is rank {saved.get('rank')}'s engine state, but this is rank {self.rank}. "
                "Give each rank its own saved state (load_checkpoint does)."
            )
        self.engine.load_state_dict(saved["engine"])


def _check_saved_world(saved: object, world: int) -> None:
    if saved != world:
        raise ValueError(
            f"The checkpoint was saved by world_size={saved} ranks, but this run has "
            f"world_size={world}. Each rank's carried state and data position belong to its "
            f"shard of the streams, so resume with the same number of processes (torchrun "
            f"--nnodes N --nproc_per_node M with N*M = {saved}), or start new streams from the "
            "saved weights (load_checkpoint(..., streams=False))."
        )


def __getattr__(name: str) -> Any:
    """``save_checkpoint``/``load_checkpoint`` live in :mod:`tbptt.integrations.dist_checkpoint`
    (which imports this module); they stay importable from here, resolved on first use so that
    either module can be imported first (PEP 562)."""
    if name in ("load_checkpoint", "save_checkpoint"):
        from tbptt.integrations import dist_checkpoint

        return getattr(dist_checkpoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

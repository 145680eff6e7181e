"""``ChunkStream``: what every batcher shares: position, epochs, sharding, resuming.

A chunk stream lays its data out, once per epoch, into ``world_size * batch_size`` global rows
of equal length (a whole number of chunks); rank ``r`` takes the global rows
``r, r + world_size, r + 2 * world_size, ...`` as its ``batch_size`` rows. So every rank sees
the same number of chunks, ranks hold disjoint whole rows, and together they hold all the
data the layout keeps. Chunk ``c`` is built on demand from that layout: random access, cheap
to resume anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tbptt.chunk import Chunk
from tbptt.data._checks import Prepared, check_choice, check_int, take

__all__ = ["ChunkStream"]


class Layout:
    """One epoch's arrangement of this rank's rows (internal): its chunks, built on demand."""

    num_chunks: int

    def chunk(self, index: int) -> Chunk:
        raise NotImplementedError


class IndexLayout(Layout):
    """Rows given as gather indices into flat storage of steps (-1 marks padding)."""

    def __init__(self, prep: Prepared, index: Tensor, reset: Tensor, mask: Tensor, L: int) -> None:
        self.prep, self.L = prep, L
        self.index, self.reset, self.mask = index, reset, mask  # (B, C * L)
        self.num_chunks = index.shape[1] // L

    def chunk(self, index: int) -> Chunk:
        cols = slice(index * self.L, (index + 1) * self.L)
        ix = self.index[:, cols]  # (B, L)
        valid = ix >= 0
        inputs = take(self.prep.x, ix, valid)  # (B, L, ...)
        targets = self.prep.targets(ix, valid)  # (B, L, ...)
        if targets is None:
            targets = inputs.new_zeros(*ix.shape, 0)
        return Chunk(inputs, targets, self.reset[:, cols].clone(), self.mask[:, cols].clone())


class ChunkStream:
    """Base class of ``StreamBatcher`` and ``TokenBatcher``: iterate, shard, resume.

    Iterating yields the chunks of the current epoch from the current position; when the epoch
    is exhausted the stream moves to the start of the next epoch (so a plain ``for`` loop per
    epoch sees a new shuffle each time). ``set_epoch(e)`` jumps to the start of epoch ``e``
    (like ``DistributedSampler.set_epoch``) unless epoch ``e`` is already the current one, in
    which case the position is kept, so a resumed epoch goes on where it stopped.
    ``state_dict()``/``load_state_dict()`` save and restore (epoch, chunk, seed).

    >>> from tbptt.data import StreamBatcher
    >>> seqs = [torch.randn(n, 2) for n in (9, 4, 7, 5)]
    >>> b = StreamBatcher(seqs, "next", batch_size=2, chunk_len=3, shuffle=True, seed=1)
    >>> it = iter(b); first = next(it)                   # interrupted after one chunk
    >>> state = b.state_dict(); (state["epoch"], state["chunk"], state["seed"])
    (0, 1, 1)
    >>> again = StreamBatcher(seqs, "next", batch_size=2, chunk_len=3, shuffle=True)
    >>> again.load_state_dict(state)
    >>> torch.equal(next(iter(again)).inputs, next(it).inputs)      # the same next chunk
    True
    """

    def __init__(
        self,
        *,
        batch_size: int,
        chunk_len: int,
        tail: str,
        shuffle: bool,
        seed: int,
        world_size: int,
        rank: int,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size)
        self.chunk_len = check_int("chunk_len", chunk_len)
        self.tail = check_choice("tail", tail, ("pad", "drop"))
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle: expected True or False, got {shuffle!r}.")
        self.shuffle = shuffle
        self.seed = check_int("seed", seed, minimum=0)
        self.world_size = check_int("world_size", world_size)
        self.rank = check_int("rank", rank, minimum=0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank: got rank={rank} with world_size={world_size}; ranks are 0..world_size-1. "
                "Pass torch.distributed.get_rank() and get_world_size()."
            )
        self._epoch = 0
        self._chunk = 0
        self._cache: tuple[int, Layout] | None = None

    # -- to implement --------------------------------------------------------------------
    def _make_layout(self, epoch: int) -> Layout:
        """This rank's rows for ``epoch`` (the same global layout on every rank)."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """What a saved position is only valid for (checked by ``load_state_dict``)."""
        return {
            "kind": type(self).__name__,
            "batch_size": self.batch_size,
            "chunk_len": self.chunk_len,
            "tail": self.tail,
            "shuffle": self.shuffle,
            "world_size": self.world_size,
        }

    # -- layout ---------------------------------------------------------------------------
    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def _layout(self, epoch: int) -> Layout:
        """The epoch's layout (cached for the last epoch asked)."""
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._make_layout(epoch))
        return self._cache[1]

    def _local_rows(self) -> Tensor:
        """The global rows this rank holds, ``(B,)``: ``rank, rank + world_size, ...``."""
        return self.rank + self.world_size * torch.arange(self.batch_size)

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch

    @property
    def position(self) -> int:
        """Index of the next chunk in the current epoch."""
        return self._chunk

    def __len__(self) -> int:
        """Chunks in the current epoch (the same on every rank; may change with the shuffle)."""
        return self._layout(self._epoch).num_chunks

    def chunk(self, index: int) -> Chunk:
        """Chunk ``index`` of the epoch: inputs/targets ``(B, L, ...)``, reset/mask ``(B, L)``."""
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int in [0, {n}), got {index!r}.")
        if not 0 <= index < n:  # out of range: IndexError, as for a sequence
            raise IndexError(f"index: expected an int in [0, {n}), got {index!r}.")
        return self._layout(self._epoch).chunk(int(index))

    def __iter__(self) -> Iterator[Chunk]:
        """The rest of the current epoch, chunk by chunk; then move to the next epoch."""
        while self._chunk < len(self):
            c = self._chunk
            chunk = self.chunk(c)
            self._chunk = c + 1  # the position counts chunks handed out
            yield chunk
        self._epoch += 1
        self._chunk = 0

    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch`` (its own seeded shuffle); keep the position if current."""
        epoch = check_int("epoch", epoch, minimum=0)
        if epoch != self._epoch:
            self._epoch, self._chunk = epoch, 0

    # -- resuming -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The iteration position: ``{"epoch", "chunk", "seed", "config"}`` (plain Python)."""
        return {
            "epoch": self._epoch,
            "chunk": self._chunk,
            "seed": self.seed,
            "config": self._config(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position: the next chunk is the one that would have come next.

        The seed is taken from ``state``; ``config`` (if present) must match this stream's
        settings, since a position means nothing for another layout.
        """
        if not isinstance(state, dict) or not {"epoch", "chunk", "seed"} <= state.keys():
            raise TypeError(
                f"state: expected a dict with keys 'epoch', 'chunk', 'seed' (from state_dict()), "
                f"got {state!r}."
            )
        saved = state.get("config")
        if saved is not None:
            ours = self._config()
            diff = [
                f"{k}={saved.get(k)!r} (here {v!r})" for k, v in ours.items() if saved.get(k) != v
            ]
            if diff:
                raise ValueError(
                    "state: saved with other settings: " + ", ".join(diff) + ". Resume with the "
                    "same data and settings as the run that saved it."
                )
        epoch = check_int("state['epoch']", state["epoch"], minimum=0)
        chunk = check_int("state['chunk']", state["chunk"], minimum=0)
        seed = check_int("state['seed']", state["seed"], minimum=0)
        before = (self.seed, self._epoch, self._chunk)
        self.seed, self._epoch, self._chunk = seed, epoch, 0
        if seed != before[0]:
            self._cache = None
        n = len(self)
        if chunk > n:
            self.seed, self._epoch, self._chunk = before
            self._cache = None
            raise ValueError(
                f"state['chunk']: got {chunk} but epoch {epoch} has {n} chunks. The state comes "
                "from other data; resume with the data that saved it."
            )
        self._chunk = chunk

    def _check_ranks(self, kept: int, what: str, fix: str = "more sequences") -> None:
        """Every rank must get at least one row of data."""
        if kept < self.world_size:
            raise ValueError(
                f"world_size: got world_size={self.world_size} but only {kept} {what} to share; "
                f"every rank needs at least one row with data. Use fewer ranks or {fix}."
            )

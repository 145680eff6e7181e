"""Streaming a long-format panel file into training chunks in bounded memory.

A panel file holds one row per (id, step), the rows of each id contiguous and in time order:
a Parquet file (read one row group at a time with ``pyarrow``, only the row groups that hold
this rank's ids) or a ``.npy`` array ``(N, T, F)`` opened with ``mmap_mode="r"`` (id = the
first axis, columns = feature indices). Nothing ever holds the whole file:

1. ``index_ids`` reads the id column (and the time column, to check the order) once and keeps
   one start row and length per id (it and ``PanelTable``, the file read in blocks, live in
   :mod:`tbptt.tabular.panel_file` and are importable from here too);
2. ``column_stats`` is a streaming pass for the scaling statistics: per-column count, mean and
   variance merged batch by batch (Chan, Golub & LeVeque 1979, the pairwise update);
3. ``PanelStream`` reads this rank's contiguous block of ids and packs them, one whole id per
   row, into B rows exactly like ``tbptt.data.StreamBatcher(layout="packed", tail="pad")``
   (each sequence to the currently shortest row, a reset where it starts, no padding but at the
   end), chunk by chunk. In memory: the ids overlapping the current chunk (at most about B of
   them) plus one Parquet row group of the columns read (write files with row groups of
   ~10^5 rows, e.g. ``pyarrow.parquet.write_table(t, path, row_group_size=100_000)``).
The ids are read in file order (no shuffling between epochs).

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "panel.npy")
>>> np.save(path, np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1))   # 2 ids x 5 steps
>>> s = PanelStream(path, inputs=[0], targets=[0], batch_size=1, chunk_len=4)
>>> [c.inputs[0, :, 0].tolist() for c in s]                  # x[t]: 4 steps per id
[[0.0, 1.0, 2.0, 3.0], [5.0, 6.0, 7.0, 8.0]]
>>> [c.reset[0].tolist() for c in s][1], s.num_chunks
([True, False, False, False], 2)
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from tbptt.chunk import Chunk
from tbptt.data._checks import check_choice, check_int
from tbptt.data._plan import pack
from tbptt.tabular.panel_file import (  # re-exported: the file's reading and index
    BATCH_ROWS,
    Column,
    IdIndex,
    IntArray,
    PanelTable,
    _plain,
    index_ids,
    shard_of,
)

__all__ = [
    "ColumnStats",
    "IdIndex",
    "PanelStream",
    "column_stats",
    "index_ids",
    "pack_chunks",
    "shard_of",
]

FloatArray = npt.NDArray[np.float64]


# -- pass 2: scaling statistics --------------------------------------------------------------
@dataclass(frozen=True)
class ColumnStats:
    """Per-column count, mean and standard deviation of the finite values."""

    columns: tuple[Column, ...]
    count: FloatArray  # (C,)
    mean: FloatArray  # (C,)
    m2: FloatArray  # (C,) sum of squared deviations from the mean

    @property
    def std(self) -> FloatArray:
        """Population standard deviation; 1 where a column is constant (nothing to scale)."""
        sd = np.sqrt(self.m2 / np.maximum(self.count, 1))
        return np.where(sd > 0, sd, 1.0)

    @classmethod
    def of(cls, columns: Sequence[Column], block: np.ndarray) -> ColumnStats:
        """The statistics of one block ``(n, C)`` (NaN ignored)."""
        x = block.astype(np.float64)
        ok = np.isfinite(x)
        n = ok.sum(0).astype(np.float64)
        mean = np.where(ok, x, 0.0).sum(0) / np.maximum(n, 1)
        m2 = np.where(ok, (x - mean) ** 2, 0.0).sum(0)
        return cls(tuple(columns), n, mean, m2)

    def merge(self, other: ColumnStats) -> ColumnStats:
        """Both blocks' statistics: Chan, Golub & LeVeque's pairwise update (stable)."""
        n = self.count + other.count
        d = other.mean - self.mean
        w = other.count / np.maximum(n, 1)
        m2 = self.m2 + other.m2 + d**2 * self.count * w
        return ColumnStats(self.columns, n, self.mean + d * w, m2)


def column_stats(
    path: str | os.PathLike[str],
    columns: Sequence[Column],
    rows: tuple[int, int] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> ColumnStats:
    """Streaming statistics of ``columns`` over ``rows`` (default: the whole file).

    Under ``torch.distributed`` pass this rank's rows and merge the ranks' results with
    ``all_gather_object`` (``PanelStream(scale="fit")`` does both).
    """
    table = PanelTable(path, batch_rows)
    return _stats(table, table.check_numeric("columns", columns), rows or (0, table.num_rows))


def _stats(table: PanelTable, cols: list[Column], rows: tuple[int, int]) -> ColumnStats:
    stats = ColumnStats(tuple(cols), *(np.zeros(len(cols)) for _ in range(3)))
    for block in table.blocks(cols, *rows):
        stats = stats.merge(ColumnStats.of(cols, block))
    return stats


# -- pass 3: chunks ----------------------------------------------------------------------------
def dist_rank() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PanelStream:
    """Chunks ``(B, L, ...)`` of a panel file, streamed: one whole id per row, packed.

    Args:
        path: a ``.parquet`` file (long format) or a ``.npy`` array ``(N, T, F)``.
        inputs, targets: the input and target columns (names; feature indices for ``.npy``).
        id, time: the id column (``None``: one sequence, or the first axis of ``.npy``) and the
            time column whose order is checked (see ``index_ids``).
        batch_size, chunk_len: B rows per chunk on this rank, L steps per chunk.
        target: ``"next"`` (input at t, target columns at t + 1; each id loses its last step)
            or ``"step"`` (the target columns at t).
        scale: ``None``, a ``ColumnStats`` to standardise with, or ``"fit"``: a first streaming
            pass over this rank's rows, merged across ranks under ``torch.distributed``.
        rank, world_size: this rank's contiguous block of ids (default: ``torch.distributed``'s,
            else 0 and 1). Only the rows of that block are read (the row groups holding them).
            Every rank yields the same number of chunks (the last ones padded, mask False).

    Chunks are those of ``StreamBatcher(xs, ys, layout="packed", tail="pad")`` over this rank's
    ids; non-finite targets are masked, non-finite inputs refused. The file's order is the
    order of the ids (no shuffle). Memory: the ids overlapping the current chunk plus one
    row group of the columns read, whatever the file's size.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        inputs: Sequence[Column],
        targets: Sequence[Column],
        *,
        batch_size: int,
        chunk_len: int,
        id: Column | None = None,
        time: Column | None = None,
        target: Literal["next", "step"] = "next",
        scale: ColumnStats | Literal["fit"] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        dtype: torch.dtype = torch.float32,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size)
        self.chunk_len = check_int("chunk_len", chunk_len)
        self.target = check_choice("target", target, ("next", "step"))
        self.dtype = dtype
        self.table = PanelTable(path, batch_rows)
        self.inputs = self.table.check_numeric("inputs", inputs)
        self.targets = self.table.check_numeric("targets", targets)
        self.columns = list(dict.fromkeys([*self.inputs, *self.targets]))  # read each once
        if rank is None or world_size is None:
            rank, world_size = dist_rank()
        self.world_size = check_int("world_size", world_size)
        self.rank = check_int("rank", rank, minimum=0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank: got rank={rank} with world_size={world_size}; ranks are 0..world_size-1."
            )
        self.index = index_ids(path, id, time, batch_rows=batch_rows)
        self.ids = self.index.shard(self.rank, self.world_size)
        self.rows = self.index.rows(self.ids)
        steps = self.index.lengths - (self.target == "next")  # (N,) per id
        self.num_chunks = chunks_needed(steps, self.batch_size, self.chunk_len, self.world_size)
        self.scale = self._fit() if isinstance(scale, str) and scale == "fit" else scale
        if self.scale is not None and not isinstance(self.scale, ColumnStats):
            raise TypeError(f"scale: expected None, 'fit' or a ColumnStats, got {scale!r}.")

    def _fit(self) -> ColumnStats:
        stats = _stats(self.table, self.columns, self.rows)
        dist = torch.distributed
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            every: list[Any] = [None] * self.world_size
            dist.all_gather_object(every, stats)
            stats = every[0]
            for other in every[1:]:
                stats = stats.merge(other)
        return stats

    @property
    def rows_read(self) -> int:
        """Value rows read from the file so far (statistics pass included)."""
        return self.table.rows_read

    def __len__(self) -> int:
        return self.num_chunks

    def sequences(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """This rank's ids in file order: ``(x (T, F_in), y (T, F_out), valid (T,))``."""
        lengths = self.index.lengths[self.ids].tolist()
        k, parts, have = 0, [], 0
        for block in self.table.blocks(self.columns, *self.rows):
            while len(block) and k < len(lengths):
                take = min(lengths[k] - have, len(block))
                parts.append(block[:take])
                have, block = have + take, block[take:]
                if have == lengths[k]:
                    out = self._split(np.concatenate(parts), self.index.ids[self.ids][k])
                    k, parts, have = k + 1, [], 0
                    if len(out[0]):
                        yield out

    def _split(self, rows: np.ndarray, key: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One id's rows ``(T, C)`` -> scaled inputs, targets and the finite-target flags."""
        rows = rows.astype(np.float64)
        if self.scale is not None:
            where = [self.scale.columns.index(c) for c in self.columns]
            rows = (rows - self.scale.mean[where]) / self.scale.std[where]
        pick = {c: j for j, c in enumerate(self.columns)}
        x = rows[:, [pick[c] for c in self.inputs]]  # (T, F_in)
        y = rows[:, [pick[c] for c in self.targets]]  # (T, F_out)
        if self.target == "next":
            x, y = x[:-1], y[1:]
        bad = ~np.isfinite(x)
        if bad.any():
            t, j = np.argwhere(bad)[0]
            raise ValueError(
                f"inputs: column {self.inputs[j]!r} has {int(bad.sum())} missing/non-finite "
                f"value(s) in id {_plain(key)!r} (first at its step {t}); fill them (e.g. forward fill) "
                "or leave the column out."
            )
        valid = np.asarray(np.isfinite(y).all(1))  # (T,) a missing target is masked
        return x, np.where(np.isfinite(y), y, 0.0), valid

    def __iter__(self) -> Iterator[Chunk]:
        """The chunks, in order; each call reads the rank's rows again from the file."""
        widths = (len(self.inputs), len(self.targets))
        return pack_chunks(
            self.sequences(), self.batch_size, self.chunk_len, self.num_chunks, widths, self.dtype
        )


def chunks_needed(steps: IntArray, batch_size: int, chunk_len: int, world_size: int) -> int:
    """Chunks every rank yields: the most any rank's block of ids needs once packed."""
    need = 0
    for rank in range(world_size):
        mine = steps[shard_of(len(steps), rank, world_size)]
        mine = mine[mine > 0]
        if not len(mine):
            raise ValueError(
                f"world_size: rank {rank} of {world_size} gets no steps ({len(steps)} ids in "
                "all, ids of one row give none with target='next'). Use fewer ranks."
            )
        need = max(need, -(-int(pack(mine, batch_size)[2].max()) // chunk_len))
    return need


Sequence3 = tuple[np.ndarray, np.ndarray, np.ndarray]  # x (T, F_in), y (T, F_out), valid (T,)


def pack_chunks(
    seqs: Iterator[Sequence3],
    batch_size: int,
    chunk_len: int,
    num_chunks: int,
    widths: tuple[int, int],
    dtype: torch.dtype = torch.float32,
) -> Iterator[Chunk]:
    """Pack sequences, in order, into B rows on the fly: each to the currently shortest row
    (``StreamBatcher``'s packed layout), a reset where it starts; ``num_chunks`` chunks (the
    last ones padded, mask False). Only the sequences overlapping the current chunk are held."""
    B, L = batch_size, chunk_len
    heap = [(0, r) for r in range(B)]  # (steps placed in the row, row): the packing of pack()
    pending: list[deque[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = [
        deque() for _ in range(B)
    ]
    for c in range(num_chunks):
        lo, hi = c * L, (c + 1) * L
        while heap[0][0] < hi:  # a row runs out inside this chunk: give it the next sequence
            nxt = next(seqs, None)
            if nxt is None:
                break
            at, r = heapq.heappop(heap)
            pending[r].append((at, *nxt))
            heapq.heappush(heap, (at + len(nxt[0]), r))
        x = np.zeros((B, L, widths[0]))  # (B, L, F_in)
        y = np.zeros((B, L, widths[1]))  # (B, L, F_out)
        reset = np.zeros((B, L), dtype=bool)
        mask = np.zeros((B, L), dtype=bool)
        for r, segs in enumerate(pending):
            for at, sx, sy, ok in segs:
                a, b = max(at, lo), min(at + len(sx), hi)
                x[r, a - lo : b - lo] = sx[a - at : b - at]
                y[r, a - lo : b - lo] = sy[a - at : b - at]
                mask[r, a - lo : b - lo] = ok[a - at : b - at]
                if lo <= at < hi:
                    reset[r, at - lo] = True
            while segs and segs[0][0] + len(segs[0][1]) <= hi:
                segs.popleft()
        yield Chunk(
            torch.as_tensor(x, dtype=dtype),
            torch.as_tensor(y, dtype=dtype),
            torch.from_numpy(reset),
            torch.from_numpy(mask),
        )

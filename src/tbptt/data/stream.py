"""``StreamBatcher``: variable-length sequences -> B parallel rows -> chunks with reset and mask.

Two layouts (``L`` = ``chunk_len``), each sequence going whole to the currently shortest row:

- ``"packed"``: a sequence starts right after the previous one in its row, so resets fall
  mid-chunk and only the end of the stream is padded. ``tail="pad"`` pads the last partial
  chunk (mask False), ``tail="drop"`` drops it.
- ``"aligned"``: each sequence starts at a chunk boundary; its last partial chunk is padded
  (``tail="pad"``) or dropped (``tail="drop"``; with ``target_at="end"`` the leftover steps at
  the sequence's start are dropped instead, keeping the target step).

Example: two sequences of 5 and 3 steps, B = 1, L = 4::

    packed : [a0 a1 a2 a3] [a4 b0 b1 b2]          reset at a0 and b0 (mid-chunk)
    aligned: [a0 a1 a2 a3] [a4 __ __ __] [b0 b1 b2 __]    __ = padding, mask False
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tbptt.data._checks import TargetAt, Targets, check_choice, prepare
from tbptt.data._plan import Segments, pack, scatter
from tbptt.data.base import ChunkStream, IndexLayout, Layout

__all__ = ["StreamBatcher"]


class StreamBatcher(ChunkStream):
    """Batch variable-length sequences into B stateful rows, chunk by chunk.

    Args:
        sequences: N sequences ``(T_i, ...)`` with the same step shape (kept as given: token
            ids ``(T_i,)`` give chunks ``(B, L)``, features ``(T_i, F)`` give ``(B, L, F)``).
        targets: ``None`` (chunks carry an empty ``(B, L, 0)`` target), ``"next"`` (input
            ``x[t]``, target ``x[t+1]``), or one entry per sequence: ``(T_i, ...)`` aligned with
            the inputs, or one target ``(...)`` per sequence with ``target_at="end"`` (mask True
            only at the sequence's last step).
        batch_size: B, rows per chunk on this rank.
        chunk_len: L, steps per chunk.
        layout: ``"packed"`` or ``"aligned"`` (see the module doc).
        tail: ``"pad"`` or ``"drop"`` the last partial chunk.
        shuffle: shuffle the order of the sequences each epoch (never the steps inside one),
            seeded by ``(seed, epoch)``; the same on every rank.
        world_size, rank: sharding. The layout is built for ``world_size * batch_size`` rows;
            rank r takes rows ``r, r + world_size, ...``: whole rows of whole sequences, the same
            number of chunks on every rank, disjoint and together complete.

    Yields ``Chunk(inputs (B, L, ...), targets (B, L, ...), reset (B, L), mask (B, L))``; row b
    of chunk c+1 continues row b of chunk c. See ``ChunkStream`` for epochs and resuming.

    >>> import torch
    >>> seqs = [torch.arange(1.0, 6.0), torch.arange(11.0, 14.0)]     # 5 and 3 steps
    >>> b = StreamBatcher(seqs, "next", batch_size=1, chunk_len=4, layout="aligned")
    >>> [c.inputs.tolist() for c in b]                                   # x[t]
    [[[1.0, 2.0, 3.0, 4.0]], [[11.0, 12.0, 0.0, 0.0]]]
    >>> b.set_epoch(0); [c.targets.tolist() for c in b]                  # x[t + 1]
    [[[2.0, 3.0, 4.0, 5.0]], [[12.0, 13.0, 0.0, 0.0]]]
    >>> c = StreamBatcher(seqs, batch_size=1, chunk_len=4).chunk(1)        # packed, no targets
    >>> c.inputs.tolist(), c.reset.tolist(), c.mask.tolist()
    ([[5.0, 11.0, 12.0, 13.0]], [[False, True, False, False]], [[True, True, True, True]])
    """

    def __init__(
        self,
        sequences: object,
        targets: Targets = None,
        *,
        batch_size: int,
        chunk_len: int,
        layout: str = "packed",
        target_at: TargetAt = "step",
        tail: str = "pad",
        shuffle: bool = False,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            chunk_len=chunk_len,
            tail=tail,
            shuffle=shuffle,
            seed=seed,
            world_size=world_size,
            rank=rank,
        )
        self.layout = check_choice("layout", layout, ("packed", "aligned"))
        self.target_at = check_choice("target_at", target_at, ("step", "end"))
        self._prep = prepare(sequences, targets, target_at, check_finite=check_finite)
        self._layout(self._epoch)  # lay out epoch 0 now: bad settings fail here, not mid-training

    @property
    def num_sequences(self) -> int:
        return self._prep.num_sequences

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "layout": self.layout,
            "target_at": self.target_at,
            "num_sequences": self.num_sequences,
            "num_steps": int(self._prep.lengths.sum()),
        }

    def _make_layout(self, epoch: int) -> Layout:
        prep, L = self._prep, self.chunk_len
        rows = self.world_size * self.batch_size
        n = prep.num_sequences
        order = self._rng(epoch).permutation(n) if self.shuffle else np.arange(n)
        lengths = prep.lengths[order]
        source = prep.offsets[order]
        if self.layout == "packed":
            self._check_ranks(n, "sequences")
            row, start, totals = pack(lengths, rows)
            longest = int(totals.max())
            chunks = -(-longest // L) if self.tail == "pad" else longest // L
            if chunks == 0:
                raise ValueError(
                    f"chunk_len: chunk_len={L} is longer than every row (the longest holds "
                    f"{longest} steps), so tail='drop' leaves nothing. Use tail='pad', a smaller "
                    "chunk_len or a smaller batch_size."
                )
        else:
            full, rest = np.divmod(lengths, L)
            pieces = full + (rest > 0) if self.tail == "pad" else full
            keep = pieces > 0
            if not keep.any():
                raise ValueError(
                    f"chunk_len: chunk_len={L} is longer than every sequence (the longest has "
                    f"{int(lengths.max())} steps), so tail='drop' leaves nothing. Use tail='pad' "
                    "or a smaller chunk_len."
                )
            what = "sequences" if self.tail == "pad" else f"sequences of >= chunk_len={L} steps"
            fix = "more sequences" if self.tail == "pad" else "a smaller chunk_len or tail='pad'"
            self._check_ranks(int(keep.sum()), what, fix)
            if self.tail == "drop" and self.target_at == "end":
                source = source + rest  # drop the leftover at the start, keep the target step
            lengths, source, pieces = lengths[keep], source[keep], pieces[keep]
            if self.tail == "drop":
                lengths = pieces * L
            row, start_chunk, totals = pack(pieces, rows)
            start, chunks = start_chunk * L, int(totals.max())
        mine = row % self.world_size == self.rank  # global row g is local row g // world_size
        segs = Segments(row[mine] // self.world_size, start[mine], lengths[mine], source[mine],
                        np.ones(int(mine.sum()), dtype=bool))  # fmt: skip
        index, reset = scatter(segs, self.batch_size, chunks * L)  # (B, C * L)
        mask = (index >= 0) & prep.m[index.clamp_min(0)]  # (B, C * L)
        return IndexLayout(prep, index, reset, mask, L)

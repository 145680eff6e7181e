"""Placing sequences into B rows: integer bookkeeping shared by the batchers (internal).

A *segment* is a run of consecutive steps of one sequence placed in one row at a given row
offset. ``scatter`` turns segments into a ``(rows, total)`` gather index (-1 on padding) and
the matching reset flags.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tbptt.data._checks import BoolArray, IntArray


def pack(sizes: IntArray, rows: int) -> tuple[IntArray, IntArray, IntArray]:
    """Assign items, in order, to the currently shortest row (ties: the lowest row index).

    Returns ``(row, start, row_sizes)``: each item's row and offset in it, each row's total.

    >>> row, start, total = pack(np.array([5, 3, 2, 4]), rows=2)
    >>> row.tolist(), start.tolist(), total.tolist()
    ([0, 1, 1, 0], [0, 0, 3, 5], [9, 5])
    """
    heap = [(0, r) for r in range(rows)]
    row = np.empty(len(sizes), dtype=np.int64)
    start = np.empty(len(sizes), dtype=np.int64)
    for i, size in enumerate(sizes.tolist()):
        at, r = heapq.heappop(heap)
        row[i], start[i] = r, at
        heapq.heappush(heap, (at + size, r))
    totals = np.zeros(rows, dtype=np.int64)
    for at, r in heap:
        totals[r] = at
    return row, start, totals


class Segments(NamedTuple):
    row: IntArray  # (S,) the row each segment goes to
    start: IntArray  # (S,) its offset in the row
    length: IntArray  # (S,) its number of steps
    source: IntArray  # (S,) flat index of its first step in the storage
    reset: BoolArray  # (S,) True when the segment begins a sequence (a reset before it)


def scatter(seg: Segments, rows: int, total: int) -> tuple[Tensor, Tensor]:
    """Gather index ``(rows, total)`` (-1 = padding) and reset flags ``(rows, total)``.

    Steps placed at or beyond ``total`` are dropped.

    >>> seg = Segments(np.array([0, 1]), np.array([0, 1]), np.array([2, 3]),
    ...                np.array([10, 20]), np.array([True, True]))
    >>> idx, reset = scatter(seg, rows=2, total=3)
    >>> idx.tolist(), reset.tolist()
    ([[10, 11, -1], [-1, 20, 21]], [[True, False, False], [False, True, False]])
    """
    idx = torch.full((rows, total), -1, dtype=torch.int64)
    reset = torch.zeros((rows, total), dtype=torch.bool)
    n = int(seg.length.sum())
    if n:
        which = np.repeat(np.arange(len(seg.length)), seg.length)  # segment of each step
        off = np.arange(n) - np.repeat(np.cumsum(seg.length) - seg.length, seg.length)
        pos = seg.start[which] + off
        keep = pos < total
        idx[torch.from_numpy(seg.row[which][keep]), torch.from_numpy(pos[keep])] = torch.from_numpy(
            (seg.source[which] + off)[keep]
        )
    first = seg.reset & (seg.start < total) & (seg.length > 0)
    reset[torch.from_numpy(seg.row[first]), torch.from_numpy(seg.start[first])] = True
    return idx, reset

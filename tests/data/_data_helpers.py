"""Helpers for the data tests: id-encoded sequences, stream readers, a reference GRU loop."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from tbptt.chunk import Chunk
from tbptt.state import reset_rows


def id_sequences(lengths: list[int]) -> list[Tensor]:
    """Sequence i is ``(T_i, 2)`` with step t = ``[i + 1, t]``: every step says who it is."""
    return [
        torch.stack([torch.full((n,), i + 1.0), torch.arange(n, dtype=torch.float32)], dim=1)
        for i, n in enumerate(lengths)
    ]


def read_rows(chunks: list[Chunk]) -> list[list[tuple[int, int, bool, bool] | None]]:
    """Concatenate chunks along time and decode each row into (seq, step, reset, mask) or None.

    ``None`` marks padding (inputs all zero), where mask and reset must be False.
    """
    x = torch.cat([c.inputs for c in chunks], dim=1)  # (B, T, 2)
    reset = torch.cat([c.reset for c in chunks], dim=1)  # (B, T)
    mask = torch.cat([c.mask for c in chunks], dim=1)  # (B, T)
    rows = []
    for b in range(x.shape[0]):
        row: list[tuple[int, int, bool, bool] | None] = []
        for t in range(x.shape[1]):
            i, s = int(x[b, t, 0]), int(x[b, t, 1])
            if i == 0:
                assert not mask[b, t] and not reset[b, t], "padding must be masked, no reset"
                row.append(None)
            else:
                row.append((i - 1, s, bool(reset[b, t]), bool(mask[b, t])))
        rows.append(row)
    return rows


def run_stream(gru: nn.GRU, chunks: Iterable[Chunk]) -> tuple[list[Tensor], list[Tensor]]:
    """Run a batch-first single-layer GRU over stateful chunks, resetting rows where ``reset``.

    A chunk is cut at every column holding a reset, so resets may fall mid-chunk. Returns per
    chunk the outputs ``(B, L, H)`` and the state entering each step ``(B, L, H)``.
    """
    h: Tensor | None = None
    outs, entering = [], []
    for chunk in chunks:
        b, n = chunk.reset.shape
        if h is None:
            h = torch.zeros(1, b, gru.hidden_size)
        cols = [0, *[t for t in range(1, n) if bool(chunk.reset[:, t].any())], n]
        ys, hs = [], []
        for a, z in itertools.pairwise(cols):
            h = reset_rows(h, chunk.reset[:, a], initial=None, batch_dim=1)
            y, h_next = gru(chunk.inputs[:, a:z], h)  # (B, z - a, H)
            prev = torch.cat([h.transpose(0, 1), y[:, :-1]], dim=1)  # state entering each step
            ys.append(y)
            hs.append(prev)
            h = h_next
        outs.append(torch.cat(ys, dim=1))
        entering.append(torch.cat(hs, dim=1))
    return outs, entering

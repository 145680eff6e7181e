"""``TokenBatcher``: the language-model layout, one token stream cut into B rows.

As ``batchify`` in PyTorch's word_language_model example: the stream is cut into B equal,
contiguous rows (the remainder is dropped) and read column-wise in chunks of ``chunk_len``,
input ``tokens[t]``, target ``tokens[t+1]``. Unlike the example, (input, target) pairs are
formed before cutting, so no pair is lost at a row boundary. Documents, given by their start
offsets, become resets: the state is re-initialised before each document's first token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tbptt.chunk import Chunk
from tbptt.data._checks import ArrayLike, _as_tensor, _check_finite, take
from tbptt.data.base import ChunkStream, Layout

__all__ = ["TokenBatcher"]


def _check_doc_starts(doc_starts: object, n: int) -> np.ndarray:
    if isinstance(doc_starts, (torch.Tensor, np.ndarray)):
        values = doc_starts.tolist()
    elif isinstance(doc_starts, (list, tuple, range)):
        values = list(doc_starts)
    else:
        raise TypeError(
            f"doc_starts: expected a list of token offsets, got {type(doc_starts).__name__}. "
            "Pass e.g. doc_starts=[0, 1200, 3400]."
        )
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"doc_starts: expected integer token offsets, got {values[:5]!r}...")
    starts = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(starts) and (starts.min() < 0 or starts.max() >= n):
        raise ValueError(
            f"doc_starts: offsets must lie in [0, {n}) (the stream has {n} tokens), got min "
            f"{starts.min()} and max {starts.max()}. Give the index of each document's first token."
        )
    if (np.diff(starts) <= 0).any():
        i = int(np.flatnonzero(np.diff(starts) <= 0)[0])
        raise ValueError(
            f"doc_starts: offsets must be strictly increasing, got {starts[i]} then "
            f"{starts[i + 1]} at positions {i}, {i + 1}. Sort them and remove duplicates."
        )
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts]).astype(np.int64)
    return starts


class TokenBatcher(ChunkStream):
    """The language-model layout: one token stream -> B contiguous rows -> chunks.

    Args:
        tokens: the stream ``(N, ...)``, usually token ids ``(N,)`` (chunks ``(B, L)``).
        batch_size: B, rows per chunk on this rank.
        chunk_len: L, steps per chunk (word_language_model's ``bptt``).
        doc_starts: offsets of the documents' first tokens (0 is implied); ``reset`` is True at
            the step whose input is a document's first token.
        mask_doc_boundary: mask the step whose target is the next document's first token (a
            prediction across documents); default True.
        tail: ``"pad"`` (mask False) or ``"drop"`` the last partial chunk.
        shuffle: shuffle the order of the documents each epoch (needs ``doc_starts``).
        world_size, rank: the stream is cut into ``world_size * batch_size`` rows; rank r takes
            rows ``r, r + world_size, ...``.

    ``reset`` is also True at each row's first step: a row starts from the initial state, as
    after ``init_hidden`` in word_language_model.

    >>> b = TokenBatcher(torch.arange(13), batch_size=2, chunk_len=4, doc_starts=[7])
    >>> c = b.chunk(0)
    >>> c.inputs.tolist(), c.targets.tolist()
    ([[0, 1, 2, 3], [6, 7, 8, 9]], [[1, 2, 3, 4], [7, 8, 9, 10]])
    >>> c.reset.tolist()
    [[True, False, False, False], [True, True, False, False]]
    >>> c.mask.tolist()
    [[True, True, True, True], [False, True, True, True]]
    """

    def __init__(
        self,
        tokens: ArrayLike,
        *,
        batch_size: int,
        chunk_len: int,
        doc_starts: Sequence[int] | ArrayLike | None = None,
        mask_doc_boundary: bool = True,
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
        x = _as_tensor("tokens", tokens)
        if x.ndim == 0 or x.shape[0] < 2:
            raise ValueError(
                f"tokens: got shape {tuple(x.shape)}; the stream needs at least 2 tokens along "
                "dim 0 (input tokens[t], target tokens[t+1])."
            )
        if check_finite:
            _check_finite("tokens", x)
        n = int(x.shape[0])
        self._starts = _check_doc_starts(doc_starts if doc_starts is not None else [], n)
        if shuffle and len(self._starts) < 2:
            raise ValueError(
                "shuffle: shuffle=True shuffles the order of documents, but doc_starts gives a "
                "single document. Pass doc_starts, or shuffle=False."
            )
        self.mask_doc_boundary = bool(mask_doc_boundary)
        self._tokens = x  # (N, ...)
        self._is_start = torch.zeros(n, dtype=torch.bool)  # (N,) token begins a document
        self._is_start[torch.from_numpy(self._starts)] = True
        rows = self.world_size * self.batch_size
        self.steps_per_row = (n - 1) // rows
        if self.steps_per_row == 0:
            raise ValueError(
                f"batch_size: {n} tokens give {n - 1} (input, target) pairs, fewer than the "
                f"{rows} rows asked (batch_size={self.batch_size} x world_size="
                f"{self.world_size}); every rank needs at least one row. Use a smaller "
                "batch_size or more tokens."
            )
        if self.tail == "drop" and self.steps_per_row < self.chunk_len:
            raise ValueError(
                f"chunk_len: chunk_len={self.chunk_len} is longer than a row "
                f"({self.steps_per_row} steps), so tail='drop' leaves nothing. Use tail='pad' "
                "or a smaller chunk_len/batch_size."
            )
        self._layout(self._epoch)

    def _config(self) -> dict[str, Any]:
        return {
            **super()._config(),
            "num_tokens": int(self._tokens.shape[0]),
            "num_docs": len(self._starts),
            "mask_doc_boundary": self.mask_doc_boundary,
        }

    def _make_layout(self, epoch: int) -> Layout:
        n, starts = int(self._tokens.shape[0]), self._starts
        pos = None  # stream position -> token index; None: the identity (documents in order)
        if self.shuffle:
            sizes = np.diff(np.append(starts, n))
            order = self._rng(epoch).permutation(len(starts))
            first = np.repeat(
                starts[order] - (np.cumsum(sizes[order]) - sizes[order]), sizes[order]
            )
            pos = torch.from_numpy(first + np.arange(n))  # (N,)
        m, L = self.steps_per_row, self.chunk_len
        chunks = -(-m // L) if self.tail == "pad" else m // L
        return _TokenLayout(self, pos, chunks)


class _TokenLayout(Layout):
    """Chunks of the language-model layout, computed from positions (no per-step index)."""

    def __init__(self, b: TokenBatcher, pos: Tensor | None, num_chunks: int) -> None:
        self.b, self.pos, self.num_chunks = b, pos, num_chunks
        self.first = b._local_rows() * b.steps_per_row  # (B,) first pair index of each row

    def chunk(self, index: int) -> Chunk:
        b, m, L = self.b, self.b.steps_per_row, self.b.chunk_len
        col = index * L + torch.arange(L)  # (L,) step in the row
        valid = (col < m).expand(b.batch_size, L)  # (B, L)
        k = self.first[:, None] + col.clamp(max=m - 1)[None, :]  # (B, L) pair index
        px, py = (k, k + 1) if self.pos is None else (self.pos[k], self.pos[k + 1])
        inputs = take(b._tokens, px, valid)  # (B, L, ...)
        targets = take(b._tokens, py, valid)  # (B, L, ...)
        reset = valid & (b._is_start[px] | (col == 0)[None, :])  # (B, L)
        mask = valid & ~b._is_start[py] if b.mask_doc_boundary else valid.clone()  # (B, L)
        return Chunk(inputs, targets, reset, mask)

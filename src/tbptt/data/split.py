"""Splitting strategies: turn sequences into fixed-length samples ``[N, L, F]``.

The four classic ways to prepare sequence data for a recurrent network (cf. J. Brownlee,
"How to Prepare Sequence Prediction for Truncated BPTT in Keras", 2017):

- ``as_is``: short, equal-length sequences used whole;
- ``naive_split``: long sequences cut into contiguous subsequences of length ``L``; the
  hidden state is carried from one subsequence to the next and reset where a sequence starts;
- ``one_step``: one time step per sample, leaning entirely on the carried state;
- ``sliding_windows``: overlapping windows, each an independent sample with no state carried
  (the multilayer-perceptron-style baseline).

Each returns ``Samples``: the arrays plus, per sample, ``reset`` (the state is re-initialised
before this sample), ``seq_id`` and ``position`` (index of its first step in its sequence).
``stateful_batches`` arranges samples into ``Chunk``s of B rows so that row b of chunk c+1
continues row b of chunk c, which is what carrying the state across samples needs.

Inputs always come out as ``[samples, timesteps, features]``: a ``(T,)`` sequence counts as
univariate, ``(T, 1)``. Given targets keep their own per-step shape (class ids stay ``(T,)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tbptt.chunk import Chunk
from tbptt.data._checks import (
    IntArray,
    Prepared,
    TargetAt,
    Targets,
    check_choice,
    check_int,
    prepare,
    take,
)
from tbptt.data._plan import Segments, pack, scatter

__all__ = ["Samples", "as_is", "naive_split", "one_step", "sliding_windows", "stateful_batches"]


class Samples(NamedTuple):
    """Fixed-length samples cut from sequences, with what is needed to carry state across them.

    Samples of one sequence are consecutive and in order.
    """

    inputs: Tensor  # (N, L, F) model inputs
    targets: Tensor | None  # (N, L, ...) targets, or None when none were given
    mask: Tensor  # (N, L) bool: this step's loss counts (False on padding)
    reset: Tensor  # (N,) bool: re-initialise the state before this sample
    seq_id: Tensor  # (N,) int64: index of the sequence the sample comes from
    position: Tensor  # (N,) int64: index of the sample's first step in its sequence


def _gather(prep: Prepared, seq: IntArray, start: IntArray, length: int) -> Samples:
    """Samples of ``length`` steps from ``start`` in sequence ``seq`` (padded past the end)."""
    steps = start[:, None] + np.arange(length)[None, :]  # (N, L) step index in the sequence
    valid = torch.from_numpy(steps < prep.lengths[seq][:, None])  # (N, L)
    index = torch.from_numpy(prep.offsets[seq][:, None] + steps)  # (N, L) into the flat storage
    index = torch.where(valid, index, torch.zeros((), dtype=index.dtype))
    inputs = take(prep.x, index, valid)  # (N, L, F)
    targets = prep.targets(index, valid)  # (N, L, ...) or None
    mask = valid & prep.m[index]  # (N, L)
    seq_t = torch.from_numpy(seq)
    start_t = torch.from_numpy(start)
    first = torch.ones(len(seq), dtype=torch.bool)
    first[1:] = seq_t[1:] != seq_t[:-1]
    return Samples(inputs, targets, mask, first, seq_t, start_t)


def as_is(
    sequences: object,
    targets: Targets = None,
    *,
    target_at: TargetAt = "step",
    check_finite: bool = True,
) -> Samples:
    """Use short equal-length sequences whole: N sequences of T steps -> ``[N, T, F]``.

    Every sample is its own sequence (``reset`` all True). ``targets``: ``None``, ``"next"``
    (input ``x[t]``, target ``x[t+1]``: T-1 steps), or one array per sequence, ``(T, ...)``
    with ``target_at="step"`` or one target ``(...)`` per sequence with ``target_at="end"``
    (mask True only at the last step).

    >>> seqs = [torch.randn(25) for _ in range(100)]      # 100 univariate sequences, 25 steps
    >>> s = as_is(seqs)
    >>> tuple(s.inputs.shape), bool(s.reset.all()), bool(s.mask.all())
    ((100, 25, 1), True, True)
    """
    prep = prepare(sequences, targets, target_at, features_last=True, check_finite=check_finite)
    lengths = prep.lengths
    if (lengths != lengths[0]).any():
        i = int(np.flatnonzero(lengths != lengths[0])[0])
        raise ValueError(
            f"sequences[{i}] has {lengths[i]} steps but sequences[0] has {lengths[0]}: as_is "
            "needs equal-length sequences. Use naive_split(sequences, length) for long sequences "
            "or StreamBatcher for variable lengths."
        )
    n = prep.num_sequences
    return _gather(prep, np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64), int(lengths[0]))


def naive_split(
    sequences: object,
    length: int,
    targets: Targets = None,
    *,
    tail: str = "pad",
    target_at: TargetAt = "step",
    check_finite: bool = True,
) -> Samples:
    """Cut sequences into contiguous subsequences of ``length`` steps, keeping continuity.

    Sequence i gives ``T_i // length`` full subsequences, in order, plus a shorter tail:
    ``tail="pad"`` keeps it as one more sample padded with zeros (mask False there);
    ``tail="drop"`` drops it (the leftover steps at the end; with ``target_at="end"`` the
    leftover steps at the *start*, so the sequence's target step is kept). ``reset`` is True on
    the first subsequence of each sequence: carry the state from one sample to the next within
    a sequence and re-initialise it where ``reset`` is True (``stateful_batches`` does the
    arranging into rows). ``targets`` as in ``as_is``.

    100 sequences of 50,000 steps, subsequences of 500: 10,000 samples, a reset every 100.

    >>> s = naive_split([torch.randn(5_000) for _ in range(4)], 500)
    >>> tuple(s.inputs.shape), s.reset.nonzero().flatten().tolist(), s.position[:3].tolist()
    ((40, 500, 1), [0, 10, 20, 30], [0, 500, 1000])
    """
    length = check_int("length", length)
    tail = check_choice("tail", tail, ("pad", "drop"))
    prep = prepare(sequences, targets, target_at, features_last=True, check_finite=check_finite)
    longest = int(prep.lengths.max())
    if length > longest:
        raise ValueError(
            f"length={length} is larger than every sequence (the longest has {longest} steps). "
            f"Pass length<={longest}, or use as_is/StreamBatcher for short sequences."
        )
    full, rest = np.divmod(prep.lengths, length)
    pieces = full + (rest > 0) if tail == "pad" else full
    shift = rest if (tail == "drop" and target_at == "end") else np.zeros_like(rest)
    seq = np.repeat(np.arange(prep.num_sequences, dtype=np.int64), pieces)
    j = np.arange(len(seq)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    return _gather(prep, seq, shift[seq] + j * length, length)


def one_step(
    sequences: object,
    targets: Targets = None,
    *,
    target_at: TargetAt = "step",
    check_finite: bool = True,
) -> Samples:
    """One time step per sample: ``[sum T_i, 1, F]``, the memory lives in the carried state.

    The state must be carried from sample to sample and reset at each sequence start
    (``reset`` True on each sequence's first step). Same as ``naive_split(sequences, 1)``.

    >>> s = one_step([torch.randn(50) for _ in range(100)])
    >>> tuple(s.inputs.shape), s.reset.nonzero().flatten()[:3].tolist()
    ((5000, 1, 1), [0, 50, 100])
    """
    return naive_split(sequences, 1, targets, target_at=target_at, check_finite=check_finite)


def sliding_windows(
    sequences: object,
    window: int,
    stride: int = 1,
    targets: Targets = None,
    *,
    target_at: TargetAt = "step",
    check_finite: bool = True,
) -> Samples:
    """Overlapping windows of ``window`` steps every ``stride`` steps: independent samples.

    The multilayer-perceptron-style baseline: nothing is carried between windows (``reset`` all
    True), so a window sees exactly ``window`` steps of the past. Sequences shorter than
    ``window`` give no window. ``targets``: ``None``, ``"next"`` or per-step arrays ``(T_i, ...)``;
    ``target_at="end"`` makes only each window's last step count (window -> next value).

    >>> x = torch.arange(6.0)
    >>> s = sliding_windows([x], window=3, stride=2, targets="next", target_at="end")
    >>> s.inputs[..., 0].tolist(), s.targets[:, -1, 0].tolist(), s.mask[0].tolist()
    ([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]], [3.0, 5.0], [False, False, True])
    """
    window = check_int("window", window)
    stride = check_int("stride", stride)
    at = check_choice("target_at", target_at, ("step", "end"))
    prep = prepare(sequences, targets, "step", features_last=True, check_finite=check_finite)
    longest = int(prep.lengths.max())
    if window > longest:
        raise ValueError(
            f"window={window} is larger than every sequence (the longest has {longest} steps). "
            f"Pass window<={longest}."
        )
    count = np.maximum(0, (prep.lengths - window) // stride + 1)
    seq = np.repeat(np.arange(prep.num_sequences, dtype=np.int64), count)
    j = np.arange(len(seq)) - np.repeat(np.cumsum(count) - count, count)
    s = _gather(prep, seq, j * stride, window)
    mask = s.mask
    if at == "end":
        mask = torch.zeros_like(mask)
        mask[:, -1] = True
    return s._replace(mask=mask, reset=torch.ones_like(s.reset))


def stateful_batches(samples: Samples, batch_size: int) -> Iterator[Chunk]:
    """Arrange samples into chunks of ``batch_size`` rows whose rows continue each other.

    A run of samples that share the state (a ``reset`` sample and the samples after it up to the
    next reset) goes whole to one row, in order; runs go to the currently shortest row. Row b of
    chunk c+1 continues row b of chunk c. Chunks are ``(B, L, F)`` with ``reset[:, 0]`` from the
    samples; rows that run out early are padded with zeros (mask False). Without targets,
    ``chunk.targets`` is an empty ``(B, L, 0)`` tensor.

    >>> s = naive_split([torch.randn(6) for _ in range(4)], 3)    # 8 samples, 4 sequences
    >>> chunks = list(stateful_batches(s, batch_size=2))
    >>> len(chunks), tuple(chunks[0].inputs.shape), [c.reset[:, 0].tolist() for c in chunks]
    (4, (2, 3, 1), [[True, True], [False, False], [True, True], [False, False]])
    """
    if not isinstance(samples, Samples):
        raise TypeError(
            f"samples: expected a Samples (from naive_split, one_step, as_is or "
            f"sliding_windows), got {type(samples).__name__}."
        )
    batch_size = check_int("batch_size", batch_size)
    n, length = samples.inputs.shape[:2]
    starts = np.flatnonzero(samples.reset.numpy())
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts]).astype(np.int64)
    sizes = np.diff(np.append(starts, n)).astype(np.int64)
    row, at, totals = pack(sizes, batch_size)
    segs = Segments(row, at, sizes, starts, np.ones(len(sizes), dtype=bool))
    index, _ = scatter(segs, batch_size, int(totals.max()))  # (B, C): sample in row b, chunk c
    for c in range(index.shape[1]):
        i = index[:, c]  # (B,)
        valid = i >= 0
        inputs = take(samples.inputs, i, valid)  # (B, L, F)
        if samples.targets is None:
            targets = inputs.new_zeros(batch_size, length, 0)
        else:
            targets = take(samples.targets, i, valid)  # (B, L, ...)
        mask = samples.mask[i.clamp_min(0)] & valid[:, None]  # (B, L)
        reset = torch.zeros(batch_size, length, dtype=torch.bool)
        reset[:, 0] = samples.reset[i.clamp_min(0)] & valid
        yield Chunk(inputs, targets, reset, mask)

"""Decoupled forward/backward lengths: what the subsequence length means for TBPTT(k1, k2).

In Keras-style training the subsequence length (``timesteps``) is both how often the weights
are updated and how far back the gradient reaches: k1 = k2 = L. Here the data and the
truncation are separate: the data is cut into chunks of L steps (``naive_split``,
``StreamBatcher``) and the engine's rule ``TBPTT(k1, k2)`` says where updates happen (every k1
steps, counted from the stream start) and how far each gradient reaches back (k2 steps, into
earlier chunks when k2 > k1; only the last k2 steps of each chunk when k2 < k1).
"""

from __future__ import annotations

from typing import NamedTuple

from tbptt.data._checks import check_int

__all__ = ["Lengths", "decoupled_lengths"]


class Lengths(NamedTuple):
    """The chunk length to prepare the data with and the (k1, k2) to hand to ``TBPTT``."""

    chunk_len: int  # steps per chunk/subsequence: split or batch the data with this
    k1: int  # forward length: steps between two updates
    k2: int  # backward length: steps each update's gradient reaches back

    @property
    def rule(self) -> tuple[int, int]:
        """``(k1, k2)``, the arguments of the engine's ``TBPTT`` rule."""
        return self.k1, self.k2


def decoupled_lengths(
    subsequence_len: int, backward_len: int | None = None, *, updates_per_chunk: int = 1
) -> Lengths:
    """Chunk length and TBPTT(k1, k2) parameters from a subsequence (forward) length.

    The subsequence length gives k1 (one update every ``subsequence_len`` steps) and the chunk
    length ``k1 * updates_per_chunk`` (chunks start at multiples of k1 from the stream start,
    so updates fall on chunk boundaries). ``backward_len`` gives k2 (default: k1, the Keras
    behaviour). Feed the chunks in order with the state carried: the engine keeps the graph of
    the last k2 - k1 steps when k2 > k1 (Williams & Peng 1990, BPTT(h; h')).

    >>> lengths = decoupled_lengths(500, backward_len=1000)
    >>> lengths, lengths.rule
    (Lengths(chunk_len=500, k1=500, k2=1000), (500, 1000))

    Usage with the engine (``tbptt.TBPTT(k1, k2)``)::

        lengths = decoupled_lengths(500, backward_len=1000)
        batcher = StreamBatcher(seqs, "next", batch_size=32, chunk_len=lengths.chunk_len)
        rule = TBPTT(*lengths.rule)
    """
    k1 = check_int("subsequence_len", subsequence_len)
    k2 = k1 if backward_len is None else check_int("backward_len", backward_len)
    per = check_int("updates_per_chunk", updates_per_chunk)
    return Lengths(k1 * per, k1, k2)

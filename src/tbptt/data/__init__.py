"""Data preparation for recurrent networks trained with (truncated) BPTT.

Splitting (fixed-length samples ``[N, L, F]``): ``as_is``, ``naive_split``, ``one_step``,
``sliding_windows``, arranged into stateful chunks by ``stateful_batches``.
Streaming (variable-length sequences -> B rows of ``Chunk``s with reset and mask):
``StreamBatcher`` (packed/aligned layouts), ``TokenBatcher`` (the language-model layout),
``ChunkDataset`` (for ``DataLoader(batch_size=None)``). Both shard across ranks and resume.
``decoupled_lengths`` relates the chunk length to the engine's ``TBPTT(k1, k2)``.
See ``docs/data.md``.
"""

from tbptt.data.base import ChunkStream
from tbptt.data.dataset import ChunkDataset
from tbptt.data.lengths import Lengths, decoupled_lengths
from tbptt.data.lm import TokenBatcher
from tbptt.data.split import (
    Samples,
    as_is,
    naive_split,
    one_step,
    sliding_windows,
    stateful_batches,
)
from tbptt.data.stream import StreamBatcher

__all__ = [
    "ChunkDataset",
    "ChunkStream",
    "Lengths",
    "Samples",
    "StreamBatcher",
    "TokenBatcher",
    "as_is",
    "decoupled_lengths",
    "naive_split",
    "one_step",
    "sliding_windows",
    "stateful_batches",
]

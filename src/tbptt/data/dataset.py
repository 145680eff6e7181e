"""``ChunkDataset``: a chunk stream as a ``torch.utils.data.IterableDataset``.

Each item is already a whole batch (a ``Chunk``), so use it with ``batch_size=None``, which
turns off the DataLoader's own batching (the ``Chunk`` named tuple passes through)::

    loader = DataLoader(ChunkDataset(batcher), batch_size=None, pin_memory=True)
    for epoch in range(epochs):
        loader.dataset.set_epoch(epoch)
        for chunk in loader:
            engine.feed(*chunk.to(device)[:2], reset=chunk.reset, mask=chunk.mask)

With ``num_workers=0`` (enough: a chunk is a few index operations) iteration happens in this
process and ``batcher.state_dict()`` follows it. With ``num_workers=k > 0`` worker ``w`` builds
chunks ``w, w + k, ...`` and the DataLoader returns them in order; the position then lives in
the workers, so call ``set_epoch`` every epoch and, to resume, count the chunks you consumed and
``load_state_dict({"epoch": e, "chunk": consumed, "seed": seed})``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from tbptt.chunk import Chunk
from tbptt.data.base import ChunkStream

__all__ = ["ChunkDataset"]


class ChunkDataset(IterableDataset[Chunk]):
    """Wrap a ``StreamBatcher``/``TokenBatcher`` for ``DataLoader(dataset, batch_size=None)``.

    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from tbptt.data import StreamBatcher
    >>> seqs = [torch.randn(7, 3), torch.randn(5, 3)]
    >>> batcher = StreamBatcher(seqs, "next", batch_size=2, chunk_len=4)
    >>> [tuple(c.inputs.shape) for c in DataLoader(ChunkDataset(batcher), batch_size=None)]
    [(2, 4, 3), (2, 4, 3)]
    """

    def __init__(self, stream: ChunkStream) -> None:
        if not isinstance(stream, ChunkStream):
            raise TypeError(
                f"stream: expected a StreamBatcher or TokenBatcher, got {type(stream).__name__}. "
                "Build one first, e.g. ChunkDataset(StreamBatcher(seqs, 'next', batch_size=8, "
                "chunk_len=64))."
            )
        self.stream = stream

    def __iter__(self) -> Iterator[Chunk]:
        info = get_worker_info()
        if info is None:
            yield from self.stream
            return
        start = self.stream.position
        for c in range(start + info.id, len(self.stream), info.num_workers):
            yield self.stream.chunk(c)

    def __len__(self) -> int:
        """Chunks left in the current epoch."""
        return len(self.stream) - self.stream.position

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

"""ChunkDataset: the batchers through torch.utils.data.DataLoader(batch_size=None)."""

from __future__ import annotations

import torch
from _data_helpers import id_sequences
from torch.utils.data import DataLoader

from tbptt.chunk import Chunk
from tbptt.data import ChunkDataset, StreamBatcher, TokenBatcher


def _same(a: list[Chunk], b: list[Chunk]) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(p, q, strict=True)) for p, q in zip(a, b, strict=True)
    )


def _batcher() -> StreamBatcher:
    seqs = id_sequences([13, 4, 9, 22, 7, 1, 15])
    return StreamBatcher(seqs, None, batch_size=3, chunk_len=4, shuffle=True)


def test_loader_in_process_follows_the_batcher_and_resumes() -> None:
    expected = list(_batcher())
    ds = ChunkDataset(_batcher())
    loader = DataLoader(ds, batch_size=None)
    got = []
    for i, chunk in enumerate(loader):
        assert isinstance(chunk, Chunk)
        got.append(chunk)
        if i == 2:
            state = ds.state_dict()
            break
    assert state["chunk"] == 3 and len(ds) == len(expected) - 3
    fresh = ChunkDataset(_batcher())
    fresh.load_state_dict(state)
    fresh.set_epoch(0)
    got += list(DataLoader(fresh, batch_size=None))
    assert _same(got, expected)
    assert fresh.stream.epoch == 1  # exhausted: on to the next epoch


def test_loader_with_workers_keeps_the_order() -> None:
    tokens = torch.arange(500)
    expected = list(TokenBatcher(tokens, batch_size=4, chunk_len=9))
    ds = ChunkDataset(TokenBatcher(tokens, batch_size=4, chunk_len=9))
    got = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert _same(got, expected)

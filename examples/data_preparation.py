"""Preparing sequence data for truncated BPTT with ``tbptt.data``.

Run it: ``python examples/data_preparation.py`` (a few seconds on a CPU). It walks through:

1. the three classic worked examples (as-is, naive split, one step per sample);
2. the sliding-window baseline and what the subsequence length means for TBPTT(k1, k2);
3. a hand-written stateful training loop over a naive split (what the engine automates);
4. variable-length sequences with ``StreamBatcher`` (packed vs aligned), sharding, resuming;
5. the language-model layout with ``TokenBatcher`` and ``DataLoader(batch_size=None)``.

See docs/data.md for the reasoning behind each strategy.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import json.decoder
import textwrap

import torch
from torch import nn
from torch.utils.data import DataLoader

from tbptt.data import (
    ChunkDataset,
    StreamBatcher,
    TokenBatcher,
    as_is,
    decoupled_lengths,
    naive_split,
    one_step,
    sliding_windows,
    stateful_batches,
)
from tbptt.state import detach, reset_rows


def worked_examples() -> None:
    print("== 1. worked examples")
    g = torch.Generator().manual_seed(0)

    # (a) 100 univariate sequences of 25 steps, short enough to use whole.
    a = as_is([torch.randn(25, generator=g) for _ in range(100)])
    print(f"(a) as-is: {list(a.inputs.shape)}")  # [100, 25, 1]

    # (b) 100 sequences of 50,000 steps: too long for one backward pass. Cut each into 100
    # subsequences of 500; the state must flow from subsequence j-1 to j, and be reset at the
    # start of each new sequence: that is what `reset` says.
    b = naive_split([torch.randn(50_000, generator=g) for _ in range(100)], 500)
    resets = b.reset.nonzero().flatten()
    print(
        f"(b) naive split: {list(b.inputs.shape)}, resets at samples {resets[:3].tolist()}... "
        f"(every {int(resets[1] - resets[0])})"
    )
    # Stateful batching: 20 rows, row b of chunk c+1 continues row b of chunk c.
    chunks = list(stateful_batches(b, batch_size=20))
    reset_chunks = [c for c, ch in enumerate(chunks) if ch.reset.any()]
    print(f"    stateful batches: {len(chunks)} chunks of {list(chunks[0].inputs.shape)}, "
          f"rows reset at chunks {reset_chunks}")  # fmt: skip

    # (c) 100 sequences of 50 steps, one step per sample: all memory is in the carried state.
    c = one_step([torch.randn(50, generator=g) for _ in range(100)])
    print(f"(c) one step: {list(c.inputs.shape)}, a reset every "
          f"{int(c.reset.nonzero()[1])} samples")  # fmt: skip


def windows_and_lengths() -> None:
    print("== 2. sliding windows, decoupled lengths")
    x = torch.sin(torch.linspace(0, 20, 200))
    w = sliding_windows([x], window=10, stride=5, targets="next", target_at="end")
    print(f"windows (MLP-style baseline, no state carried): {list(w.inputs.shape)}, "
          f"loss only at each window's last step: {w.mask[0].int().tolist()}")  # fmt: skip
    lengths = decoupled_lengths(25, backward_len=50)
    print(f"subsequence length 25, backward 50 -> chunk_len={lengths.chunk_len}, "
          f"TBPTT(k1, k2)={lengths.rule}")  # fmt: skip


def stateful_loop() -> None:
    """TBPTT(k1=k2=L) by hand over a naive split; tbptt's engine does this (and k2 != k1)."""
    print("== 3. a stateful training loop over a naive split")
    torch.manual_seed(0)
    t = torch.linspace(0, 60, 2_001)
    seqs = [torch.sin(t * f) for f in torch.linspace(0.5, 1.5, 16)]  # 16 sequences, 2,001 steps
    samples = naive_split(seqs, 100, targets="next")  # input x[t], target x[t+1]
    model, head = nn.GRU(1, 16, batch_first=True), nn.Linear(16, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    h = torch.zeros(1, 4, 16)  # (layers, B, H)
    losses = []
    for epoch in range(3):
        for chunk in stateful_batches(samples, batch_size=4):
            h = reset_rows(h, chunk.reset[:, 0], initial=None, batch_dim=1)  # new sequence
            y, h = model(chunk.inputs, h)  # (B, L, H)
            err = (head(y) - chunk.targets) ** 2  # (B, L, 1)
            loss = err[chunk.mask].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            h = detach(h)  # truncate: keep the value, cut the graph
            losses.append(loss.item())
        print(f"epoch {epoch}: mean loss {sum(losses[-80:]) / 80:.4f}")
    # With the engine: for chunk in batcher: engine.feed(chunk.inputs, chunk.targets,
    #                                                     reset=chunk.reset, mask=chunk.mask)


def variable_lengths() -> None:
    print("== 4. variable-length sequences: StreamBatcher")
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(20, 400, (64,), generator=g).tolist()
    seqs = [torch.randn(n, 3, generator=g) for n in lengths]
    for layout in ("packed", "aligned"):
        batcher = StreamBatcher(seqs, "next", batch_size=8, chunk_len=50, layout=layout)
        masked = sum(int((~c.mask).sum()) for c in batcher)
        total = len(batcher) * 8 * 50
        print(f"{layout:>8}: {len(batcher)} chunks, padding {masked / total:.1%}")

    # Two ranks: whole rows of whole sequences each, the same number of chunks on both.
    shards = [StreamBatcher(seqs, "next", batch_size=4, chunk_len=50, world_size=2, rank=r)
              for r in range(2)]  # fmt: skip
    print(f"2 ranks: {[len(s) for s in shards]} chunks of {list(shards[0].chunk(0).inputs.shape)}")

    # Resuming: save the position mid-epoch, continue exactly at the next chunk.
    batcher = StreamBatcher(seqs, "next", batch_size=8, chunk_len=50, shuffle=True, seed=7)
    first = list(itertools.islice(batcher, 10))
    state = batcher.state_dict()  # {'epoch': 0, 'chunk': 10, 'seed': 7, 'config': {...}}
    resumed = StreamBatcher(seqs, "next", batch_size=8, chunk_len=50, shuffle=True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    full = list(StreamBatcher(seqs, "next", batch_size=8, chunk_len=50, shuffle=True, seed=7))
    same = all(torch.equal(a.inputs, b.inputs) for a, b in zip(first + rest, full, strict=True))
    print(f"resumed at chunk {state['chunk']}: same epoch as uninterrupted: {same}")


def language_model() -> None:
    print("== 5. language-model layout: TokenBatcher + DataLoader")
    # A few standard-library modules as documents, one character per token.
    texts = [inspect.getsource(m) for m in (textwrap, heapq, json.decoder)]
    vocab = sorted(set("".join(texts)))
    ids = {ch: i for i, ch in enumerate(vocab)}
    tokens = torch.tensor([ids[ch] for text in texts for ch in text])
    starts = torch.tensor([0, *itertools.accumulate(len(t) for t in texts[:-1])]).tolist()
    batcher = TokenBatcher(tokens, batch_size=16, chunk_len=64, doc_starts=starts, shuffle=True)
    loader = DataLoader(ChunkDataset(batcher), batch_size=None)  # each item is a whole Chunk
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        n = sum(1 for _ in loader)
        print(f"epoch {epoch}: {n} chunks of (B, L) = {list(batcher.chunk(0).inputs.shape)}, "
              f"{len(texts)} documents, {len(tokens):,} tokens")  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    worked_examples()
    windows_and_lengths()
    stateful_loop()
    variable_lengths()
    language_model()


if __name__ == "__main__":
    main()

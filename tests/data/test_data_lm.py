"""TokenBatcher: the language-model layout against word_language_model's batchify."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tbptt.chunk import Chunk
from tbptt.data import TokenBatcher


def _cat(chunks: list[Chunk]) -> Chunk:
    return Chunk(*(torch.cat([getattr(c, f) for c in chunks], dim=1) for f in Chunk._fields))


def test_matches_batchify_pairs() -> None:
    """Rows are the (input, target) pairs of the stream cut into B equal contiguous pieces."""
    tokens = torch.randint(0, 100, (103,))
    b = TokenBatcher(tokens, batch_size=4, chunk_len=7)
    whole = _cat(list(b))
    x, y = tokens[:-1], tokens[1:]  # 102 pairs -> 4 rows of 25, 2 dropped
    n = 25
    ref_x, ref_y = x[: 4 * n].view(4, n), y[: 4 * n].view(4, n)  # batchify: data.view(bsz, -1)
    assert len(b) == 4 and whole.inputs.shape == (4, 28)
    assert torch.equal(whole.inputs[:, :n], ref_x) and torch.equal(whole.targets[:, :n], ref_y)
    assert whole.mask[:, :n].all() and not whole.mask[:, n:].any()  # padding of the last chunk
    assert whole.reset[:, 0].all() and not whole.reset[:, 1:].any()
    assert len(TokenBatcher(tokens, batch_size=4, chunk_len=7, tail="drop")) == 3


def _word_language_model_pairs(tokens: torch.Tensor, bsz: int) -> tuple[torch.Tensor, ...]:
    """PyTorch examples' word_language_model: batchify, then every get_batch of an epoch."""
    nbatch = tokens.size(0) // bsz
    data = tokens[: nbatch * bsz].view(bsz, -1).t()  # (nbatch, bsz): the tokens cut first
    x = torch.cat([data[i : i + 5] for i in range(0, data.size(0) - 1, 5)], 0)
    y = torch.cat([data[i + 1 : i + 6] for i in range(0, data.size(0) - 1, 5)], 0)
    return x.t(), y.t()  # (bsz, nbatch - 1)


@pytest.mark.parametrize("n", [12, 13, 103])
def test_differs_from_batchify_as_documented(n: int) -> None:
    """docs/data.md: pairs are formed before the rows are cut, so rows start at other offsets."""
    tokens, bsz = torch.arange(n), 2
    whole = _cat(list(TokenBatcher(tokens, batch_size=bsz, chunk_len=5)))
    m = (n - 1) // bsz  # pairs per row
    ours = whole.inputs[:, :m]  # (B, m) the unpadded pairs
    assert ours[:, 0].tolist() == [r * m for r in range(bsz)]
    assert whole.targets[0, m - 1] == whole.inputs[1, 0]  # no pair lost between rows
    ref_x, ref_y = _word_language_model_pairs(tokens, bsz)
    assert ref_x[:, 0].tolist() == [r * (n // bsz) for r in range(bsz)]
    assert ref_x.shape[1] == n // bsz - 1 and torch.equal(ref_y, ref_x + 1)
    assert (ours[1, 0] == ref_x[1, 0]) == ((n - 1) // bsz == n // bsz)


def test_document_starts_are_resets() -> None:
    tokens = torch.arange(40)
    b = TokenBatcher(tokens, batch_size=2, chunk_len=5, doc_starts=[0, 6, 25])
    whole = _cat(list(b))
    x, y = whole.inputs, whole.targets  # inputs/targets are token positions here
    assert torch.equal(y[:, :19], x[:, :19] + 1)  # 39 pairs: 2 rows of 19, then padding
    assert not whole.mask[:, 19:].any() and not whole.reset[:, 19:].any()
    starts = {0, 6, 25}
    for r in range(2):
        for t in range(19):
            assert bool(whole.reset[r, t]) == (t == 0 or int(x[r, t]) in starts)
            assert bool(whole.mask[r, t]) == (int(y[r, t]) not in starts)
    keep = TokenBatcher(
        tokens, batch_size=2, chunk_len=5, doc_starts=[6, 25], mask_doc_boundary=False
    )
    assert _cat(list(keep)).mask[:, :19].all()


def test_shuffled_documents() -> None:
    docs = [torch.full((n,), i) for i, n in enumerate([5, 9, 3, 7, 6])]
    starts = [0, 5, 14, 17, 24]
    b = TokenBatcher(torch.cat(docs), batch_size=1, chunk_len=4, doc_starts=starts, shuffle=True)
    orders = []
    for _ in range(3):  # three epochs
        w = _cat(list(b))
        x, y, reset, mask = w.inputs[0, :29], w.targets[0, :29], w.reset[0, :29], w.mask[0, :29]
        order = [int(k) for k, _ in itertools.groupby(x.tolist())]
        assert sorted(order) == list(range(5))  # each document once, whole
        new_doc = torch.cat([torch.tensor([True]), x[1:] != x[:-1]])
        assert torch.equal(reset, new_doc) and torch.equal(mask, y == x)
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 80),
    batch_size=st.integers(1, 4),
    chunk_len=st.integers(1, 8),
    world_size=st.integers(1, 3),
    starts=st.lists(st.integers(1, 79), max_size=6, unique=True),
    shuffle=st.booleans(),
    frac=st.floats(0, 1),
)
def test_token_properties(
    n: int,
    batch_size: int,
    chunk_len: int,
    world_size: int,
    starts: list[int],
    shuffle: bool,
    frac: float,
) -> None:
    starts = sorted(s for s in starts if s < n)
    shuffle = shuffle and bool(starts)
    rows = world_size * batch_size
    kw = dict(batch_size=batch_size, chunk_len=chunk_len, doc_starts=starts, shuffle=shuffle)
    if (n - 1) // rows == 0:
        with pytest.raises(ValueError, match="batch_size"):
            TokenBatcher(torch.arange(n), world_size=world_size, **kw)
        return
    shards = [
        TokenBatcher(torch.arange(n), world_size=world_size, rank=r, **kw)
        for r in range(world_size)
    ]
    chunks = [list(s) for s in shards]
    assert len({len(c) for c in chunks}) == 1
    seen: list[int] = []
    doc0 = torch.tensor([0, *starts])
    t = torch.arange(len(chunks[0]) * chunk_len)
    for per_rank in chunks:
        w = _cat(per_rank)
        for r in range(batch_size):
            m = (n - 1) // rows
            x, y = w.inputs[r, :m], w.targets[r, :m]
            seen += x.tolist()
            assert not w.mask[r, m:].any() and not w.reset[r, m:].any()  # padding
            assert torch.equal(w.reset[r, :m], (x.unsqueeze(1) == doc0).any(1) | (t == 0)[:m])
            assert torch.equal(w.mask[r, :m], ~(y.unsqueeze(1) == doc0).any(1))
            assert ((y == x + 1) | (y.unsqueeze(1) == doc0).any(1)).all()  # next token
    assert len(seen) == len(set(seen)) == rows * ((n - 1) // rows)  # disjoint, complete
    # resume on rank 0 after a fraction of the epoch
    k = round(frac * len(chunks[0]))
    first = TokenBatcher(torch.arange(n), world_size=world_size, **kw)
    list(itertools.islice(first, k))
    again = TokenBatcher(torch.arange(n), world_size=world_size, **kw)
    again.load_state_dict(first.state_dict())
    for got, want in zip(list(again), chunks[0][k:], strict=True):
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))

"""Splitting strategies: the three worked examples, tail policies, targets, stateful batching."""

from __future__ import annotations

import pytest
import torch
from _data_helpers import id_sequences, run_stream
from hypothesis import given, settings
from hypothesis import strategies as st

from tbptt.data import (
    Lengths,
    Samples,
    as_is,
    decoupled_lengths,
    naive_split,
    one_step,
    sliding_windows,
    stateful_batches,
)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# -- the three worked examples ----------------------------------------------------------------


def test_example_a_as_is(gen: torch.Generator) -> None:
    seqs = [torch.randn(25, generator=gen) for _ in range(100)]  # 100 univariate, 25 steps
    s = as_is(seqs)
    assert s.inputs.shape == (100, 25, 1)
    assert torch.equal(s.inputs[:, :, 0], torch.stack(seqs))
    assert s.reset.all() and s.mask.all() and s.targets is None
    assert s.seq_id.tolist() == list(range(100)) and not s.position.any()


def test_example_b_naive_split_full_size(gen: torch.Generator) -> None:
    seqs = [torch.randn(50_000, generator=gen) for _ in range(100)]
    s = naive_split(seqs, 500)
    assert s.inputs.shape == (10_000, 500, 1) and s.mask.all()
    assert s.reset.nonzero().flatten().tolist() == list(range(0, 10_000, 100))  # every 100
    assert torch.equal(s.seq_id, torch.arange(100).repeat_interleave(100))
    assert torch.equal(s.position, (torch.arange(10_000) % 100) * 500)
    assert torch.equal(s.inputs[:100, :, 0].reshape(-1), seqs[0])  # seq 0 = samples 0..99
    assert torch.equal(s.inputs[-100:, :, 0].reshape(-1), seqs[-1])
    chunks = list(stateful_batches(s, batch_size=20))  # 5 sequences per row
    assert len(chunks) == 500 and chunks[0].inputs.shape == (20, 500, 1)
    starts = [c for c, ch in enumerate(chunks) if ch.reset[:, 0].all()]
    assert starts == list(range(0, 500, 100))  # a reset exactly every 100 chunks, in every row
    assert not any(ch.reset[:, 1:].any() for ch in chunks)
    assert sum(int(ch.reset.sum()) for ch in chunks) == 100


def test_example_b_state_carried_by_a_gru(gen: torch.Generator) -> None:
    """Subsequence j > 0 starts from the state subsequence j-1 left; subsequence 0 from zeros."""
    torch.manual_seed(0)
    n_seq, steps, length, rows = 10, 1_000, 100, 4  # 10 subsequences per sequence
    seqs = [torch.randn(steps, generator=gen) for _ in range(n_seq)]
    s = naive_split(seqs, length)
    # Same arrangement, inputs replaced by sample ids, to know which sample sits where.
    sample_ids = torch.arange(1.0, len(s.reset) + 1).view(-1, 1, 1).expand(-1, length, 1)
    ids = s._replace(inputs=sample_ids)
    where = [c.inputs[:, 0, 0].long() - 1 for c in stateful_batches(ids, rows)]  # (B,) per chunk
    gru = torch.nn.GRU(1, 4, batch_first=True)
    with torch.no_grad():
        outs, entering = run_stream(gru, stateful_batches(s, rows))
        straight, _ = gru(torch.stack(seqs).unsqueeze(-1))  # (N, T, H): each sequence in one go
    h_in, h_out = {}, {}
    for c, sample in enumerate(where):
        for b, k in enumerate(sample.tolist()):
            if k >= 0:
                h_in[k], h_out[k] = entering[c][b, 0], outs[c][b, -1]
                i, p = int(s.seq_id[k]), int(s.position[k])
                torch.testing.assert_close(outs[c][b], straight[i, p : p + length])
    assert sorted(h_in) == list(range(len(s.reset)))  # every sample ran exactly once
    for k in h_in:
        if s.position[k] == 0:
            assert not h_in[k].any()  # subsequence 0 starts from the initial state
        else:
            assert torch.equal(h_in[k], h_out[k - 1])  # carried from subsequence j-1


def test_example_c_one_step(gen: torch.Generator) -> None:
    seqs = [torch.randn(50, generator=gen) for _ in range(100)]
    s = one_step(seqs)
    assert s.inputs.shape == (5_000, 1, 1)
    assert s.reset.nonzero().flatten().tolist() == list(range(0, 5_000, 50))
    assert torch.equal(s.inputs.flatten(), torch.cat(seqs))
    chunks = list(stateful_batches(s, batch_size=10))
    assert len(chunks) == 500 and chunks[0].inputs.shape == (10, 1, 1)
    assert [c for c, ch in enumerate(chunks) if ch.reset.any()] == list(range(0, 500, 50))


# -- naive split details -----------------------------------------------------------------------


def test_naive_split_tail_pad_and_drop() -> None:
    seqs = [torch.arange(1.0, 8.0), torch.arange(11.0, 14.0)]  # 7 and 3 steps
    pad = naive_split(seqs, 3, tail="pad")
    assert pad.inputs[..., 0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 0, 0], [11, 12, 13]]
    assert pad.mask.tolist()[2] == [True, False, False]
    assert pad.reset.tolist() == [True, False, False, True]
    assert pad.position.tolist() == [0, 3, 6, 0] and pad.seq_id.tolist() == [0, 0, 0, 1]
    drop = naive_split(seqs, 3, tail="drop")
    assert drop.inputs[..., 0].tolist() == [[1, 2, 3], [4, 5, 6], [11, 12, 13]]
    assert drop.mask.all()


def test_naive_split_multivariate_and_given_targets() -> None:
    seqs = id_sequences([6, 4])
    targets = [x[:, 1] * 10 for x in seqs]  # (T,): per-step class-like targets keep their shape
    s = naive_split(seqs, 2, targets)
    assert s.inputs.shape == (5, 2, 2) and s.targets is not None and s.targets.shape == (5, 2)
    assert torch.equal(s.targets, s.inputs[..., 1] * 10)


def test_next_step_targets() -> None:
    x = torch.arange(7.0)
    s = naive_split([x], 3, "next")  # inputs 0..5, targets 1..6
    assert s.inputs[..., 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert s.targets is not None and s.targets[..., 0].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_one_target_per_sequence_at_the_end() -> None:
    seqs = [torch.randn(5), torch.randn(4)]
    labels = torch.tensor([3, 7])
    s = naive_split(seqs, 2, labels, target_at="end")  # pad: 3 + 2 samples
    assert s.mask.tolist() == [[0, 0], [0, 0], [1, 0], [0, 0], [0, 1]]
    assert s.targets is not None and s.targets[s.mask].tolist() == [3, 7]
    s = naive_split(seqs, 2, labels, target_at="end", tail="drop")  # drops the leading step
    assert s.position.tolist() == [1, 3, 0, 2] and s.reset.tolist() == [True, False, True, False]
    assert s.mask.tolist() == [[0, 0], [0, 1], [0, 0], [0, 1]]
    assert torch.equal(s.inputs[1, :, 0], seqs[0][3:])
    a = as_is([torch.randn(4), torch.randn(4)], "next", target_at="end")
    assert a.inputs.shape == (2, 3, 1) and a.mask.tolist() == [[0, 0, 1]] * 2


# -- sliding windows --------------------------------------------------------------------------


def test_sliding_windows_are_independent_samples() -> None:
    seqs = [torch.arange(10.0), torch.arange(100.0, 104.0)]
    s = sliding_windows(seqs, window=4, stride=3)
    assert s.inputs[..., 0].tolist() == [
        [0, 1, 2, 3],
        [3, 4, 5, 6],
        [6, 7, 8, 9],
        [100, 101, 102, 103],
    ]
    assert s.reset.all() and s.mask.all()
    assert s.seq_id.tolist() == [0, 0, 0, 1] and s.position.tolist() == [0, 3, 6, 0]
    short = sliding_windows([torch.arange(10.0), torch.arange(2.0)], window=4)
    assert short.seq_id.unique().tolist() == [0]  # too short for a window: no sample


def test_sliding_windows_next_value_baseline() -> None:
    s = sliding_windows([torch.arange(6.0)], window=2, targets="next", target_at="end")
    assert s.inputs[..., 0].tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert s.targets is not None and s.targets[s.mask][:, 0].tolist() == [2, 3, 4, 5]


# -- stateful batches -------------------------------------------------------------------------


def test_stateful_batches_pads_short_rows_and_keeps_runs_whole() -> None:
    s = naive_split(id_sequences([6, 2, 2]), 2)  # runs of 3, 1, 1 samples
    chunks = list(stateful_batches(s, batch_size=2))
    assert len(chunks) == 3
    rows = [[(int(c.inputs[b, 0, 0]), int(c.inputs[b, 0, 1])) for c in chunks] for b in range(2)]
    assert rows == [[(1, 0), (1, 2), (1, 4)], [(2, 0), (3, 0), (0, 0)]]
    assert not chunks[2].mask[1].any() and chunks[2].targets.shape == (2, 2, 0)


def test_stateful_batches_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="samples"):
        list(stateful_batches(torch.zeros(3, 2, 1), 2))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    length=st.integers(1, 6),
    tail=st.sampled_from(["pad", "drop"]),
    rows=st.integers(1, 4),
)
def test_naive_split_then_batches_property(
    lengths: list[int], length: int, tail: str, rows: int
) -> None:
    """Every kept step once, in order, in one row; resets exactly at sequence starts."""
    if length > max(lengths):
        with pytest.raises(ValueError, match="length"):
            naive_split(id_sequences(lengths), length, tail=tail)
        return
    s = naive_split(id_sequences(lengths), length, tail=tail)
    assert isinstance(s, Samples)
    seen: dict[int, list[int]] = {}
    for b in range(rows):
        last: tuple[int, int] | None = None
        for c in stateful_batches(s, rows):
            for t in range(length):
                i, p = int(c.inputs[b, t, 0]) - 1, int(c.inputs[b, t, 1])
                if i < 0:
                    assert not c.mask[b, t] and not c.reset[b, t]
                    continue
                assert c.mask[b, t] and bool(c.reset[b, t]) == (p == 0)
                if p > 0:
                    assert last == (i, p - 1)  # continues the same row
                seen.setdefault(i, []).append(p)
                last = (i, p)
    for i, n in enumerate(lengths):
        kept = n if tail == "pad" else n // length * length
        assert seen.get(i, []) == list(range(kept))


def test_decoupled_lengths() -> None:
    assert decoupled_lengths(25) == Lengths(25, 25, 25)
    lengths = decoupled_lengths(25, backward_len=50, updates_per_chunk=4)
    assert lengths == Lengths(chunk_len=100, k1=25, k2=50) and lengths.rule == (25, 50)
    with pytest.raises(ValueError, match="backward_len"):
        decoupled_lengths(25, backward_len=0)
    with pytest.raises(TypeError, match="subsequence_len"):
        decoupled_lengths(2.5)

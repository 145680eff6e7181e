"""StreamBatcher: layouts, shuffle, tail, sharding and resuming, as unit and property tests."""

from __future__ import annotations

import itertools

import pytest
import torch
from _data_helpers import id_sequences, read_rows, run_stream
from hypothesis import given, settings
from hypothesis import strategies as st

from tbptt.chunk import Chunk
from tbptt.data import StreamBatcher

# -- layouts ------------------------------------------------------------------------------------


def test_packed_layout_assigns_to_shortest_row() -> None:
    b = StreamBatcher(id_sequences([5, 3, 2, 4]), batch_size=2, chunk_len=4)
    rows = read_rows(list(b))
    steps = [[None if s is None else s[:2] for s in row] for row in rows]
    # row 0: seq 0 (5) then seq 3 (4); row 1: seq 1 (3) then seq 2 (2); padded to 3 chunks
    assert steps[0] == [(0, t) for t in range(5)] + [(3, t) for t in range(4)] + [None] * 3
    assert steps[1] == [(1, t) for t in range(3)] + [(2, t) for t in range(2)] + [None] * 7
    resets = [[t for t, s in enumerate(row) if s is not None and s[2]] for row in rows]
    assert resets == [[0, 5], [0, 3]]  # mid-chunk resets


def test_aligned_layout_starts_sequences_on_chunk_boundaries() -> None:
    b = StreamBatcher(id_sequences([5, 3, 2]), batch_size=2, chunk_len=4, layout="aligned")
    assert len(b) == 2
    rows = read_rows(list(b))
    # seq 0 takes 2 chunks of row 0; seq 1 then seq 2 go to row 1, each at a boundary
    assert [s and s[:2] for s in rows[0]] == [(0, t) for t in range(5)] + [None] * 3
    assert [s and s[:2] for s in rows[1]] == [(1, 0), (1, 1), (1, 2), None, (2, 0), (2, 1)] + [
        None
    ] * 2


def test_tail_drop() -> None:
    seqs = id_sequences([5, 3, 2])
    packed = read_rows(list(StreamBatcher(seqs, batch_size=1, chunk_len=4, tail="drop")))
    assert [s and s[:2] for s in packed[0]] == [(0, t) for t in range(5)] + [(1, 0), (1, 1), (1, 2)]
    aligned = StreamBatcher(seqs, batch_size=1, chunk_len=2, tail="drop", layout="aligned")
    assert [s and s[:2] for s in read_rows(list(aligned))[0]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]


def test_targets_next_given_and_end() -> None:
    seqs = [torch.arange(1.0, 6.0).unsqueeze(1), torch.arange(11.0, 14.0).unsqueeze(1)]
    c = next(iter(StreamBatcher(seqs, "next", batch_size=2, chunk_len=4)))
    assert c.targets[c.mask].flatten().tolist() == [2, 3, 4, 5, 12, 13]
    given_targets = [s * 2 for s in seqs]
    c = next(iter(StreamBatcher(seqs, given_targets, batch_size=2, chunk_len=5)))
    assert torch.equal(c.targets, c.inputs * 2)
    labels = torch.tensor([4, 9])
    b = StreamBatcher(seqs, labels, target_at="end", batch_size=1, chunk_len=3)
    chunks = list(b)
    mask = torch.cat([ch.mask for ch in chunks], dim=1)[0]
    assert mask.nonzero().flatten().tolist() == [4, 7]  # last step of each sequence
    targets = torch.cat([ch.targets for ch in chunks], dim=1)[0]
    assert targets[mask].tolist() == [4, 9]
    assert chunks[0].reset.tolist() == [[True, False, False]]


def test_aligned_drop_with_end_targets_keeps_the_target_step() -> None:
    seqs = [torch.arange(1.0, 6.0)]  # 5 steps, chunks of 2: drop the first step
    b = StreamBatcher(seqs, torch.tensor([7]), target_at="end", batch_size=1, chunk_len=2,
                      layout="aligned", tail="drop")  # fmt: skip
    chunks = list(b)
    assert [c.inputs.tolist() for c in chunks] == [[[2.0, 3.0]], [[4.0, 5.0]]]
    assert chunks[0].reset.tolist() == [[True, False]] and chunks[1].mask.tolist() == [
        [False, True]
    ]


def test_token_sequences_keep_their_shape() -> None:
    docs = [torch.randint(0, 50, (n,)) for n in (9, 4, 7)]
    c = next(iter(StreamBatcher(docs, "next", batch_size=2, chunk_len=5)))
    assert c.inputs.shape == (2, 5) and c.inputs.dtype == torch.int64
    assert c.targets.shape == (2, 5) and c.reset.shape == c.mask.shape == (2, 5)


def test_no_targets_gives_empty_target() -> None:
    c = StreamBatcher(id_sequences([3]), batch_size=1, chunk_len=2).chunk(0)
    assert isinstance(c, Chunk) and c.targets.shape == (1, 2, 0)


# -- shuffle and epochs -------------------------------------------------------------------------


def _order(b: StreamBatcher) -> list[int]:
    """Sequence ids in the order their first step appears (row-major over chunks)."""
    seen: list[int] = []
    for c in b:
        for i in c.inputs[..., 0][c.reset].long().tolist():
            seen.append(i - 1)
    return seen


def test_shuffle_is_seeded_per_epoch_and_keeps_steps_in_order() -> None:
    seqs = id_sequences(list(range(1, 21)))
    b = StreamBatcher(seqs, batch_size=1, chunk_len=7, shuffle=True, seed=3)
    epoch0 = _order(b)
    assert b.epoch == 1 and b.position == 0  # exhausting an epoch moves to the next
    epoch1 = _order(b)
    assert sorted(epoch0) == sorted(epoch1) == list(range(20)) and epoch0 != epoch1
    b.set_epoch(0)
    assert _order(b) == epoch0
    again = StreamBatcher(seqs, batch_size=1, chunk_len=7, shuffle=True, seed=3)
    again.set_epoch(1)
    assert _order(again) == epoch1
    other = StreamBatcher(seqs, batch_size=1, chunk_len=7, shuffle=True, seed=4)
    assert _order(other) != epoch0
    rows = read_rows(list(StreamBatcher(seqs, batch_size=1, chunk_len=7, shuffle=True)))
    steps = [s[1] for s in rows[0] if s is not None]
    assert all(b == a + 1 or b == 0 for a, b in itertools.pairwise(steps))  # steps never shuffled


def test_set_epoch_keeps_the_position_of_the_current_epoch() -> None:
    b = StreamBatcher(id_sequences([9, 9]), batch_size=1, chunk_len=3, shuffle=True)
    it = iter(b)
    next(it), next(it)
    b.set_epoch(0)
    assert b.position == 2
    b.set_epoch(1)
    assert (b.epoch, b.position) == (1, 0)


# -- a GRU over the packed stream equals each sequence run on its own ---------------------------


def test_gru_over_packed_stream_matches_straight_runs() -> None:
    torch.manual_seed(0)
    lengths = [37, 5, 21, 13, 8, 30, 2, 17]
    seqs = [torch.randn(n, 3) for n in lengths]
    b = StreamBatcher(seqs, "next", batch_size=3, chunk_len=6, shuffle=True, seed=1)
    where = StreamBatcher(id_sequences([n - 1 for n in lengths]), batch_size=3, chunk_len=6,
                          shuffle=True, seed=1)  # fmt: skip
    gru = torch.nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():
        outs, entering = run_stream(gru, b)
        rows = read_rows(list(where))
        for i, s in enumerate(seqs):
            straight, _ = gru(s[:-1].unsqueeze(0))  # (1, T - 1, H)
            found = [
                (bb, t) for bb, row in enumerate(rows) for t, v in enumerate(row) if v and v[0] == i
            ]
            bb, t0 = found[0]
            assert [v for _, v in found] == [t0 + k for k in range(len(found))]
            y = torch.cat(outs, dim=1)[bb, t0 : t0 + len(found)]
            torch.testing.assert_close(y, straight[0])
            assert not torch.cat(entering, dim=1)[bb, t0].any()  # started from the initial state


# -- properties -------------------------------------------------------------------------------


@st.composite
def settings_(draw: st.DrawFn) -> dict:
    return {
        "lengths": draw(st.lists(st.integers(1, 25), min_size=1, max_size=10)),
        "batch_size": draw(st.integers(1, 4)),
        "chunk_len": draw(st.integers(1, 9)),
        "layout": draw(st.sampled_from(["packed", "aligned"])),
        "tail": draw(st.sampled_from(["pad", "drop"])),
        "shuffle": draw(st.booleans()),
        "seed": draw(st.integers(0, 10**6)),
        "world_size": draw(st.integers(1, 3)),
    }


def _build(cfg: dict, rank: int = 0, **kw: object) -> StreamBatcher | None:
    """The batcher, or None when the settings are rightly refused."""
    lengths, L, W = cfg["lengths"], cfg["chunk_len"], cfg["world_size"]
    seqs = id_sequences(lengths)
    args = {k: v for k, v in cfg.items() if k != "lengths"} | kw
    try:
        return StreamBatcher(seqs, [-s for s in seqs], rank=rank, **args)
    except ValueError as e:
        kept = len(lengths)
        if cfg["layout"] == "aligned" and cfg["tail"] == "drop":
            kept = sum(n >= L for n in lengths)
        if "world_size" in str(e):
            assert 0 < kept < W
        else:
            assert "chunk_len" in str(e) and cfg["tail"] == "drop" and max(lengths) < L
        return None


def _check_rows(chunks: list[Chunk], cfg: dict) -> dict[int, list[int]]:
    """Row invariants; returns seq -> steps seen (in row order)."""
    L, B = cfg["chunk_len"], cfg["batch_size"]
    for c in chunks:
        assert c.inputs.shape == (B, L, 2) and c.reset.shape == c.mask.shape == (B, L)
        assert torch.equal(c.targets, -c.inputs)
    seen: dict[int, list[int]] = {}
    for row in read_rows(chunks):
        prev = None
        for t, s in enumerate(row):
            if s is None:
                if cfg["layout"] == "packed":  # packed rows are padded at the end only
                    assert all(v is None for v in row[t:])
                prev = None
                continue
            i, step, reset, mask = s
            assert mask, "mask is False only on padding"
            assert reset == (step == 0), "reset exactly at the first step of each sequence"
            if step > 0:
                assert prev == (i, step - 1), "steps of a sequence are consecutive in one row"
            elif cfg["layout"] == "aligned":
                assert t % L == 0, "aligned: sequences start on chunk boundaries"
            assert step not in seen.get(i, []), "every step appears once"
            seen.setdefault(i, []).append(step)
            prev = (i, step)
    return seen


@settings(max_examples=150, deadline=None)
@given(cfg=settings_(), epoch=st.integers(0, 2))
def test_stream_properties(cfg: dict, epoch: int) -> None:
    b0 = _build(cfg)
    if b0 is None:
        return
    W = cfg["world_size"]
    seen_all: dict[int, list[int]] = {}
    counts = set()
    for r in range(W):
        b = _build(cfg, rank=r)
        assert b is not None
        b.set_epoch(epoch)
        chunks = list(b)
        counts.add(len(chunks))
        for i, steps in _check_rows(chunks, cfg).items():
            assert i not in seen_all, "shards are disjoint (whole sequences per rank)"
            seen_all[i] = steps
        assert any(c.mask.any() for c in chunks), "every rank gets data"
    assert len(counts) == 1, "the same number of chunks on every rank"
    L = cfg["chunk_len"]
    for i, n in enumerate(cfg["lengths"]):
        steps = seen_all.get(i, [])
        assert steps == list(range(len(steps))), "a sequence is kept as a prefix, in order"
        if cfg["tail"] == "pad":
            assert len(steps) == n, "with tail='pad' everything is kept"
        elif cfg["layout"] == "aligned":
            assert len(steps) == n // L * L
    if cfg["tail"] == "drop" and cfg["layout"] == "packed":  # complete: W ranks = one big rank
        single = {**cfg, "world_size": 1, "batch_size": W * cfg["batch_size"]}
        one = _build(single)
        assert one is not None
        one.set_epoch(epoch)
        assert _check_rows(list(one), single) == dict(sorted(seen_all.items()))


@settings(max_examples=100, deadline=None)
@given(cfg=settings_(), epoch=st.integers(0, 2), frac=st.floats(0, 1), rank=st.integers(0, 2))
def test_resume_reproduces_the_rest_of_the_epoch(
    cfg: dict, epoch: int, frac: float, rank: int
) -> None:
    rank = rank % cfg["world_size"]
    full = _build(cfg, rank=rank)
    if full is None:
        return
    full.set_epoch(epoch)
    expected = list(full)
    k = round(frac * len(expected))
    first = _build(cfg, rank=rank)
    assert first is not None
    first.set_epoch(epoch)
    head = list(itertools.islice(first, k))  # interrupted after k chunks
    state = first.state_dict()
    assert (state["epoch"], state["chunk"]) == (epoch, k)
    resumed = _build(cfg, rank=rank, seed=12345)  # the seed comes from the state
    assert resumed is not None
    resumed.load_state_dict(state)
    resumed.set_epoch(epoch)  # a loop calling set_epoch(epoch) keeps the resumed position
    rest = list(resumed)
    assert len(head) + len(rest) == len(expected)
    for got, want in zip(head + rest, expected, strict=True):
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    assert (resumed.epoch, resumed.position) == (epoch + 1, 0)


def test_state_dict_round_trip_and_mismatch() -> None:
    b = StreamBatcher(id_sequences([5, 6, 7]), batch_size=2, chunk_len=2, shuffle=True, seed=9)
    next(iter(b))
    state = b.state_dict()
    assert state["epoch"] == 0 and state["chunk"] == 1 and state["seed"] == 9
    other = StreamBatcher(id_sequences([5, 6, 7]), batch_size=1, chunk_len=2, shuffle=True)
    with pytest.raises(ValueError, match="batch_size=2 \\(here 1\\)"):
        other.load_state_dict(state)
    with pytest.raises(TypeError, match="state"):
        other.load_state_dict({"epoch": 0})
    b2 = StreamBatcher(id_sequences([5, 6, 7]), batch_size=2, chunk_len=2, shuffle=True)
    with pytest.raises(ValueError, match="state\\['chunk'\\]"):
        b2.load_state_dict({"epoch": 0, "chunk": 99, "seed": 9})
    assert (b2.epoch, b2.position, b2.seed) == (0, 0, 0)  # a refused state changes nothing


@settings(max_examples=60, deadline=None)
@given(cfg=settings_(), target_at=st.sampled_from(["step", "end"]))
def test_next_step_targets_property(cfg: dict, target_at: str) -> None:
    """targets='next': the target of step t is step t+1 of the same sequence, in any layout."""
    lengths = [n + 1 for n in cfg["lengths"]]  # at least 2 steps
    args = {k: v for k, v in cfg.items() if k not in ("lengths", "world_size")}
    try:
        b = StreamBatcher(id_sequences(lengths), "next", target_at=target_at, **args)
    except ValueError as e:
        assert "chunk_len" in str(e) and cfg["tail"] == "drop"
        return
    for c in b:
        real = c.inputs[..., 0] > 0  # (B, L)
        x, y = c.inputs[real], c.targets[real]  # (n, 2)
        assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 1], x[:, 1] + 1)
        last = torch.tensor([lengths[int(i) - 1] - 2 for i in x[:, 0]])
        assert torch.equal(c.mask[real], (x[:, 1] == last) if target_at == "end" else real[real])
        assert not c.targets[~real].any()

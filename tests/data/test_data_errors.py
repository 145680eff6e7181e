"""Bad input: each error names the argument, shows the value received and says the fix."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from tbptt.data import (
    ChunkDataset,
    StreamBatcher,
    TokenBatcher,
    as_is,
    naive_split,
    one_step,
    sliding_windows,
)

x5, x4 = torch.randn(5, 2), torch.randn(4, 2)
nan = torch.randn(6, 2)
nan[3, 1] = float("nan")
inf = torch.randn(6)
inf[2] = float("inf")


def batcher(seqs: object, targets: object = None, **kw: object) -> StreamBatcher:
    args: dict = {"batch_size": 1, "chunk_len": 4} | kw
    return StreamBatcher(seqs, targets, **args)


CASES: list[tuple[str, Callable[[], object], type[Exception], list[str]]] = [
    # (name, call, error, substrings: argument, value, fix)
    ("empty list", lambda: naive_split([], 3), ValueError, ["sequences", "empty list", "at least"]),
    ("empty list batcher", lambda: batcher([]), ValueError, ["sequences", "empty list"]),
    (
        "empty sequence",
        lambda: naive_split([x5, torch.zeros(0, 2)], 3),
        ValueError,
        ["sequences[1]", "(0, 2)", "Remove empty sequences"],
    ),
    (
        "feature sizes differ",
        lambda: batcher([x5, torch.randn(4, 3)]),
        ValueError,
        ["sequences[1]", "(3,)", "sequences[0] has (2,)", "same feature size"],
    ),
    (
        "univariate mixed with 2 features",
        lambda: as_is([torch.randn(4), x4]),
        ValueError,
        ["sequences[1]", "(2,)", "same feature size"],
    ),
    (
        "nan",
        lambda: naive_split([x5, nan], 2),
        ValueError,
        ["sequences[1]", "NaN", "(3, 1)", "nan_to_num"],
    ),
    ("inf", lambda: batcher([inf]), ValueError, ["sequences[0]", "inf", "(2,)", "impute"]),
    (
        "nan in targets",
        lambda: batcher([x5], [nan[:5]]),
        ValueError,
        ["targets[0]", "NaN", "Clean"],
    ),
    (
        "length larger than every sequence",
        lambda: naive_split([x5, x4], 6),
        ValueError,
        ["length=6", "longest has 5 steps", "length<=5"],
    ),
    (
        "window larger than every sequence",
        lambda: sliding_windows([x5, x4], window=9),
        ValueError,
        ["window=9", "longest has 5", "window<=5"],
    ),
    (
        "chunk_len larger than every sequence (aligned, drop)",
        lambda: batcher([x5, x4], chunk_len=8, layout="aligned", tail="drop"),
        ValueError,
        ["chunk_len=8", "longest has 5", "tail='pad'"],
    ),
    (
        "chunk_len larger than every row (packed, drop)",
        lambda: batcher([x5, x4], chunk_len=8, batch_size=2, tail="drop"),
        ValueError,
        ["chunk_len=8", "5 steps", "tail='pad'"],
    ),
    (
        "targets count mismatch",
        lambda: naive_split([x5, x4], 2, [x5]),
        ValueError,
        ["targets", "1 target entries for 2 sequences", "one target per sequence"],
    ),
    (
        "targets length mismatch",
        lambda: batcher([x5, x4], [x5, x5]),
        ValueError,
        ["targets[1] has 5 steps", "sequences[1] has 4 steps", "targets='next'"],
    ),
    (
        "end targets of different shapes",
        lambda: batcher([x5, x4], [torch.zeros(5), torch.zeros(4)], target_at="end"),
        ValueError,
        ["targets[1]", "(4,)", "one target of the same shape per sequence"],
    ),
    (
        "as_is lengths differ",
        lambda: as_is([x5, x4]),
        ValueError,
        ["sequences[1] has 4 steps", "sequences[0] has 5", "naive_split"],
    ),
    (
        "next needs two steps",
        lambda: one_step([x5, torch.randn(1, 2)], "next"),
        ValueError,
        ["sequences[1] has 1 step", "targets='next'", "Remove or merge"],
    ),
    (
        "unknown targets string",
        lambda: batcher([x5], "previous"),
        ValueError,
        ["targets", "'previous'", "'next'"],
    ),
    (
        "not a list",
        lambda: naive_split({"a": x5}, 2),
        TypeError,
        ["sequences", "dict", "Pass a list"],
    ),
    (
        "one tensor",
        lambda: naive_split(torch.randn(9), 2),
        TypeError,
        ["sequences", "(9,)", "[sequences]"],
    ),
    (
        "list of python lists",
        lambda: batcher([[1.0, 2.0]]),
        TypeError,
        ["sequences[0]", "list", "torch.as_tensor"],
    ),
    (
        "length not an int",
        lambda: naive_split([x5], 2.5),
        TypeError,
        ["length", "2.5", "whole number"],
    ),
    ("length zero", lambda: naive_split([x5], 0), ValueError, ["length", "got 0", "length>=1"]),
    (
        "bad tail",
        lambda: naive_split([x5], 2, tail="keep"),
        ValueError,
        ["tail", "'keep'", "'pad' or 'drop'"],
    ),
    (
        "bad layout",
        lambda: batcher([x5], layout="sorted"),
        ValueError,
        ["layout", "'sorted'", "'packed'"],
    ),
    (
        "bad target_at",
        lambda: as_is([x5], target_at="last"),
        ValueError,
        ["target_at", "'last'", "'end'"],
    ),
    (
        "more ranks than sequences",
        lambda: batcher([x5, x4], world_size=3),
        ValueError,
        ["world_size=3", "only 2 sequences", "fewer ranks"],
    ),
    (
        "rank out of range",
        lambda: batcher([x5], rank=1),
        ValueError,
        ["rank=1", "world_size=1", "0..world_size-1"],
    ),
    (
        "too few tokens for the rows",
        lambda: TokenBatcher(torch.arange(5), batch_size=8, chunk_len=2),
        ValueError,
        ["batch_size", "4 (input, target) pairs", "smaller batch_size"],
    ),
    (
        "doc_starts unsorted",
        lambda: TokenBatcher(torch.arange(20), batch_size=1, chunk_len=2, doc_starts=[5, 3]),
        ValueError,
        ["doc_starts", "5 then 3", "Sort"],
    ),
    (
        "doc_starts out of range",
        lambda: TokenBatcher(torch.arange(20), batch_size=1, chunk_len=2, doc_starts=[25]),
        ValueError,
        ["doc_starts", "max 25", "[0, 20)"],
    ),
    (
        "shuffle without documents",
        lambda: TokenBatcher(torch.arange(20), batch_size=1, chunk_len=2, shuffle=True),
        ValueError,
        ["shuffle", "single document", "doc_starts"],
    ),
    (
        "nan tokens",
        lambda: TokenBatcher(torch.tensor([1.0, float("nan"), 2.0]), batch_size=1, chunk_len=2),
        ValueError,
        ["tokens", "NaN", "(1,)"],
    ),
    (
        "dataset of a list",
        lambda: ChunkDataset([x5]),
        TypeError,
        ["stream", "list", "StreamBatcher"],
    ),
]


@pytest.mark.parametrize(("name", "call", "error", "parts"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    name: str, call: Callable[[], object], error: type[Exception], parts: list[str]
) -> None:
    with pytest.raises(error) as info:
        call()
    for part in parts:
        assert part in str(info.value), f"{name}: {part!r} not in {info.value}"


def test_numpy_input_and_check_finite_off() -> None:
    seqs = [np.arange(6.0), np.arange(4.0)]
    assert naive_split(seqs, 3).inputs.shape == (4, 3, 1)
    assert naive_split([inf], 3, check_finite=False).inputs.shape == (2, 3, 1)


def test_chunk_index_out_of_range() -> None:
    b = batcher([x5])
    with pytest.raises(IndexError, match="index"):
        b.chunk(2)

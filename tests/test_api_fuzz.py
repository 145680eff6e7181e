"""Property test over the public API's arguments (hypothesis).

Every value drawn is either good (the call works) or bad (the call raises a ValueError or
TypeError whose message names the argument). Anything else fails: a bad value accepted
silently, a good one refused, an IndexError/AttributeError/RuntimeError from deep inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tbptt
from tbptt import ARTBP, TBPTT, Engine, VariableLength
from tbptt.data import StreamBatcher, TokenBatcher, naive_split, sliding_windows
from tbptt.data.lengths import decoupled_lengths

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    suppress_health_check=[HealthCheck.too_slow],
)

# values of the wrong kind for an integer or a number, whatever their size
NOT_A_NUMBER = [True, False, "5", None, [3], (2,), torch.tensor(3), np.bool_(True), object()]
INTS = st.integers(-3, 12) | st.integers(-3, 12).map(np.int64) | st.integers(0, 12).map(np.uint8)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1, 2).map(np.float32)
ANY_VALUE = INTS | FLOATS | st.sampled_from(NOT_A_NUMBER)


def is_int(v: Any, minimum: int = 1) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= minimum


def is_number(v: Any) -> bool:
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )
    return ok and math.isfinite(float(v))


def check(call: Callable[[], Any], names: list[str], good: bool) -> Any:
    """Run ``call``: success when ``good``, else a ValueError/TypeError naming one of ``names``."""
    try:
        result = call()
    except (ValueError, TypeError) as error:
        assert not good, f"a good value was refused: {error}"
        assert any(n in str(error) for n in names), f"{names} not named in: {error}"
        return None
    assert good, f"a bad value for {names} was accepted silently"
    return result


# -- truncation rules -------------------------------------------------------------------------------
@FUZZ
@given(k1=ANY_VALUE, k2=ANY_VALUE | st.none())
def test_tbptt(k1, k2):
    good1, good2 = is_int(k1), k2 is None or is_int(k2)
    names = (["k1"] if not good1 else []) + (["k2"] if not good2 else []) or ["k1"]
    rule = check(lambda: TBPTT(k1, k2), names, good1 and good2)
    if rule is not None:
        assert type(rule.k1) is int and type(rule.k2) is int
        assert rule.cut(3 * rule.k1, 4 * rule.k1) >= 0


@FUZZ
@given(c=ANY_VALUE, min_len=ANY_VALUE, max_factor=ANY_VALUE | st.none(), seed=ANY_VALUE | st.none())
def test_artbp(c, min_len, max_factor, seed):
    bad = []
    if not (is_number(c) and 0 < float(c) < 1):
        bad.append("c")
    elif not is_int(min_len):
        bad.append("min_len")
    elif max_factor is not None and not (
        isinstance(max_factor, (int, float, np.integer, np.floating))
        and not isinstance(max_factor, (bool, np.bool_))
        and float(max_factor) >= 1 / (1 - float(c))
    ):
        bad.append("max_factor")
    elif seed is not None and not is_int(seed, minimum=-(2**63)):
        bad.append("seed")
    rule = check(lambda: ARTBP(c, min_len=min_len, max_factor=max_factor, seed=seed), bad, not bad)
    if rule is not None:
        n = rule.next_length(0)
        assert n is None or n >= rule.min_len


@FUZZ
@given(bptt=ANY_VALUE, p=ANY_VALUE, std=ANY_VALUE, min_len=ANY_VALUE)
def test_variable_length(bptt, p, std, min_len):
    bad = []
    if not is_int(bptt):
        bad.append("bptt")
    elif not (is_number(p) and 0 <= float(p) <= 1):
        bad.append("p")
    elif not (is_number(std) and float(std) >= 0):
        bad.append("std")
    elif not is_int(min_len):
        bad.append("min_len")
    rule = check(lambda: VariableLength(bptt, p=p, std=std, min_len=min_len, seed=0), bad, not bad)
    if rule is not None:
        assert rule.next_length(0) >= rule.min_len


@FUZZ
@given(subsequence=ANY_VALUE, backward=ANY_VALUE | st.none(), per_chunk=ANY_VALUE)
def test_decoupled_lengths(subsequence, backward, per_chunk):
    bad = []
    if not is_int(subsequence):
        bad.append("subsequence_len")
    elif backward is not None and not is_int(backward):
        bad.append("backward_len")
    elif not is_int(per_chunk):
        bad.append("updates_per_chunk")
    call = lambda: decoupled_lengths(subsequence, backward, updates_per_chunk=per_chunk)  # noqa: E731
    check(call, bad, not bad)


# -- the engine -------------------------------------------------------------------------------------
ENGINE_KWARGS = st.fixed_dictionaries(
    {},
    optional={
        "checkpoint": ANY_VALUE | st.sampled_from(["sqrt", "SQRT"]),
        "state_batch_dim": ANY_VALUE,
        "zero_grad": ANY_VALUE,
        "check_inputs": ANY_VALUE,
        "mode": st.sampled_from(["stored", "recompute", "Stored", 1]),
        "path": st.sampled_from(["auto", "chunk", "cell", None]),
        "reduction": st.sampled_from(["mean", "sum", "avg", None]),
    },
)


def engine_kwargs_are_good(kw: dict[str, Any]) -> tuple[bool, list[str]]:
    checks = {
        "checkpoint": lambda v: v is None or (v == "sqrt" if isinstance(v, str) else is_int(v)),
        "state_batch_dim": lambda v: (
            v is None or (is_int(v) and v == 1)
        ),  # the GRU's states keep the batch at dim 1
        "zero_grad": lambda v: isinstance(v, bool),
        "check_inputs": lambda v: isinstance(v, bool),
        "mode": lambda v: v in ("stored", "recompute"),
        "path": lambda v: v in ("auto", "chunk"),
        "reduction": lambda v: v in ("mean", "sum"),
    }
    bad = [k for k, v in kw.items() if not checks[k](v)]
    return not bad, bad


@FUZZ
@given(kw=ENGINE_KWARGS, k2=st.sampled_from([3, 5]))
def test_engine_arguments(kw, k2):
    good, bad = engine_kwargs_are_good(kw)
    if kw.get("state_batch_dim") is not None and is_int(kw["state_batch_dim"], 0):
        good, bad = False, [*bad, "state_batch_dim", "state"]  # a valid index, wrong for a GRU
    stored_lookback = kw.get("mode", "stored") == "stored" and k2 > 3
    if stored_lookback and kw.get("checkpoint") is not None:
        good, bad = False, [*bad, "checkpoint"]  # refused with stored mode and k2 > k1
    model = nn.GRU(2, 3, batch_first=True)
    rule = TBPTT(3, k2)

    def run() -> list[Any]:
        engine = Engine(model, tbptt.losses.mse, rule, **kw)
        x = torch.randn(2, 7, 2)
        return [u.loss for u in engine.feed(x, torch.randn(2, 7, 3))] + list(engine.flush())

    updates = check(run, bad or ["?"], good)
    if updates is not None:
        assert len(updates) == 3


FLAGS = ["ok", "batch", "time", "float", "int2", "list", "1d"]


@FUZZ
@given(
    batch=st.integers(1, 3),
    length=st.integers(0, 6),
    broken=st.sampled_from(["none", "inputs", "targets", "reset", "mask"]),
    how=st.sampled_from(FLAGS[1:]),
    nan=st.booleans(),
)
def test_engine_feed(batch, length, broken, how, nan):
    g = torch.Generator().manual_seed(batch * 10 + length)
    x, y = torch.randn(batch, length, 2, generator=g), torch.randn(batch, length, 3, generator=g)
    reset = torch.rand(batch, length, generator=g) < 0.3
    mask = torch.rand(batch, length, generator=g) < 0.8
    args = {"inputs": x, "targets": y, "reset": reset, "mask": mask}
    if broken in ("inputs", "targets") and how in ("float", "int2"):
        how = "list"  # the model decides which dtypes it takes: only shapes are checked here
    if broken != "none":
        t = args[broken]
        args[broken] = {
            "batch": t[:0] if batch > 1 else torch.cat([t, t]),
            "time": t.new_zeros(t.shape[0], length + 1, *t.shape[2:]),
            "float": t.float() + 0.5,
            "int2": t.long() * 2 + 2,
            "list": t.tolist(),
            "1d": t.reshape(-1),
        }[how]
        if how == "int2" and length == 0:
            broken = "none"  # an empty integer tensor has no value other than 0 or 1
    if nan and length and broken == "none":
        args["inputs"] = x.clone().index_put_(
            (torch.tensor(0), torch.tensor(0)), torch.tensor(np.nan)
        )
        broken = "inputs"
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))

    def run() -> list[Any]:
        feed = engine.feed(args["inputs"], args["targets"], args["reset"], args["mask"])
        return list(feed) + list(engine.flush())

    updates = check(run, [broken], broken == "none")
    if updates is not None:
        assert len(updates) == math.ceil(length / 4)


# -- data ---------------------------------------------------------------------------------------------
SEQS = [torch.randn(9, 2), torch.randn(5, 2), torch.randn(7, 2)]


@FUZZ
@given(batch_size=ANY_VALUE, chunk_len=ANY_VALUE, world_size=INTS, rank=INTS, seed=ANY_VALUE)
def test_stream_batcher(batch_size, chunk_len, world_size, rank, seed):
    bad = []
    for name, value in (("batch_size", batch_size), ("chunk_len", chunk_len)):
        if not is_int(value):
            bad.append(name)
    if not bad and not is_int(seed, minimum=0):
        bad.append("seed")
    if not bad and not is_int(world_size):
        bad.append("world_size")
    if not bad and not (is_int(rank, 0) and rank < world_size):
        bad.append("rank")
    if not bad and world_size > len(SEQS):
        bad.append("world_size")  # every rank needs a sequence
    kw = dict(batch_size=batch_size, chunk_len=chunk_len, world_size=world_size, rank=rank)
    call = lambda: list(StreamBatcher(SEQS, "next", seed=seed, **kw))  # noqa: E731
    chunks = check(call, bad, not bad)
    if chunks:
        assert all(c.inputs.shape[:2] == (batch_size, chunk_len) for c in chunks)


@FUZZ
@given(batch_size=ANY_VALUE, chunk_len=ANY_VALUE, n=st.integers(0, 30))
def test_token_batcher(batch_size, chunk_len, n):
    bad = [k for k, v in (("batch_size", batch_size), ("chunk_len", chunk_len)) if not is_int(v)]
    if not bad and n < 2:
        bad = ["tokens"]
    elif not bad and (n - 1) // batch_size == 0:
        bad = ["batch_size"]
    call = lambda: list(TokenBatcher(torch.arange(n), batch_size=batch_size, chunk_len=chunk_len))  # noqa: E731
    chunks = check(call, bad, not bad)
    if chunks:
        assert sum(int(c.mask.sum()) for c in chunks) == batch_size * ((n - 1) // batch_size)


@FUZZ
@given(length=ANY_VALUE, window=ANY_VALUE, stride=ANY_VALUE)
def test_splits(length, window, stride):
    longest = max(len(s) for s in SEQS)
    check(lambda: naive_split(SEQS, length), ["length"], is_int(length) and length <= longest)
    bad = [k for k, v in (("window", window), ("stride", stride)) if not is_int(v)]
    bad = bad or (["window"] if window > longest else [])
    check(lambda: sliding_windows(SEQS, window, stride), bad or ["window"], not bad)


@pytest.mark.parametrize("value", [np.int64(4), np.int32(4), np.uint16(4)])
def test_numpy_integers_everywhere(value):
    assert TBPTT(value, value).k1 == 4
    assert StreamBatcher(SEQS, "next", batch_size=value, chunk_len=value).batch_size == 4
    assert naive_split(SEQS, value).inputs.shape[1] == 4

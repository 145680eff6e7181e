"""The compiled step path gives the gradients of the brute-force reference and of the eager path."""

from __future__ import annotations

import pytest
import torch
from reference import reference_grads
from test_engine_reference import assert_same, engine_grads, make, step_loss, stream
from torch import nn

import tbptt
from tbptt import ARTBP, BPTT, TBPTT, Engine, compiled

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("kind", ["lstmcell", "custom"])
@pytest.mark.parametrize(
    "k1, k2, mode",
    [(3, 3, "stored"), (2, 5, "stored"), (2, 5, "recompute"), (5, 2, "stored")],
)
def test_compiled_matches_reference(kind, k1, k2, mode):
    """Resets and masks inside chunks, overlapping and short windows, both modes."""
    model, path, step, init = make(kind)
    params = list(model.parameters())
    x, y, reset, mask = stream(13, seed=13)
    want = reference_grads(step, params, init, x, y, reset, mask, step_loss, k1, k2)
    engine = Engine(model, tbptt.losses.mse, TBPTT(k1, k2), mode=mode, path=path, compile=True)
    got = engine_grads(engine, params, [(x, y, reset, mask)])
    assert_same(got, want)
    stats = engine.unroller.steps.stats
    assert stats["compiled_runs"] > 0 and stats["disabled"] is None, stats


def test_auto_compiles_a_shape_once_it_is_hot(monkeypatch):
    """compile='auto' runs a block shape eagerly until that has taken AUTO_AFTER_SECONDS, then
    compiled, and the updates equal an eager engine's; BPTT on the same model too."""
    monkeypatch.setattr(compiled, "AUTO_AFTER_SECONDS", 1e-9)  # compile on a shape's 2nd run
    model, path, step, init = make("custom")
    params = list(model.parameters())
    x, y, reset, mask = stream(24, seed=1)
    pieces = [(x, y, None, None)]
    eager = engine_grads(
        Engine(model, tbptt.losses.mse, TBPTT(4), path=path, compile=False), params, pieces
    )
    engine = Engine(model, tbptt.losses.mse, TBPTT(4), path=path)
    got = engine_grads(engine, params, pieces)
    assert_same(got, eager)
    stats = engine.unroller.steps.stats
    # 6 updates of 4 steps. The first: its first step from state None, then blocks of 2 and 1
    # steps, eagerly. Then 4-step blocks: 1 eagerly, then 4 compiled.
    assert (stats["eager_runs"], stats["compiled_runs"]) == (4, 4), stats
    assert [v["shape"] for v in stats["compiled_variants"]] == [(3, 4, 2)]

    want = reference_grads(step, params, init, x, y, reset, mask, step_loss, 1e9, 1e9)
    bptt = Engine(model, tbptt.losses.mse, BPTT(), path=path, compile=True)
    assert_same(engine_grads(bptt, params, [(x, y, reset, mask)]), want)


def test_artbp_compiled_equals_eager():
    """ARTBP's random chunk lengths and gradient factors: the same draws give the same updates."""

    def run(compile):
        model, *_ = make("lstmcell")
        rule = ARTBP(c=0.3, seed=5)
        engine = Engine(model, tbptt.losses.mse, rule, reduction="sum", compile=compile)
        x, y, reset, mask = stream(20, seed=2)
        return engine_grads(engine, list(model.parameters()), [(x, y, reset, mask)]), engine

    got, engine = run(True)
    want, _ = run(False)
    assert_same(got, want)
    assert engine.unroller.steps.stats["compiled_runs"] > 0


def test_checkpointed_segments_run_eagerly():
    """Activation checkpointing re-runs segments in the backward: those stay eager."""
    model, _, step, init = make("lstmcell")
    params = list(model.parameters())
    x, y, reset, mask = stream(12, seed=3)
    want = reference_grads(step, params, init, x, y, reset, mask, step_loss, 6, 6)
    engine = Engine(model, tbptt.losses.mse, TBPTT(6), checkpoint=2, compile=True)
    assert_same(engine_grads(engine, params, [(x, y, reset, mask)]), want)
    assert engine.unroller.steps.stats["compiled_runs"] == 0


def test_failed_compile_warns_once_and_runs_eagerly(monkeypatch):
    model, path, *_ = make("custom")
    params = list(model.parameters())
    x, y, reset, mask = stream(9, seed=4)
    eager = Engine(model, tbptt.losses.mse, TBPTT(3), path=path, compile=False)
    want = engine_grads(eager, params, [(x, y, reset, mask)])
    engine = Engine(model, tbptt.losses.mse, TBPTT(3), path=path, compile=True)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(engine.unroller.steps, "_fn", broken)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*runs eagerly"):
        got = engine_grads(engine, params, [(x, y, reset, mask)])
    assert_same(got, want)
    assert len(calls) == 1
    assert "RuntimeError: no C++ compiler found" in engine.unroller.steps.stats["disabled"]


def test_compile_options_are_checked():
    with pytest.raises(ValueError, match="chunk path"):
        Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(3), compile=True)
    with pytest.raises(ValueError, match="compile must be True, False or 'auto', got 'yes'"):
        Engine(nn.GRUCell(2, 3), tbptt.losses.mse, TBPTT(3), compile="yes")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_on_cuda_equals_eager():
    torch.manual_seed(0)
    cell = nn.LSTMCell(8, 16).cuda()
    x = torch.randn(4, 40, 8, device="cuda")
    y = torch.randn(4, 40, 16, device="cuda")
    grads = []
    for compile in (False, True):
        engine = Engine(cell, tbptt.losses.mse, TBPTT(10, 20), compile=compile)
        grads.append(engine_grads(engine, list(cell.parameters()), [(x, y)]))
    assert_same(grads[1], grads[0], tol=1e-9)

"""Bad input to the core API: one clear ValueError/TypeError naming the argument, never a raw
IndexError or shape error from deep inside; numpy integers are integers; empty pieces are legal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import TanhStep, reference_grads
from test_engine_reference import assert_same, engine_grads, step_loss, stream
from torch import nn

import tbptt
from tbptt import ARTBP, TBPTT, Engine, VariableLength
from tbptt.data import StreamBatcher, TokenBatcher, naive_split
from tbptt.state import reset_rows


class Wrapped(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x, state):
        return self.rnn(x, state)


def xy(batch=4, length=8, features=2, hidden=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, features, generator=g), torch.randn(
        batch, length, hidden, generator=g
    )


# -- silent wrong results and crashes ------------------------------------------------------------
def test_batch_first_false_inside_a_wrapper_is_rejected_even_when_k1_equals_batch():
    model = Wrapped(nn.GRU(2, 3))  # batch_first=False, B = k1 = 4: nothing else would fail
    with pytest.raises(
        ValueError, match=r"model\.rnn is a GRU with batch_first=False.*batch_first=True"
    ):
        Engine(model, tbptt.losses.mse, TBPTT(4))


def test_flush_after_an_empty_piece_at_a_chunk_boundary():
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y = xy()
    assert [u.stop for u in engine.feed(x, y)] == [4, 8]
    assert list(engine.feed(x[:, :0], y[:, :0])) == []
    assert list(engine.flush()) == []  # nothing pending: no update, and no IndexError
    # an empty first piece does not fix the batch size of the stream
    list(engine.feed(x[:1, :0], y[:1, :0]))
    assert [u.stop for u in engine.feed(x, y)] == [4, 8]


def test_empty_pieces_change_nothing():
    x, y = xy(length=10)
    runs = []
    for pieces in ([(0, 10)], [(0, 0), (0, 4), (4, 4), (4, 10), (10, 10)]):
        torch.manual_seed(0)
        engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
        losses = [u.loss for a, b in pieces for u in engine.feed(x[:, a:b], y[:, a:b])]
        losses += [u.loss for u in engine.flush()]
        runs.append(torch.stack(losses))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize(
    "init,got",
    [
        (torch.zeros(1, 4, 3), r"got a tensor of shape \(1, 4, 3\)"),  # bare tensor for an LSTM
        ((torch.zeros(4, 1, 3), torch.zeros(4, 1, 3)), r"got a tuple of shapes"),  # batch-first
    ],
)
def test_init_state_for_an_lstm_names_the_layout_and_the_fix(init, got):
    engine = Engine(nn.LSTM(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4), init_state=init)
    x, y = xy()
    with pytest.raises(
        ValueError, match=r"init_state for this LSTM must be a pair \(h, c\)"
    ) as info:
        list(engine.feed(x, y))
    assert "(num_layers, B, H)" in str(info.value) and "transpose(0, 1)" in str(info.value)
    assert info.match(got)


def test_init_state_in_the_right_layout_still_works():
    init = (torch.zeros(1, 1, 3, requires_grad=True), torch.zeros(1, 4, 3))
    engine = Engine(nn.LSTM(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4), init_state=init)
    x, y = xy()
    reached = [init[0].grad is not None for _ in engine.feed(x, y)]
    assert reached == [True, False]  # the first update reaches the learned initial state


@pytest.mark.parametrize("k1,k2", [(4, 4), (4, 2), (13, 13)])
def test_learned_init_state_gets_its_gradient_when_k2_is_at_most_k1(k1, k2, float64):
    # the window [cut, b) of the first chunk starts at the stream start (or a reset inside it
    # restores the initial state): the learned h0 gets that gradient, as in the reference
    torch.manual_seed(0)
    model = TanhStep(2, 3, 3)
    h0 = nn.Parameter(torch.randn(1, 3))  # (1, H): shared by every row
    x, y, reset, mask = stream(13, seed=6)
    params = [*model.parameters(), h0]
    want = reference_grads(model, params, h0.expand(3, 3), x, y, reset, mask, step_loss, k1, k2)
    engine = Engine(model, tbptt.losses.mse, TBPTT(k1, k2), path="step", init_state=h0)
    assert_same(engine_grads(engine, params, [(x, y, reset, mask)]), want)


def test_init_state_that_is_not_a_state_is_a_type_error():
    with pytest.raises(TypeError, match=r"init_state must be a tensor.*got str"):
        Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4), init_state="zeros")


def test_numpy_integers_are_integers():
    rule = TBPTT(np.int64(5), np.int32(10))
    assert (rule.k1, rule.k2) == (5, 10) and type(rule.k1) is int
    assert repr(rule) == "TBPTT(k1=5, k2=10)"
    assert ARTBP(np.float32(0.5), min_len=np.int64(2), max_factor=np.float64(8), seed=np.int64(0))
    assert VariableLength(np.int64(70), p=np.float32(0.5), seed=np.uint8(1)).bptt == 70
    model = nn.GRU(2, 3, batch_first=True)
    engine = Engine(model, tbptt.losses.mse, TBPTT(4), mode="recompute", checkpoint=np.int64(2))
    x, y = xy()
    assert len(list(engine.feed(x, y))) == 2
    seqs = [torch.randn(9, 2), torch.randn(5, 2)]
    assert StreamBatcher(seqs, "next", batch_size=np.int64(2), chunk_len=np.int16(3)).chunk(
        np.int64(0)
    ).inputs.shape == (2, 3, 2)
    assert naive_split(seqs, np.int64(3)).inputs.shape[1] == 3
    tokens = torch.arange(40)
    assert TokenBatcher(tokens, batch_size=np.int64(2), chunk_len=np.int64(5)).chunk(
        0
    ).inputs.shape == (2, 5)


# -- siblings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
@pytest.mark.parametrize("name", ["reset", "mask"])
def test_reset_and_mask_must_be_flags(name, dtype):
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    x, y = xy()
    bad = torch.full((4, 8), 2, dtype=dtype)  # 2 is not a flag; a float 0.5 would round silently
    with pytest.raises(TypeError, match=rf"{name} must be a bool tensor.*got dtype {dtype}"):
        engine.feed(x, y, **{name: bad})


def test_reset_and_mask_as_integers_0_1_still_work():
    x, y = xy()
    flags = torch.zeros(4, 8, dtype=torch.int64)
    flags[1, 5] = 1
    a = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4))
    assert len(list(a.feed(x, y, reset=flags, mask=1 - flags))) == 2


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(checkpoint=True), ValueError, "checkpoint must be None, 'sqrt' or a positive"),
        (dict(checkpoint=0), ValueError, "checkpoint must be None, 'sqrt' or a positive"),
        (dict(checkpoint=2.0), ValueError, "checkpoint must be None, 'sqrt' or a positive"),
        (dict(state_batch_dim=-1), ValueError, "state_batch_dim must be None or the index"),
        (dict(state_batch_dim=1.0), ValueError, "state_batch_dim must be None or the index"),
        (dict(zero_grad="no"), TypeError, "zero_grad must be True or False"),
        (dict(check_inputs=None), TypeError, "check_inputs must be True or False"),
        (dict(mode="stored ", path="chunk"), ValueError, "mode must be 'stored' or 'recompute'"),
        (dict(path="steps"), ValueError, "path must be 'auto', 'chunk' or 'step'"),
    ],
)
def test_engine_keyword_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4), **kwargs)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: TBPTT(np.float64(5.0)), ValueError, r"k1 must be a positive integer.*got"),
        (lambda: TBPTT(5, np.bool_(True)), ValueError, r"k2 must be a positive integer"),
        (lambda: ARTBP(0.1, seed=1.5), TypeError, r"seed must be an int or None"),
        (lambda: ARTBP(0.1, seed=True), TypeError, r"seed must be an int or None"),
        (lambda: ARTBP(float("nan")), ValueError, r"c must be a probability in \(0, 1\)"),
        (lambda: ARTBP(0.5, max_factor=float("nan")), ValueError, r"max_factor must be a number"),
        (lambda: VariableLength(70, std=float("inf")), ValueError, r"std must be a finite number"),
    ],
)
def test_rule_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_reset_rows_checks_rows():
    h = torch.ones(2, 3, 4)  # (layers, B, H)
    with pytest.raises(TypeError, match=r"rows must be a \(B,\) bool tensor"):
        reset_rows(h, torch.tensor([0, 1, 0]), None, batch_dim=1)
    with pytest.raises(ValueError, match=r"rows has 3 entries.*batch dim 0.*batch_dim="):
        reset_rows(h, torch.tensor([False, True, False]), None, batch_dim=0)


def test_a_wrong_state_batch_dim_is_caught_on_the_returned_state():
    # the GRU's state (1, B, H) read at dim 0 has 1 row: it looked like a shared row
    engine = Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, TBPTT(4), state_batch_dim=0)
    x, y = xy()
    with pytest.raises(ValueError, match=r"the state returned by the model.*state_batch_dim"):
        list(engine.feed(x, y))


@pytest.mark.parametrize(
    "init",
    [torch.zeros(1, 4, 3), (torch.zeros(4, 1, 3), torch.zeros(4, 1, 3))],
    ids=["bare tensor", "batch-first"],
)
def test_init_state_for_an_lstm_inside_a_wrapper(init):
    engine = Engine(
        Wrapped(nn.LSTM(2, 3, batch_first=True)), tbptt.losses.mse, TBPTT(4), init_state=init
    )
    x, y = xy()
    with pytest.raises(
        ValueError, match=r"init_state does not match.*\(\(1, B, 3\), \(1, B, 3\)\)"
    ):
        list(engine.feed(x, y))


def test_init_state_probe_changes_nothing():
    # the probe runs once, in eval mode, with the RNG restored: dropout masks are the same
    class Drop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.drop = (
                nn.GRU(2, 3, num_layers=2, batch_first=True, dropout=0.5),
                nn.Dropout(0.3),
            )

        def forward(self, x, h):
            y, h = self.rnn(self.drop(x), h)
            return y, h

    x, y = xy()
    losses = []
    for init in (None, torch.zeros(2, 4, 3)):
        torch.manual_seed(0)
        model = Drop()
        engine = Engine(model, tbptt.losses.mse, TBPTT(4), init_state=init)
        losses.append(torch.stack([u.loss for u in engine.feed(x, y)]))
        assert model.training
    assert torch.equal(losses[0], losses[1])


def test_scaled_lr_takes_numpy_numbers():
    from tbptt.optim import scaled_lr

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    with scaled_lr(opt, np.float32(0.5)):
        assert opt.param_groups[0]["lr"] == 0.25
    with (
        pytest.raises(ValueError, match="factor must be a finite number >= 0"),
        scaled_lr(opt, np.float64("nan")),
    ):
        pass

"""The rule contract the estimators rely on, and the variable-length BPTT rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import tbptt
from tbptt import TBPTT, Engine, VariableLength, scaled_lr

pytestmark = pytest.mark.usefixtures("float64")


def test_a_rule_that_needs_sum_reduction_refuses_mean():
    class Unbiased(TBPTT):
        needs_sum_reduction = True

    model = nn.GRU(2, 3, batch_first=True)
    with pytest.raises(ValueError, match=r"reduction='sum'.*got reduction='mean'"):
        Engine(model, tbptt.losses.mse, Unbiased(4))
    Engine(model, tbptt.losses.mse, Unbiased(4), reduction="sum")  # accepted


# -- variable-length BPTT (AWD-LSTM) --------------------------------------------------------


def draws(rule, n):
    return torch.tensor([rule.next_length(0) for _ in range(n)], dtype=torch.float64)


def test_variable_length_mixture_and_mean():
    """bptt' = 70 w.p. 0.95 else 35, then N(bptt', 5): the two modes are 7 std apart, so each
    draw's mode is plain to see; the mean is 0.95 * 70 + 0.05 * 35 = 68.25."""
    n = 20000
    lengths = draws(VariableLength(70, seed=0), n)
    half = (lengths < 52.5).double().mean().item()
    assert abs(half - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n)
    assert abs(lengths.mean().item() - 68.25) < 4 * lengths.std().item() / math.sqrt(n)
    full = lengths[lengths >= 52.5]
    assert abs(full.std().item() - 5.0) < 0.2  # rounding adds 1/12 to the variance
    assert all(float(v).is_integer() for v in lengths[:100])


def test_variable_length_min_len_clips_the_left_tail():
    """bptt = 8: the normal N(8, 5) often falls below min_len = 5; those draws become 5."""
    n = 20000
    lengths = draws(VariableLength(8, p=1.0, seed=1), n)
    assert lengths.min().item() == 5
    at_min = (lengths == 5).double().mean().item()
    want = 0.5 * (1 + math.erf((5.5 - 8) / (5 * math.sqrt(2))))  # P(round(N(8, 5)) <= 5)
    assert abs(at_min - want) < 4 * math.sqrt(want * (1 - want) / n)
    assert draws(VariableLength(8, p=1.0, std=0.0, min_len=9, seed=0), 10).eq(9).all()


def test_variable_length_state_dict_resumes_the_same_draws():
    rule = VariableLength(30, seed=4)
    draws(rule, 3)
    saved = rule.state_dict()
    after = draws(rule, 10)
    other = VariableLength(30, seed=99)
    other.load_state_dict(saved)
    assert torch.equal(draws(other, 10), after)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bptt=0), r"bptt must be a positive integer number of steps, got 0"),
        (dict(bptt=70, p=1.5), r"p must be a probability in \[0, 1\], got 1\.5"),
        (dict(bptt=70, std=-1), r"std must be a finite number >= 0 \(steps\), got -1"),
        (dict(bptt=70, min_len=0), r"min_len must be a positive integer number of steps, got 0"),
    ],
)
def test_variable_length_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VariableLength(**kwargs)


def test_engine_updates_follow_the_drawn_lengths_with_their_lr_scale():
    model = nn.GRU(2, 3, batch_first=True)
    x, y = torch.randn(2, 200, 2), torch.randn(2, 200, 3)
    want = draws(VariableLength(20, seed=5), 12).long().tolist()
    engine = Engine(model, tbptt.losses.mse, VariableLength(20, seed=5))
    updates = list(engine.feed(x, y)) + list(engine.flush())
    lengths = [u.stop - u.start for u in updates]
    assert lengths[:-1] == want[: len(lengths) - 1]  # the last one is cut by the stream end
    assert sum(lengths) == 200 and lengths[-1] <= want[len(lengths) - 1]
    assert all(u.lr_scale == (u.stop - u.start) / 20 for u in updates)
    assert all(u.cut == u.start for u in updates)


# -- scaled_lr ------------------------------------------------------------------------------


def test_scaled_lr_steps_with_the_scaled_rate_and_restores_it_exactly():
    w1, w2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w1]}, {"params": [w2], "lr": 0.3}], lr=0.1)
    before = [g["lr"] for g in opt.param_groups]
    w1.grad, w2.grad = torch.ones(2), torch.ones(1)
    with scaled_lr(opt, 0.37) as same:
        assert same is opt
        assert [g["lr"] for g in opt.param_groups] == [0.1 * 0.37, 0.3 * 0.37]
        opt.step()
    assert [g["lr"] for g in opt.param_groups] == before  # exactly, not 0.1 * 0.37 / 0.37
    assert all(g["lr"] is lr for g, lr in zip(opt.param_groups, before))
    assert torch.allclose(w1, torch.full((2,), -0.037)) and torch.allclose(
        w2, torch.tensor([-0.111])
    )


def test_scaled_lr_restores_even_if_the_block_raises():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(RuntimeError, match="boom"), scaled_lr(opt, 2.0):
        raise RuntimeError("boom")
    assert opt.param_groups[0]["lr"] == 1e-3


def test_variable_length_training_loop_with_scaled_lr():
    """The AWD-LSTM loop: each step's lr is base * seq_len / bptt, then back to base."""
    torch.manual_seed(0)
    model = nn.GRU(2, 3, batch_first=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    engine = Engine(model, tbptt.losses.mse, VariableLength(10, seed=0))
    x, y = torch.randn(2, 60, 2), torch.randn(2, 60, 3)
    for update in engine.feed(x, y):
        before = [p.detach().clone() for p in model.parameters()]
        grads = [p.grad.clone() for p in model.parameters()]
        with scaled_lr(opt, update.lr_scale):
            opt.step()
        for p, b, g in zip(model.parameters(), before, grads):
            assert torch.allclose(p, b - 0.05 * update.lr_scale * g, atol=1e-14, rtol=0)
        assert opt.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("factor", [-1.0, float("nan"), float("inf"), True, "2"])
def test_scaled_lr_bad_factor(factor):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with (
        pytest.raises(ValueError, match="factor must be a finite number >= 0"),
        scaled_lr(opt, factor),
    ):
        pass


def test_scaled_lr_needs_an_optimizer():
    with (
        pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"),
        scaled_lr(object(), 2.0),
    ):
        pass

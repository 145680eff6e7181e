"""The synthetic tasks: their definitions (Arjovsky et al. 2016; UORO's influence balancing),
their baselines, and that they run through the engine."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import tbptt
from tbptt import BPTT, TBPTT, Engine
from tbptt.tasks import (
    BLANK,
    DELIMITER,
    InfluenceBalancing,
    adding_problem,
    copy_memory,
    half_squared_error,
)

pytestmark = pytest.mark.usefixtures("float64")


def test_adding_problem_definition_and_baseline():
    task = adding_problem(20000, 12, generator=torch.Generator().manual_seed(0))
    values, marks = task.inputs[..., 0], task.inputs[..., 1]  # (B, T)
    assert ((values >= 0) & (values < 1)).all()
    assert (marks[:, :6].sum(1) == 1).all() and (marks[:, 6:].sum(1) == 1).all()
    assert torch.allclose(task.targets[:, -1, 0], (values * marks).sum(1))
    assert task.mask[:, -1].all() and not task.mask[:, :-1].any()
    assert task.reset[:, 0].all() and not task.reset[:, 1:].any()
    ones = torch.ones_like(task.targets)
    mse = (tbptt.losses.mse(ones, task.targets) * task.mask).sum() / task.mask.sum()
    assert abs(mse.item() - task.baseline) < 0.006 and task.baseline == pytest.approx(
        0.167, abs=1e-3
    )


def test_copy_memory_definition_and_baseline():
    delay = 7
    task = copy_memory(5, delay, generator=torch.Generator().manual_seed(0), one_hot=False)
    length = delay + 20
    ids, targets = task.inputs, task.targets  # (B, T) long
    assert ids.shape == targets.shape == (5, length)
    assert (ids[:, :10] < 8).all()
    assert (ids[:, 10 : 10 + delay - 1] == BLANK).all() and (ids[:, 9 + delay] == DELIMITER).all()
    assert (ids[:, 10 + delay :] == BLANK).all()
    assert (targets[:, : delay + 10] == BLANK).all() and torch.equal(targets[:, -10:], ids[:, :10])
    # the memoryless predictor: blank for T + 10 steps, then uniform over the 8 symbols
    logits = torch.full((5, length, 10), -1e9)
    logits[:, : delay + 10, BLANK] = 0
    logits[:, delay + 10 :, :8] = 0
    ce = tbptt.losses.cross_entropy(logits, targets).mean()
    assert ce.item() == pytest.approx(task.baseline, rel=1e-9)
    assert task.baseline == pytest.approx(10 * math.log(8) / (delay + 20))
    one_hot = copy_memory(5, delay, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one_hot.inputs.argmax(-1), ids) and one_hot.inputs.shape == (5, length, 10)


def test_tasks_run_through_the_engine():
    torch.manual_seed(0)
    lstm, head = nn.LSTM(10, 8, batch_first=True), nn.Linear(8, 10)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.head = lstm, head

        def forward(self, x, state):
            y, state = self.lstm(x, state)  # (B, T, H)
            return self.head(y), state  # (B, T, 10)

    engine = Engine(Model(), tbptt.losses.cross_entropy, TBPTT(10))
    for seed in (0, 1):  # two batches of sequences fed into one stream: reset at step 0
        task = copy_memory(3, 10, generator=torch.Generator().manual_seed(seed))  # 30 steps
        updates = list(engine.feed(*task.chunk))
        assert len(updates) == 3 and all(u.finite for u in updates)
    adding = adding_problem(3, 16)
    engine = Engine(nn.GRU(2, 1, batch_first=True), tbptt.losses.mse, BPTT())
    list(engine.feed(*adding.chunk))
    (update,) = list(engine.flush())
    assert int(update.trained_count) == 3


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: adding_problem(0, 10), r"batch_size must be an integer >= 1, got 0"),
        (lambda: adding_problem(2, 1), r"length must be an integer >= 2, got 1"),
        (lambda: copy_memory(2, 0), r"delay must be an integer >= 1, got 0"),
        (lambda: InfluenceBalancing(n=5, n_positive=5), r"n_positive must be an integer in"),
    ],
)
def test_task_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def influence(d: int, n: int = 23) -> torch.Tensor:
    """(A^k u)[0] for k < d: how the input of k steps ago reaches s[0]."""
    model = InfluenceBalancing(n)
    out, v = [], model.u.clone()
    for _ in range(d):
        out.append(v[0])
        v = model.A @ v
    return torch.stack(out)


def test_influence_balancing_system():
    model = InfluenceBalancing()
    assert model.theta_star == pytest.approx(-1 / 6, abs=1e-12)
    assert torch.equal(model.A.diagonal(), torch.full((23,), 0.5))
    assert torch.equal(model.A.diagonal(1), torch.full((22,), 0.5)) and model.A.triu(2).eq(0).all()
    assert model.u.tolist() == [1.0] * 10 + [-1.0] * 13
    with torch.no_grad():
        model.theta.fill_(model.theta_star)
        x, _ = model.stream(400)
        y, _ = model(x, None)  # the chunk form: (1, 400, 1)
    assert y[0, -1, 0].item() == pytest.approx(1.0, abs=1e-9)  # the fixed point has s[0] = 1
    # short-term influence positive, long-term negative: the trap for short truncations
    g = influence(400).cumsum(0)
    assert g[9].item() == 10 and g[60:].max() < -5.9 and g[-1].item() == pytest.approx(-6)


def test_influence_balancing_gradients_through_the_engine():
    """One unroll of K steps from s0, loss at its last step: dL/dtheta = (s_K[0] - 1) G[K-1]
    with G[d] = sum_{k<=d} (A^k u)[0], on the step path and the chunk path."""
    g = influence(50).cumsum(0)
    for path in ("step", "chunk"):
        model = InfluenceBalancing()
        x, y = model.stream(40)
        mask = torch.zeros(1, 40, dtype=torch.bool)
        mask[0, -1] = True
        engine = Engine(model, half_squared_error, TBPTT(40), path=path)
        (update,) = list(engine.feed(x, y, mask=mask))
        s_last = update.outputs[0, -1, 0]
        assert model.theta.grad.item() == pytest.approx(((s_last - 1) * g[39]).item(), rel=1e-12)


def test_influence_balancing_closed_form_chunks_equal_the_step_loop():
    """The chunk path (closed form, blocks of 128) against the step function, values and
    gradients, over 300 steps with varying inputs and a given entering state."""
    model = InfluenceBalancing()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 300, 1, generator=g)  # (B, T, 1)
    s_in = torch.randn(2, 23, generator=g, requires_grad=True)
    y_chunk, s_chunk = model(x, s_in)
    ys, s = [], s_in
    for t in range(300):
        y, s = model(x[:, t], s)
        ys.append(y)
    y_step = torch.stack(ys, 1)
    assert torch.allclose(y_chunk, y_step, atol=1e-10, rtol=1e-10)
    assert torch.allclose(s_chunk, s, atol=1e-10, rtol=1e-10)
    w = torch.randn(2, 300, 1, generator=g)
    grads_chunk = torch.autograd.grad((y_chunk * w).sum() + s_chunk.sum(), [model.theta, s_in])
    grads_step = torch.autograd.grad((y_step * w).sum() + s.sum(), [model.theta, s_in])
    for a, b in zip(grads_chunk, grads_step):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-10)

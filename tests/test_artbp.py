"""ARTBP (Tallec & Ollivier 2017): its draws, its factors, and that it is unbiased.

Unbiasedness is checked twice: exactly, by enumerating every truncation pattern of a short
stream with its probability; and statistically, over many seeds, against full BPTT, with
TBPTT's bias as the contrast.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from reference import LinearScalarRNN
from test_engine_reference import assert_same, engine_grads, stream
from torch import nn

import tbptt
from tbptt import ARTBP, BPTT, TBPTT, Engine

pytestmark = pytest.mark.usefixtures("float64")


def stream_gradient(engine: Engine, params, x, y, reset=None, mask=None) -> torch.Tensor:
    """The sum of the gradients of every update of one stream, flattened."""
    total = torch.zeros(sum(p.numel() for p in params))

    def add() -> None:
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        total.add_(torch.cat([g.flatten() for g in grads]))

    for _ in engine.feed(x, y, reset, mask):
        add()  # each update's gradient, read before the next update zeroes it
    for _ in engine.flush():
        add()
    return total


class Forced(ARTBP):
    """ARTBP whose chunk lengths are given (the factors stay ARTBP's)."""

    def __init__(self, lengths, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lengths = list(lengths)

    def next_length(self, start):
        return self.lengths.pop(0)


def compositions(n: int):
    """Every way to cut n steps into chunks: tuples of positive lengths summing to n."""
    for cuts in itertools.product([False, True], repeat=n - 1):
        lengths, run = [], 1
        for cut in cuts:
            if cut:
                lengths.append(run)
                run = 1
            else:
                run += 1
        yield (*lengths, run)


def pattern_probability(rule: ARTBP, lengths) -> float:
    """P(these chunks): each but the last ends at a truncation; the last is ended by the stream."""
    prob = 1.0
    for i, length in enumerate(lengths):
        for j in range(1, length):
            prob *= 1 - rule.probability(j)
        if i < len(lengths) - 1:
            prob *= rule.probability(length)
    return prob


@pytest.mark.parametrize(
    "kwargs",
    [dict(c=0.3), dict(c=0.5, min_len=2), dict(c=0.4, max_factor=2.8)],
    ids=["constant", "min_len", "max_factor"],
)
def test_exact_expectation_over_every_truncation_pattern_is_bptt(kwargs):
    """Sum over all 2^(T-1) patterns of P(pattern) * gradient(pattern) = the BPTT gradient,
    on nn.LSTM (the chunk path, split at each factor) with resets and masked steps."""
    torch.manual_seed(0)
    model = nn.LSTM(2, 3, batch_first=True)
    params = list(model.parameters())
    x, y, reset, mask = stream(7, seed=11)  # (B, T, F), (B, T, H), (B, T), (B, T)
    want = stream_gradient(
        Engine(model, tbptt.losses.mse, BPTT(), reduction="sum"), params, x, y, reset, mask
    )
    rule = ARTBP(**kwargs)
    total_prob, expected = 0.0, torch.zeros_like(want)
    for lengths in compositions(7):
        prob = pattern_probability(rule, lengths)
        if prob == 0:
            continue
        engine = Engine(model, tbptt.losses.mse, Forced(lengths, **kwargs), reduction="sum")
        expected += prob * stream_gradient(engine, params, x, y, reset, mask)
        total_prob += prob
    assert total_prob == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(expected, want, atol=1e-10, rtol=0)
    tbptt2 = stream_gradient(
        Engine(model, tbptt.losses.mse, TBPTT(2), reduction="sum"), params, x, y, reset, mask
    )
    assert (tbptt2 - want).abs().max() > 1e-3  # truncation alone is biased


def _mean_and_se(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])


@pytest.mark.parametrize("kind", ["lstm", "linear"])
def test_mean_over_seeds_is_bptt_while_tbptt_is_biased(kind):
    """Parameters frozen, reduction='sum': the mean over seeds of ARTBP's summed gradient is
    within 3 standard errors of full BPTT on every coordinate; TBPTT's is many away."""
    torch.manual_seed(0)
    if kind == "lstm":
        model, path, length, seeds, c, k = nn.LSTMCell(1, 3), "step", 24, 300, 0.25, 3
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(2, length, 1, generator=g), torch.randn(2, length, 3, generator=g)
        with torch.no_grad():
            model.weight_hh.mul_(3)  # a longer memory, so that truncation matters
    else:
        model, path, length, seeds, c, k = LinearScalarRNN(0.8), "step", 30, 400, 0.2, 3
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, length, 1, generator=g) + 1  # a drift, so the state accumulates
        y = torch.randn(2, length, 1, generator=g)
    params = list(model.parameters())

    def run(rule):
        return stream_gradient(
            Engine(model, tbptt.losses.mse, rule, path=path, reduction="sum"), params, x, y
        )

    want = run(BPTT())
    artbp = torch.stack([run(ARTBP(c, seed=s)) for s in range(seeds)])  # (seeds, P)
    mean, se = _mean_and_se(artbp)
    z_artbp = ((mean - want) / se).abs()
    assert z_artbp.max() < 3, z_artbp
    z_tbptt = ((run(TBPTT(k)) - want) / se).abs()  # deterministic: its mean is itself
    assert z_tbptt.max() > 10, z_tbptt


def test_chunk_lengths_are_geometric_and_reproducible():
    rule = ARTBP(0.2, seed=3)
    lengths = torch.tensor([rule.next_length(0) for _ in range(4000)], dtype=torch.float64)
    assert lengths.min() == 1
    assert abs(lengths.mean().item() - 5.0) < 4 * lengths.std().item() / math.sqrt(4000)
    p1 = (lengths == 1).double().mean().item()  # P(L = 1) = c
    assert abs(p1 - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 4000)

    shifted = ARTBP(0.2, min_len=4, seed=3)
    assert [shifted.next_length(0) for _ in range(50)] == [int(v) + 3 for v in lengths[:50]]


def test_max_factor_bounds_the_factors_and_may_never_truncate():
    rule = ARTBP(0.1, max_factor=2.0, seed=0)  # (1/0.9)^6 = 1.88 <= 2 < (1/0.9)^7
    assert [rule.probability(j) for j in range(1, 9)] == [0.1] * 6 + [0.0, 0.0]
    scales = rule.grad_scales(100, 150)
    assert sorted(scales) == list(range(101, 107))
    assert math.prod(scales.values()) <= 2.0
    draws = [rule.next_length(0) for _ in range(4000)]
    never = sum(d is None for d in draws) / 4000
    assert abs(never - 0.9**6) < 4 * math.sqrt(0.9**6 * (1 - 0.9**6) / 4000)
    assert all(d is None or 1 <= d <= 6 for d in draws)


def test_an_unbounded_chunk_ends_at_flush():
    rule = ARTBP(0.5, max_factor=2.0, seed=0)  # one coin, then no truncation: P(None) = 1/2
    model = nn.GRU(2, 3, batch_first=True)
    x, y, _, _ = stream(12, seed=0)
    engine = Engine(model, tbptt.losses.mse, rule, reduction="sum")
    spans = [(u.start, u.stop) for u in engine.feed(x, y)] + [
        (u.start, u.stop) for u in engine.flush()
    ]
    assert spans[0][0] == 0 and spans[-1][1] == 12
    assert all(b - a == 1 for a, b in spans[:-1])  # truncations only after one step
    assert spans[-1][1] - spans[-1][0] >= 1


def test_state_dict_resumes_the_same_draws():
    rule = ARTBP(0.1, seed=7)
    [rule.next_length(0) for _ in range(5)]
    saved = rule.state_dict()
    after = [rule.next_length(0) for _ in range(20)]
    other = ARTBP(0.1, seed=123)
    other.load_state_dict(saved)
    assert [other.next_length(0) for _ in range(20)] == after
    torch.manual_seed(5)
    a = ARTBP(0.1)  # seed=None: from torch's global generator
    torch.manual_seed(5)
    b = ARTBP(0.1)
    assert [a.next_length(0) for _ in range(20)] == [b.next_length(0) for _ in range(20)]


def test_scales_follow_the_chunk_and_engine_reports_updates_at_truncations():
    """Engine.feed yields one update per drawn chunk; the factors make the LinearScalarRNN
    gradient of the hand example in test_engine (factor 2 on boundary 2) come out of ARTBP."""
    model = LinearScalarRNN(0.5)
    x = torch.tensor([[[1.0], [2.0], [3.0]]])  # (1, 3, 1)
    mask = torch.tensor([[False, False, True]])
    rule = Forced([3], c=0.5)  # one chunk of 3 steps: boundaries 1 and 2 get 1 / (1 - 0.5)
    (update,) = list(
        Engine(model, tbptt.losses.mse, rule, path="step", reduction="sum").feed(
            x, 0 * x, mask=mask
        )
    )
    # loss s2^2 with s2 = w s1 + x2, s1 = w s0 + x1: dL/dw = 2 s2 (s1 + 2 w s0), the path
    # through s0 crossing boundary 2 (factor 2); boundary 1 leads to s0, which has no w
    s0, s1 = 1.0, 0.5 * 1.0 + 2.0
    s2 = 0.5 * s1 + 3.0
    assert model.w.grad.item() == pytest.approx(2 * s2 * (s1 + 2 * 0.5 * s0))
    assert (update.start, update.stop, update.cut) == (0, 3, 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(c=0.0), r"c must be a probability in \(0, 1\), got 0\.0"),
        (dict(c=1.0), r"c must be a probability in \(0, 1\), got 1\.0"),
        (dict(c="0.1"), r"c must be a probability"),
        (dict(c=0.1, min_len=0), r"min_len must be a positive integer"),
        (dict(c=0.5, max_factor=1.5), r"max_factor must be a number >= 1 / \(1 - c\) = 2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ARTBP(**kwargs)


def test_bad_seed_and_bad_state():
    with pytest.raises(TypeError, match=r"seed must be an int or None, got 1\.5"):
        ARTBP(0.1, seed=1.5)
    with pytest.raises(ValueError, match=r"state must be the dict returned by ARTBP\.state_dict"):
        ARTBP(0.1, seed=0).load_state_dict({"rng": 1})


def test_mean_reduction_is_refused():
    with pytest.raises(ValueError, match="ARTBP is unbiased only with reduction='sum'"):
        Engine(nn.GRU(2, 3, batch_first=True), tbptt.losses.mse, ARTBP(0.1))


def test_checkpoint_and_artbp_together_give_the_same_gradients():
    model = nn.LSTM(2, 3, batch_first=True)
    params = list(model.parameters())
    x, y, reset, mask = stream(40, seed=3)
    got = [
        engine_grads(
            Engine(model, tbptt.losses.mse, ARTBP(0.1, seed=2), reduction="sum", checkpoint=ck),
            params,
            [(x, y, reset, mask)],
        )
        for ck in (None, "sqrt")
    ]
    assert_same(got[1], got[0])

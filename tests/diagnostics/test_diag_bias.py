"""The truncation-bias meter: the sign flip of influence balancing, a char-LSTM's cosine curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _diag_models import Balancing, half_squared, trained_char_lstm
from torch import nn

import tbptt
from tbptt.cli import main
from tbptt.diagnostics import gradient_reach, truncation_bias


def truncated_sensitivity(k: int) -> float:
    """Theory: d s_t[0] / d theta through the last k steps only, in the steady state:
    sum_{m < k} (A^m u)[0]. The full sensitivity is ((I - A)^-1 u)[0] = 2 (10 - 13) = -6."""
    A = 0.5 * np.eye(23) + 0.5 * np.eye(23, k=1)
    u = np.r_[np.ones(10), -np.ones(13)]
    total, v = 0.0, u
    for _ in range(k):
        total, v = total + v[0], A @ v
    return total


def test_influence_balancing_gradient_has_the_wrong_sign_below_41_steps(tmp_path):
    flip = next(k for k in range(1, 100) if truncated_sensitivity(k) < 0)
    assert flip == 41  # the theory: truncations of 40 steps or fewer see the wrong sign
    model = Balancing()
    x = torch.ones(1, 150, 1, dtype=torch.float64)  # (B, T, 1)
    mask = torch.zeros(1, 150, dtype=torch.bool)
    mask[:, 100:] = True  # losses after the start-up transient (s_0 = 1 decays)
    report = truncation_bias(
        model,
        half_squared,
        x,
        x.clone(),
        [10, 30, 40, 41, 45, 60],
        mask=mask,
        init_state=model.initial_state,
        tolerance=0.05,
    )
    assert report.wrong_sign == [10, 30, 40]
    assert report.cosine == pytest.approx([-1, -1, -1, 1, 1, 1])  # one parameter: +-1
    assert report.relative_error[-1] < 0.05 and report.smallest_k2 == 60
    assert "wrong sign (cosine < 0) for k2 in [10, 30, 40]" in report.summary()
    assert model.theta.grad is None  # parameters and their .grad are left as they were
    report.plot(tmp_path / "ib.png")


def test_char_lstm_cosine_rises_to_one(tmp_path):
    model, ids = trained_char_lstm()
    assert model.losses[-1] < model.losses[0] - 0.5  # it did train
    x = ids[2000:2080].view(2, 40)  # (B, T)
    y = ids[2001:2081].view(2, 40)
    k2s = [1, 2, 4, 8, 40]
    report = truncation_bias(model, tbptt.losses.cross_entropy, x, y, k2s, k1=2)
    cos = report.cosine
    assert all(a < b + 1e-6 for a, b in zip(cos, cos[1:])), cos  # rises with k2
    assert cos[0] < 0.999
    assert cos[-1] == pytest.approx(1.0, abs=1e-6)  # k2 covers the sample: BPTT itself
    assert report.relative_error[-1] < 1e-5
    assert report.reach is not None and report.reach.shape == (40,)
    assert report.reach[30:].max() < report.reach[:3].max()  # the LSTM's gradient vanishes
    fig = report.plot(tmp_path / "bias.png")
    assert len(fig.axes) == 2


def test_gradient_reach_of_a_linear_rnn_is_geometric():
    """s_t = w s_{t-1} + x_t, y = s: dl_T/ds_{T-j} = (s_T - target) w^j."""

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

        def forward(self, x, s):  # x (B, L, 1)
            s = torch.zeros_like(x[:, 0]) if s is None else s
            ys = []
            for t in range(x.shape[1]):
                s = self.w * s + x[:, t]
                ys.append(s)
            return torch.stack(ys, 1), s

    x = torch.ones(1, 8, 1, dtype=torch.float64)
    reach = gradient_reach(Linear(), half_squared, x, torch.zeros_like(x))
    s_T = sum(0.5**i for i in range(8))
    np.testing.assert_allclose(reach, s_T * 0.5 ** np.arange(8))


def test_bias_errors():
    rnn = nn.RNN(1, 3, batch_first=True)
    x = torch.randn(1, 5, 1)
    y = torch.randn(1, 5, 3)
    with pytest.raises(
        ValueError, match=r"k2s must be a non-empty list of positive integers, got \[0, 2\]"
    ):
        truncation_bias(rnn, tbptt.losses.mse, x, y, [0, 2])
    with pytest.raises(ValueError, match="tolerance must be a positive number, got -1"):
        truncation_bias(rnn, tbptt.losses.mse, x, y, [2], tolerance=-1)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        truncation_bias(lambda x, s: (x, s), tbptt.losses.mse, x, y, [2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="full-BPTT gradient on this sample has norm 0"):
        truncation_bias(rnn, tbptt.losses.mse, x, y, [2], mask=torch.zeros(1, 5, dtype=torch.bool))


# -- bias: the promise of its help, and a readable reach panel ------------------------------------
def test_bias_influence_default_length_shows_the_wrong_sign(capsys):
    """At 64 steps only the last 24 losses see the long-run (negative) influence of theta, so
    the full gradient is as positive as the truncated ones; from ~100 steps on the long run
    dominates. The default length (160) must show what the help promises."""
    pytest.importorskip("tbptt.tasks")
    assert main(["bias", "--task", "influence", "--k2s", "8,32,64"]) == 0
    out = capsys.readouterr().out
    assert "wrong sign (cosine < 0) for k2 in [8, 32]" in out


def test_reach_panel_leaves_out_zeros_and_spans_the_values(tmp_path):
    from tbptt.diagnostics import BiasReport

    reach = np.array([0.0, 1.0, 0.5, 0.25, 1e-310])  # (T,) reach[0] = 0, an underflow at the end
    report = BiasReport(1, [1, 5], [0.5, 1.0], [0.8, 0.0], 1.0, 0.1, 5, reach=reach)
    ax = report.plot(tmp_path / "r.png").axes[1]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 0.5, 0.25])
    low, high = ax.get_ylim()
    assert low == pytest.approx(0.125) and high == pytest.approx(2.0)
    assert "2 lag(s) at 0" in ax.get_title()

"""Property tests over the diagnostics API's arguments (hypothesis): every bad value gives a
ValueError or TypeError naming the argument, never an IndexError, AttributeError, a hang or a
silent success."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tbptt import losses
from tbptt.diagnostics import explain, suggest, sweep, truncation_bias
from tbptt.diagnostics.explain import MAX_STEPS

# values that are not positive integers (numpy integers > 0 are integers, so they are not here)
not_positive_int = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.one_of(not_positive_int.filter(lambda v: v is not None), st.integers(101, 10**12)))
def test_explain_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        explain(2, 4, steps)


@settings(max_examples=60, deadline=None)
@given(k1=not_positive_int.filter(lambda v: v is not None), steps=st.integers(1, MAX_STEPS))
def test_explain_bad_k1(k1, steps):
    with pytest.raises((ValueError, TypeError), match="k1"):
        explain(k1, None, steps)


@settings(max_examples=40, deadline=None)
@given(
    max_lag=st.one_of(st.integers(max_value=1), st.integers(50, 10**9), st.floats(), st.booleans()),
    alpha=st.one_of(st.just(0.05), st.floats().filter(lambda a: not 0 < a < 1)),
)
def test_suggest_bad_max_lag_or_alpha(max_lag, alpha):
    x = np.sin(np.arange(100) / 3.0)  # n // 2 - 1 = 49
    with pytest.raises(ValueError, match=r"max_lag|alpha"):
        suggest(x, max_lag=max_lag, alpha=alpha)


@settings(max_examples=40, deadline=None)
@given(
    where=st.integers(0, 99),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_suggest_any_gap_is_refused(where, bad):
    x = np.sin(np.arange(100) / 3.0)
    x[where] = bad
    with pytest.raises(
        ValueError, match=rf"series has 1 NaN/inf value\(s\), the first at index {where}"
    ):
        suggest(x)


@settings(max_examples=60, deadline=None)
@given(
    which=st.sampled_from(["lengths", "k1s", "k2s"]),
    values=st.one_of(
        st.lists(not_positive_int, min_size=1, max_size=3),
        st.just([]),
    ),
)
def test_sweep_bad_grid(which, values):
    grid = {"k1s": [4], "k2s": [4]} if which != "lengths" else {}
    grid[which] = values
    with pytest.raises(ValueError, match=which):
        sweep(lambda k1, k2: {"val_loss": 1.0}, **grid)


_RNN = nn.RNN(1, 3, batch_first=True)
_X, _Y = torch.randn(1, 6, 1), torch.randn(1, 6, 3)


@settings(max_examples=40, deadline=None)
@given(
    k2s=st.one_of(st.just([]), st.lists(not_positive_int, min_size=1, max_size=2)),
    tolerance=st.one_of(
        st.just(0.1), st.floats(max_value=0), st.just(float("nan")), st.text(max_size=2)
    ),
)
def test_truncation_bias_bad_k2s_or_tolerance(k2s, tolerance):
    with pytest.raises(ValueError, match=r"k2s|tolerance"):
        truncation_bias(_RNN, losses.mse, _X, _Y, k2s, tolerance=tolerance)

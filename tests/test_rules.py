"""The rule contract the estimators rely on, and the variable-length BPTT rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tbptt
from tbptt import TBPTT, Engine

torch.set_default_dtype(torch.float64)


def test_a_rule_that_needs_sum_reduction_refuses_mean():
    class Unbiased(TBPTT):
        needs_sum_reduction = True

    model = nn.GRU(2, 3, batch_first=True)
    with pytest.raises(ValueError, match=r"reduction='sum'.*got reduction='mean'"):
        Engine(model, tbptt.losses.mse, Unbiased(4))
    Engine(model, tbptt.losses.mse, Unbiased(4), reduction="sum")  # accepted

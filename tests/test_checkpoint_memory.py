"""Checkpointed full BPTT (Gruslys et al. 2016): the same gradient in O(sqrt(T)) memory.

The memory check uses benchmarks/checkpoint_memory.py's meter on short streams; the table
for T up to 16,000 is the benchmark's (docs/estimators.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from test_engine_reference import assert_same, engine_grads

import tbptt
from tbptt import BPTT, Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import checkpoint_memory as bench

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("segments", ["sqrt", 9])
def test_checkpointed_bptt_gradient_equals_bptt_on_an_lstm_with_resets(segments):
    torch.manual_seed(0)
    model = bench.Model(hidden=8)
    params = list(model.parameters())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 200, 1, generator=g), torch.randn(3, 200, 1, generator=g)
    reset = torch.rand(3, 200, generator=g) < 0.02  # a few sequence starts per row
    mask = torch.rand(3, 200, generator=g) < 0.9
    want = engine_grads(Engine(model, tbptt.losses.mse, BPTT()), params, [(x, y, reset, mask)])
    got = engine_grads(
        Engine(model, tbptt.losses.mse, BPTT(), checkpoint=segments),
        params,
        [
            (x[:, :70], y[:, :70], reset[:, :70], mask[:, :70]),
            (x[:, 70:], y[:, 70:], reset[:, 70:], mask[:, 70:]),
        ],
    )
    assert_same(got, want, tol=1e-6)
    assert_same(got, want, tol=1e-12)  # in float64 it is the same computation


def test_checkpointed_peak_memory_grows_like_sqrt_t():
    """4x the steps: the checkpointed peak grows ~2x (sqrt), the plain one ~4x (linear)."""
    kw = dict(batch=8, hidden=64, repeats=0)
    plain = [bench.measure(t, None, **kw).peak_bytes for t in (400, 1600)]
    sqrt = [bench.measure(t, "sqrt", **kw).peak_bytes for t in (400, 1600)]
    assert 3.6 < plain[1] / plain[0] < 4.4
    assert 1.6 < sqrt[1] / sqrt[0] < 2.5
    assert sqrt[1] < 0.25 * plain[1]


def test_live_tensor_meter_counts_storages_once_and_frees_them():
    meter = bench.LiveTensorMeter()
    with meter:
        a = torch.ones(1000, dtype=torch.float64)  # 8,000 bytes
        view = a[10:]  # same storage: not counted again
        b = a * 2
        del b
    assert meter.peak == 16000 and meter.live == 8000
    del a, view
    assert meter.live == 0

"""Classify: per-sequence scaling of the inputs (shape, level, scale), the aligned layout and the
update budget chosen from the data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tbptt.tabular.dataset import (
    CLASSIFY_EPOCHS,
    CLASSIFY_MINUTES,
    CLASSIFY_STEPS_PER_RUN,
    classify_budget,
    data_defaults,
)
from tbptt.tabular.prepare import Spec, sequence_inputs, sequence_stats
from tbptt.train.config import RunConfig

SPEC = Spec("classify", ["label"], ["a"], [], {}, [], {"a": 0.0}, {"a": 1.0})


NORM = {"mean": [0.0] * 5, "sd": [1.0] * 5}  # level, log scale, z min, z max, log length


def test_a_quiet_and_a_loud_sequence_of_one_shape_differ_only_in_level_and_scale():
    shape = np.sin(np.arange(12.0) / 2)[:, None]  # (12, 1)
    quiet, loud = 3.0 + 1e-6 * shape, -2.0 + 50.0 * shape  # 10^-6 of the spread: still a shape
    q, lo = (sequence_inputs(x, SPEC, 4, NORM) for x in (quiet, loud))
    assert q.shape == (3, 4 * 2 + 5)  # patches of (z, value) pairs, then 5 constant columns
    z = (shape - shape.mean()) / shape.std()
    np.testing.assert_allclose(q[:, 0:8:2], z.reshape(3, 4), atol=1e-6)  # the same shape
    np.testing.assert_allclose(lo[:, 0:8:2], z.reshape(3, 4), atol=1e-6)
    np.testing.assert_allclose(lo[:, 1:8:2], loud.reshape(3, 4))  # the values as they are
    # level, log scale, range of the shape and log length, constant along the sequence
    want = [3.0 + 1e-6 * shape.mean(), np.log(1e-6 * shape.std()), z.min(), z.max(), np.log(12)]
    np.testing.assert_allclose(q[:, 8:], np.tile(want, (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(lo[0, 8:10], [-2.0 + 50 * shape.mean(), np.log(50 * shape.std())])
    # standardised by the training sequences' spread (norm), and left alone without it
    norm = {"mean": [1.0, 2.0, 0.0, 0.0, 0.0], "sd": [2.0, 4.0, 1.0, 1.0, 1.0]}
    scaled = sequence_inputs(loud, SPEC, 4, norm)
    np.testing.assert_allclose(scaled[0, 8:10], (lo[0, 8:10] - [1.0, 2.0]) / [2.0, 4.0])
    np.testing.assert_array_equal(sequence_inputs(loud, SPEC, 4, None), loud.reshape(3, 4))


def test_a_constant_sequence_is_centred_not_divided_by_zero():
    st = sequence_stats(np.full((5, 1), 2.5), SPEC)
    x = sequence_inputs(np.full((5, 1), 2.5), SPEC, 1, NORM)
    assert np.isfinite(x).all() and (x[:, 0] == 0).all() and st[0] == 2.5


def test_indicator_columns_are_left_out_of_the_scaling():
    x = np.array([[1.0, 0.0], [3.0, 1.0]])  # a value and its missing-value indicator
    out = sequence_inputs(x, SPEC, 1, NORM)
    np.testing.assert_allclose(out[:, :3], [[-1.0, 0.0, 1.0], [1.0, 1.0, 3.0]])


def test_budget_scales_with_the_data_and_is_bounded():
    # few short sequences: CLASSIFY_EPOCHS passes; 100 sequences of 30 steps, 70 train, rows of 25
    small = classify_budget(np.full(100, 30), 30, 25, 1, 0.3)
    assert small == {"updates": CLASSIFY_EPOCHS * 3, "minutes": CLASSIFY_MINUTES}
    # many long ones: the step budget binds (batch x k1 x updates x members)
    big = classify_budget(np.full(2000, 500), 500, 32, 1, 0.2)
    assert big["updates"] == max(200, CLASSIFY_STEPS_PER_RUN // (32 * 500))
    three = classify_budget(np.full(2000, 500), 500, 32, 3, 0.2)
    assert three["updates"] == max(200, CLASSIFY_STEPS_PER_RUN // (3 * 32 * 500))
    # never fewer than 200 nor more than 5,000 updates
    assert classify_budget(np.full(10, 1024), 1024, 4, 1, 0.3)["updates"] >= 200
    assert classify_budget(np.full(10_000, 4), 4, 32, 1, 0.2)["updates"] == 5000


@pytest.mark.parametrize("longest", [40, 1500])
def test_aligned_chunks_hold_a_whole_sequence_up_to_1024_steps(tmp_path, longest):
    rng = np.random.default_rng(0)
    lengths = [longest] + [20] * 11
    rows = [(i, t, float(rng.normal()), "a") for i, n in enumerate(lengths) for t in range(n)]
    frame = pd.DataFrame(rows, columns=["id", "t", "x", "label"])
    frame["y"] = frame["x"]  # two channels: no patches
    frame.loc[frame["id"] % 2 == 1, "label"] = "b"
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    cfg = data_defaults(
        RunConfig(task="classify", data=str(path), target="label", id="id", time="t")
    )
    if longest <= 1024:  # one chunk per sequence: k2 = k1 reaches its first step
        assert (cfg.k1, cfg.k2) == (longest, longest)
    else:  # longer: two chunks back
        assert (cfg.k1, cfg.k2) == (1024, 2048)
        return
    from tbptt.tabular.job import build_data_job

    train = build_data_job(replace(cfg, chunk_len=cfg.k1)).train  # the CLI's chunk: k1
    assert train.layout == "aligned"
    chunk = train.chunk(0)  # every row starts a sequence at the chunk's first step
    assert bool(chunk.reset[:, 0].all()) and not bool(chunk.reset[:, 1:].any())
    assert int(chunk.mask.sum()) == chunk.reset.shape[0]  # one target per row: its label


def _scale_of(amplitudes: list[float]) -> tuple[dict | None, np.ndarray, object]:
    from tbptt.tabular.job import _stats_scale
    from tbptt.tabular.panel import make_panel

    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=20) for _ in amplitudes]
    seqs = [a * (s - s.mean()) / s.std() for a, s in zip(amplitudes, seqs)]  # level 0 each
    n = len(amplitudes)
    frame = pd.DataFrame({"id": np.repeat(np.arange(n), 20), "a": np.concatenate(seqs)})
    panel = make_panel(frame, id_col="id", time_col=None)
    x = frame[["a"]].to_numpy()
    return _stats_scale(x, panel, SPEC, np.zeros(n, dtype=bool)), x, panel


def test_sequences_are_scaled_one_by_one_only_where_amplitudes_spread_an_order_of_magnitude():
    z_normalised, _, _ = _scale_of([1.0] * 6)  # ArrowHead, ACSF1: one scale
    assert z_normalised is None
    within, _, _ = _scale_of([1.0, 3.0, 0.5, 2.0, 1.0, 4.0])  # BasicMotions-like: one order
    assert within is None
    norm, x, _ = _scale_of([1e-3, 1.0, 1e3, 1e-2, 10.0, 1e2])  # PLAID-like: six orders
    assert norm is not None and norm["sd"][1] > 1.0  # the log scale varies: standardised
    # a statistic that does not vary (every level is 0, every length 20) keeps the unit
    # divisor, so its rounding noise (~1e-16) is not blown up into an input of size 1
    assert norm["sd"][0] == 1.0 and norm["sd"][4] == 1.0
    rows = sequence_inputs(x[:20], SPEC, 1, norm)  # (z, x), then 5 statistics
    assert np.abs(rows[:, 2]).max() < 1e-6 and np.abs(rows[:, 6]).max() < 1e-6

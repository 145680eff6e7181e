"""What the diagnostics print: findings in words, not arrays or ``None``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tbptt.diagnostics import suggest
from tbptt.diagnostics.panel_suggest import suggest_panel


def test_reprs_leave_out_the_acf_arrays_and_the_per_id_results():
    t = np.arange(400)
    y = np.sin(2 * np.pi * t / 7) + 0.3 * np.random.default_rng(0).normal(size=400)
    s = suggest(y)
    assert 7 in s.periods and len(s.acf) > 100  # the arrays are still there
    assert "array" not in repr(s) and f"periods={s.periods}" in repr(s)
    frame = pd.DataFrame({"id": np.repeat(["a", "b"], 200), "y": y})
    p = suggest_panel(frame, "y", id_col="id")
    assert set(p.per_id) == {"a", "b"}
    assert "array" not in repr(p) and "per_id" not in repr(p) and len(repr(p)) < 300


def test_bias_summary_says_when_no_k2_is_within_the_tolerance(capsys):
    from tbptt.cli import main

    assert main(["bias", "--task", "influence", "--k2s", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "relative error <= 0.1: none of those measured" in out and "None" not in out

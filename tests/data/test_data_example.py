"""The example script runs and shows the three worked examples."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data_preparation.py"


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "(a) as-is: [100, 25, 1]" in out
    assert "(b) naive split: [10000, 500, 1]" in out and "(every 100)" in out
    assert "rows reset at chunks [0, 100, 200, 300, 400]" in out
    assert "(c) one step: [5000, 1, 1], a reset every 50 samples" in out
    assert "same epoch as uninterrupted: True" in out

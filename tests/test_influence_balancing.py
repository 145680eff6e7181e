"""The short version of examples/influence_balancing.py: the same verdicts in seconds.

F1 (one update per K-step unroll, the loss at its end, the state carried): K = 1 ends near
3.26, K = 10 diverges, K = 100 converges. F2 (online, the loss at every step): chunked TBPTT
(10, 10) and (100, 100) fail; overlapping TBPTT(10, 100), TBPTT(1, 100) and ARTBP converge to
theta* = -1/6 within 1%. The full-length runs are the example's (see docs/estimators.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import influence_balancing as ib

JOBS = ib.quick_jobs()


@pytest.mark.parametrize("job", JOBS, ids=[f"{j.experiment}-{j.setting}" for j in JOBS])
def test_quick_reproduction(job):
    result = ib.run(job)
    assert result.outcome == job.expect, ib.table([result])
    if job.experiment == "F1" and job.rule == ("K", 1):
        assert result.theta == pytest.approx(3.26, abs=0.01)


def test_the_full_run_is_the_stated_experiment():
    jobs = ib.full_jobs()
    assert [(j.setting, j.lr, j.length) for j in jobs if j.experiment == "F1"] == [
        ("K=1", 1e-4, 3000),
        ("K=10", 1e-4, 3000),
        ("K=100", 1e-4, 3000),
    ]
    f2 = [j for j in jobs if j.experiment == "F2"]
    assert {(j.lr, j.length) for j in f2} == {(1e-5, 300_000)} and len(f2) == 4 + 3 * 3

"""sweep(): a grid with Optuna; two processes sharing one sqlite storage split it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tbptt.diagnostics.sweep import load_sweep, sweep

pytest.importorskip("optuna")

SRC = str(Path(__file__).resolve().parents[2] / "src")

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from tbptt.diagnostics.sweep import sweep

    tmp, me = Path(sys.argv[1]), sys.argv[2]
    (tmp / f"started-{me}").touch()
    ran = []

    def train_fn(k1, k2):
        deadline = time.time() + 60
        while len(list(tmp.glob("started-*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)  # both workers share the sweep from the start
        ran.append([k1, k2])
        time.sleep(0.1)
        return {"val_loss": abs(k2 - 8) + k1 / 100, "tokens_per_s": 1000.0 / k2}

    sweep(train_fn, k1s=[1, 2, 4], k2s=[2, 4, 8, 16],
          storage=f"sqlite:///{tmp / 'sweep.db'}", study_name="shared")
    (tmp / f"ran-{me}.json").write_text(json.dumps(ran))
    """
)


def test_two_processes_split_the_grid_without_repeats(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    optuna.create_study(study_name="shared", storage=storage)  # the tables, before the race
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(i)], env=env)
        for i in (1, 2)
    ]
    codes = [p.wait(timeout=240) for p in procs]
    assert codes == [0, 0], "a worker failed; its traceback is in the captured stderr"
    ran = [json.loads((tmp_path / f"ran-{i}.json").read_text()) for i in (1, 2)]
    points = [tuple(p) for r in ran for p in r]
    assert len(points) == len(set(points)) == 12, ran  # every grid point once, none twice
    assert all(len(r) > 0 for r in ran)  # both processes trained some
    result = load_sweep(storage, "shared")
    assert len(result.trials) == 12
    assert (result.best["k1"], result.best["k2"]) == (1, 8)


def test_sweep_lengths_plots_and_best(tmp_path, capsys):
    calls = []

    def train_fn(k1, k2):
        calls.append((k1, k2))
        return {"val_loss": 1 + abs(k1 - 32) / 32, "seconds": k1 / 10}

    result = sweep(train_fn, lengths=[8, 16, 32, 64])
    assert sorted(calls) == [(8, 8), (16, 16), (32, 32), (64, 64)]  # the diagonal only
    assert result.best["k1"] == 32
    assert [t["k1"] for t in result.pareto()] == [8, 16, 32]
    assert "best: k1=32 k2=32" in result.summary()
    result.plot_loss(tmp_path / "loss.png")
    result.plot_pareto(tmp_path / "pareto.png")
    assert (tmp_path / "loss.png").stat().st_size > 5000


def test_sweep_errors():
    ok = lambda k1, k2: {"val_loss": 1.0}  # noqa: E731
    with pytest.raises(
        ValueError, match=r"lengths must be a non-empty list of positive integers, got \[0, 4\]"
    ):
        sweep(ok, lengths=[0, 4])
    with pytest.raises(ValueError, match=r"lengths=\[4\] and k1s/k2s both given"):
        sweep(ok, lengths=[4], k2s=[4])
    with pytest.raises(ValueError, match=r"k1s=\[8\] needs k2s"):
        sweep(ok, k1s=[8])
    with pytest.raises(ValueError, match=r"Give lengths=\[...\]"):
        sweep(ok)
    with pytest.raises(KeyError, match="without the objective 'val_loss'"):
        sweep(lambda k1, k2: {"loss": 1.0}, lengths=[4])


def test_trainer_objective_trains_through_the_trainer():
    from tbptt.diagnostics.objective import trainer_objective

    fn = trainer_objective(
        corpus="stdlib", updates=20, hidden=32, embed=16, batch_size=4, lr=1e-2, val_fraction=0.01
    )
    m = fn(10, 20)
    assert m["val_loss"] < 4.0 and m["tokens_per_s"] > 0 and m["peak_memory_mb"] > 0
    with pytest.raises(ValueError, match="k1 must be a positive integer"):
        fn(0, 4)

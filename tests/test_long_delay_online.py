"""The long-delay example (examples/long_delay_online.py) at a tiny size, the task, and the
diagnostics that know the online rule (bias, explain)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from tbptt import TBPTT
from tbptt.diagnostics.cli import add_diagnostics_commands
from tbptt.diagnostics.explain import explain
from tbptt.online import Online
from tbptt.tasks import long_delay

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "long_delay_online.py"


def _example():
    spec = importlib.util.spec_from_file_location("long_delay_online", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_every_contender() -> None:
    rows = _example().main(
        ["--sequences", "2", "--delay", "8", "--k1", "2", "--hidden", "4", "--batch", "2"]
    )
    assert [(r["cell"], r["rule"]) for r in rows] == [
        (c, r) for c in ("mingru", "lru") for r in ("TBPTT(2)", "TBPTT(2, 4)", "Online(2)")
    ]
    assert all(math.isfinite(float(r["loss/baseline"])) for r in rows)


def test_example_memory_probe_runs() -> None:
    assert _example().peak_memory_mib("lru", 1000, 100, 4, 2) > 0


def test_long_delay_task() -> None:
    task = long_delay(5, 30, generator=torch.Generator().manual_seed(0))
    assert task.inputs.shape == (5, 31, 2) and task.baseline == 1.0
    assert torch.equal(task.targets[:, -1, 0], task.inputs[:, 0, 0])  # the sign, 30 steps later
    assert task.inputs[:, 1:, 0].abs().sum() == 0 and task.mask.sum() == 5
    with pytest.raises(ValueError, match="noise must be a finite number >= 0, got -1"):
        long_delay(2, 5, noise=-1.0)
    with pytest.raises(ValueError, match="delay must be an integer >= 1, got 0"):
        long_delay(2, 0)


def test_explain_online_reaches_the_stream_start() -> None:
    e = explain(3, None, 9, online=True)
    assert e.label == "Online(k1=3)" and [u.cut for u in e.updates] == [0, 3, 6]
    assert e.updates[2].reach == {6: 7, 7: 8, 8: 9}
    assert explain(3, None, 9).updates[2].reach == {6: 1, 7: 2, 8: 3}  # TBPTT(3), for contrast
    with pytest.raises(ValueError, match="online=True draws Online"):
        explain(3, 6, 9, online=True)


def test_bias_and_explain_cli_refuse_online_without_its_model(capsys) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="tbptt")
    add_diagnostics_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bias", "--online", "--cell", "lstm"])
    assert args.command(args) == 2
    assert "--online needs --task char and --cell mingru or lru" in capsys.readouterr().err
    args = parser.parse_args(["explain", "--online", "--k1", "2", "--k2", "4"])
    assert args.command(args) == 2
    assert "pass --k1 and no --k2" in capsys.readouterr().err
    args = parser.parse_args(["explain", "--online", "--k1", "2", "--steps", "4"])
    assert args.command(args) == 0
    assert "s s L L" in capsys.readouterr().out


def test_rules_are_distinct() -> None:
    assert Online(4) != TBPTT(4) and repr(Online(4)) == "Online(k1=4)"

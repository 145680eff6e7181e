"""The diagnostics commands, through add_diagnostics_commands on our own ArgumentParser."""

from __future__ import annotations

import argparse
import json

import pytest

from tbptt.diagnostics.cli import add_diagnostics_commands


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tbptt")
    add_diagnostics_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.command(args)


def test_suggest_builtin_and_csv(tmp_path, capsys):
    pytest.importorskip("pmdarima")
    assert run("suggest", "taylor", "--json", "--plot", str(tmp_path / "t.png")) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert out["periods"] == [48, 336] and out["recommended"] == 336
    assert (tmp_path / "t.png").stat().st_size > 5000
    f = tmp_path / "x.csv"
    f.write_text("v\n" + "\n".join(str((i % 12) * 1.0) for i in range(240)))
    assert run("suggest", str(f)) == 0
    assert "dominant periods: 12" in capsys.readouterr().out


def test_explain_writes_text_and_plot(tmp_path, capsys):
    assert run("explain", "--k1", "4", "--k2", "2", "--plot", str(tmp_path / "e.svg")) == 0
    out = capsys.readouterr().out
    assert "TBPTT(k1=4, k2=2) over 12 steps" in out
    assert "chunk [0, 4)  cut 2  losses 2-3  reach 1-2" in out
    assert (tmp_path / "e.svg").read_text().startswith("<?xml")


def test_bias_char(capsys):
    assert (
        run(
            "bias",
            "--task",
            "char",
            "--length",
            "16",
            "--k2s",
            "1,4,16",
            "--train-updates",
            "5",
            "--k1",
            "4",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "TBPTT(k1=4, k2) against BPTT" in out
    last = next(line for line in out.splitlines() if line.strip().startswith("16 "))
    assert float(last.split()[1]) == pytest.approx(1.0, abs=1e-5)


def test_sweep_command_on_a_small_text(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    code = run(
        "sweep",
        "--lengths",
        "4,8",
        "--corpus",
        str(text),
        "--updates",
        "3",
        "--hidden",
        "8",
        "--batch-size",
        "2",
        "--storage",
        f"sqlite:///{tmp_path / 's.db'}",
        "--plot-dir",
        str(tmp_path / "plots"),
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "best: k1=" in out
    assert (tmp_path / "plots" / "sweep_pareto.png").exists()


def test_bad_arguments_name_the_value(capsys):
    with pytest.raises(SystemExit):
        run("sweep", "--lengths", "8,zero")
    assert (
        "expected comma-separated positive integers such as 8,16,32, got '8,zero'"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        run("explain", "--k1", "0")
    assert "expected a positive integer, got '0'" in capsys.readouterr().err
    assert run("suggest", "no-such-file.csv") == 2
    assert "tbptt: error: DATA 'no-such-file.csv' is neither a file" in capsys.readouterr().err


def test_bias_influence_uses_the_task_module(capsys):
    pytest.importorskip("tbptt.tasks")
    assert run("bias", "--task", "influence", "--length", "120", "--k2s", "10,120") == 0
    out = capsys.readouterr().out
    assert "wrong sign (cosine < 0) for k2 in [10]" in out

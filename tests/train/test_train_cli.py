"""The ``tbptt`` command: kill and resume exactly, Ctrl-C, corrupt checkpoints, reports, config."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from _train_helpers import cli, run_cli

from tbptt.cli import main
from tbptt.train.checkpoint import find_checkpoints, load_checkpoint

# a tiny series run: ~300 updates of a 1x8 LSTM on yearly sunspots, a few seconds
SERIES = [
    "train",
    "--task", "series", "--hidden", "8", "--k1", "8", "--k2", "12", "--updates", "300",
    "--checkpoint-every", "10", "--eval-every", "100", "--log-every", "20",
    "--tensorboard", "off", "--progress", "off", "--threads", "1",
]  # fmt: skip


def text_args(corpus: Path, *more: str) -> list[str]:
    """A tiny text run on the test corpus."""
    return [
        "train", "--corpus", str(corpus), "--hidden", "16", "--embed", "8", "--k1", "10",
        "--batch-size", "4", "--tensorboard", "off", "--progress", "off", "--threads", "1",
        "--sample-chars", "50", "--lr", "0.02", *more,
    ]  # fmt: skip


def wait_for_checkpoint(folder: Path, proc, timeout: float = 60.0) -> Path:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = find_checkpoints(folder)
        if found:
            return found[-1]
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(find_checkpoints(run / "checkpoints")[-1])["model"]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Kill -9 mid-run once a checkpoint exists, resume: the final weights are bitwise equal to
    those of a run that was never interrupted (same seed, CPU)."""
    proc = cli([*SERIES, "--runs-dir", "runs", "--name", "killed"], tmp_path)
    first = wait_for_checkpoint(tmp_path / "runs/killed/checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not (tmp_path / "runs/killed/summary.json").exists()  # it really died mid-run
    assert load_checkpoint(first)["counters"]["updates"] < 300

    code, out, err = run_cli(["train", "--resume", "runs/killed", "--progress", "off"], tmp_path)
    assert code == 0, err
    assert "(resumed)" in err and "validation (sunspots" in out

    code, _, err = run_cli([*SERIES, "--runs-dir", "runs", "--name", "straight"], tmp_path)
    assert code == 0, err
    a, b = final_weights(tmp_path / "runs/killed"), final_weights(tmp_path / "runs/straight")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    summary = json.loads((tmp_path / "runs/killed/summary.json").read_text())
    assert summary["result"]["updates"] == 300
    # the metrics log has no record twice (the killed run's extra records were dropped)
    log = (tmp_path / "runs/killed/metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log]
    keys = [(r["kind"], r["update"]) for r in records]
    assert len(keys) == len(set(keys))


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, corpus):
    proc = cli(text_args(corpus, "--runs-dir", "runs", "--name", "int", "--updates", "5000",
                         "--checkpoint-every", "5"), tmp_path)  # fmt: skip
    wait_for_checkpoint(tmp_path / "runs/int/checkpoints", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    err = (tmp_path / "stderr.txt").read_text()
    assert "Interrupted by Ctrl-C (SIGINT) at update" in err
    assert "saved checkpoint" in err and "Resume with: tbptt train --resume runs/int" in err
    assert "Traceback" not in err
    newest = find_checkpoints(tmp_path / "runs/int/checkpoints")[-1]
    updates = load_checkpoint(newest)["counters"]["updates"]
    assert newest.name == f"step-{updates:08d}.pt"  # saved at the interruption
    # and it resumes (here with a smaller budget, which may change on resume)
    code, out, err = run_cli(
        ["train", "--resume", "runs/int", "--updates", str(updates + 3), "--progress", "off"],
        tmp_path,
    )
    assert code == 0, err
    assert "bits per char" in out


def test_corrupt_checkpoint_is_refused_and_the_previous_one_kept(tmp_path, corpus):
    args = text_args(corpus, "--runs-dir", str(tmp_path), "--name", "c", "--updates", "8",
                     "--checkpoint-every", "4", "--eval-every", "100")  # fmt: skip
    assert main(args) == 0
    old, new = find_checkpoints(tmp_path / "c/checkpoints")
    old_bytes = old.read_bytes()
    new.write_bytes(b"\x80\x02garbage")
    code, _, err = run_cli(["train", "--resume", str(tmp_path / "c")], tmp_path)
    assert code == 2
    assert "is corrupt or incomplete and cannot be read" in err and str(old) in err
    assert "Traceback" not in err
    assert old.read_bytes() == old_bytes and new.read_bytes() == b"\x80\x02garbage"
    # a fresh run into the same folder would overwrite it: refused
    assert main(args) == 2


def test_mismatched_flags_on_resume_are_refused(tmp_path, corpus, capsys):
    args = text_args(corpus, "--runs-dir", str(tmp_path), "--name", "m", "--updates", "3")
    assert main(args) == 0
    assert main(["train", "--resume", str(tmp_path / "m"), "--hidden", "32"]) == 2
    assert "other settings: hidden=16 (now 32)" in capsys.readouterr().err


def test_text_run_writes_its_report(tmp_path, corpus, capsys):
    args = text_args(corpus, "--runs-dir", str(tmp_path), "--name", "t", "--updates", "60",
                     "--eval-every", "10", "--log-every", "5")  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bits per char" in out and "unigram baseline" in out and "sample" in out
    run = tmp_path / "t"
    for name in ("config.toml", "config.json", "metrics.jsonl", "metrics.csv", "summary.json",
                 "loss.png", "sample.txt"):  # fmt: skip
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "loss.png").stat().st_size > 10_000  # two panels with curves, not a blank
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val"]["bpc"] < summary["baselines"]["unigram_bpc"]
    engine = summary["engine"]  # what ran: an nn.LSTM on the chunk path, one call per update
    assert engine["path"] == "chunk" and engine["runs"] >= engine["updates"] == 60
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "bpc" in header and "tokens_per_s" in header
    assert main(["report", str(run)]) == 0
    report = capsys.readouterr().out
    assert "validation: " in report and "unigram_bpc" in report and "loss.png" in report
    assert main(["generate", str(run), "--chars", "20", "--prompt", "KING:"]) == 0
    assert capsys.readouterr().out.startswith("KING:")
    # the saved config reproduces the run
    assert main(["train", "--config", str(run / "config.toml"), "--name", "t2"]) == 0
    a, b = final_weights(run), final_weights(tmp_path / "t2")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_series_run_writes_prediction_plot_and_beats_naive(tmp_path, capsys):
    args = [*SERIES, "--runs-dir", str(tmp_path), "--name", "s", "--updates", "200"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "naive (last value)" in out and "seasonal naive" in out
    run = tmp_path / "s"
    for name in ("loss.png", "predictions.png", "predictions.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert (run / "predictions.png").read_bytes()[:4] == b"\x89PNG"
    s = json.loads((run / "summary.json").read_text())
    assert s["val"]["mae"] < s["baselines"]["naive_mae"]
    assert main(["predict", str(run), "--horizon", "3"]) == 0
    assert "forecast (3 steps)" in capsys.readouterr().out


def test_toml_config_and_flag_precedence(tmp_path, corpus, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'corpus = "{corpus}"\nhidden = 12\nembed = 8\nk1 = 6\nk2 = 9\nmode = "recompute"\n'
        'cell = "gru"\nupdates = 4\nbatch_size = 2\nprogress = "off"\ntensorboard = "off"\n'
        "sample_chars = 10\n"
    )
    assert main(["train", "--config", str(cfg), "--cell", "rnn", "--runs-dir", str(tmp_path),
                 "--name", "x"]) == 0  # fmt: skip
    saved = json.loads((tmp_path / "x/config.json").read_text())
    assert (saved["hidden"], saved["k2"], saved["mode"], saved["cell"]) == (
        12,
        9,
        "recompute",
        "rnn",
    )
    capsys.readouterr()
    cfg.write_text("hiden = 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown option 'hiden'. Did you mean 'hidden'?" in capsys.readouterr().err


def test_bad_flags_are_clear(tmp_path, capsys):
    assert main(["train", "--k1", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "k1 must be a positive integer, got 0" in capsys.readouterr().err
    assert (
        main(["train", "--corpus", str(tmp_path / "missing.txt"), "--runs-dir", str(tmp_path)]) == 2
    )
    assert "neither 'auto', 'shakespeare', 'stdlib' nor an existing file" in capsys.readouterr().err
    import tbptt

    if not hasattr(tbptt, "ARTBP"):  # the estimators' hook names what is missing
        assert (
            main(["train", "--rule", "artbp", "--task", "series", "--runs-dir", str(tmp_path)]) == 2
        )
        assert "rule='artbp' needs tbptt.ARTBP" in capsys.readouterr().err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "generate", "predict", "report"):
        assert cmd in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--k1", "--k2", "--mode", "--rule", "--batch-size", "--hidden", "--layers",
                 "--cell", "--device", "--seed", "--activation-checkpointing", "--resume",
                 "--config", "--minutes", "--updates", "--clip", "--amp"):  # fmt: skip
        assert flag in out, flag
    assert "truncation (the engine)" in out

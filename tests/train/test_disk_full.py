"""A checkpoint that cannot be written (a full disk, a read-only folder): one clear line, a
non-zero exit, the checkpoints written before intact and resumable."""

from __future__ import annotations

import errno

import pytest
import torch

from tbptt.cli import main
from tbptt.train.checkpoint import CheckpointWriteError, find_checkpoints, load_checkpoint

SERIES = [
    "train",
    "--task", "series", "--hidden", "8", "--k1", "8", "--k2", "8", "--updates", "30",
    "--checkpoint-every", "10", "--eval-every", "100", "--log-every", "100",
    "--tensorboard", "off", "--progress", "off", "--threads", "1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "why", "fix"),
    [
        (errno.ENOSPC, "No space left on device", "Free space on that disk"),
        (errno.EACCES, "Permission denied", "Make the folder writable"),
    ],
)
def test_a_failed_checkpoint_write_is_one_line_and_loses_nothing(
    tmp_path, monkeypatch, capsys, code, why, fix
):
    real = torch.save
    calls: list[int] = []

    def second_write_fails(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # half of it written, then the disk is full
            f.write(b"\0" * 1000)
            raise OSError(code, why)
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", second_write_fails)
    args = [*SERIES, "--runs-dir", str(tmp_path / "runs"), "--name", "r"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    folder = tmp_path / "runs" / "r" / "checkpoints"
    assert [line for line in err if "error" in line or "Traceback" in line] == [
        f"tbptt: error: could not write checkpoint {str(folder / 'step-00000020.pt')!r} ({why}); "
        f"the checkpoints written before are intact. {fix}, then resume with: tbptt train "
        f"--resume {tmp_path / 'runs' / 'r'}."
    ]
    assert [p.name for p in folder.iterdir()] == ["step-00000010.pt"]  # no temporary file
    assert load_checkpoint(folder / "step-00000010.pt")["counters"]["updates"] == 10
    monkeypatch.setattr(torch, "save", real)
    assert main(["train", "--resume", str(tmp_path / "runs" / "r")]) == 0
    assert find_checkpoints(folder)[-1].name == "step-00000030.pt"


def test_the_api_raises_the_write_error(tmp_path, monkeypatch):
    from tbptt.train.checkpoint import save_checkpoint

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError, match="No space left on device") as info:
        save_checkpoint({"x": 1}, tmp_path / "c" / "step-00000001.pt")
    assert isinstance(info.value.error, OSError) and list((tmp_path / "c").iterdir()) == []


def test_a_failed_run_record_keeps_the_checkpoints_it_lists(tmp_path, monkeypatch, capsys):
    """The disk fills between the checkpoint and run.json: run.json still lists the earlier
    checkpoint, which is not pruned (--keep-checkpoints 1), and the run resumes from it."""
    from tbptt.train import run as run_module

    real = run_module._write_json

    def full_at_20(path, data):
        if "step-00000020.pt" in data.get("checkpoints", []):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(run_module, "_write_json", full_at_20)
    folder = tmp_path / "runs" / "r"
    args = [*SERIES, "--keep-checkpoints", "1", "--runs-dir", str(tmp_path / "runs"), "--name", "r"]
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err == [
        f"tbptt: error: could not write the run's record {str(folder / 'run.json')!r} (No space "
        "left on device); the checkpoints written before are intact. Free space on that disk, "
        f"then resume with: tbptt train --resume {folder}."
    ]
    assert (folder / "checkpoints" / "step-00000010.pt").is_file()
    assert not list(folder.glob(".*.tmp"))
    monkeypatch.setattr(run_module, "_write_json", real)
    assert main(["train", "--resume", str(folder)]) == 0
    assert [p.name for p in find_checkpoints(folder / "checkpoints")] == ["step-00000030.pt"]


class _FullDisk:
    """A file open for appending on a disk that fills up: half of what is written lands, then
    ``OSError(ENOSPC)``."""

    def __init__(self, path, mode, **kwargs):
        self.f = open(path, mode, **kwargs)  # noqa: SIM115 (closed in __exit__)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, text):
        self.f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_metrics_log_write_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """The disk fills while a record is appended to metrics.jsonl: half a line is written, the
    run stops with one line naming the log, and a resume finishes it with a readable log."""
    from tbptt.train import metrics as metrics_module
    from tbptt.train.metrics import read_jsonl

    calls: list[int] = []

    def fills_on_the_third_append(path, mode="r", **kwargs):
        if mode == "a":
            calls.append(1)
            if len(calls) == 3:
                return _FullDisk(path, mode, **kwargs)
        return open(path, mode, **kwargs)

    monkeypatch.setattr(metrics_module, "open", fills_on_the_third_append, raising=False)
    run = tmp_path / "runs" / "r"
    args = [*SERIES, "--log-every", "5", "--runs-dir", str(tmp_path / "runs"), "--name", "r"]
    assert main(args) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln or "Traceback" in ln]
    assert err == [
        f"tbptt: error: could not write the metrics log {str(run / 'metrics.jsonl')!r} (No space "
        f"left on device); the checkpoints written before are intact. Free space on that disk, "
        f"then resume with: tbptt train --resume {run}."
    ]
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    records = read_jsonl(run / "metrics.jsonl")
    assert max(r["update"] for r in records) == 30


def test_a_full_disk_while_writing_the_report_is_one_line_and_a_resume_writes_it(
    tmp_path, monkeypatch, capsys
):
    """Training has ended (its checkpoints written) when summary.json cannot be written: one
    line, exit 1; ``--resume`` then writes the report without moving any checkpoint aside."""
    import pathlib

    real = pathlib.Path.write_text

    def full_for_the_summary(self, *a, **k):
        if self.name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", full_for_the_summary)
    run = tmp_path / "runs" / "r"
    assert main([*SERIES, "--runs-dir", str(tmp_path / "runs"), "--name", "r"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln or "Traceback" in ln]
    assert err == [
        f"tbptt: error: could not write the report in {str(run)!r} (No space left on device); "
        "the checkpoints written before are intact. Free space on that disk, then write it "
        f"again with: tbptt train --resume {run}."
    ]
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "step-00000030.pt" in before and not (run / "summary.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "summary.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert not list(run.glob("abandoned-*"))  # the best of update 30 was not set aside


def test_any_command_on_a_full_disk_says_one_line(monkeypatch, capsys):
    import argparse

    from tbptt import cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "out/p.csv")

    parser = argparse.ArgumentParser()
    parser.set_defaults(command=full)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 1
    assert capsys.readouterr().err == (
        "tbptt: error: No space left on device: 'out/p.csv'. Free space on that disk, then run "
        "the command again.\n"
    )

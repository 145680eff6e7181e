"""Runs never lose, mix or overwrite work: the run folder's claim, identity and timeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from _train_helpers import cli, run_cli
from test_train_cli import SERIES, text_args
from test_train_loop import batcher, make_trainer, params

from tbptt import TBPTT
from tbptt.train import CheckpointError, NonFiniteError
from tbptt.train.checkpoint import find_checkpoints, load_checkpoint, save_checkpoint
from tbptt.train.metrics import read_jsonl
from tbptt.train.run import RunFolder, RunFolderError


def test_two_runs_racing_for_one_folder_exactly_one_trains(tmp_path):
    """Two `tbptt train --name same` started together: one trains, the other exits 2 at once."""
    args = [*SERIES, "--updates", "40", "--name", "same"]
    procs = [cli(args, tmp_path) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 2], codes
    err = (tmp_path / "stderr.txt").read_text()
    assert "already holds" in err and "--resume" in err
    run = json.loads((tmp_path / "runs/same/run.json").read_text())
    ckpts = find_checkpoints(tmp_path / "runs/same/checkpoints")
    assert ckpts and all(load_checkpoint(p)["run_id"] == run["run_id"] for p in ckpts)
    updates = [r["update"] for r in read_jsonl(tmp_path / "runs/same/metrics.jsonl")]
    assert updates == sorted(updates)  # one writer: no interleaved records


def test_a_second_process_cannot_resume_a_run_in_use(tmp_path):
    run = RunFolder.claim(tmp_path / "r")
    with pytest.raises(RunFolderError, match=f"in use by another process \\(pid {os.getpid()}"):
        RunFolder.open(tmp_path / "r")
    run.release()
    RunFolder.open(tmp_path / "r").release()


def test_fit_refuses_a_folder_that_holds_a_run_unless_asked(tmp_path):
    first = make_trainer(tmp_path, TBPTT(8), checkpoint_every=5, log_every=2)
    first.fit(batcher(), updates=10)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    ckpts = {p.name: p.read_bytes() for p in find_checkpoints(tmp_path / "checkpoints")}
    with pytest.raises(RunFolderError, match=r"already holds run .* restart=True"):
        make_trainer(tmp_path, TBPTT(8)).fit(batcher(), updates=10)
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics  # untouched
    assert {p.name: p.read_bytes() for p in find_checkpoints(tmp_path / "checkpoints")} == ckpts
    make_trainer(tmp_path, TBPTT(8)).fit(batcher(), updates=4, restart=True)
    old = tmp_path / "abandoned-1"
    assert (old / "metrics.jsonl").read_bytes() == metrics
    assert {p.name: p.read_bytes() for p in find_checkpoints(old / "checkpoints")} == ckpts


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    make_trainer(tmp_path / "a", TBPTT(8)).fit(batcher(), updates=6)
    make_trainer(tmp_path / "b", TBPTT(8), checkpoint_every=2, keep_checkpoints=2).fit(
        batcher(), updates=4
    )
    foreign = find_checkpoints(tmp_path / "a/checkpoints")[-1]  # update 6: newer than b's
    planted = tmp_path / "b/checkpoints" / foreign.name
    planted.write_bytes(foreign.read_bytes())
    with pytest.raises(CheckpointError, match=r"belongs to run .* not to run"):
        make_trainer(tmp_path / "b", TBPTT(8)).fit(batcher(), updates=8, resume=planted)
    # resuming the folder takes the run's own newest checkpoint, not the planted newer one,
    # and keep-N pruning never deletes the run's history because of the foreign file
    resumed = make_trainer(tmp_path / "b", TBPTT(8), checkpoint_every=2, keep_checkpoints=2)
    resumed.fit(batcher(), updates=8, resume=tmp_path / "b")
    # the foreign file was in the way of update 6: moved aside with its bytes, never deleted
    assert (tmp_path / "b/abandoned-1" / foreign.name).read_bytes() == foreign.read_bytes()
    own = resumed.run.checkpoints()
    assert [p.name for p in own] == ["step-00000006.pt", "step-00000008.pt"]
    assert all(load_checkpoint(p)["run_id"] == resumed.run.run_id for p in own)


def test_resume_from_an_older_checkpoint_never_overwrites_the_abandoned_timeline(tmp_path):
    make_trainer(tmp_path, TBPTT(8), checkpoint_every=5, keep_checkpoints=5, log_every=2).fit(
        batcher(), updates=15
    )
    five, ten, _ = find_checkpoints(tmp_path / "checkpoints")
    old_ten = ten.read_bytes()
    # a changed budget from update 5: it writes update 10 again, with other contents
    again = make_trainer(tmp_path, TBPTT(8), checkpoint_every=5, keep_checkpoints=5, lr=5e-3)
    again.config = dict(again.config)
    again.fit(batcher(), updates=12, resume=five)
    assert (tmp_path / "abandoned-1" / "step-00000010.pt").read_bytes() == old_ten
    assert (tmp_path / "abandoned-1" / "step-00000015.pt").exists()
    records = read_jsonl(tmp_path / "abandoned-1" / "metrics.jsonl")
    assert records and min(r["update"] for r in records) > 5  # the abandoned records are kept
    with pytest.raises(FileExistsError, match="never written over"):
        save_checkpoint({"x": torch.ones(1)}, ten)


def test_orphaned_temporary_files_are_removed_on_resume(tmp_path):
    make_trainer(tmp_path, TBPTT(8), checkpoint_every=4).fit(batcher(), updates=4)
    orphan = tmp_path / "checkpoints" / ".step-00000008.pt.abc.tmp"
    orphan.write_bytes(b"half a checkpoint")
    make_trainer(tmp_path, TBPTT(8)).fit(batcher(), updates=6, resume=tmp_path)
    assert not orphan.exists()


def test_checkpoint_writes_fsync_the_folder(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self") else "")
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = save_checkpoint({"x": torch.ones(1)}, tmp_path / "c" / "step-00000001.pt")
    assert str(path.parent) in synced  # the rename itself is durable


def test_keep_best_ends_with_the_best_weights_and_patience_stops(tmp_path):
    trainer = make_trainer(tmp_path, TBPTT(8), keep_best=True, patience=2, lr=0.5, clip=None)
    result = trainer.fit(batcher(), val=batcher(16), updates=400, eval_every=5)
    c = trainer.counters
    assert result.stop_reason == "early_stopping" and c.evals_since_best == 2
    assert result.best_update == c.best_update and result.best_update < result.updates
    best = load_checkpoint(trainer.run.best())
    assert best["counters"]["updates"] == result.best_update
    for k, v in params(trainer).items():
        assert torch.equal(v, best["model"][k]), k
    assert result.val is not None and result.val["bpc"] == pytest.approx(c.best_val)


def test_nonfinite_stop_says_when_no_checkpoint_was_written(tmp_path):
    trainer = make_trainer(tmp_path, TBPTT(8), max_nonfinite=2, lr=1e30, clip=None)
    with pytest.raises(NonFiniteError, match="No checkpoint was written"):
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.fill_(float("nan"))
        trainer.fit(batcher(), updates=20)


def test_every_checkpoint_corrupt_is_not_called_intact(tmp_path):
    make_trainer(tmp_path, TBPTT(8), checkpoint_every=3, keep_checkpoints=3).fit(
        batcher(), updates=9
    )
    for p in find_checkpoints(tmp_path / "checkpoints"):
        p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot be read either") as e:
        make_trainer(tmp_path, TBPTT(8)).fit(batcher(), updates=12, resume=tmp_path)
    assert "intact" not in str(e.value)


# -- the command ---------------------------------------------------------------------------------


def test_relative_corpus_resumes_from_another_directory(tmp_path, corpus):
    (tmp_path / "w").mkdir()
    rel = os.path.relpath(corpus, tmp_path / "w")
    code, _, err = run_cli(
        text_args(Path(rel), "--updates", "6", "--checkpoint-every", "3", "--name", "r"),
        tmp_path / "w",
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "w/runs/r/config.json").read_text())["corpus"]
    assert saved == str(corpus.resolve())
    code, _, err = run_cli(
        ["train", "--resume", "w/runs/r", "--updates", "9", "--corpus", str(corpus)], tmp_path
    )
    assert code == 0, err


def test_corpus_without_newlines_samples_and_writes_the_summary(tmp_path):
    text = tmp_path / "flat.txt"
    text.write_text("abc def ghi jkl " * 400, encoding="utf-8")
    code, out, err = run_cli(text_args(text, "--updates", "5", "--name", "flat"), tmp_path)
    assert code == 0, err
    assert (tmp_path / "runs/flat/summary.json").exists() and "sample" in out


@pytest.mark.parametrize(
    "content, words",
    [("caf\xe9 ".encode("latin-1") * 300, "not UTF-8 text"), (bytes(range(256)) * 5, "binary")],
)
def test_undecodable_corpus_is_one_line_naming_corpus(tmp_path, content, words):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    code, _, err = run_cli(text_args(bad, "--updates", "2"), tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert "corpus=" in err and words in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_k1_longer_than_a_row_is_one_warning_line(tmp_path, corpus):
    """k1 past the rows' length trains full BPTT over each row: said once, training goes on."""
    args = text_args(corpus, "--updates", "2", "--batch-size", "8", "--k1", "5000")
    code, _, err = run_cli(args, tmp_path)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "--k1 5000" in line]
    assert len(warning) == 1 and warning[0].startswith("tbptt: warning: --k1 5000 is longer")
    assert "full BPTT over a row" in warning[0]
    code, _, err = run_cli(text_args(corpus, "--updates", "2", "--name", "ok"), tmp_path)
    assert code == 0 and "warning" not in err, err


def test_full_bptt_on_a_long_corpus_is_refused_before_any_file_is_written(tmp_path):
    """--rule bptt keeps the whole stream for one backward: ~100 GiB here, refused at once."""
    long = tmp_path / "long.txt"
    long.write_text("the quick brown fox jumps over the lazy dog\n" * 50_000, encoding="utf-8")
    args = text_args(long, "--rule", "bptt", "--hidden", "2048", "--batch-size", "64")
    code, _, err = run_cli(args, tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert "--batch-size 64 with" in err and "GiB" in err and "--rule tbptt" in err
    assert not (tmp_path / "runs").exists()


def test_amp_fp16_on_cpu_is_one_warning_line(tmp_path):
    code, _, err = run_cli(
        [*SERIES, "--updates", "3", "--amp", "fp16", "--device", "cpu"], tmp_path
    )
    assert code == 0, err
    warning = [line for line in err.splitlines() if "fp16" in line]
    assert warning == ["tbptt: warning: amp='fp16' runs on CUDA only; training in float32 on cpu."]


@pytest.mark.parametrize(
    "flags, names",
    [
        (["--name", "a/b"], "name must be a folder name"),
        (["--name", ".."], "name must be a folder name"),
        (["--threads", "-1"], "threads must be a positive integer, got -1"),
        (["--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
        (["--momentum", "-0.5"], "momentum must be >= 0"),
        (["--temperature", "0"], "temperature must be > 0"),
        (["--patience", "0"], "patience must be a positive integer"),
        (["--runs-dir", "/dev/null"], "cannot be created"),
    ],
)
def test_bad_run_options_are_one_line_and_leave_no_folder(
    tmp_path, monkeypatch, capsys, flags, names
):
    from tbptt.cli import main

    monkeypatch.chdir(tmp_path)
    code = main([*SERIES, "--updates", "2", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tbptt: error: ") and err.count("\n") == 1, err
    assert names in err
    assert not (tmp_path / "runs").exists()


def test_resume_from_something_that_is_not_a_run_writes_nothing_there(tmp_path, capsys):
    from tbptt.cli import main

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("not a checkpoint")
    for target in (other / "todo.txt", other):
        assert main(["train", "--resume", str(target)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.name for p in other.iterdir()) == ["todo.txt"]


def test_reading_a_folder_of_runs_or_an_empty_folder_says_what_to_pass(tmp_path):
    import tbptt

    for i, name in enumerate(["old", "new"]):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "run.json").write_text("{}")
        os.utime(tmp_path / "runs" / name, (1000 + i, 1000 + i))
    runs = tmp_path / "runs"
    with pytest.raises(RunFolderError) as info:
        tbptt.load(runs)
    assert str(info.value) == (
        f"{str(runs)!r} is a folder of runs (old, new), not a run. Pass one of them, e.g. "
        f"{str(runs / 'new')!r} (the newest)."
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match=r"'.*empty' is not a run folder \(no run\.json"):
        RunFolder.read(tmp_path / "empty")

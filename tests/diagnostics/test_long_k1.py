"""One owner for the warning that k1 is longer than each training row (every update is then
full BPTT over a row): ``tbptt train --k1`` and ``tbptt sweep --lengths/--k1s`` print it alike."""

from __future__ import annotations

import pytest

from tbptt.cli import main

TEXT = "the quick brown fox jumps over the lazy dog. " * 200  # 9,000 characters


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    return str(path)


def warnings_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "warning" in line]


def row_steps(corpus: str, batch: int) -> int:
    from tbptt.train.config import RunConfig
    from tbptt.train.jobs import build_job

    cfg = RunConfig(task="text", corpus=corpus, batch_size=batch, k1=8, k2=8).resolved()
    return int(build_job(cfg).train.steps_per_row)


def test_sweep_lengths_longer_than_the_rows_warn_in_one_line(corpus, tmp_path, capsys):
    row = row_steps(corpus, 64)
    args = ["sweep", "--corpus", corpus, "--updates", "1", "--hidden", "8", "--batch-size", "64"]
    lengths = f"8,{row + 1},{row + 40}"
    assert main([*args, "--lengths", lengths]) == 0
    assert warnings_of(capsys) == [
        f"tbptt: warning: --lengths {row + 1},{row + 40} are longer than each of the 64 rows "
        f"({row} steps): every update of those is full BPTT over a row. Lower --lengths (or "
        "--batch-size, for longer rows) for truncated updates."
    ]
    assert main([*args, "--lengths", f"8,{row}"]) == 0
    assert warnings_of(capsys) == []


def test_train_k1_longer_than_the_rows_warns_the_same(corpus, tmp_path, capsys):
    row = row_steps(corpus, 64)
    flags = ["--hidden", "8", "--batch-size", "64", "--updates", "1", "--k1", str(row + 1)]
    more = ["--runs-dir", str(tmp_path / "runs"), "--progress", "off", "--tensorboard", "off"]
    assert main(["train", "--corpus", corpus, *flags, *more, "--sample-chars", "5"]) == 0
    assert warnings_of(capsys) == [
        f"tbptt: warning: --k1 {row + 1} is longer than each of the 64 rows ({row} steps): "
        "every update is full BPTT over a row. Lower --k1 (or --batch-size, for longer rows) "
        "for truncated updates."
    ]

"""Every diagnostics command answers bad input as ``tbptt train`` does: one line
``tbptt: error: ...`` naming the flag (or file) and the value received, with the fix; exit 2;
no traceback; nothing computed before the input is known to be good."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tbptt.cli import main


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``tbptt *argv``; it must exit 2 with exactly one ``tbptt: error:`` line."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tbptt: error: "), err
    return lines[0]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder of bad and good inputs, the working directory of the test."""
    monkeypatch.chdir(tmp_path)
    wave = np.sin(np.arange(200) / 5.0)
    (tmp_path / "good.csv").write_text("t,v\n" + "".join(f"{i},{x}\n" for i, x in enumerate(wave)))
    (tmp_path / "nan.csv").write_text("v\n" + "\n".join(["1.0", "nan", *map(str, wave)]))
    (tmp_path / "gap.csv").write_text("t,v\n0,1\n1,\n" + "".join(f"{i},1\n" for i in range(30)))
    (tmp_path / "short.csv").write_text("\n".join(map(str, range(10))))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "binary.dat").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "latin1.txt").write_bytes(("café crème " * 300).encode("latin-1"))
    (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    (tmp_path / "afile").write_text("")
    (tmp_path / "afolder").mkdir()
    return tmp_path


# -- suggest ---------------------------------------------------------------------------------------
def test_suggest_csv_with_nan_is_refused_not_dropped(files, capsys):
    line = error_line(capsys, "suggest", "nan.csv")
    assert "line 3 of 'nan.csv', column 'v', holds 'nan'" in line and "interpolate" in line


def test_suggest_csv_with_an_empty_cell(files, capsys):
    assert "line 3 of 'gap.csv', column 'v', is empty" in error_line(capsys, "suggest", "gap.csv")


def test_suggest_api_refuses_nan_instead_of_shifting_the_lags():
    x = np.sin(np.arange(100) / 3.0)
    x[40] = np.nan
    from tbptt.diagnostics import suggest

    with pytest.raises(ValueError, match=r"1 NaN/inf value\(s\), the first at index 40"):
        suggest(x)


@pytest.mark.parametrize(
    ("name", "said"),
    [("binary.dat", "is a binary file"), ("latin1.txt", "is not UTF-8 text (byte 0xe9")],
)
def test_suggest_binary_or_latin1_file(files, capsys, name, said):
    line = error_line(capsys, "suggest", name)
    assert f"DATA '{name}' {said}" in line


def test_suggest_missing_or_empty_file(files, capsys):
    line = error_line(capsys, "suggest", "no-such.csv")
    assert "DATA 'no-such.csv' is neither a file nor a built-in series" in line
    assert "holds no rows of numbers" in error_line(capsys, "suggest", "empty.csv")
    assert "has 10 values; suggest needs at least 16" in error_line(capsys, "suggest", "short.csv")


def test_suggest_bad_column(files, capsys):
    line = error_line(capsys, "suggest", "good.csv", "--column", "5")
    assert "column 5 (--column) is out of range: 'good.csv' has 2 column(s)" in line
    line = error_line(capsys, "suggest", "good.csv", "--column", "price")
    assert "column 'price' (--column) is not in the header" in line and "['t', 'v']" in line


def test_suggest_max_lag_longer_than_the_series_allows(files, capsys):
    line = error_line(capsys, "suggest", "good.csv", "--max-lag", "150")
    assert "--max-lag 150 does not fit a series of 200 values" in line and "<= 99" in line


def test_suggest_alpha_out_of_range(capsys):
    with pytest.raises(SystemExit) as e:
        main(["suggest", "good.csv", "--alpha", "1.5"])
    assert e.value.code == 2
    assert "argument --alpha: expected a number in (0, 1)" in capsys.readouterr().err


# -- outputs (every command checks where it will write before it works) ---------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["suggest", "good.csv"],
        ["explain", "--k1", "2"],
        ["bias", "--task", "influence", "--length", "8"],
    ],
)
def test_plot_into_a_missing_folder_a_folder_or_an_unknown_format(files, capsys, argv):
    line = error_line(capsys, *argv, "--plot", "missing/p.png")
    assert "--plot 'missing/p.png': the folder 'missing' does not exist" in line
    line = error_line(capsys, *argv, "--plot", "afolder")
    assert "--plot 'afolder' is a folder; give a file name such as 'afolder/plot.png'" in line
    line = error_line(capsys, *argv, "--plot", "p.xyz")
    assert "matplotlib cannot write 'xyz' files. Use .png or .svg" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_plot_into_a_read_only_folder(files, capsys):
    (files / "ro").mkdir(mode=0o500)
    assert "is not writable" in error_line(capsys, "explain", "--plot", "ro/p.png")


def test_sweep_plot_dir_below_a_file(files, capsys):
    line = error_line(capsys, "sweep", "--lengths", "4", "--plot-dir", "afile/plots")
    assert "--plot-dir 'afile/plots': 'afile' is a file, not a folder" in line


# -- sweep -----------------------------------------------------------------------------------------
def test_sweep_k1s_without_k2s_says_what_is_missing(capsys):
    line = error_line(capsys, "sweep", "--k1s", "8")
    assert "--k1s 8 needs --k2s" in line and "not both" not in line


def test_sweep_lengths_with_k2s(capsys):
    line = error_line(capsys, "sweep", "--lengths", "8", "--k2s", "4")
    assert "--lengths and --k2s both given" in line


@pytest.mark.parametrize(
    ("corpus", "said"),
    [
        ("missing.txt", "is neither 'auto', 'shakespeare', 'stdlib' nor an existing file"),
        ("binary.dat", "is a binary file"),
        ("latin1.txt", "is not UTF-8 text (byte 0xe9 at position 3"),
    ],
)
def test_sweep_bad_corpus(files, capsys, corpus, said):
    line = error_line(capsys, "sweep", "--lengths", "4", "--corpus", corpus)
    assert f"corpus='{corpus}' {said}" in line


def test_sweep_bad_storage(files, capsys):
    line = error_line(capsys, "sweep", "--lengths", "4", "--storage", "nosuchdb://x")
    assert "--storage 'nosuchdb://x' cannot be opened" in line
    line = error_line(capsys, "sweep", "--lengths", "4", "--storage", "sqlite:///missing/s.db")
    assert "--storage 'sqlite:///missing/s.db' cannot be opened" in line


def test_sweep_bad_device(files, capsys):
    line = error_line(capsys, "sweep", "--lengths", "4", "--corpus", "text.txt", "--device", "tpu")
    assert "device='tpu' is not a device" in line


def test_sweep_model_or_lengths_too_big_for_memory(files, capsys):
    common = ["sweep", "--corpus", "text.txt", "--batch-size", "2"]
    line = error_line(capsys, *common, "--lengths", "4", "--hidden", "1000000000")
    assert "--hidden 1000000000" in line and "cannot be allocated" in line
    line = error_line(capsys, "sweep", "--corpus", "stdlib", "--lengths", "100000000")
    assert "--batch-size 16 with 200,000,000 steps kept" in line and "Lower --batch-size" in line


# -- bias ------------------------------------------------------------------------------------------
def test_bias_length_and_train_updates_bounded(capsys):
    line = error_line(capsys, "bias", "--length", "100000")
    assert "--length 100000 is more than 1024" in line
    line = error_line(capsys, "bias", "--train-updates", "100000")
    assert "--train-updates 100000 with --length 64 needs 16,000,258 characters" in line
    assert "Use --train-updates" in line


@pytest.mark.parametrize(
    ("flag", "value"), [("--train-updates", "-1"), ("--tolerance", "nan"), ("--tolerance", "0")]
)
def test_bias_negative_or_nan_values(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["bias", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}: expected" in capsys.readouterr().err


# -- explain ---------------------------------------------------------------------------------------
def test_explain_steps_capped_in_one_line(capsys):
    line = error_line(capsys, "explain", "--steps", "1000000")
    assert "--steps 1000000 is more than the 100 steps a picture can show" in line
    from tbptt.diagnostics import explain

    with pytest.raises(ValueError, match="steps=1000000 is more than the 100 steps"):
        explain(4, 4, 1_000_000)


def test_explain_k2_without_k1_exits_2(capsys):
    assert "--k2 3 needs --k1" in error_line(capsys, "explain", "--k2", "3")


def test_sweep_refuses_a_study_of_another_grid(files, capsys):
    """Reusing --study-name with another grid used to mix both sweeps' trials silently."""
    options = ["--corpus", "text.txt", "--updates", "2", "--hidden", "4", "--batch-size", "2"]
    storage = ["--storage", f"sqlite:///{files / 's.db'}"]
    assert main(["sweep", "--lengths", "4", *options, *storage]) == 0
    capsys.readouterr()
    line = error_line(capsys, "sweep", "--k1s", "4,8", "--k2s", "8", *options, *storage)
    assert "study 'tbptt-sweep' in storage" in line and "holds a sweep of another grid" in line
    assert "--study-name" in line


def test_sweep_takes_numpy_integers():
    from tbptt.diagnostics import sweep

    result = sweep(lambda k1, k2: {"val_loss": float(k2)}, k1s=np.array([2, 4]), k2s=[np.int64(4)])
    assert sorted((t["k1"], t["k2"]) for t in result.trials) == [(2, 4), (4, 4)]


def test_suggest_constant_series(files, capsys):
    (files / "const.csv").write_text("\n".join(["5"] * 40))
    line = error_line(capsys, "suggest", "const.csv")
    assert "series is constant (all 40 values are 5): its ACF is undefined" in line


def test_suggest_ragged_row_is_not_read_from_another_column(files, capsys):
    """A short row used to give its first cell as the last column's value."""
    (files / "ragged.csv").write_text(
        "a,b\n1,2\n3\n" + "".join(f"{i},{i % 7}\n" for i in range(40))
    )
    line = error_line(capsys, "suggest", "ragged.csv")
    assert "line 3 of 'ragged.csv' has 1 cell(s), the header 2" in line

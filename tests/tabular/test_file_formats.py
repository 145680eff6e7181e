"""Files users bring: numbers written as text, other table formats, near-miss column names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tbptt.cli import main
from tbptt.tabular.io import read_table

FRAME = pd.DataFrame(
    {"t": ["2020-01-01", "2020-01-02", "2020-01-03"], "y": [1234.5, -2.0, 7.0], "s": list("abc")}
)


def test_thousands_separators_and_decimal_commas_are_numbers(tmp_path):
    f = tmp_path / "us.csv"
    f.write_text('t,y,s\n2020-01-01,"1,234.5",a\n2020-01-02,-2,b\n2020-01-03,7,c\n')
    pd.testing.assert_frame_equal(read_table(f), FRAME, check_dtype=False)
    eu = tmp_path / "eu.csv"
    eu.write_text("t;y;s\n2020-01-01;1.234,5;a\n2020-01-02;-2;b\n2020-01-03;7,0;c\n")
    pd.testing.assert_frame_equal(read_table(eu), FRAME, check_dtype=False)
    mixed = tmp_path / "mixed.csv"  # a column with a stray word stays text (refused later)
    mixed.write_text('t,y\n1,"1,234.5"\n2,n/a?\n')
    assert read_table(mixed)["y"].tolist() == ["1,234.5", "n/a?"]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".feather", ".xlsx"])
def test_json_feather_and_excel_files(tmp_path, suffix):
    f = tmp_path / f"d{suffix}"
    if suffix == ".json":
        FRAME.to_json(f, orient="records")
    elif suffix == ".jsonl":
        FRAME.to_json(f, orient="records", lines=True)
    elif suffix == ".feather":
        FRAME.to_feather(f)
    else:
        pytest.importorskip("openpyxl")
        FRAME.to_excel(f, index=False)
    got = read_table(f)
    assert got.columns.tolist() == ["t", "y", "s"] and got["y"].tolist() == [1234.5, -2.0, 7.0]
    assert pd.to_datetime(got["t"]).dt.day.tolist() == [1, 2, 3]


def test_a_near_miss_column_name_is_named(tmp_path, capsys):
    f = tmp_path / "d.csv"
    n = 40
    pd.DataFrame({"Date": np.arange(n), "Sales Amount": np.sin(np.arange(n) / 3.0)}).to_csv(
        f, index=False
    )
    assert main(["train", "--data", str(f), "--target", "sales amount"]) == 2
    err = capsys.readouterr().err
    assert "--target 'sales amount': no column 'sales amount' in the file; did you mean " in err
    assert "'Sales Amount'?" in err and err.count("\n") == 1
    assert main(["train", "--data", str(f), "--target", "Sales Amount", "--time", "dates"]) == 2
    assert "--time 'dates': no column 'dates' in the file; did you mean 'Date'?" in (
        capsys.readouterr().err
    )


def test_suggest_reads_the_same_files(tmp_path, capsys):
    t = np.arange(120)
    y = 1000.0 + 500.0 * np.sin(2 * np.pi * t / 12)
    f = tmp_path / "quoted.csv"
    f.write_text("t,y\n" + "".join(f'{i},"{v:,.2f}"\n' for i, v in zip(t, y)))
    assert main(["suggest", str(f), "--column", "y"]) == 0
    assert "dominant periods: 12" in capsys.readouterr().out
    x = tmp_path / "d.xlsx"
    pytest.importorskip("openpyxl")
    pd.DataFrame({"t": t, "y": y}).to_excel(x, index=False)
    assert main(["suggest", str(x), "--column", "y"]) == 0
    assert "dominant periods: 12" in capsys.readouterr().out


def test_a_file_without_a_header_is_data_from_its_first_line(tmp_path):
    f = tmp_path / "ucr.tsv"
    f.write_text("1\t0.5\t0.7\n2\t0.1\t0.2\n1\t0.5\t0.5\n")  # the UCR archive's layout
    got = read_table(f)
    assert got.columns.tolist() == ["0", "1", "2"] and got["0"].tolist() == [1, 2, 1]
    g = tmp_path / "named.csv"
    g.write_text("t,2021\n1,2.5\n")  # one name that is not a number: a header
    assert read_table(g).columns.tolist() == ["t", "2021"]

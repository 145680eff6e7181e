"""suggest on a panel (``--id``): each id analysed on its own, in time order; what they share."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tbptt.cli import main
from tbptt.diagnostics import suggest
from tbptt.diagnostics.panel_suggest import _shared_periods, suggest_panel


def _panel(periods: list[int], n: int = 240, seed: int = 0) -> pd.DataFrame:
    """One id per period: a sine of that period plus noise, each id on its own level."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frames = [
        pd.DataFrame(
            {
                "store": f"s{k}",
                "day": t,
                "sales": 50.0 * k + np.sin(2 * np.pi * t / p) + 0.3 * rng.standard_normal(n),
            }
        )
        for k, p in enumerate(periods)
    ]
    return pd.concat(frames, ignore_index=True)


def test_each_id_is_its_own_series_sorted_by_time():
    df = _panel([12, 12, 12])
    shuffled = df.sample(frac=1.0, random_state=1)  # rows out of time order
    s = suggest_panel(shuffled, "sales", id_col="store", time_col="day")
    for key in ["s0", "s1", "s2"]:
        alone = suggest(df.loc[df.store == key, "sales"].to_numpy())
        np.testing.assert_array_equal(s.per_id[key].acf, alone.acf)
        assert s.per_id[key].periods == alone.periods
    assert s.periods == [12] and s.shares == [1.0] and s.recommended == 12


def test_the_panel_keeps_what_most_ids_share():
    s = suggest_panel(_panel([12, 12, 12, 30]), "sales", id_col="store", time_col="day")
    assert s.periods == [12] and s.shares == [0.75]
    assert s.memory == int(np.median([x.memory for x in s.per_id.values()]))
    assert _shared_periods([[12], [13, 30], [11], [7]]) == ([12], [0.75])
    assert _shared_periods([[7], [30], []]) == ([], [])


def test_short_constant_and_gappy_ids_are_skipped_and_counted():
    df = _panel([12, 12])
    extra = pd.DataFrame(
        {
            "store": ["short"] * 10 + ["flat"] * 40 + ["gap"] * 40,
            "day": list(range(10)) + list(range(40)) * 2,
            "sales": [1.0] * 10 + [3.0] * 40 + [np.nan] + list(range(39)),
        }
    )
    s = suggest_panel(pd.concat([df, extra]), "sales", id_col="store", time_col="day")
    assert set(s.per_id) == {"s0", "s1"}
    assert s.skipped == {"shorter than 16 values": 1, "constant": 1, "with gaps (NaN)": 1}
    assert "skipped: 1 shorter than 16 values, 1 constant, 1 with gaps (NaN)" in s.summary()
    with pytest.raises(ValueError, match="--id 'store': none of the 1 ids can be analysed"):
        suggest_panel(extra[extra.store == "short"], "sales", id_col="store")


def test_cli_panel_json_plot_and_time_alone(tmp_path, capsys):
    f = tmp_path / "sales.csv"
    _panel([7, 7, 7]).sample(frac=1.0, random_state=0).to_csv(f, index=False)
    assert main(["suggest", str(f), "--id", "store", "--time", "day"]) == 0
    out = capsys.readouterr().out
    assert "3 ids analysed one by one (240 to 240 steps), column 'sales'" in out
    assert "recommended k2: 7" in out
    png = tmp_path / "acf.png"
    argv = ["suggest", str(f), "--id", "store", "--time", "day", "--json", "--plot", str(png)]
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out.splitlines()[0])
    assert got["ids"] == 3 and got["periods"] == [7] and set(got["per_id"]) == {"s0", "s1", "s2"}
    assert png.stat().st_size > 5_000
    one = tmp_path / "one.csv"
    _panel([7]).sample(frac=1.0, random_state=0).to_csv(one, index=False)
    assert main(["suggest", str(one), "--time", "day", "--column", "sales"]) == 0
    assert "dominant periods: 7" in capsys.readouterr().out  # sorted: the cycle is back


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--id", "store", "--column", "nope"], "--column 'nope': no column 'nope' in the file"),
        (["--id", "nope"], "--id 'nope': no column 'nope' in the file"),
        (["--id", "store", "--column", "9"], "--column 9 is out of range"),
        (["--id", "store", "--column", "store"], "--column 'store' is the --id or --time column"),
    ],
)
def test_cli_bad_panel_options_one_line(tmp_path, capsys, argv, message):
    f = tmp_path / "sales.csv"
    _panel([7, 7]).to_csv(f, index=False)
    assert main(["suggest", str(f), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tbptt: error: ") and message in err and "\n" not in err


def test_cli_id_needs_a_file(capsys):
    assert main(["suggest", "sunspots", "--id", "x"]) == 2
    assert "--id needs DATA to be a table file" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    f = tmp_path / "many.csv"
    _panel([7] * 150, n=40).to_csv(f, index=False)  # its JSON fills a pipe's buffer
    cmd = f"{sys.executable} -m tbptt suggest {f} --id store --json | head -c 5"
    run = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert run.stdout == '{"ids' and "Traceback" not in run.stderr

"""Your own sequences through the data door: a CSV of daily sales of four stores in, a trained
forecaster, its verdict against the baselines, predictions and a Python handle out.

Run: python examples/data_file.py [FOLDER] [updates]
(writes FOLDER/my.csv and the run FOLDER/runs/stores; default FOLDER: a temporary folder), or
python examples/data_file.py --csv my.csv  to write only the CSV (then: tbptt train --data my.csv
--target y --id store --time date).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import tbptt
from tbptt.cli import main as tbptt_main


def make_csv(path: Path, seed: int = 0) -> Path:
    """Daily sales of 4 stores: a trend, a weekly season, promotions, noise; rows shuffled."""
    rng = np.random.default_rng(seed)
    frames = []
    for s, store in enumerate(["north", "south", "east", "west"]):
        dates = pd.date_range("2023-01-02", periods=150 + 20 * s, freq="D")
        t = np.arange(len(dates))
        promo = (rng.random(len(t)) < 0.1).astype(int)
        y = 10 + s + 0.02 * t + 2 * np.sin(2 * np.pi * t / 7) + 1.5 * promo
        y += rng.normal(0, 0.3, len(t))
        frames.append(
            pd.DataFrame({"store": store, "date": dates, "y": y.round(3), "promo": promo})
        )
    df = pd.concat(frames).sample(frac=1, random_state=seed)  # any row order
    df.to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


def main(folder: str | None = None, updates: int | None = None) -> tbptt.api.Loaded:
    root = Path(folder or tempfile.mkdtemp())
    csv = make_csv(root / "my.csv")
    args = ["train", "--data", str(csv), "--target", "y", "--id", "store", "--time", "date"]
    args += ["--runs-dir", str(root / "runs"), "--name", "stores", "--progress", "off"]
    if updates:
        args += ["--updates", str(updates)]
    if tbptt_main(args) != 0:
        raise SystemExit("training failed")
    run = root / "runs" / "stores"
    out = root / "predictions.csv"
    tbptt_main(["predict", str(run), "--data", str(csv), "--out", str(out), "--horizon", "7"])
    model = tbptt.load(run)  # the best checkpoint, with its preparation
    print(model.forecast(7).groupby("id").head(2))
    return model


if __name__ == "__main__":
    if sys.argv[1:2] == ["--csv"]:
        print(make_csv(Path(sys.argv[2] if len(sys.argv) > 2 else "my.csv")))
    else:
        argv = sys.argv[1:]
        main(argv[0] if argv else None, int(argv[1]) if len(argv) > 1 else None)

"""Shared fixtures: one intra-op thread (tiny tensors on 2 shared cores), opt-in float64, and a
small two-class file trained whole and resumed (the classification tests)."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64() -> Iterator[None]:
    """Reference comparisons run in float64; the default dtype is restored afterwards."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.fixture
def resumed_classify(tmp_path: Path) -> Callable[[], dict[str, Any]]:
    """A function that trains a two-class file (16 ids x 80 steps) for 12 updates (run
    ``full``) and for 8, then resumed to 12 (run ``part``), with the default options and any
    ``flags`` given: ``{"args", "runs", "path", "full", "part"}`` with the two runs'
    summaries."""
    from tbptt.cli import main

    def run(*flags: str) -> dict[str, Any]:
        rng = np.random.default_rng(0)
        rows = [
            (i, t, float(np.sin(t / (3 + 3 * (i % 2))) + 0.3 * rng.normal()), "ab"[i % 2])
            for i in range(16)
            for t in range(80)
        ]
        path = tmp_path / "c.csv"
        pd.DataFrame(rows, columns=["id", "t", "x", "label"]).to_csv(path, index=False)
        runs = tmp_path / "runs"
        args = ["--data", str(path), "--target", "label", "--id", "id", "--time", "t"]
        args += ["--progress", "off", "--tensorboard", "off", "--runs-dir", str(runs)]
        args += ["--eval-every", "4", "--checkpoint-every", "4", "--schedule", "constant", *flags]
        assert main(["train", *args, "--updates", "12", "--name", "full"]) == 0
        assert main(["train", *args, "--updates", "8", "--name", "part"]) == 0
        off = ["--progress", "off", "--tensorboard", "off"]
        assert main(["train", "--resume", str(runs / "part"), "--updates", "12", *off]) == 0
        full, part = (json.loads((runs / n / "summary.json").read_text()) for n in ("full", "part"))
        assert part["result"]["updates"] == 12
        return {"args": args, "runs": runs, "path": path, "full": full, "part": part}

    return run

"""The quickstart example runs and learns (a short version)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_learns():
    bits = load("quickstart").main(60)
    assert bits < 5.0  # uniform over bytes is 8 bits; unigram of Python source is about 4.6


def test_data_file_example(tmp_path):
    model = load("data_file").main(str(tmp_path), 10)
    assert len(model.forecast(3)) == 4 * 3
    assert (tmp_path / "predictions.csv").is_file()

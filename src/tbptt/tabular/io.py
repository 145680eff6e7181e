"""Reading a data file into a long-format table: CSV / Parquet (pandas, pyarrow) or arrays.

CSV and TSV files may be compressed (``.csv.gz``, ``.tsv.zip``, ...), and a CSV separated by ``;``
(or a tab, or ``|``; with decimal commas or points) is read as such. Arrays are turned into the same
long format as tables, so everything after this module sees one kind of input: ``.npy`` ``(T, F)``
is one sequence (columns ``"0"`` .. ``"F-1"``), ``(N, T, F)`` is N sequences of T steps (an ``"id"``
and a ``"t"`` column are added); an ``.npz`` file holds one such array (or ``x``: ``(N, T, F)`` and
``y``: ``(N,)`` labels, which become column ``"y"``).

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
>>> np.save(path, np.zeros((2, 3, 1)))
>>> read_table(path).columns.tolist()
['id', 't', '0']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BUILTIN", "file_digest", "read_table", "split_columns"]

_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".npy", ".npz")
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst")


BUILTIN = "series:"  # "series:NAME": a built-in series (tbptt.datasets), columns t and NAME


def read_table(path: str | Path) -> pd.DataFrame:
    """The file at ``path`` as a DataFrame (one row per step, long format); ``"series:NAME"``
    is a built-in series of :func:`tbptt.datasets.load_series` (columns ``t`` and ``NAME``)."""
    if str(path).startswith(BUILTIN):
        from tbptt.datasets import load_series

        s = load_series(str(path)[len(BUILTIN) :])
        return pd.DataFrame({"t": s.start + np.arange(len(s.values)), s.name: s.values})
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"--data {str(path)!r} does not exist. Give a CSV, Parquet or .npy file."
        )
    suffix = _kind(p)
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"--data {str(path)!r}: unknown file type {''.join(p.suffixes[-2:])!r}. Use .csv, "
            ".tsv (either may be compressed: .csv.gz, .csv.zip, ...), .parquet, .npy or .npz."
        )
    if p.stat().st_size == 0:
        raise ValueError(f"--data {str(path)!r} is empty (0 bytes). Give a file with rows.")
    if suffix in (".npy", ".npz"):
        return _from_arrays(p)
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
            sep = _other_separator(df)
            if sep is not None:  # one column named "a;b;c": a file separated by ";"
                df = pd.read_csv(p, sep=sep)
                if _decimal_commas(df):  # and "1,5" for 1.5, as such files often have
                    df = pd.read_csv(p, sep=sep, decimal=",")
    except (ValueError, OSError, ImportError, pd.errors.ParserError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--data {str(path)!r} could not be read: {first}") from e
    if len(df) == 0:
        raise ValueError(f"--data {str(path)!r} has a header but no rows. Give a file with rows.")
    df.columns = [str(c) for c in df.columns]
    return df


def file_digest(path: str | Path) -> str | None:
    """A BLAKE2b digest of the file's bytes (a resumed run checks it still trains on the same
    data); ``None`` for a built-in series.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "w").write("y,1")
    >>> file_digest(path)[:16], file_digest("series:sunspots")
    ('28b98655d586c139', None)
    """
    import hashlib

    if str(path).startswith(BUILTIN):
        return None
    h = hashlib.blake2b(digest_size=16)
    with open(Path(path).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _other_separator(df: pd.DataFrame) -> str | None:
    """The separator of a table read as one column whose name holds ``;``, a tab or ``|``
    (European CSV files use ``;``); ``None`` where the table looks read right.

    >>> _other_separator(pd.DataFrame({"date;y": ["2020-01-01;3"]}))
    ';'
    """
    if len(df.columns) != 1:
        return None
    name = str(df.columns[0])
    return next((sep for sep in (";", "\t", "|") if sep in name), None)


def _decimal_commas(df: pd.DataFrame) -> bool:
    """Whether a text column of ``df`` holds numbers written with a decimal comma (``-1,5``).

    >>> _decimal_commas(pd.DataFrame({"y": ["1,5", "-2,25"], "id": ["a", "b"]}))
    True
    """
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    pattern = r"^-?\d+,\d+$"
    return any(df[c].dropna().astype(str).str.match(pattern).all() for c in text)


def _kind(p: Path) -> str:
    """The file's type by its name: ``.csv`` for ``a.csv`` and for a compressed ``a.csv.gz``
    (pandas decompresses .gz, .bz2, .xz, .zip and .zst text files); ``""`` for a compressed
    file of any other type.

    >>> _kind(Path("d/Sales.CSV.gz")), _kind(Path("a.tsv")), _kind(Path("a.parquet.gz"))
    ('.csv', '.tsv', '')
    """
    names = [s.lower() for s in p.suffixes[-2:]]
    if len(names) == 2 and names[1] in _COMPRESSED:
        return names[0] if names[0] in (".csv", ".tsv", ".txt") else ""
    return names[-1] if names else ""


def _from_arrays(p: Path) -> pd.DataFrame:
    labels = None
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if "x" in keys:
                    arr = z["x"]
                    labels = z["y"] if "y" in keys else None
                elif len(keys) == 1:
                    arr = z[keys[0]]
                else:
                    raise ValueError(
                        f"--data {str(p)!r} holds arrays {keys}; give one array, or 'x' "
                        "(N, T, F) with optional 'y' (N,) labels."
                    )
        else:
            arr = np.load(p, allow_pickle=False)
    except (OSError, EOFError) as e:
        raise ValueError(f"--data {str(p)!r} is not a readable NumPy file: {e}") from e
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim == 2:
        if arr.shape[0] == 0:
            raise ValueError(f"--data {str(p)!r} has no steps (shape {arr.shape}).")
        return pd.DataFrame(arr, columns=[str(i) for i in range(arr.shape[1])])
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(
            f"--data {str(p)!r} has shape {arr.shape}; arrays must be (T, F) for one sequence or "
            "(N, T, F) for N sequences, none empty."
        )
    n, t, f = arr.shape
    df = pd.DataFrame(arr.reshape(n * t, f), columns=[str(i) for i in range(f)])
    df.insert(0, "t", np.tile(np.arange(t), n))
    df.insert(0, "id", np.repeat(np.arange(n), t))
    if labels is not None:
        if labels.shape[0] != n:
            raise ValueError(
                f"--data {str(p)!r}: 'y' has {labels.shape[0]} labels for {n} sequences in 'x'."
            )
        df["y"] = np.repeat(labels, t)
    return df


def split_columns(text: str | None, flag: str, columns: list[str]) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each checked against the file's ``columns``."""
    if text is None:
        return []
    names = [c.strip() for c in str(text).split(",") if c.strip()]
    if not names:
        raise ValueError(f"{flag} {text!r} names no column. Give COL[,COL...].")
    missing = [c for c in names if c not in columns]
    if missing:
        shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
        raise ValueError(
            f"{flag} {text!r}: no column {missing[0]!r} in the file (columns: {shown})."
        )
    return names

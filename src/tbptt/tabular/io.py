"""Reading a data file into a long-format table: CSV / Parquet (pandas, pyarrow) or arrays.

CSV and TSV files may be compressed (``.csv.gz``, ``.tsv.zip``, ...), and a CSV separated by ``;``
(or a tab, or ``|``) is read as such. Numbers written with thousands separators (``"1,234.5"``) or
a decimal comma (``1.234,5``, ``-0,25``) are read as numbers, column by column (:func:`_numbers`).
Feather/Arrow, JSON (records or columns), JSON lines and Excel sheets (the first; with openpyxl
installed) are read by pandas too. Arrays are turned into the same
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

__all__ = ["BUILTIN", "file_digest", "no_column", "read_table", "split_columns"]

_TEXT = (".csv", ".tsv", ".txt")
_READERS = {
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".feather": pd.read_feather,
    ".arrow": pd.read_feather,
    ".json": pd.read_json,
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".ndjson": lambda p: pd.read_json(p, lines=True),
    ".xlsx": pd.read_excel,
    ".xls": pd.read_excel,
}
_SUFFIXES = (*_TEXT, *_READERS, ".npy", ".npz")
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
            ".tsv (either may be compressed: .csv.gz, .csv.zip, ...), .parquet, .feather, "
            ".json, .jsonl, .xlsx, .npy or .npz."
        )
    if p.stat().st_size == 0:
        raise ValueError(f"--data {str(path)!r} is empty (0 bytes). Give a file with rows.")
    if suffix in (".npy", ".npz"):
        return _from_arrays(p)
    try:
        df = _READERS[suffix](p) if suffix in _READERS else _read_text(p, suffix)
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


def _read_text(p: Path, suffix: str) -> pd.DataFrame:
    """A CSV/TSV file: separated by ``,`` (``\\t`` for .tsv), else by the ``;``, tab or ``|``
    its header shows; numbers written as text converted by :func:`_numbers`."""
    sep = "\t" if suffix == ".tsv" else ","
    df = pd.read_csv(p, sep=sep)
    other = _other_separator(df)
    if other is not None:  # one column named "a;b;c": a file separated by ";"
        sep, df = other, pd.read_csv(p, sep=other)
    if _no_header(df):  # numbers on the first line: data, not names (columns "0", "1", ...)
        df = pd.read_csv(p, sep=sep, header=None)
    return _numbers(df, sep)


def _no_header(df: pd.DataFrame) -> bool:
    """Whether every column name read from the first line is a number (a file without a
    header, such as the UCR archive's; pandas would take its first row for names).

    >>> _no_header(pd.DataFrame(columns=["1", "-0.5", "3e2"])), _no_header(pd.DataFrame(columns=["t", "1"]))
    (True, False)
    """
    names = [str(c) for c in df.columns]  # a repeated name comes back as "1.5.1", "1.5.2" ...
    return all(_is_number(n) or _is_number(n.rsplit(".", 1)[0]) for n in names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_THOUSANDS = r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?|[-+]?\d+(\.\d+)?"  # 1,234.5 (and 2.5, 7)
_DECIMAL_COMMA = r"[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+|[-+]?\d+"  # 1.234,5 and -0,25 (and 7)


def _numbers(df: pd.DataFrame, sep: str) -> pd.DataFrame:
    """``df`` with each text column whose every value is a number written with thousands
    separators (``"1,234.5"``, quoted in a CSV) or with a decimal comma (``1.234,5``) read as
    numbers. ``1,234`` is a thousand and more in a ``,``-separated file, where a comma inside a
    value is quoted on purpose, and 1.234 in a ``;``-separated one, as European files write it.

    >>> df = _numbers(pd.DataFrame({"y": ["1,234.5", "-2"], "z": ["1,5", "-0,25"]}), ",")
    >>> df["y"].tolist(), df["z"].tolist()
    ([1234.5, -2.0], [1.5, -0.25])
    >>> _numbers(pd.DataFrame({"y": ["1.234,5", "2,25", "1,234"]}), ";")["y"].tolist()
    [1234.5, 2.25, 1.234]
    """
    formats = [(_THOUSANDS, ","), (_DECIMAL_COMMA, ".")]  # (pattern, the grouping character)
    if sep != ",":  # "1,234" is a decimal comma there: try that first
        formats.reverse()
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]):
            continue
        text = df[c].dropna().astype(str).str.strip()
        if text.empty or not text.str.contains(",", regex=False).any():
            continue
        for pattern, group in formats:
            if text.str.fullmatch(pattern).all():
                out = df[c].astype("string").str.strip().str.replace(group, "", regex=False)
                if group == ".":
                    out = out.str.replace(",", ".", regex=False)
                df[c] = pd.to_numeric(out).astype("float64")
                break
    return df


def _kind(p: Path) -> str:
    """The file's type by its name: ``.csv`` for ``a.csv`` and for a compressed ``a.csv.gz``
    (pandas decompresses .gz, .bz2, .xz, .zip and .zst text files); ``""`` for a compressed
    file of any other type.

    >>> _kind(Path("d/Sales.CSV.gz")), _kind(Path("a.tsv")), _kind(Path("a.parquet.gz"))
    ('.csv', '.tsv', '')
    """
    names = [s.lower() for s in p.suffixes[-2:]]
    if len(names) == 2 and names[1] in _COMPRESSED:
        return names[0] if names[0] in _TEXT else ""
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
        raise ValueError(f"{flag} {text!r}: {no_column(missing[0], columns)}")
    twice = [c for i, c in enumerate(names) if c in names[:i]]
    if twice:
        raise ValueError(f"{flag} names {twice[0]!r} twice; each column has one role.")
    return names


def no_column(name: str, columns: list[str]) -> str:
    """The end of a message for a column ``name`` that the file does not have: the nearest
    name (the same but for case and spaces, else the closest spelling), and the columns.

    >>> no_column("sales", ["Date", " Sales ", "promo"])
    "no column 'sales' in the file; did you mean ' Sales '? (columns: Date,  Sales , promo)."
    """
    import difflib

    shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
    same = [c for c in columns if c.strip().lower() == name.strip().lower()]
    near = same or difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"no column {name!r} in the file{hint} (columns: {shown})."

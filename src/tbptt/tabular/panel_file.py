"""A long-format panel file read in blocks, and where each id's rows are in it.

A panel file holds one row per (id, step), the rows of each id contiguous and in time order: a
Parquet file (read one row group at a time with ``pyarrow``, only the row groups that hold the
ids asked for) or a ``.npy`` array ``(N, T, F)`` opened with ``mmap_mode="r"`` (id = the first
axis, columns = feature indices). :class:`PanelTable` reads rows of columns in blocks;
:func:`index_ids` scans the id (and time) column once and keeps one start row and length per id
(:class:`IdIndex`); :func:`shard_of` is each rank's contiguous block of ids. The streaming of
chunks built on these is :mod:`tbptt.tabular.stream`.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "panel.npy")
>>> np.save(path, np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2))  # 3 ids x 4 steps
>>> index = index_ids(path, None)
>>> index.starts.tolist(), index.lengths.tolist(), index.rows(slice(1, 3))
([0, 4, 8], [4, 4, 4], (4, 12))
>>> [b[:, 0].tolist() for b in PanelTable(path).blocks([0], 4, 8)]   # id 1, column 0
[[8.0, 10.0, 12.0, 14.0]]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tbptt.data._checks import check_int

__all__ = ["BATCH_ROWS", "IdIndex", "PanelTable", "index_ids", "shard_of"]

Column = str | int
IntArray = npt.NDArray[np.int64]
BATCH_ROWS = 65_536  # rows per record batch read from a Parquet file


# -- the file: rows of numeric columns, read in blocks ------------------------------------------
class PanelTable:
    """Rows of a Parquet file or of an ``(N, T, F)`` ``.npy`` array, read in blocks."""

    def __init__(self, path: str | os.PathLike[str], batch_rows: int = BATCH_ROWS) -> None:
        self.path = os.fspath(path)
        self.batch_rows = check_int("batch_rows", batch_rows)
        self.rows_read = 0  # value rows handed out by ``blocks`` (what this rank read)
        self._group: tuple[Any, Any] | None = None  # the last row group read: (key, table)
        self.groups_read = 0
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"path: no file at {self.path!r}. Pass a .parquet or .npy file."
            )
        if self.path.endswith(".npy"):
            self.array = np.load(self.path, mmap_mode="r")
            if self.array.ndim != 3:
                raise ValueError(
                    f"path: {self.path!r} holds an array of shape {self.array.shape}; streaming "
                    "reads (N, T, F) arrays (N sequences). For one (T, F) series use arr[None]."
                )
            self.num_rows = self.array.shape[0] * self.array.shape[1]
            self.pf = None
        elif self.path.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            self.pf = pq.ParquetFile(self.path)
            meta = self.pf.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self.group_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            self.num_rows = int(meta.num_rows)
        else:
            raise ValueError(
                f"path: {self.path!r} is neither .parquet nor .npy; streaming reads those two. "
                "Convert it first, e.g. pandas.read_csv(f).to_parquet('data.parquet')."
            )

    def check_numeric(
        self, name: str, columns: Sequence[Column], numeric: bool = True
    ) -> list[Column]:
        """``columns`` if they exist (and are numeric), else a ValueError naming ``name``."""
        cols = list(columns)
        if self.pf is None:
            width = self.array.shape[2]
            bad = [
                c
                for c in cols
                if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < width
            ]
            if bad:
                raise ValueError(
                    f"{name}: {bad!r} are not feature indices of a .npy array with F={width}; pass ints in [0, {width})."
                )
            return cols
        import pyarrow as pa

        schema = self.pf.schema_arrow
        for c in cols:
            if not isinstance(c, str) or c not in schema.names:
                raise ValueError(
                    f"{name}: column {c!r} is not in {self.path!r}; its columns are {schema.names}."
                )
            t = schema.field(c).type
            if numeric and not (
                pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            ):
                raise ValueError(
                    f"{name}: column {c!r} has type {t}; streaming reads numeric columns only. "
                    "Encode it as numbers first, or leave it out."
                )
        return cols

    def blocks(
        self, columns: Sequence[Column], start: int = 0, stop: int | None = None
    ) -> Iterator[Any]:
        """Rows ``[start, stop)`` of ``columns`` in blocks ``(n, C)`` (Parquet: only the row
        groups that overlap the range are read)."""
        stop = self.num_rows if stop is None else stop
        if self.pf is None:
            flat = self.array.reshape(self.num_rows, self.array.shape[2])  # a view of the map
            for a in range(start, stop, self.batch_rows):
                block = np.asarray(flat[a : min(stop, a + self.batch_rows)][:, list(columns)])
                self.rows_read += len(block)
                yield block
            return
        for part in self.parts(columns, start, stop):
            block = np.column_stack([part.column(j).to_numpy() for j in range(len(columns))])
            self.rows_read += len(block)
            yield block  # (n, C)

    def parts(
        self, columns: Sequence[Column], start: int = 0, stop: int | None = None
    ) -> Iterator[Any]:
        """Rows ``[start, stop)`` of a Parquet file as Arrow tables of ``batch_rows`` rows,
        reading one row group at a time and keeping only the last one (``iter_batches`` keeps
        everything it has read)."""
        stop = self.num_rows if stop is None else stop
        assert self.pf is not None
        g0 = int(np.searchsorted(self.group_start, start, side="right")) - 1
        g1 = int(np.searchsorted(self.group_start, stop, side="left"))
        for g in range(max(g0, 0), g1):
            at = int(self.group_start[g])
            key = (g, tuple(columns))
            if self._group is None or self._group[0] != key:  # ids sharing a group: read once
                self._group = (key, self.pf.read_row_group(g, columns=list(columns)))
                self.groups_read += 1
            group = self._group[1]
            lo, hi = max(start - at, 0), min(stop - at, group.num_rows)
            for a in range(lo, hi, self.batch_rows):
                yield group.slice(a, min(hi - a, self.batch_rows))


# -- pass 1: where each id is ----------------------------------------------------------------
@dataclass(frozen=True)
class IdIndex:
    """Each id's first row and number of rows, in file order."""

    ids: np.ndarray  # (N,) the id values
    starts: IntArray  # (N,) first row of each id
    lengths: IntArray  # (N,) rows of each id

    def shard(self, rank: int, world_size: int) -> slice:
        """Rank ``rank``'s contiguous block of ids (sizes differ by at most one)."""
        return shard_of(len(self.ids), rank, world_size)

    def rows(self, ids: slice) -> tuple[int, int]:
        """The row range ``[start, stop)`` holding the ids ``ids``."""
        first, last = ids.start, ids.stop - 1
        if last < first:
            return 0, 0
        return int(self.starts[first]), int(self.starts[last] + self.lengths[last])


def shard_of(n: int, rank: int, world_size: int) -> slice:
    """Ids ``[rank * n // W, (rank + 1) * n // W)``: contiguous, disjoint, together all of them.

    >>> [shard_of(10, r, 3) for r in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    return slice(rank * n // world_size, (rank + 1) * n // world_size)


def index_ids(
    path: str | os.PathLike[str],
    id: Column | None,
    time: Column | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> IdIndex:
    """Scan the id (and time) column once: each id's start row and length, in bounded memory.

    Ids must be contiguous (all rows of an id together) and, with ``time``, strictly increasing
    in time within each id; otherwise a ValueError says where and how to fix the file.
    ``id=None`` with a ``.npy`` array ``(N, T, F)``: id i is ``arr[i]``; with Parquet: one
    sequence.
    """
    table = PanelTable(path, batch_rows)
    if id is not None:
        table.check_numeric("id", [id], numeric=False)
    if table.pf is None:
        n, t = table.array.shape[:2]
        return IdIndex(np.arange(n), np.arange(n, dtype=np.int64) * t, np.full(n, t, np.int64))
    cols = table.check_numeric("time", [time], numeric=False) if time is not None else []
    if id is None and not cols:
        return IdIndex(np.array([0]), np.zeros(1, np.int64), np.array([table.num_rows], np.int64))
    ids: list[Any] = []
    starts: list[int] = []
    seen: set[Any] = set()
    last_t: Any = None
    at = 0
    for batch in table.parts([*([] if id is None else [id]), *cols]):
        # (n,) the id of each row (None: one sequence, id 0)
        v = np.zeros(batch.num_rows, np.int64) if id is None else batch.column(0).to_numpy(False)
        new = np.flatnonzero(v[1:] != v[:-1]) + 1
        if not ids or v[0] != ids[-1]:
            new = np.concatenate([[0], new])
        for i in new.tolist():
            key = _plain(v[i])
            if key in seen:
                raise ValueError(
                    f"id: the rows of id {key!r} are not contiguous (it starts again at row "
                    f"{at + i}); streaming reads each id as one block of rows. Sort the file by "
                    f"id and time first, e.g. df.sort_values([{id!r}, ...]).to_parquet(path)."
                )
            seen.add(key)
            ids.append(key)
            starts.append(at + i)
        if cols:
            last_t = _check_time(
                batch.column(-1).to_numpy(zero_copy_only=False), v, new, last_t, at, cols[0]
            )
        at += len(v)
    starts_a = np.array(starts, dtype=np.int64)
    lengths = np.diff(np.append(starts_a, at))
    return IdIndex(np.array(ids), starts_a, lengths)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages and sets)."""
    return value.item() if isinstance(value, np.generic) else value


def _check_time(
    t: np.ndarray, v: np.ndarray, new: np.ndarray, last_t: Any, at: int, name: Column
) -> Any:
    """Raise unless ``t`` strictly increases within each id (``new``: rows where an id starts)."""
    prev = np.concatenate([[last_t if last_t is not None else t[0]], t[:-1]])
    bad = ~(t > prev)
    bad[new] = False  # the first row of an id has no predecessor in it
    if last_t is None:
        bad[0] = False
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "a duplicate" if t[i] == prev[i] else "out of order"
        key, a, b = (_plain(z[i]) for z in (v, prev, t))
        raise ValueError(
            f"time: column {name!r} is {what} at row {at + i} (id {key!r}: {a!r} then "
            f"{b!r}); streaming needs each id's rows in strictly increasing time. Sort the "
            "file by id and time and drop duplicates first."
        )
    return t[-1]

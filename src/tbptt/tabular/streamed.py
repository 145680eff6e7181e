"""``tbptt train --data`` on a Parquet file too large to hold: a sample of whole ids in memory
for the defaults, the validation, the baselines and the report; every id streamed for training
(with :mod:`tbptt.tabular.stream`).

A file of more than ``STREAM_ROWS`` rows is streamed (forecast runs): ``sample_frame`` reads
evenly spaced whole ids; ``refit_spec`` refits the scaling on every id's training rows in one
streaming pass; ``forecast_stream`` trains on every id, one at a time, through the run's own
preparation. The ids are read in file order (no shuffling between epochs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from tbptt.chunk import Chunk
from tbptt.tabular.panel_file import IdIndex, IntArray, PanelTable, index_ids, shard_of
from tbptt.tabular.stream import ColumnStats, Sequence3, chunks_needed, dist_rank, pack_chunks

__all__ = [
    "FrameStream",
    "forecast_stream",
    "panel_blocks",
    "parquet_rows",
    "refit_spec",
    "sample_frame",
]

STREAM_ROWS = 2_000_000  # a Parquet file with more rows is streamed by ``tbptt train --data``
SAMPLE_ROWS = 200_000  # rows of evenly spaced ids read whole (defaults, validation, report)
PREDICT_ROWS = 100_000  # rows of whole ids per block that ``tbptt predict`` streams


def parquet_rows(path: str | os.PathLike[str]) -> int:
    """Rows of a Parquet file from its footer (0 for any other file)."""
    if not os.fspath(path).endswith((".parquet", ".pq")):
        return 0
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(os.fspath(path)).metadata.num_rows)


def iter_frames(
    path: str | os.PathLike[str],
    index: IdIndex,
    ids: Sequence[int],
    columns: Sequence[str],
    table: PanelTable | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(i, DataFrame)`` for each id ``i`` of ``ids`` (increasing), reading only its rows
    (each row group once when the ids are increasing)."""
    import pyarrow as pa

    table = PanelTable(path) if table is None else table
    for i in ids:
        a, n = int(index.starts[i]), int(index.lengths[i])
        parts = list(table.parts(list(columns), a, a + n))
        table.rows_read += n
        yield i, pa.concat_tables(parts).to_pandas()


def sample_frame(
    path: str | os.PathLike[str], id: str | None, max_rows: int | None = None
) -> tuple[Any, IdIndex, IntArray]:
    """Evenly spaced whole ids, about ``max_rows`` rows (default ``SAMPLE_ROWS``), as one
    DataFrame; the index of every id; and which ids were taken ``(S,)``."""
    import pandas as pd

    max_rows = SAMPLE_ROWS if max_rows is None else max_rows
    if id is None:
        raise ValueError(
            f"--id: {parquet_rows(path):,} rows (more than {STREAM_ROWS:,}) in one sequence are "
            "too many to hold; give the id column (streaming reads one id at a time)."
        )
    index = index_ids(path, id)
    n = len(index.ids)
    take = max(1, min(n, int(max_rows // max(1, index.lengths.mean()))))
    picked = np.unique(np.linspace(0, n - 1, take).round().astype(np.int64))
    columns = list(PanelTable(path).pf.schema_arrow.names)  # type: ignore[union-attr]
    frames = [df for _, df in iter_frames(path, index, picked.tolist(), columns)]
    return pd.concat(frames, ignore_index=True), index, picked


def panel_blocks(pred: Any, path: str, block_rows: int | None = None) -> Iterator[Any]:
    """The file ``tbptt predict`` reads, as panels of whole sequences for ``pred`` (a
    :class:`tbptt.tabular.predict.Predictor`): the whole file as one panel, or, for a Parquet
    file of more than ``STREAM_ROWS`` rows with an id column, blocks of consecutive ids of about
    ``block_rows`` rows (default ``PREDICT_ROWS``), reading only the columns the run uses. Every
    prediction depends on its own sequence only, so the blocks' tables, one after the other,
    are the whole file's table."""
    import pandas as pd

    id_col, time_col = pred.cfg.id, pred.cfg.time
    if id_col is None or parquet_rows(path) <= STREAM_ROWS:
        yield pred.panel(path)
        return
    block_rows = PREDICT_ROWS if block_rows is None else block_rows
    spec = pred.spec
    names = set(PanelTable(path).pf.schema_arrow.names)  # type: ignore[union-attr]
    want = [id_col, time_col, *spec.targets, *spec.past, *spec.known, *spec.cats]
    columns = [c for c in dict.fromkeys(want) if c is not None and c in names]
    index = index_ids(path, id_col)
    frames: list[Any] = []
    rows = 0
    for _, df in iter_frames(path, index, range(len(index.ids)), columns):
        frames.append(df)
        rows += len(df)
        if rows >= block_rows:
            yield pred.panel(pd.concat(frames, ignore_index=True))
            frames, rows = [], 0
    if frames:
        yield pred.panel(pd.concat(frames, ignore_index=True))


class FrameStream:
    """Chunks from every id of a file, one id at a time as a DataFrame turned into arrays by
    ``transform(i, df) -> (x (T, F_in), y (T, F_out), valid (T,))``; packed with ``pack_chunks``.
    ``steps[i]``: the steps id ``i`` gives (0: none). This rank reads its block of ids only."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        index: IdIndex,
        steps: IntArray,
        transform: Any,
        columns: Sequence[str],
        widths: tuple[int, int],
        *,
        batch_size: int,
        chunk_len: int,
    ) -> None:
        self.path, self.index, self.steps, self.transform = path, index, steps, transform
        self.columns, self.widths = list(columns), widths
        self.batch_size, self.chunk_len = batch_size, chunk_len
        self.rank, self.world_size = dist_rank()
        self.num_chunks = chunks_needed(steps, batch_size, chunk_len, self.world_size)

    def __len__(self) -> int:
        return self.num_chunks

    def _sequences(self) -> Iterator[Sequence3]:
        shard = shard_of(len(self.steps), self.rank, self.world_size)
        ids = [i for i in range(shard.start, shard.stop) if self.steps[i] > 0]
        self.ids_read: list[int] = []  # this rank's ids, as read (a check for sharding)
        for i, df in iter_frames(self.path, self.index, ids, self.columns):
            self.ids_read.append(i)
            yield self.transform(i, df)

    def __iter__(self) -> Iterator[Chunk]:
        return pack_chunks(
            self._sequences(), self.batch_size, self.chunk_len, self.num_chunks, self.widths
        )


def _one_panel(df: Any, id_col: str | None, time_col: str | None) -> Any:
    from tbptt.tabular.panel import make_panel

    return make_panel(df, id_col=id_col, time_col=time_col)


def refit_spec(
    path: str | os.PathLike[str],
    index: IdIndex,
    spec: Any,
    n_train: IntArray,
    id_col: str | None,
    time_col: str | None,
) -> Any:
    """``spec`` (fitted on a sample of ids) with the scaling of every numeric column and the
    change scale of every target refitted on the training rows of all ids: one streaming pass
    of running statistics (``ColumnStats``), merged across ranks under ``torch.distributed``."""
    from dataclasses import replace

    cols = [*spec.targets, *spec.past, *spec.known]
    zeros = (np.zeros(len(cols)), np.zeros(len(cols)), np.zeros(len(cols)))
    levels, changes = ColumnStats(tuple(cols), *zeros), ColumnStats(tuple(cols), *zeros)
    rank, world = dist_rank()
    shard = shard_of(len(index.ids), rank, world)
    ids = [i for i in range(shard.start, shard.stop) if n_train[i] > 0]
    needed = [c for c in (id_col, time_col) if c] + cols
    for i, df in iter_frames(path, index, ids, needed):
        frame = _one_panel(df, id_col, time_col).frame
        v = frame[cols].to_numpy(np.float64)[: n_train[i]]  # (n_train, C) raw values
        levels = levels.merge(ColumnStats.of(cols, v))
        changes = changes.merge(ColumnStats.of(cols, np.diff(v, axis=0)))
    if world > 1:
        every: list[Any] = [None] * world
        torch.distributed.all_gather_object(every, (levels, changes))
        levels, changes = every[0]
        for lv, ch in every[1:]:
            levels, changes = levels.merge(lv), changes.merge(ch)
    sd = np.sqrt(levels.m2 / np.maximum(levels.count, 1))
    sd = np.where(sd > 1e-12, sd, 1.0)  # as the in-memory fit: a constant column is not scaled
    sdc = np.sqrt(changes.m2 / np.maximum(changes.count, 1))
    sdc = np.where(sdc > 1e-12, sdc, 1.0)
    k = len(spec.targets)
    return replace(
        spec,
        mean={**spec.mean, **{c: float(m) for c, m in zip(cols, levels.mean)}},
        sd={**spec.sd, **{c: float(v) for c, v in zip(cols, sd)}},
        sd_change={c: float(sdc[j] / sd[j]) for j, c in enumerate(cols[:k])},
    )


def forecast_stream(
    path: str | os.PathLike[str],
    index: IdIndex,
    spec: Any,
    n_train: IntArray,
    id_col: str | None,
    time_col: str | None,
    *,
    batch_size: int,
    chunk_len: int,
) -> FrameStream:
    """The training chunks of a forecast run over every id, streamed: each id's first
    ``n_train[i]`` steps through the run's own preparation (``forecast_arrays``), its last
    target (a validation step) weighted 0, steps without a weighted target masked (as the
    in-memory ``WeightedStream``)."""
    from tbptt.tabular.prepare import forecast_arrays

    cols = list(
        dict.fromkeys(
            [c for c in (id_col, time_col) if c]
            + [*spec.targets, *spec.past, *spec.known, *spec.cats]
        )
    )

    def transform(i: int, df: Any) -> Sequence3:
        n = int(n_train[i])
        a = forecast_arrays(_one_panel(df, id_col, time_col), spec, np.array([n]))[0]
        x, y = a["x"][:n], a["y"][:n].copy()  # (n, F_in), (n, 3 n_out): values, mask and
        half = spec.n_out  # loss weights
        y[n - 1, half:] = 0.0  # its target is a validation step
        return x, y, y[:, half : 2 * half].sum(1) > 0

    steps = np.where(n_train >= 2, n_train, 0)
    first = int(np.flatnonzero(steps)[0])
    _, df = next(iter_frames(path, index, [first], cols))
    x, y, _ = transform(first, df)  # the widths, from one id
    return FrameStream(
        path,
        index,
        steps,
        transform,
        cols,
        (x.shape[1], y.shape[1]),
        batch_size=batch_size,
        chunk_len=chunk_len,
    )

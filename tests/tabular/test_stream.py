"""Streaming a panel file: the same chunks as the in-memory batcher, exact shards, bounded memory.

The reference for every chunk is ``tbptt.data.StreamBatcher(layout="packed", tail="pad")`` over
the sequences read whole with pandas; the statistics are checked against numpy over the whole
column; two gloo processes check that each rank reads only its ids and that the scaling is the
global one.
"""

from __future__ import annotations

import json
import os
import tempfile
import tracemalloc

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tbptt.data import StreamBatcher
from tbptt.tabular.stream import PanelStream, column_stats, index_ids, shard_of

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

COLS = ["a", "b", "y"]


def panel(lengths, seed=0) -> pd.DataFrame:
    """Long format: ids 100, 101, ... with the given numbers of rows, time 0..T-1."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    return pd.DataFrame(
        {
            "store": np.repeat(np.arange(100, 100 + len(lengths)), lengths),
            "t": np.concatenate([np.arange(k) for k in lengths]),
            "a": rng.normal(3.0, 2.0, n),
            "b": rng.integers(0, 9, n),
            "y": rng.normal(-1.0, 0.5, n),
        }
    )


def write(df: pd.DataFrame, path, row_group_size: int = 7) -> str:
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )
    return str(path)


def reference(df, inputs, targets, target, B, L, scale=None):
    """The in-memory path: pandas groups -> StreamBatcher (packed, pad)."""
    xs, ys = [], []
    for _, g in df.groupby("store", sort=False):
        rows = g[list(dict.fromkeys(inputs + targets))].to_numpy(np.float64)
        if scale is not None:
            rows = (rows - scale[0]) / scale[1]
        frame = pd.DataFrame(rows, columns=list(dict.fromkeys(inputs + targets)))
        x, y = frame[inputs].to_numpy(), frame[targets].to_numpy()
        if target == "next":
            x, y = x[:-1], y[1:]
        if len(x):
            xs.append(torch.tensor(x, dtype=torch.float32))
            ys.append(torch.tensor(y, dtype=torch.float32))
    return list(StreamBatcher(xs, ys, batch_size=B, chunk_len=L, layout="packed"))


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for name in ("inputs", "targets", "reset", "mask"):
            assert torch.equal(getattr(g, name), getattr(w, name)), name


@pytest.mark.parametrize("target", ["next", "step"])
@pytest.mark.parametrize(("B", "L"), [(1, 4), (3, 5), (4, 16)])
def test_same_chunks_as_the_in_memory_batcher(tmp_path, target, B, L):
    df = panel([9, 1, 17, 4, 30, 2, 11, 6])  # an id of one row gives nothing with "next"
    path = write(df, tmp_path / "p.parquet")
    s = PanelStream(
        path,
        ["a", "b"],
        ["y"],
        id="store",
        time="t",
        batch_size=B,
        chunk_len=L,
        target=target,
        batch_rows=5,
    )
    want = reference(df, ["a", "b"], ["y"], target, B, L)
    assert_same(list(s), want)
    assert_same(list(s), want)  # iterating again reads the file again, the same chunks
    assert len(s) == len(want)


def test_fitted_scaling_equals_the_whole_column_statistics(tmp_path):
    df = panel([12, 5, 40, 3], seed=1)
    path = write(df, tmp_path / "p.parquet")
    stats = column_stats(path, COLS, batch_rows=3)  # merged over many small blocks
    whole = df[COLS].to_numpy(np.float64)
    np.testing.assert_allclose(stats.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, whole.std(0), rtol=1e-12)
    s = PanelStream(
        path, ["a", "b", "y"], ["y"], id="store", batch_size=2, chunk_len=6, scale="fit"
    )
    assert_same(
        list(s), reference(df, ["a", "b", "y"], ["y"], "next", 2, 6, (whole.mean(0), whole.std(0)))
    )


def test_npy_memory_map_gives_the_same_chunks(tmp_path):
    arr = np.random.default_rng(2).normal(size=(5, 13, 3)).astype(np.float32)  # (N, T, F)
    np.save(tmp_path / "p.npy", arr)
    s = PanelStream(tmp_path / "p.npy", [0, 1], [2], batch_size=2, chunk_len=4, batch_rows=6)
    xs = [torch.from_numpy(a[:-1, :2].copy()) for a in arr]
    ys = [torch.from_numpy(a[1:, 2:].copy()) for a in arr]
    assert_same(list(s), list(StreamBatcher(xs, ys, batch_size=2, chunk_len=4)))


def test_shards_partition_the_ids_and_each_rank_reads_only_its_rows(tmp_path):
    lengths = [9, 3, 17, 4, 30, 2, 11, 6, 8, 5]
    df = panel(lengths)
    path = write(df, tmp_path / "p.parquet", row_group_size=4)
    index = index_ids(path, "store")
    assert index.lengths.tolist() == lengths
    for world in (1, 2, 3, 4):
        shards = [shard_of(len(lengths), r, world) for r in range(world)]
        got = np.concatenate([index.ids[s] for s in shards])
        assert got.tolist() == list(range(100, 110))  # disjoint, complete, in order
        streams = [
            PanelStream(
                path,
                ["a"],
                ["y"],
                id="store",
                batch_size=2,
                chunk_len=5,
                rank=r,
                world_size=world,
                batch_rows=4,
            )
            for r in range(world)
        ]
        assert len({len(s) for s in streams}) == 1  # the same number of chunks on every rank
        seen = []
        for r, s in enumerate(streams):
            start, stop = index.rows(shards[r])
            chunks = list(s)
            assert sum(int(c.mask.sum()) for c in chunks) == stop - start - (
                shards[r].stop - shards[r].start
            )
            assert s.rows_read == stop - start  # only its rows (the row groups around them skipped)
            seen += [x[:, 0].tolist() for x, _, _ in s.sequences()]
        want = [g["a"].to_numpy()[:-1].tolist() for _, g in df.groupby("store", sort=False)]
        assert seen == want


def test_memory_is_bounded_by_the_chunk_not_the_file(tmp_path):
    """400k rows x 3 columns (9.6 MB as float64): streaming holds a few ids and a row group."""
    df = panel([2_000] * 200, seed=3)
    path = write(df, tmp_path / "p.parquet", row_group_size=20_000)
    file_bytes = len(df) * 3 * 8
    pool = pa.default_memory_pool()
    s = PanelStream(
        path, ["a", "b"], ["y"], id="store", batch_size=4, chunk_len=100, batch_rows=8_192
    )
    base, arrow_most, n = pool.bytes_allocated(), 0, 0
    tracemalloc.start()
    for c in s:
        n += int(c.mask.sum())
        arrow_most = max(arrow_most, pool.bytes_allocated() - base)  # Arrow's buffers now
    numpy_peak = tracemalloc.get_traced_memory()[1]  # numpy's allocations, at their peak
    tracemalloc.stop()
    assert n == 200 * 1_999
    # numpy: ~4 ids of 2,000 rows (float64, a few copies) + one 8,192-row block;
    # Arrow: one row group of 20,000 rows (0.48 MB decoded) with its pages, never the file
    assert numpy_peak < file_bytes / 8, numpy_peak
    assert arrow_most < 4 * 20_000 * 3 * 8 < file_bytes / 4, arrow_most


def test_bad_files_are_one_clear_line(tmp_path):
    df = panel([4, 5, 3])
    shuffled = write(pd.concat([df.iloc[:2], df.iloc[4:], df.iloc[2:4]]), tmp_path / "s.parquet")
    with pytest.raises(
        ValueError, match=r"id: the rows of id 100 are not contiguous .* Sort the file"
    ):
        index_ids(shuffled, "store")
    swapped = df.copy()
    swapped.loc[[1, 2], "t"] = [2, 1]
    with pytest.raises(ValueError, match=r"time: column 't' is out of order at row 2 \(id 100"):
        index_ids(write(swapped, tmp_path / "u.parquet"), "store", "t")
    dup = df.copy()
    dup.loc[5, "t"] = dup.loc[4, "t"]
    with pytest.raises(ValueError, match=r"time: column 't' is a duplicate at row 5 \(id 101"):
        index_ids(write(dup, tmp_path / "d.parquet"), "store", "t")
    text = df.assign(a=df["a"].astype(str))
    with pytest.raises(ValueError, match=r"inputs: column 'a' has type (large_)?string; .*numeric"):
        PanelStream(write(text, tmp_path / "x.parquet"), ["a"], ["y"], batch_size=1, chunk_len=2)
    with pytest.raises(ValueError, match=r"targets: column 'nope' is not in"):
        PanelStream(write(df, tmp_path / "p.parquet"), ["a"], ["nope"], batch_size=1, chunk_len=2)
    with pytest.raises(ValueError, match=r"world_size: rank 0 of 4 gets no steps \(3 ids in all"):
        PanelStream(
            tmp_path / "p.parquet",
            ["a"],
            ["y"],
            id="store",
            batch_size=1,
            chunk_len=2,
            rank=0,
            world_size=4,
        )
    with pytest.raises(ValueError, match=r"path: .*neither .parquet nor .npy"):
        PanelStream(__file__, ["a"], ["y"], batch_size=1, chunk_len=2)


def test_missing_targets_are_masked_and_missing_inputs_refused(tmp_path):
    df = panel([6, 5])
    df.loc[3, "y"] = np.nan
    s = PanelStream(
        write(df, tmp_path / "p.parquet"), ["a"], ["y"], id="store", batch_size=1, chunk_len=20
    )
    (chunk,) = list(s)
    assert chunk.mask[0].tolist() == [True, True, False, True, True] + [True] * 4 + [False] * 11
    assert torch.isfinite(chunk.targets).all()
    df.loc[7, "a"] = np.inf
    s = PanelStream(
        write(df, tmp_path / "q.parquet"), ["a"], ["y"], id="store", batch_size=1, chunk_len=20
    )
    with pytest.raises(
        ValueError,
        match=r"inputs: column 'a' has 1 missing/non-finite value\(s\) in id 101 \(first at its step 1\)",
    ):
        list(s)


def _rank(rank: int, world: int, tmp: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        s = PanelStream(
            f"{tmp}/p.parquet",
            ["a", "b"],
            ["y"],
            id="store",
            batch_size=2,
            chunk_len=5,
            scale="fit",
            batch_rows=4,
        )
        n = len(list(s))
        out[rank] = (s.ids, s.rows, s.rows_read, n, s.scale.mean.tolist(), s.scale.std.tolist())
        out[f"door{rank}"] = _door_rank(f"{tmp}/d.parquet")
    finally:
        dist.destroy_process_group()


def _door_rank(path: str) -> tuple:
    """The --data streaming pieces on this rank: the refitted spec, the ids read, the chunks."""
    from tbptt.tabular.job import holdout
    from tbptt.tabular.panel import make_panel
    from tbptt.tabular.prepare import fit_spec
    from tbptt.tabular.streamed import forecast_stream, refit_spec

    p = make_panel(pd.read_parquet(path), id_col="store", time_col="date")
    n_train = holdout(p.lengths, 0.2)
    spec = fit_spec(p, "forecast", ["y"], ["promo"], [], n_train, 7)
    index = index_ids(path, "store")
    spec = refit_spec(path, index, spec, n_train, "store", "date")
    train = forecast_stream(path, index, spec, n_train, "store", "date", batch_size=2, chunk_len=8)
    n = len(list(train))
    return spec.to_dict(), train.ids_read, n, (train.rank, train.world_size)


def test_two_gloo_ranks_read_only_their_ids_and_share_the_scaling(tmp_path):
    df = panel([9, 3, 17, 4, 30, 2, 11, 6, 8])
    write(df, tmp_path / "p.parquet", row_group_size=4)
    with tempfile.TemporaryDirectory() as tmp:
        write(df, os.path.join(tmp, "p.parquet"), row_group_size=4)
        door_panel(os.path.join(tmp, "d.parquet"))
        out = mp.Manager().dict()
        mp.spawn(_rank, args=(2, tmp, out), nprocs=2, join=True)
    whole = df[["a", "b", "y"]].to_numpy(np.float64)
    index = index_ids(tmp_path / "p.parquet", "store")
    for r in (0, 1):
        ids, rows, read, _, mean, std = out[r]
        assert ids == shard_of(9, r, 2) and rows == index.rows(ids)
        assert read == 2 * (rows[1] - rows[0])  # the statistics pass + the chunks: its rows only
        np.testing.assert_allclose(mean, whole.mean(0), rtol=1e-12)
        np.testing.assert_allclose(std, whole.std(0), rtol=1e-12)
    assert out[0][3] == out[1][3]  # the same number of chunks on both ranks
    # tbptt train --data's streaming under 2 ranks: one scaling (merged), ids split, same chunks
    (spec0, ids0, n0, where0), (spec1, ids1, n1, where1) = out["door0"], out["door1"]
    assert where0 == (0, 2) and where1 == (1, 2)
    assert ids0 == [0, 1, 2] and ids1 == [3, 4, 5] and n0 == n1
    assert spec0 == spec1
    whole = door_panel(tmp_path / "d.parquet")
    from tbptt.tabular.job import holdout
    from tbptt.tabular.panel import make_panel
    from tbptt.tabular.prepare import fit_spec

    p = make_panel(pd.read_parquet(whole), id_col="store", time_col="date")
    want = fit_spec(p, "forecast", ["y"], ["promo"], [], holdout(p.lengths, 0.2), 7).to_dict()
    for key in ("mean", "sd", "sd_change"):
        for col, v in want[key].items():
            assert spec0[key][col] == pytest.approx(v, rel=1e-12), (key, col)


def test_string_ids_and_date_times_are_indexed(tmp_path):
    df = panel([4, 6, 3])
    df["store"] = df["store"].map({100: "north", 101: "south", 102: "east"})
    df["t"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(df["t"], unit="D")
    index = index_ids(write(df, tmp_path / "p.parquet"), "store", "t", batch_rows=5)
    assert index.ids.tolist() == ["north", "south", "east"]
    assert index.starts.tolist() == [0, 4, 10] and index.lengths.tolist() == [4, 6, 3]
    one = df[df["store"] == "south"].iloc[::-1]  # one sequence (no id), time reversed
    with pytest.raises(ValueError, match=r"time: column 't' is out of order at row 1"):
        index_ids(write(one, tmp_path / "o.parquet"), None, "t")


# -- tbptt train --data: a Parquet file above stream.STREAM_ROWS rows is streamed ---------------
def door_panel(path, ids: int = 6, seed: int = 0) -> str:
    """A forecast panel with a past covariate, dates, ids sorted (as a large file would be)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(ids):
        n = 40 + 5 * i
        t = np.arange(n)
        y = 5 + i + 0.05 * t + np.sin(2 * np.pi * t / 7) + 0.1 * rng.normal(size=n)
        frames.append(pd.DataFrame({
            "store": f"s{i}", "date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "y": y, "promo": (rng.random(n) < 0.2).astype(float),
        }))  # fmt: skip
    return write(pd.concat(frames, ignore_index=True), path, row_group_size=50)


def door_cfg(path, **kw):
    from tbptt.tabular.dataset import data_defaults
    from tbptt.train.config import RunConfig

    cfg = RunConfig(task="auto", data=str(path), target="y", id="store", time="date", **kw)
    return data_defaults(cfg).resolved()


@pytest.fixture
def streamed(monkeypatch):
    """Every Parquet file of more than 100 rows is streamed; the sample holds ``SAMPLE_ROWS``."""
    from tbptt.tabular import dataset, streamed

    monkeypatch.setattr(streamed, "STREAM_ROWS", 100)
    dataset._read.cache_clear()
    yield streamed
    dataset._read.cache_clear()


def test_streamed_job_equals_the_in_memory_preparation(tmp_path, streamed, monkeypatch):
    """With a sample that holds every id: the streaming pass refits the same scaling as the
    in-memory fit, and the streamed chunks are the in-memory training arrays, packed in order."""
    from tbptt.tabular.dataset import load_data
    from tbptt.tabular.job import WeightedStream, build_data_job, holdout
    from tbptt.tabular.prepare import fit_spec, forecast_arrays

    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 10**9)
    path = door_panel(tmp_path / "p.parquet")
    cfg = door_cfg(path, season=7)
    job = build_data_job(cfg)
    assert job.extra["streamed"] and "streamed: all 6 ids" in job.description["data"]
    ds = load_data(cfg)
    p = ds.panel
    n_train = holdout(p.lengths, cfg.val_fraction)
    want = fit_spec(p, "forecast", ds.targets, ds.features, ds.known, n_train, 7)
    got = job.extra["spec"]
    for key in ("mean", "sd", "sd_change"):
        for col, v in want.to_dict()[key].items():
            assert got[key][col] == pytest.approx(v, rel=1e-12), (key, col)
    arrays = forecast_arrays(p, want, n_train)
    xs, ys = [], []
    for a, n in zip(arrays, n_train):
        y = a["y"][:n].copy()
        y[n - 1, want.n_out :] = 0.0
        xs.append(torch.tensor(a["x"][:n], dtype=torch.float32))
        ys.append(torch.tensor(y, dtype=torch.float32))
    ref = list(WeightedStream(xs, ys, batch_size=cfg.batch_size, chunk_len=cfg.chunk_len))
    got_chunks = list(job.train)
    assert len(got_chunks) == len(ref)
    for g, w in zip(got_chunks, ref):
        assert torch.equal(g.reset, w.reset) and torch.equal(g.mask, w.mask)
        torch.testing.assert_close(g.inputs, w.inputs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g.targets, w.targets, rtol=1e-6, atol=1e-6)


def test_tbptt_train_streams_a_large_parquet_file(tmp_path, streamed, monkeypatch, capsys):
    from tbptt.cli import main

    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 120)  # 2 of the 6 ids in memory
    path = door_panel(tmp_path / "p.parquet")
    flags = ["--progress", "off", "--tensorboard", "off", "--updates", "6", "--eval-every", "3"]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    args = ["train", "--data", path, "--target", "y", "--id", "store", "--time", "date"]
    assert main([*args, *runs, "--name", "big", *flags]) == 0
    summary = json.loads((tmp_path / "runs" / "big" / "summary.json").read_text())
    assert (
        "streamed: all 6 ids (315 rows) train, validation and baselines on 2 evenly"
        in summary["data"]
    )
    assert summary["verdict"] and summary["scores"]["model"]["y"]["one_step"]["rmse"] > 0
    assert summary["config"]["members"] == 1  # a streamed file: one model, not the ensemble
    capsys.readouterr()
    assert main([*args, "--task", "regress", *runs, "--name", "c", *flags]) == 2
    err = capsys.readouterr().err
    assert "--task regress:" in err and "streaming trains --task forecast only" in err


def test_ids_sharing_a_row_group_read_it_once(tmp_path):
    from tbptt.tabular.stream import PanelTable
    from tbptt.tabular.streamed import iter_frames

    df = panel([3] * 40)  # 120 rows, row groups of 7: about 2 ids per group
    path = write(df, tmp_path / "p.parquet")
    index = index_ids(path, "store")
    table = PanelTable(path)
    frames = list(iter_frames(path, index, range(40), ["store", "a"], table))
    assert [f["store"].iloc[0] for _, f in frames] == list(range(100, 140))
    assert pd.concat([f for _, f in frames])["a"].tolist() == df["a"].tolist()
    assert table.groups_read == -(-120 // 7)  # 18 groups, each read once

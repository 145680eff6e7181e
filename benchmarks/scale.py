"""A 10^7-row Parquet panel: streamed (``tbptt.tabular.stream``) against read into memory.

Generates ``--ids`` x ``--steps`` rows of 5 columns (``id``, ``t``, ``x1``, ``x2``, ``y``;
1,000 x 10,000 = 10^7 rows by default) into ``--dir`` (a temporary folder unless given; the
file is reused when it is already there), then trains the same model for ``--updates`` updates
along two paths, each in its own process so that each peak RSS is its own:

- ``stream``: ``PanelStream`` (id index pass, streaming statistics pass, chunks packed on the
  fly; memory: the ids in flight and one row group);
- ``memory``: ``pandas.read_parquet`` of the four used columns, scaling fitted in memory, one
  tensor per id, ``tbptt.data.StreamBatcher``: the same chunks, the whole file in memory.

Reported per path: peak RSS (``VmHWM``) and the RSS after the imports (torch, pandas,
pyarrow), seconds to the first
optimizer update (from the start of reading the file), seconds for all updates, and one batch's
bytes ``B x L x (inputs + targets) x 4``. Model: ``nn.LSTM(3, hidden)`` + a linear head
predicting the next ``y`` from ``(x1, x2, y)``, ``TBPTT(k1=L)``, Adam.

    python benchmarks/scale.py [--ids 1000] [--steps 10000] [--batch 32] [--chunk 100]
        [--updates 20] [--row-group 100000] [--dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from tbptt import TBPTT, Engine, losses

INPUTS, TARGETS = ["x1", "x2", "y"], ["y"]


def generate(path: str, ids: int, steps: int, row_group: int) -> None:
    """Write the panel ``ids`` at a time (bounded memory): a seasonal AR(1) ``y`` per id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    per = max(1, row_group // steps)  # ids per write
    schema = pa.schema([(c, pa.int64()) for c in ("id", "t")] + [(c, pa.float64()) for c in INPUTS])
    t = np.arange(steps)
    with pq.ParquetWriter(path + ".part", schema) as w:
        for first in range(0, ids, per):
            n = min(per, ids - first)
            noise = rng.normal(size=(n, steps))
            x1 = np.sin(2 * np.pi * t / 24 + rng.uniform(0, 6, (n, 1)))  # (n, T)
            x2 = rng.normal(size=(n, steps)).cumsum(1) / 30
            y = 0.5 * x1 + 0.2 * x2 + 0.3 * noise
            cols = {
                "id": np.repeat(np.arange(first, first + n), steps),
                "t": np.tile(t, n),
                "x1": x1.ravel(),
                "x2": x2.ravel(),
                "y": y.ravel(),
            }
            w.write_table(pa.table(cols, schema=schema), row_group_size=row_group)
    os.replace(path + ".part", path)


class Net(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(len(INPUTS), hidden, batch_first=True)
        self.head = nn.Linear(hidden, len(TARGETS))

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, state = self.lstm(x, state)  # (B, L, H)
        return self.head(y), state  # (B, L, 1)


def memory_chunks(path: str, batch: int, chunk: int) -> Any:
    """The in-memory path: the whole file read with pandas, then StreamBatcher."""
    import pandas as pd

    from tbptt.data import StreamBatcher

    df = pd.read_parquet(path, columns=["id", *INPUTS])
    values = df[INPUTS].to_numpy(np.float64)
    values = (values - values.mean(0)) / values.std(0)  # (N, 3) the same scaling as stream's
    bounds = np.flatnonzero(np.diff(df["id"].to_numpy())) + 1
    del df
    xs, ys = [], []
    for part in np.split(values, bounds):
        xs.append(torch.tensor(part[:-1], dtype=torch.float32))  # (T - 1, 3)
        ys.append(torch.tensor(part[1:, 2:], dtype=torch.float32))  # (T - 1, 1)
    del values
    return StreamBatcher(xs, ys, batch_size=batch, chunk_len=chunk)


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux; reset by exec, unlike ``ru_maxrss``, which
    a child started by ``subprocess`` inherits from its parent), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(args: argparse.Namespace) -> dict[str, Any]:
    """One path, in this process: RSS, time to the first update, time for all of them."""
    import pandas  # noqa: F401  (both paths use the libraries: count them in the baseline)
    import pyarrow.parquet  # noqa: F401

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    if args.mode == "stream":
        from tbptt.tabular.stream import PanelStream

        chunks: Any = PanelStream(
            args.path,
            INPUTS,
            TARGETS,
            id="id",
            time="t",
            scale="fit",
            batch_size=args.batch,
            chunk_len=args.chunk,
        )
    else:
        chunks = memory_chunks(args.path, args.batch, args.chunk)
    t_ready = time.perf_counter() - t0
    model = Net(args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = Engine(model, losses.mse, TBPTT(args.chunk))
    first, losses_seen = None, []
    for c in chunks:
        for update in engine.feed(c.inputs, c.targets, reset=c.reset, mask=c.mask):
            opt.step()
            losses_seen.append(float(update.loss))
            first = first if first is not None else time.perf_counter() - t0
        if len(losses_seen) >= args.updates:
            break
    return {
        "mode": args.mode,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_imports_mb": round(rss_start, 1),
        "seconds_to_ready": round(t_ready, 2),
        "seconds_to_first_update": round(first or float("nan"), 2),
        "seconds_total": round(time.perf_counter() - t0, 2),
        "updates": len(losses_seen),
        "first_loss": round(losses_seen[0], 4),
        "last_loss": round(losses_seen[-1], 4),
        "batch_bytes": args.batch * args.chunk * (len(INPUTS) + len(TARGETS)) * 4,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ids", type=int, default=1_000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--row-group", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "tbptt-scale"))
    p.add_argument("--json", default=None)
    p.add_argument("--mode", choices=["stream", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:  # a child: one path
        print(json.dumps(train(args)))
        return
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"panel_{args.ids}x{args.steps}_rg{args.row_group}.parquet")
    if not os.path.exists(path):
        t = time.perf_counter()
        generate(path, args.ids, args.steps, args.row_group)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    out = {
        "rows": args.ids * args.steps,
        "file_mb": round(os.path.getsize(path) / 2**20, 1),
        "values_in_memory_mb": round(args.ids * args.steps * (len(INPUTS) + 1) * 8 / 2**20, 1),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    for mode in ("stream", "memory"):
        child = [sys.executable, __file__, *sys.argv[1:], "--mode", mode, "--path", path]
        run = subprocess.run(child, capture_output=True, text=True, check=True)
        out[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

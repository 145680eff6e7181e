"""Full BPTT with and without activation checkpointing: peak memory and time against T.

``Engine(..., rule=BPTT(), checkpoint="sqrt")`` keeps only the state entering each segment of
ceil(sqrt(T)) steps and recomputes a segment's activations during the backward (Gruslys et al.
2016, "Memory-Efficient Backpropagation Through Time"; Chen et al. 2016): peak memory grows like
sqrt(T) instead of T, for about one extra forward pass of time. The gradient is the same.

Memory is measured on CPU by :class:`LiveTensorMeter`: the peak bytes of the tensors created
during one update (forward, backward, recomputation: activations kept for the backward, the
recomputed segment, gradients, outputs), tracked through a TorchDispatchMode with a finalizer on
each storage. A ``saved_tensors_hooks`` meter (tests/test_engine.py ``SavedTensorMeter``) would
not do here: torch.utils.checkpoint stores the recomputed activations through its own hooks,
which hide them from an outer one, so it would miss the largest part of the checkpointed peak.
On CUDA the peak is ``torch.cuda.max_memory_allocated`` over the update.

    python benchmarks/checkpoint_memory.py [--lengths 1000 2000 4000 8000 16000]
        [--batch 8] [--hidden 128] [--device cpu] [--repeats 3] [--json out.json]

Model: nn.LSTM(1, hidden) + a linear head to one output, float32, MSE at every step, one
stream of T steps and one BPTT update (``feed`` then ``flush``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tbptt import BPTT, Engine, losses


class LiveTensorMeter(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the ``with`` block and still alive.

    Every op's outputs are recorded by storage (views and aliases count once); a finalizer on the
    storage subtracts its bytes when the storage is freed. Storages made before the block (the
    inputs, the parameters) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._seen:
                continue
            size = storage.nbytes()
            self._seen.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, size)
        return out


class Model(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        y, state = self.lstm(x, state)  # (B, L, H)
        return self.head(y), state  # (B, L, 1)


@dataclass
class Row:
    length: int
    checkpoint: str
    peak_bytes: int
    seconds: float

    @property
    def per_sqrt_t(self) -> float:
        return self.peak_bytes / math.sqrt(self.length)

    @property
    def per_t(self) -> float:
        return self.peak_bytes / self.length


def one_update(
    model: nn.Module, x: Tensor, y: Tensor, checkpoint: str | None, reset: Tensor | None = None
) -> None:
    """One BPTT update over the whole stream (gradients left in ``.grad``)."""
    engine = Engine(model, losses.mse, BPTT(), checkpoint=checkpoint, check_inputs=False)
    for _ in engine.feed(x, y, reset):
        pass
    for _ in engine.flush():
        pass


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated while ``fn`` runs, beyond what was allocated before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    meter = LiveTensorMeter()
    with meter:
        fn()
    return meter.peak


def measure(
    length: int,
    checkpoint: str | None,
    *,
    batch: int = 8,
    hidden: int = 128,
    device: str = "cpu",
    repeats: int = 3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Row:
    """Peak memory (one metered run) and the best time of ``repeats`` unmetered runs."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = Model(hidden).to(dev, dtype)
    x = torch.randn(batch, length, 1, device=dev, dtype=dtype)  # (B, T, 1)
    y = torch.randn(batch, length, 1, device=dev, dtype=dtype)
    model.zero_grad(set_to_none=True)
    peak = peak_bytes(lambda: one_update(model, x, y, checkpoint), dev)
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        one_update(model, x, y, checkpoint)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    return Row(length, checkpoint or "none", peak, min(times) if times else math.nan)


def table(rows: list[Row]) -> str:
    plain = {r.length: r for r in rows if r.checkpoint == "none"}
    head = (
        f"{'T':>7}  {'checkpoint':<10} {'peak bytes':>13} {'bytes/T':>9} {'bytes/sqrt(T)':>14}"
        f" {'memory vs plain':>16} {'time':>8} {'time vs plain':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        base = plain.get(r.length)
        mem = f"{r.peak_bytes / base.peak_bytes:.3f}" if base else "-"
        tim = f"{r.seconds / base.seconds:.2f}" if base else "-"
        lines.append(
            f"{r.length:>7}  {r.checkpoint:<10} {r.peak_bytes:>13,} {r.per_t:>9.0f}"
            f" {r.per_sqrt_t:>14.0f} {mem:>16} {r.seconds:>7.3f}s {tim:>14}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for length in args.lengths:
        for checkpoint in (None, "sqrt"):
            kw = dict(batch=args.batch, hidden=args.hidden, device=args.device)
            rows.append(measure(length, checkpoint, repeats=args.repeats, **kw))  # type: ignore[arg-type]
    print(
        f"nn.LSTM(1, {args.hidden}) + head, batch {args.batch}, {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)


if __name__ == "__main__":
    main()

"""How the engine runs one update's steps: the model over a chunk with its losses, and the
backward window of a truncation rule (docs/semantics.md §2 chunks and the cut, §3 stored and
recompute). :class:`tbptt.engine.Engine` owns the stream and the update; these are its runs.

- k2 <= k1 and BPTT (:meth:`WindowRuns._run_window`): the steps before the cut run forward
  only, the rest with the graph.
- k2 > k1, ``mode="recompute"`` (:meth:`WindowRuns._run_recompute`): the window is re-run from
  the saved state entering the cut, with the current parameters.
- k2 > k1, ``mode="stored"`` (:meth:`WindowRuns._run_stored`): the graph of earlier chunks is
  kept, broken where a later window starts; each chunk runs on its own copy of the weights
  (:class:`_Rebind`), and the gradient is carried across the breaks newest first
  (:meth:`WindowRuns._cross_breaks`).

>>> x = torch.arange(6.0).view(1, 6, 1)
>>> c = Chunk(x, x, None, None)
>>> _slice(c, 2, 4).inputs.flatten().tolist(), _cat([_slice(c, 0, 2), _slice(c, 2, 6)]).length
([2.0, 3.0], 6)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from tbptt import state as st
from tbptt.chunk import Chunk
from tbptt.state import State
from tbptt.truncation import TruncationRule
from tbptt.unroll import Break, RunResult, Unroller

__all__ = ["WindowRuns"]


class WindowRuns:
    """The runs of :class:`tbptt.engine.Engine` (a base class: it holds the fields below)."""

    model: Any
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    rule: TruncationRule
    unroller: Unroller
    checkpoint: int | Literal["sqrt"] | None
    state: State  # the state entering the next step of the stream
    _scales: dict[int, float]
    _breaks: list[Break]
    _window: Chunk | None
    _window_start: int
    _window_state: State
    _history: list[tuple[int, Chunk, dict[str, Tensor], dict[str, Tensor]]]

    def _start_state(self, batch: int) -> State:
        """The initial state, expanded to the batch (``None``: the model makes zeros)."""
        init = self.unroller.initial(batch)
        if init is None:
            return None
        self.unroller.check_state(init, batch, "init_state")
        dims = self.unroller.batch_dims(init)
        return st.tree_map(
            lambda t, d: t.expand(*t.shape[:d], batch, *t.shape[d + 1 :]), init, dims
        )

    def _run(self, chunk: Chunk, start: int, state: State, **plan: Any) -> RunResult:
        checkpoint = self.checkpoint
        if checkpoint == "sqrt":
            checkpoint = max(1, math.ceil(math.sqrt(chunk.length)))
        x, targets, reset, _ = chunk
        run = self.unroller.run(
            x,
            targets,
            reset,
            start,
            state,
            self._losses,
            scales=self._scales,
            checkpoint=checkpoint,
            **plan,
        )
        if start == 0:  # the model's state convention, checked once per stream
            self.unroller.check_state(
                run.state, chunk.batch_size, "the state returned by the model"
            )
        return run

    def _losses(self, outputs: Tensor, targets: Tensor) -> Tensor:
        losses = self.loss_fn(outputs, targets)
        if not isinstance(losses, Tensor) or losses.shape != targets.shape[:2]:
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(
                f"loss_fn must return one loss per step, shape (B, L) = {tuple(targets.shape[:2])}, "
                f"got {got}. Use reduction='none' (see tbptt.losses.cross_entropy / mse)."
            )
        return losses

    def _run_window(self, chunk: Chunk, a: int, b: int, cut: int) -> tuple[Tensor, Tensor, int]:
        """k2 <= k1 and BPTT: [a, cut) forward only, then [cut, b) with the graph."""
        k = cut - a
        state = self.state if a == 0 else st.detach(self.state)  # a learned init_state trains
        runs = []
        if k > 0:
            with torch.no_grad():
                runs.append(self._run(_slice(chunk, 0, k), a, state, cut=True))
            state = runs[0].state
        runs.append(self._run(_slice(chunk, k, chunk.length) if k else chunk, cut, state, cut=True))
        self.state = st.detach(runs[-1].state)
        if len(runs) == 1:
            return runs[0].outputs, runs[0].losses, k
        return torch.cat([r.outputs for r in runs], 1), torch.cat([r.losses for r in runs], 1), k

    def _run_recompute(self, chunk: Chunk, a: int, b: int, cut: int) -> tuple[Tensor, Tensor, int]:
        """k2 > k1, recompute: re-run [cut, b) from the saved state entering ``cut``."""
        window = chunk if self._window is None else _cat([self._window, chunk])
        assert self._window_start == cut, (self._window_start, cut)
        state = self._start_state(chunk.batch_size) if cut == 0 else self._window_state
        next_cut = self.rule.cut(b, b + (self.rule.next_length(b) or 1))
        run = self._run(window, cut, state, saves=[next_cut], cut=True)
        self.state = st.detach(run.state)
        self._window_state = run.saved[next_cut]
        self._window, self._window_start = _slice(window, next_cut - cut, window.length), next_cut
        return run.outputs[:, a - cut :], run.losses[:, a - cut :], 0

    def _run_stored(
        self,
        chunk: Chunk,
        a: int,
        b: int,
        weights: dict[str, Tensor] | None = None,
        rng: dict[str, Tensor] | None = None,
        replace: dict[int, State] | None = None,
    ) -> tuple[Tensor, Tensor, int]:
        """k2 > k1, stored: keep the graph; break it where a later update's window will start.

        Each chunk runs on its own copy of the parameters (``weights``: their values, when
        replaying a saved stream), so optimizer steps do not disturb the retained graph. The
        RNG state it ran with is kept too, so a replay draws the same dropout masks.
        """
        future_cuts, c = [], b
        while (p := self.rule.cut(c, c + 1)) < b:
            future_cuts.append(p)
            c += self.rule.next_length(c) or 1
        params = dict(self.model.named_parameters())
        if weights is None:
            weights = {n: p.detach().clone() for n, p in params.items()}
        snapshot = {n: _Rebind.apply(params[n], w) for n, w in weights.items()}
        device = chunk.inputs.device
        with torch.random.fork_rng(
            [device] if device.type == "cuda" else [], enabled=rng is not None
        ):
            if rng is not None:  # replaying: the RNG as it was when this chunk first ran
                torch.set_rng_state(rng["cpu"])
                if "cuda" in rng:
                    torch.cuda.set_rng_state(rng["cuda"], device)
            else:
                rng = {"cpu": torch.get_rng_state()}
                if device.type == "cuda":
                    rng["cuda"] = torch.cuda.get_rng_state(device)
            breaks = [p for p in future_cuts if p >= a]
            run = self._run(chunk, a, self.state, breaks=breaks, params=snapshot, replace=replace)
        self._breaks.extend(run.breaks)
        self._history.append((a, chunk, weights, rng))
        self.state = run.state  # still attached: later windows backpropagate into this chunk
        return run.outputs, run.losses, 0

    def _cross_breaks(self, cut: int) -> None:
        """Stored mode: carry the gradient across the breaks inside the window, newest first."""
        for brk in reversed(self._breaks):
            if brk.pos <= cut:
                break
            pairs = [
                (before, leaf.grad)
                for before, leaf in zip(st.leaves(brk.before), st.leaves(brk.leaf))
                if leaf.grad is not None and before.requires_grad
            ]
            if pairs:
                outs, grads = zip(*pairs)
                torch.autograd.backward(list(outs), list(grads), retain_graph=True)
        for brk in self._breaks:
            for leaf in st.leaves(brk.leaf):
                leaf.grad = None


class _Rebind(torch.autograd.Function):
    """Forward: ``values`` (a parameter's value when a chunk ran). Backward: into ``param``."""

    @staticmethod
    def forward(ctx: Any, param: Tensor, values: Tensor) -> Tensor:
        return values.view_as(values)  # no copy: ``values`` is the chunk's own clone already

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def _slice(chunk: Chunk, lo: int, hi: int) -> Chunk:
    x, y, reset, mask = (None if t is None else t[:, lo:hi] for t in chunk)
    assert x is not None and y is not None
    return Chunk(x, y, reset, mask)


def _cat(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    inputs, targets = (torch.cat(parts, dim=1) for parts in list(zip(*chunks))[:2])
    reset, mask = (
        None
        if all(getattr(c, name) is None for c in chunks)
        else torch.cat([getattr(c.filled(), name) for c in chunks], dim=1)
        for name in ("reset", "mask")
    )
    return Chunk(inputs, targets, reset, mask)

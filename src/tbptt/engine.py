"""The engine: run a recurrent model over a stream chunk by chunk following a truncation rule.

It owns the carried state, the graph cuts and the backward window; the user owns the loop and
the optimizer (like accelerate). Semantics: docs/semantics.md
(§2 chunks and the cut, §3 stored and recompute). How an update runs its window (k2 <= k1,
recompute, stored) is :mod:`tbptt.engine_runs`.

>>> import torch
>>> from torch import nn
>>> from tbptt import Engine, TBPTT, losses
>>> torch.manual_seed(0) and None
>>> lstm = nn.LSTM(1, 8, batch_first=True)
>>> head = nn.Linear(8, 1)
>>> class Model(nn.Module):
...     def __init__(self):
...         super().__init__(); self.lstm, self.head = lstm, head
...     def forward(self, x, state):
...         y, state = self.lstm(x, state)
...         return self.head(y), state                       # (B, T, 1)
>>> model = Model()
>>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
>>> engine = Engine(model, losses.mse, TBPTT(k1=10, k2=20))
>>> x = torch.sin(torch.linspace(0, 20, 101)).view(1, -1, 1)  # (B=1, T=101, F=1)
>>> for update in engine.feed(x[:, :-1], x[:, 1:]):        # 10 updates of 10 steps each
...     opt.step()
>>> update.start, update.stop, update.cut                     # the last one reached 20 back
(90, 100, 80)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from tbptt import online
from tbptt import state as st
from tbptt.chunk import Chunk
from tbptt.compiled import Compile
from tbptt.engine_checks import check_options, check_piece
from tbptt.engine_runs import WindowRuns, _cat, _slice
from tbptt.state import State
from tbptt.truncation import TruncationRule
from tbptt.unroll import Break, Path, Unroller

LossFn = Callable[[Tensor, Tensor], Tensor]
Mode = Literal["stored", "recompute"]


@dataclass
class Update:
    """What one update did. Gradients are in the parameters' ``.grad``; nothing is applied.

    ``loss`` is the trained loss (the mean over the injected, unmasked steps, as a detached
    scalar); ``report_sum / report_count`` cover every unmasked step of the chunk, trained or
    not (for metrics such as bits per char).
    """

    index: int  # updates since the engine was made
    start: int  # chunk [start, stop) in stream steps
    stop: int
    cut: int  # the state entering this step was held constant
    loss: Tensor  # () detached
    trained_count: Tensor  # () number of injected unmasked steps
    report_sum: Tensor  # () sum of the losses of every unmasked step in the chunk
    report_count: Tensor  # ()
    outputs: Tensor  # (B, stop - start, ...) detached model outputs of the chunk
    lr_scale: float = 1.0  # the rule asks for the learning rate times this (variable length)
    finite: bool = True  # False: the loss was NaN/inf and no backward was run


class Engine(WindowRuns):
    """Train a recurrent model on a stream with TBPTT(k1, k2) or BPTT, inside your own loop.

    Args:
        model: ``model(x, state) -> (y, state)`` over ``x`` (B, L, ...) on the chunk path
            (nn.LSTM/GRU/RNN with batch_first=True, or a module wrapping them), or over one step
            ``x_t`` (B, ...) on the step path (nn.LSTMCell/GRUCell/RNNCell, or your function).
        loss_fn: ``loss_fn(y, targets) -> (B, L)`` per-step losses (see :mod:`tbptt.losses`).
        rule: a truncation rule: ``TBPTT(k1, k2)``, ``BPTT()``, or another
            :class:`~tbptt.truncation.TruncationRule`.
        mode: for k2 > k1, ``"stored"`` backpropagates through the retained graph of the last
            k2 steps (cost F(k1) + B(k2) per update); ``"recompute"`` re-runs the window from the
            saved state with the current parameters (F(k2) + B(k2), less memory).
        path: ``"chunk"``, ``"step"``, or ``"auto"`` (step for cells, chunk otherwise).
        init_state: initial state (see :class:`tbptt.unroll.Unroller`); ``None`` = zeros. It
            must have the structure of the state the model returns (checked once, at the first
            update); nn.LSTM/GRU/RNN states are ``(num_layers, B or 1, H)`` even with
            batch_first=True, ``(h, c)`` for nn.LSTM.
        state_batch_dim: the batch dim of the state's leaves, if not the default (1 for the
            3-D leaves of models containing nn.LSTM/GRU/RNN, else 0).
        checkpoint: activation checkpointing for long windows (Gruslys et al. 2016): keep only
            the state every this many steps and recompute the rest in the backward; ``"sqrt"``
            picks ceil(sqrt(window length)) for O(sqrt(T)) memory. The gradient is unchanged.
        reduction: ``"mean"``: an update's loss is the mean over its injected, unmasked steps;
            ``"sum"``: their sum (what unbiased estimators such as ARTBP need, since their chunks
            have random lengths). A rule with ``needs_sum_reduction = True`` (ARTBP) refuses
            ``"mean"``.
        zero_grad: set the parameters' gradients to None before each update's backward, so that
            ``.grad`` holds exactly that update's gradient (False: accumulate).
        check_inputs: reject NaN/inf inputs (one host sync per feed).
        compile: the step path's loop through ``torch.compile`` (:mod:`tbptt.compiled`):
            ``"auto"`` compiles a block shape once its eager runs took ``AUTO_AFTER_SECONDS``,
            ``True`` at once, ``False`` never. Gradients equal the eager ones up to rounding.

    Feed the stream in pieces of any length: ``feed`` returns an iterator that runs each
    complete chunk and yields its :class:`Update` after the backward; step your optimizer in the
    loop body. ``flush`` ends the stream (the last, shorter chunk gets its update) and starts a
    new one from the initial state.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: LossFn,
        rule: TruncationRule,
        *,
        mode: Mode = "stored",
        path: Path = "auto",
        init_state: State | Callable[[int], State] = None,
        state_batch_dim: int | None = None,
        checkpoint: int | Literal["sqrt"] | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        zero_grad: bool = True,
        check_inputs: bool = True,
        compile: Compile = "auto",
    ) -> None:
        checkpoint = check_options(
            model, loss_fn, rule, mode, checkpoint, reduction, zero_grad, check_inputs
        )
        self.unroller = Unroller(model, path, init_state, state_batch_dim, compile)
        self._online = _online_layers(model, rule, self.unroller.path)
        self.model = model
        self.loss_fn = loss_fn
        self.rule = rule
        self.mode: Mode = mode
        self.checkpoint = checkpoint
        self.reduction = reduction
        self.zero_grad = zero_grad
        self.check_inputs = check_inputs
        self.updates_done = 0
        self._params = self._parameters()  # what zero_grad clears
        self._new_stream()

    # -- the stream ------------------------------------------------------------------------------
    def _new_stream(self) -> None:
        self.position = 0  # stream steps already run
        self.state: State = None  # the state entering step `position`
        self._batch_size: int | None = None
        self._pending: list[Chunk] = []  # fed but not yet run
        self._length: int | None = None  # length of the chunk starting at `position`, once drawn
        self._breaks: list[Break] = []  # stored mode: graph breaks a later window still reaches
        self._window: Chunk | None = None  # recompute mode: inputs of [window_start, position)
        self._window_start = 0
        self._window_state: State = None  # recompute mode: state entering window_start
        self._scales: dict[int, float] = {}  # the current chunk's gradient factors (ARTBP)
        # stored mode: the chunks a later window reaches, with their weights and RNG state
        self._history: list[tuple[int, Chunk, dict[str, Tensor], dict[str, Tensor]]] = []
        self._replay_from = 0  # stored mode: the oldest step a later window reaches

    def reset_stream(self) -> None:
        """Forget the stream without an update: the next feed starts a new one."""
        self._new_stream()

    @property
    def stats(self) -> dict[str, Any]:
        """How the model has been run so far: which fast paths are on, and why runs were split.

        ``path``: ``"chunk"`` (one module call per run of steps) or ``"step"``; ``updates``;
        ``runs``: module calls on the chunk path, step loops on the step path; ``split_by``: why
        runs ended inside a chunk, with counts (``reset``; ``window break``, stored mode with
        k2 > k1; ``ARTBP factor``, on the chunk path; ``checkpoint segment``; ``saved state``,
        recompute mode; ``replayed state``, after loading a checkpoint); ``compiled``: the step
        path's :attr:`tbptt.compiled.CompiledSteps.stats` (None on the chunk path, which is one
        fused call per run already); ``online``: under an online rule (:class:`tbptt.online.Online`)
        the number of online layers and what is exact (None otherwise).

        >>> from torch import nn
        >>> from tbptt import TBPTT, losses
        >>> engine = Engine(nn.GRU(1, 2, batch_first=True), losses.mse, TBPTT(4))
        >>> reset = torch.zeros(1, 8, dtype=torch.bool)
        >>> reset[0, 6] = True                       # a sequence ends inside the 2nd chunk
        >>> for _ in engine.feed(torch.zeros(1, 8, 1), torch.zeros(1, 8, 2), reset):
        ...     pass
        >>> {k: engine.stats[k] for k in ("path", "updates", "runs", "split_by")}
        {'path': 'chunk', 'updates': 2, 'runs': 3, 'split_by': {'reset': 1}}
        """
        unroller = self.unroller
        return {
            "path": unroller.path,
            "updates": self.updates_done,
            "runs": unroller.runs,
            "split_by": dict(unroller.split_by),
            "compiled": None if unroller.steps is None else unroller.steps.stats,
            "online": {"layers": len(self._online), "exact": online.EXACT}
            if self._online
            else None,
        }

    @property
    def batch_size(self) -> int | None:
        """Rows of the current stream (None until its first non-empty piece is fed)."""
        return self._batch_size

    @property
    def pending_steps(self) -> int:
        """Steps fed but not yet run (they wait for their chunk to be complete)."""
        return sum(c.length for c in self._pending)

    def feed(
        self,
        inputs: Tensor,
        targets: Tensor,
        reset: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Iterator[Update]:
        """Append steps to the stream; iterate the result to run every completed chunk.

        inputs: (B, T, ...); targets: (B, T, ...); reset, mask: (B, T) bool (or integers 0/1).
        An empty piece (B, 0) is legal and changes nothing (docs/semantics.md §1).
        """
        chunk = self._validate(Chunk(inputs, targets, reset, mask))
        if self._chunk_ready():
            raise RuntimeError(
                "The iterator returned by a previous feed() was not run to its end, so its chunks "
                "were never trained. Loop over it: `for update in engine.feed(...): opt.step()`."
            )
        if chunk.length:  # an empty (B, 0) piece is legal and changes nothing
            self._pending.append(chunk)
        return self._run_pending(final=False)

    def flush(self) -> Iterator[Update]:
        """End the stream: run the remaining steps as a last (shorter) chunk, then start anew."""
        return self._run_pending(final=True)

    def _chunk_ready(self) -> bool:
        if not self._pending:
            return False
        if self._length is None:
            self._length = self.rule.next_length(self.position)
        return self._length is not None and self.pending_steps >= self._length

    def _run_pending(self, final: bool) -> Iterator[Update]:
        while self._chunk_ready() or (final and self._pending):
            yield self._update(self._take(self._length))
        if final:
            self._new_stream()

    def _take(self, n: int | None) -> Chunk:
        """Pop the first ``n`` pending steps (all when None) as one chunk."""
        pieces, got = [], 0
        while self._pending and (n is None or got < n):
            c = self._pending.pop(0)
            if n is not None and got + c.length > n:
                k = n - got
                self._pending.insert(0, _slice(c, k, c.length))
                c = _slice(c, 0, k)
            pieces.append(c)
            got += c.length
        return _cat(pieces)

    def _validate(self, chunk: Chunk) -> Chunk:
        chunk = check_piece(chunk, self._batch_size, self.check_inputs)
        if chunk.inputs.shape[1]:  # an empty piece does not fix the stream's batch size
            self._batch_size = chunk.inputs.shape[0]
        return chunk

    # -- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stream exactly: position, carried state, steps
        fed but not run, the recompute window, and (stored mode) the chunks whose graph a later
        window still reaches, with the weights they ran on. Tensors and plain Python only, so
        ``torch.load(..., weights_only=True)`` reads it back."""
        stored = bool(self.rule.lookback) and self.mode == "stored"
        replay_state = None
        if stored and self._replay_from > 0:
            (brk,) = [b for b in self._breaks if b.pos == self._replay_from]
            replay_state = st.detach(brk.before)
        rule_state = getattr(self.rule, "state_dict", None)
        return {
            "format": 1,
            "rule": repr(self.rule),
            "mode": self.mode,
            "position": self.position,
            "updates_done": self.updates_done,
            "batch_size": self._batch_size,
            "length": self._length,
            "state": None if stored else st.detach(self.state),
            "pending": [list(c) for c in self._pending],
            "window": None if self._window is None else list(self._window),
            "window_start": self._window_start,
            "window_state": self._window_state,
            "replay_from": self._replay_from,
            "replay_state": replay_state,
            "history": [(a, list(c), w, rng) for a, c, w, rng in self._history],
            "rule_state": rule_state() if callable(rule_state) else None,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`state_dict` (same rule and mode)."""
        if not isinstance(saved, dict) or saved.get("format") != 1:
            raise ValueError("saved is not an Engine.state_dict() (missing 'format': 1).")
        for key, mine in (("rule", repr(self.rule)), ("mode", self.mode)):
            if saved[key] != mine:
                raise ValueError(
                    f"The saved stream was run with {key}={saved[key]}, this engine has {key}={mine}. "
                    "Build the engine with the same rule and mode to resume it."
                )
        self._new_stream()
        self.updates_done = saved["updates_done"]
        self._batch_size = saved["batch_size"]
        self._pending = [Chunk(*t) for t in saved["pending"]]
        self._window = None if saved["window"] is None else Chunk(*saved["window"])
        self._window_start, self._window_state = saved["window_start"], saved["window_state"]
        if saved["rule_state"] is not None:
            self.rule.load_state_dict(saved["rule_state"])  # type: ignore[attr-defined]
        if not saved["history"]:
            self.position, self.state, self._length = (
                saved["position"],
                saved["state"],
                saved["length"],
            )
            return
        # Stored mode: rebuild the retained graph by re-running those chunks on their weights and
        # with the RNG as it was (the same dropout masks). The first chunk may start before
        # `start`: it runs whole (its RNG draws depend only on shapes) from a stand-in state,
        # and continues from the saved state at `start`.
        start = self._replay_from = saved["replay_from"]
        at_start = saved["replay_state"] if start else self._start_state(saved["batch_size"])
        self.state = at_start
        for a, tensors, weights, rng in saved["history"]:
            replace = {start: at_start} if a < start else None
            with torch.enable_grad():
                self._run_stored(Chunk(*tensors), a, a + tensors[0].shape[1], weights, rng, replace)
        self.position, self._length = saved["position"], saved["length"]

    # -- one update ----------------------------------------------------------------------------
    def _update(self, chunk: Chunk) -> Update:
        a, b = self.position, self.position + chunk.length
        cut = self.rule.cut(a, b)
        self._scales = self.rule.grad_scales(a, b)
        for layer in online.online_layers(self.model):  # another engine may share the model
            layer.online = bool(self._online)
        if a == 0:
            self.state = self._start_state(chunk.batch_size)
            self.unroller.check_init(chunk.inputs)  # after the online switch: the same state
        if self.zero_grad:
            for p in self._params:
                p.grad = None
        stored = bool(self.rule.lookback) and self.mode == "stored"
        if stored:
            outputs, losses, first = self._run_stored(chunk, a, b)
        elif self.rule.lookback:
            outputs, losses, first = self._run_recompute(chunk, a, b, cut)
        else:
            outputs, losses, first = self._run_window(chunk, a, b, cut)
        injected = _injected(chunk, first)  # (B, L) bool; None: every step
        total, count = _masked_sum(losses, injected)
        loss = total
        if self.reduction == "mean":
            loss = total / (losses.numel() if injected is None else count.clamp(min=1))
        if injected is chunk.mask:  # every reported step was trained
            report_sum, report_count = total.detach(), count
        else:
            report_sum, report_count = _masked_sum(losses.detach(), chunk.mask)
        finite = math.isfinite(loss.item())  # one host sync, no kernel
        if finite and loss.requires_grad:
            loss.backward(retain_graph=stored)
            if stored:
                self._cross_breaks(cut)
        if stored:  # drop the graph that no later window reaches
            self._replay_from = self.rule.cut(b, b + 1)
            self._breaks = [brk for brk in self._breaks if brk.pos >= self._replay_from]
            self._history = [h for h in self._history if h[0] + h[1].length > self._replay_from]
        self.position, self._length = b, None
        self.updates_done += 1
        return Update(
            index=self.updates_done - 1,
            start=a,
            stop=b,
            cut=cut,
            loss=loss.detach(),
            trained_count=count,
            report_sum=report_sum,
            report_count=report_count,
            outputs=outputs,
            lr_scale=self.rule.lr_scale(a, b),
            finite=finite,
        )

    def _parameters(self) -> list[Tensor]:
        params: list[Tensor] = (
            list(self.model.parameters()) if isinstance(self.model, nn.Module) else []
        )
        init = self.unroller.init_state
        if init is not None and not callable(init):
            params += [t for t in st.leaves(init) if t.requires_grad]
        return params


def _online_layers(model: Any, rule: TruncationRule, path: str) -> list[online.OnlineLayer]:
    """The model's online layers when ``rule`` asks for online gradients (else none)."""
    if not getattr(rule, "online", False):
        return []
    layers = online.online_layers(model)
    if not layers or path != "chunk":
        raise ValueError(
            f"rule={rule!r} trains with exact online gradients, which need a model with minGRU or "
            f"LRU layers (tbptt.models.MinGRU / LRU) run on the chunk path; got "
            f"{type(model).__name__} with {len(layers)} such layers on the {path} path. Use "
            "TBPTT(k1) for other models."
        )
    return layers


def _masked_sum(losses: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The sum of ``losses`` (B, L) where ``mask`` (None: everywhere), and how many steps."""
    if mask is None:
        return losses.sum(), losses.new_full((), losses.numel(), dtype=torch.long)
    return torch.where(mask, losses, 0.0).sum(), mask.sum()  # where: NaN on padding stays out


def _injected(chunk: Chunk, first: int) -> Tensor | None:
    """The steps whose loss is trained: unmasked, from ``first`` on (None: every step)."""
    if first == 0:
        return chunk.mask
    after = torch.arange(chunk.length, device=chunk.inputs.device) >= first  # (L,)
    return after.expand(chunk.batch_size, -1) if chunk.mask is None else chunk.mask & after

"""Running a recurrent model over a piece of a stream: the chunk path and the step path.

The *chunk path* calls the module once per run of steps between events (a reset in any row, a
graph cut, a saved state), so nn.LSTM/GRU/RNN get one cuDNN call per run. The *step path* calls a
cell or step function once per step (nn.LSTMCell/GRUCell/RNNCell, ``f(x_t, state)``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.func import functional_call

from tbptt import state as st
from tbptt.compiled import Compile, CompiledSteps, scale_grad
from tbptt.online import graph_cut
from tbptt.state import State
from tbptt.truncation import is_int

Path = Literal["auto", "chunk", "step"]


def _contains_rnn(model: Any) -> bool:
    return isinstance(model, nn.Module) and any(isinstance(m, nn.RNNBase) for m in model.modules())


def check_model(model: Any) -> None:
    """Reject recurrent layers that cannot carry a state forward across chunks."""
    if not callable(model):
        raise TypeError(
            f"model must be callable as model(x, state) -> (y, state), got {type(model).__name__}."
        )
    if not isinstance(model, nn.Module):
        return
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase) and m.bidirectional:
            where = f"model.{name}" if name else "model"
            raise ValueError(
                f"{where} is a bidirectional {type(m).__name__}: its backward direction reads the "
                "future of the stream, so its state cannot be carried from chunk to chunk. "
                "Use bidirectional=False for stateful TBPTT (or run it on whole sequences)."
            )
    for name, m in model.named_modules():  # wrapped layers too: with k1 == B nothing else fails
        if isinstance(m, nn.RNNBase) and not m.batch_first:
            where = f"model.{name}" if name else "model"
            kind = type(m).__name__
            raise ValueError(
                f"{where} is a {kind} with batch_first=False, but tbptt feeds (B, T, ...) "
                f"tensors: it would train with time and batch swapped. Build it with "
                f"{kind}(..., batch_first=True)."
            )


def check_rnn_state(model: Any, state: State, batch_size: int, what: str) -> None:
    """For a bare nn.LSTM/GRU/RNN, ``state`` must be its own layout: ``(h, c)`` for nn.LSTM,
    ``h`` otherwise, each leaf (num_layers, B or 1, H). Raise a ValueError naming ``what``."""
    if not isinstance(model, nn.RNNBase) or state is None:
        return
    kind, layers, hidden = type(model).__name__, model.num_layers, model.hidden_size
    if isinstance(model, nn.LSTM):
        sizes = [model.proj_size or hidden, hidden]
        leaves = list(state) if isinstance(state, (tuple, list)) and len(state) == 2 else None
        want = f"a pair (h, c) of shapes ({layers}, B, {sizes[0]}) and ({layers}, B, {hidden})"
        fix = "Pass init_state=(h0, c0)"
    else:
        sizes, leaves = [hidden], [state] if isinstance(state, Tensor) else None
        want = f"one tensor h of shape ({layers}, B, {hidden})"
        fix = "Pass init_state=h0"
    ok = leaves is not None and all(
        isinstance(t, Tensor)
        and t.dim() == 3
        and t.shape[0] == layers
        and t.shape[2] == size
        and t.shape[1] in (batch_size, 1)
        for t, size in zip(leaves, sizes)
    )
    if ok:
        return
    if isinstance(state, Tensor):
        got = f"a tensor of shape {tuple(state.shape)}"
    elif isinstance(state, (tuple, list)):
        got = (
            f"a {type(state).__name__} of shapes {[tuple(getattr(t, 'shape', ())) for t in state]}"
        )
    else:
        got = type(state).__name__
    raise ValueError(
        f"{what} for this {kind} must be {want} with B = {batch_size} rows (or 1), got {got}. "
        f"{fix}, in nn.{kind}'s layout (num_layers, B, H) even with batch_first=True: "
        "h0.transpose(0, 1).contiguous() turns a batch-first (B, num_layers, H) into it."
    )


def _check_tree(what: str, state: State) -> None:
    """Raise a TypeError naming ``what`` unless ``state`` is a tensor or a tuple/list/dict of them."""
    if isinstance(state, Tensor):
        return
    items = state.values() if isinstance(state, dict) else state
    if isinstance(state, (tuple, list, dict)) and len(items) > 0:
        for item in items:
            _check_tree(what, item)
        return
    raise TypeError(
        f"{what} must be a tensor or a (nested) tuple/list/dict of tensors, got "
        f"{type(state).__name__}{' (empty)' if isinstance(state, (tuple, list, dict)) else ''}. "
        "For nn.LSTM pass (h0, c0); for nn.GRU/RNN pass h0; or a callable batch_size -> state."
    )


@dataclass
class Break:
    """A graph break at stream step ``pos``: the run continued from ``leaf``, a fresh leaf copy
    of ``before`` (the state entering ``pos``). Chaining ``before.backward(leaf.grad)`` crosses
    the break; not chaining it truncates there."""

    pos: int
    leaf: State
    before: State


@dataclass
class RunResult:
    outputs: Tensor  # (B, L, ...) detached
    losses: Tensor  # (B, L) per-step losses, with their graph
    state: State  # state after the last step
    breaks: list[Break] = field(default_factory=list)
    saved: dict[int, State] = field(default_factory=dict)  # pos -> detached state entering pos


class Unroller:
    """Runs ``model`` over steps of a stream, applying resets, breaks and saves at given steps.

    ``init_state``: ``None`` (zeros; the model is called with ``state=None`` at a stream start
    and must treat it as zeros), a state pytree (batch size B, or 1 to share a learned initial
    state across rows), or a callable ``batch_size -> state``.
    """

    def __init__(
        self,
        model: Any,
        path: Path = "auto",
        init_state: State | Callable[[int], State] = None,
        state_batch_dim: int | None = None,
        compile: Compile = "auto",
    ) -> None:
        check_model(model)
        if path not in ("auto", "chunk", "step"):
            raise ValueError(f"path must be 'auto', 'chunk' or 'step', got {path!r}.")
        self.model = model
        self.path = (
            ("step" if isinstance(model, nn.RNNCellBase) else "chunk") if path == "auto" else path
        )
        if compile is True and self.path == "chunk":
            raise ValueError(
                "compile=True compiles the step path (cells and step functions), but this model "
                "runs on the chunk path, which already makes one fused call per run. Pass "
                "path='step' to run it step by step, or leave compile at 'auto'."
            )
        # the step path's loop, compiled when due (tbptt.compiled); None on the chunk path
        self.steps = CompiledSteps(model, compile) if self.path == "step" else None
        if init_state is not None and not callable(init_state):
            _check_tree("init_state", init_state)
        if state_batch_dim is not None and (not is_int(state_batch_dim) or state_batch_dim < 0):
            raise ValueError(
                f"state_batch_dim must be None or the index (>= 0) of the batch dim in every "
                f"state leaf, got {state_batch_dim!r}. Pass e.g. state_batch_dim=0."
            )
        self.init_state = init_state
        self.state_batch_dim = None if state_batch_dim is None else int(state_batch_dim)
        self._holder = _Holder(model) if isinstance(model, nn.Module) else None
        self._has_rnn = _contains_rnn(model)  # (layers, B, H) states: batch dim 1
        self.runs = 0  # model calls (chunk path) or step loops (step path) so far
        self.split_by: Counter[str] = Counter()  # why runs ended inside a piece: reason -> count
        self._init_checked = False  # init_state compared with the model's own state once

    # -- state conventions -------------------------------------------------------------------
    def initial(self, batch_size: int) -> State:
        """The state a row starts from (``None`` means zeros, built by the model itself)."""
        init = self.init_state
        return init(batch_size) if callable(init) else init

    def batch_dims(self, state: State) -> State:
        if self.state_batch_dim is not None:
            return st.tree_map(lambda _: self.state_batch_dim, state)
        return st.tree_map(lambda t: 1 if self._has_rnn and t.dim() == 3 else 0, state)

    def check_state(self, state: State, batch_size: int, what: str) -> None:
        """Raise if a leaf's batch dim does not have ``batch_size`` rows (or 1, for the shared
        rows of an initial state; a state the model returns has one per row)."""
        dims = self.batch_dims(state)
        bad: list[str] = []
        rows = (batch_size, 1) if what == "init_state" else (batch_size,)

        def check(t: Tensor, d: int) -> Tensor:
            if d >= t.dim() or t.shape[d] not in rows:
                bad.append(f"shape {tuple(t.shape)} (batch dim {d})")
            return t

        st.tree_map(check, state, dims)
        if bad:
            raise ValueError(
                f"{what} has a leaf of {bad[0]}, but the batch has {batch_size} rows. nn.LSTM/GRU/RNN "
                "states are (layers, B, H) with batch dim 1; others are batch-first (dim 0). If your "
                "model's state keeps the batch elsewhere, pass state_batch_dim=...; if the model is "
                "an RNN with batch_first=False, build it with batch_first=True."
            )
        check_rnn_state(self.model, state, batch_size, what)

    def check_init(self, inputs: Tensor) -> None:
        """Once: compare ``init_state`` with the state the model returns from zeros (``None``)
        after one step of ``inputs`` (B, T, ...), ignoring the batch dim; raise a ValueError
        naming ``init_state`` when their structure or shapes differ (e.g. a bare tensor for a
        wrapped nn.LSTM, or a batch-first one). The probe runs without gradient, in eval mode
        and with the RNG restored, so training is unchanged."""
        init = self.initial(int(inputs.shape[0]))
        if init is None or self._init_checked or not inputs.shape[1]:
            return
        self._init_checked = True
        module = self.model if isinstance(self.model, nn.Module) else None
        training = module is not None and module.training
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                if module is not None:
                    module.eval()  # no dropout, no running statistics updated
                step = inputs[:, :1] if self.steps is None else inputs[:, 0]
                _, own = self.model(step, None)
        except Exception:  # the model cannot start from None: nothing to compare with
            return
        finally:
            if module is not None:
                module.train(training)
        want, got = self._layout(own), self._layout(init)
        if want != got:
            got, want = (str(t).replace("'", "") for t in (got, want))  # (1, B, 3), not '(1, B, 3)'
            raise ValueError(
                f"init_state does not match the state this model returns: init_state is {got}, "
                f"the model's own state is {want} (B: the batch dim). Give init_state that "
                "structure; nn.LSTM/GRU/RNN states keep their (num_layers, B, H) layout even with "
                "batch_first=True (nn.LSTM's is the pair (h, c))."
            )

    def _layout(self, state: State) -> Any:
        """The structure and leaf shapes of ``state`` with its batch dim shown as B."""

        def shape(t: Tensor, d: int) -> str:
            dims = [str(n) for n in t.shape]
            if d < len(dims):
                dims[d] = "B"
            return "(" + ", ".join(dims) + ")"

        def plain(tree: Any) -> Any:  # lists and namedtuples compare as tuples
            if isinstance(tree, (tuple, list)):
                return tuple(plain(t) for t in tree)
            if isinstance(tree, dict):
                return {k: plain(v) for k, v in tree.items()}
            return tree

        return plain(st.tree_map(shape, state, self.batch_dims(state)))

    def reset(self, state: State, rows: Tensor, batch_size: int) -> State:
        if state is None:  # every row is at its initial state already
            return None
        return st.reset_rows(state, rows, self.initial(batch_size), self.batch_dims(state))

    # -- running --------------------------------------------------------------------------------
    def _call(
        self, x: Tensor, state: State, factors: Tensor | None, compiled: bool
    ) -> tuple[Tensor, State]:
        """One model call over ``x`` (B, L, ...), L >= 1 (``compiled``: the step loop may be)."""
        if self.steps is None:  # the chunk path: segments are split at every factor
            return self.model(x, state)
        return self.steps(x, state, factors, allow=compiled)

    def run(
        self,
        inputs: Tensor,
        targets: Tensor,
        reset: Tensor | None,
        start: int,
        state: State,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        *,
        breaks: Iterable[int] = (),
        saves: Iterable[int] = (),
        scales: Mapping[int, float] | None = None,
        checkpoint: int | None = None,
        params: Mapping[str, Tensor] | None = None,
        replace: Mapping[int, State] | None = None,
        cut: bool = False,
    ) -> RunResult:
        """Run over stream steps ``[start, start + L)`` from ``state`` (entering ``start``).

        inputs, targets: (B, L, ...); reset: (B, L) bool (None: no resets);
        ``loss_fn(y, targets) -> (B, L)``.
        ``breaks``: steps where the state becomes a fresh leaf (see :class:`Break`); ``saves``:
        steps whose incoming state is saved detached; ``scales``: step -> factor on the gradient
        that crosses into that step (ARTBP); ``checkpoint``: keep only each segment's incoming
        state and recompute its activations in the backward, segments of this many steps
        (Gruslys et al. 2016); ``params``: parameter tensors to use instead of the module's own;
        ``replace``: step -> the state to continue from there instead (replaying a saved stream);
        ``cut``: the caller cut ``state``'s graph (detached it). The model is told of every cut
        (this one, breaks, replaced states) through :func:`tbptt.online.graph_cut`.
        """
        plan = _Plan(
            set(breaks),
            set(saves),
            dict(scales or {}),
            checkpoint,
            loss_fn,
            dict(replace or {}),
            cut,
        )
        if params is not None:
            assert self._holder is not None
            named = {f"model.{k}": v for k, v in params.items()}
            return functional_call(
                self._holder, named, (self._run, inputs, targets, reset, start, state, plan)
            )
        return self._run(inputs, targets, reset, start, state, plan)

    def _segment(
        self,
        x: Tensor,
        target: Tensor,
        state: State,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        factors: Tensor | None,
        compiled: bool = True,
        cut: bool = False,
    ) -> tuple[Tensor, Tensor, State]:
        with graph_cut(cut):
            y, state = self._call(x, state, factors, compiled)  # (B, l, ...)
        return y.detach(), loss_fn(y, target), state  # losses (B, l) keep the graph, y does not

    def _run(
        self,
        inputs: Tensor,
        targets: Tensor,
        reset: Tensor | None,
        start: int,
        state: State,
        plan: _Plan,
    ) -> RunResult:
        batch, length = inputs.shape[0], inputs.shape[1]
        stop = start + length
        reset_at = (
            set()
            if reset is None
            else {start + int(i) for i in torch.nonzero(reset.any(0)).flatten().tolist()}
        )
        segment_at = set(range(start, stop, plan.checkpoint)) if plan.checkpoint else set()
        # the step path applies factors inside a segment; a module call over a run cannot
        scale_at = set(plan.scales) if self.steps is None else set()
        events = plan.breaks | plan.saves | reset_at | scale_at | segment_at | set(plan.replace)
        bounds = sorted({start, stop} | {p for p in events if start <= p < stop})
        self.runs += len(bounds) - 1
        if len(bounds) > 2:  # the piece runs as several calls: say why
            reasons = {
                "reset": reset_at,
                "window break": plan.breaks,
                "ARTBP factor": scale_at,
                "checkpoint segment": segment_at,
                "saved state": plan.saves,
                "replayed state": set(plan.replace),
            }
            for p in bounds[1:-1]:
                self.split_by.update(why for why, at in reasons.items() if p in at)
        ys, losses = [], []
        breaks: list[Break] = []
        saved: dict[int, State] = {}
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if lo in plan.replace:
                state = plan.replace[lo]
            if lo in plan.saves:
                saved[lo] = st.detach(state)
            if lo in plan.breaks and state is not None:
                leaf = st.tree_map(
                    lambda t: t.detach().requires_grad_(t.is_floating_point()), state
                )
                breaks.append(Break(lo, leaf, state))
                state = leaf
            if lo in plan.scales and state is not None:
                state = st.tree_map(lambda t, f=plan.scales[lo]: scale_grad(t, f), state)
            if lo in reset_at:
                assert reset is not None
                state = self.reset(state, reset[:, lo - start], batch)
            inner = [plan.scales.get(p, 1.0) for p in range(lo, hi)] if self.steps else []
            factors = (
                inputs.new_tensor([1.0, *inner[1:]], dtype=torch.get_default_dtype())
                if any(f != 1.0 for f in inner[1:])
                else None
            )  # (l,) the factors inside the segment; the one at lo is applied above
            args = (
                inputs[:, lo - start : hi - start],
                targets[:, lo - start : hi - start],
                state,
                plan.loss_fn,
                factors,
            )
            cut = (lo == start and plan.cut) or lo in plan.breaks or lo in plan.replace
            if plan.checkpoint and torch.is_grad_enabled():
                y, loss, state = torch.utils.checkpoint.checkpoint(
                    self._segment, *args, False, cut, use_reentrant=False
                )  # eager inside: checkpointing re-runs the segment in the backward
            else:
                y, loss, state = self._segment(*args, True, cut)
            ys.append(y)
            losses.append(loss)
        if stop in plan.saves:
            saved[stop] = st.detach(state)
        return RunResult(
            outputs=torch.cat(ys, dim=1) if len(ys) > 1 else ys[0],
            losses=torch.cat(losses, dim=1) if len(losses) > 1 else losses[0],
            state=state,
            breaks=breaks,
            saved=saved,
        )


@dataclass
class _Plan:
    breaks: set[int]
    saves: set[int]
    scales: dict[int, float]
    checkpoint: int | None
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    replace: dict[int, State]
    cut: bool  # the state entering the run was cut by the caller


class _Holder(nn.Module):
    """Lets functional_call swap the model's parameters for a whole multi-call run."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., RunResult], *args: Any) -> RunResult:
        return fn(*args)

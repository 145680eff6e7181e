"""The step path, compiled: a segment's loop over steps traced into one graph by torch.compile.

Run eagerly, the step path calls a cell once per step: a dozen small kernels and as many autograd
nodes each, so small and medium cells spend their time in overhead, not arithmetic.
``torch.compile`` (Ansel et al. 2024, "PyTorch 2: Faster Machine Learning Through Dynamic Python
Bytecode Transformation and Graph Compilation") unrolls the loop over a segment of L steps into one
graph; TorchInductor fuses its pointwise work and AOTAutograd compiles the backward too. Each
*variant* (block shape, dtype, device, grad mode, whether the state needs grad) is compiled
once; the parameters are graph inputs, so optimizer steps and stored mode's per-chunk weight
copies reuse it, and so do all the engines that run the same model.

Compiling costs seconds per variant (TorchInductor caches the generated code on disk, in
``TORCHINDUCTOR_CACHE_DIR``, so a second process with the same shapes starts much faster), so:

- ``compile=True`` compiles every variant on first use;
- ``compile="auto"`` (the default) compiles a variant once its eager runs have taken
  :data:`AUTO_AFTER_SECONDS`, so long runs get the fast path and short ones never pay for it;
- ``compile=False`` never compiles.

Variants that stay eager, and why, are in :attr:`CompiledSteps.stats`. If compiling fails (no C++
compiler for TorchInductor on CPU, an operation Dynamo cannot trace), the engine warns once with
the reason and runs eagerly from then on: same results, no compiled speed.

>>> import torch
>>> from torch import nn
>>> cell = nn.GRUCell(2, 3)
>>> steps = CompiledSteps(cell, compile=False)
>>> ys, h = steps(torch.zeros(4, 5, 2), None)   # (B, L, F) -> (B, L, H), (B, H)
>>> tuple(ys.shape), tuple(h.shape), steps.stats["eager_runs"]
((4, 5, 3), (4, 3), 1)
"""

from __future__ import annotations

import itertools
import logging
import time
import types
import warnings
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from tbptt import state as st
from tbptt.state import State

Compile = bool | Literal["auto"]

#: With ``compile="auto"``, a variant is compiled once its eager runs have taken this many
#: seconds: about what compiling it costs on a CPU, so a run never spends more than twice the
#: better of the two choices on it (the ski-rental rule), and short runs never compile.
AUTO_AFTER_SECONDS = 20.0
#: The longest block of steps compiled as one graph (a power of two).
BLOCK = 32
#: Segment lengths per model that recur and so run as one graph, not as 2^j blocks.
EXACT_LENGTHS = 4
#: Compiled graphs per model at most: block lengths x grad mode x whether the state needs grad.
MAX_VARIANTS = 32

log = logging.getLogger(__name__)


def step_loop(
    model: Any,
    x: Tensor,
    state: State,
    factors: Tensor | None = None,
    tensors: dict[str, Tensor] | None = None,
) -> tuple[Tensor, State]:
    """Call ``model`` once per step of ``x`` (B, L, ...): the step path.

    ``factors`` (L,): the gradient that crosses into step t is multiplied by ``factors[t]``
    (ARTBP's compensation; the forward values are unchanged). ``tensors``: parameters and
    buffers to call the model with instead of its own (what the compiled loop takes as inputs).
    """
    ys = []
    for t in range(x.shape[1]):
        if factors is not None and state is not None:
            state = st.tree_map(lambda s, f=factors[t]: scale_grad(s, f), state)
        if tensors:
            out = functional_call(model, tensors, (x[:, t], state))
        else:
            out = model(x[:, t], state)
        if isinstance(model, nn.RNNCellBase):  # cells return the state; y is h
            y, state = (out[0] if isinstance(out, tuple) else out), out
        else:
            y, state = out
        ys.append(y)
    return torch.stack(ys, dim=1), state  # (B, L, ...)


def scale_grad(t: Tensor, factor: Tensor | float) -> Tensor:
    """``t`` in the forward; the gradient through it is multiplied by ``factor``."""
    if not t.is_floating_point():
        return t
    frozen = t.detach()
    return frozen + (t - frozen) * factor  # t - frozen is exactly 0: the value is t's own


@dataclass
class _Shared:
    """What the engines running one model share: its compiled loop and compiled variants."""

    # a function of its own per model: Dynamo keeps compiled variants, and its recompile limit,
    # per code object, so models do not crowd each other out
    fn: Callable[..., tuple[Tensor, State]] = field(
        default_factory=lambda: torch.compile(_own_copy(step_loop), dynamic=False)
    )
    compiled: dict[tuple[Any, ...], float] = field(default_factory=dict)  # key -> first call s
    exact: set[int] = field(default_factory=set)  # segment lengths run as one block


_shared: weakref.WeakKeyDictionary[Any, _Shared] = weakref.WeakKeyDictionary()


def _shared_for(model: Any) -> _Shared:
    try:
        return _shared.setdefault(model, _Shared())
    except TypeError:  # not weak-referenceable: this engine's own
        return _Shared()


class CompiledSteps:
    """Runs the step loop over a segment, compiled per variant (see the module docstring)."""

    def __init__(self, model: Any, compile: Compile = "auto") -> None:
        if compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}.")
        self.model = model
        self.compile = compile
        self.eager_seconds: defaultdict[tuple[Any, ...], float] = defaultdict(float)  # per variant
        self.lengths: Counter[int] = Counter()  # segments per length
        self.disabled: str | None = None  # why nothing more will be compiled
        self.eager_runs = 0
        self.compiled_runs = 0
        shared = _shared_for(model)  # engines on one model reuse its compiled variants
        self._fn = shared.fn
        self.compiled = shared.compiled  # variant -> seconds of its first call
        self._exact = shared.exact  # segment lengths run as one block

    @property
    def stats(self) -> dict[str, Any]:
        """What ran how: compiled variants with their first-call seconds, eager runs, and why
        compiling stopped (None while it has not)."""
        return {
            "compile": self.compile,
            "compiled_variants": [
                {"shape": k[0], "grad": k[3], "first_call_s": s} for k, s in self.compiled.items()
            ],
            "compiled_runs": self.compiled_runs,
            "eager_runs": self.eager_runs,
            "disabled": self.disabled,
        }

    def __call__(
        self, x: Tensor, state: State, factors: Tensor | None = None, allow: bool = True
    ) -> tuple[Tensor, State]:
        """``(ys, state)`` over ``x`` (B, L, ...), with ``factors`` as in :func:`step_loop`.

        A segment length that recurs (TBPTT's k1) runs as one graph; other lengths run in
        blocks of 2^j steps, largest first (25 = 16 + 8 + 1), so a bounded number of shapes is
        compiled whatever the segment lengths (resets anywhere, ARTBP's random chunks). Each
        block is compiled when due. ``allow=False``: run eagerly (e.g. inside activation
        checkpointing, which re-runs the segment in the backward).
        """
        if not allow or self.compile is False:
            self.eager_runs += 1
            return step_loop(self.model, x, state, factors)
        ys, lo = [], 0
        if state is None:  # a stream's first step runs eagerly: its state exists after it
            y, state = step_loop(self.model, x[:, :1], None)
            ys, lo = [y], 1
            self.eager_runs += 1
        length = x.shape[1] - lo
        for size in [length] if length and self._whole(length) else _blocks(length):
            f = None if factors is None else factors[lo : lo + size]
            y, state = self._block(x[:, lo : lo + size], state, f)
            ys.append(y)
            lo += size
        return (torch.cat(ys, dim=1) if len(ys) > 1 else ys[0]), state

    def _block(self, x: Tensor, state: State, factors: Tensor | None) -> tuple[Tensor, State]:
        key = (  # what Dynamo guards on, so one key is one compiled graph
            tuple(x.shape),
            x.dtype,
            x.device,
            torch.is_grad_enabled(),
            tuple((t.shape, t.dtype, t.requires_grad) for t in st.leaves(state)),
        )
        if key in self.compiled or self._due(key):
            if factors is None:  # ones: one graph serves rules with and without factors
                factors = torch.ones(x.shape[1], dtype=torch.get_default_dtype(), device=x.device)
            contiguous = x.contiguous(), st.tree_map(Tensor.contiguous, state)  # no stride guards
            out = self._compiled_call(key, *contiguous, factors)
            if out is not None:
                return out
        self.eager_runs += 1
        began = time.perf_counter()
        out = step_loop(self.model, x, state, factors)
        self.eager_seconds[key] += time.perf_counter() - began
        return out

    def _whole(self, length: int) -> bool:
        """Run a segment of ``length`` steps as one block? Yes for lengths that recur (TBPTT's
        k1), up to EXACT_LENGTHS of them per model; others split into 2^j blocks."""
        exact = self._exact
        if length in exact:
            return True
        self.lengths[length] += 1
        if self.lengths[length] >= 2 and len(exact) < EXACT_LENGTHS and length <= 2 * BLOCK:
            exact.add(length)
            return True
        return False

    def _due(self, key: tuple[Any, ...]) -> bool:
        if self.compile is False or self.disabled is not None:
            return False
        if self.compile == "auto" and self.eager_seconds[key] < AUTO_AFTER_SECONDS:
            return False
        if len(self.compiled) >= MAX_VARIANTS:
            self.disabled = (
                f"this model has {MAX_VARIANTS} compiled variants already (tbptt.compiled."
                "MAX_VARIANTS; raise it to compile more)"
            )
            log.info("tbptt: %s; the rest run eagerly.", self.disabled)
            return False
        return True

    def _compiled_call(
        self, key: tuple[Any, ...], x: Tensor, state: State, factors: Tensor
    ) -> tuple[Tensor, State] | None:
        first = key not in self.compiled
        if first:
            log.info("tbptt: compiling the step path for segments of shape %s", tuple(x.shape))
        began = time.perf_counter()
        try:
            with torch._dynamo.config.patch(recompile_limit=MAX_VARIANTS):
                out = self._fn(self.model, x, state, factors, self._tensors())
        except Exception as e:  # compiling failed: say why once, then run eagerly
            if not first:
                raise
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.disabled = f"torch.compile failed ({type(e).__name__}: {reason[:300]})"
            warnings.warn(
                f"tbptt: {self.disabled}; the step path runs eagerly (same results, no compiled "
                "speed). Pass compile=False to skip the attempt.",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        if first:
            self.compiled[key] = time.perf_counter() - began
            log.info("tbptt: compiled in %.1f s", self.compiled[key])
        self.compiled_runs += 1
        return out

    def _tensors(self) -> dict[str, Tensor]:
        """The model's parameters and buffers as they are now (functional_call may have swapped
        them for a chunk's weight copies)."""
        if not isinstance(self.model, nn.Module):
            return {}
        return dict(self.model.named_parameters()) | dict(self.model.named_buffers())


def _blocks(length: int) -> list[int]:
    """``length`` as blocks of 2^j <= BLOCK steps, largest first: 70 -> [32, 32, 4, 2]."""
    out = [BLOCK] * (length // BLOCK)
    rest = length % BLOCK
    out += [1 << j for j in reversed(range(rest.bit_length())) if rest >> j & 1]
    return out


def _own_copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a code object of its own."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_copies)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__)


_copies = itertools.count()

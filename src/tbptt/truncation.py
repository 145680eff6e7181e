"""Truncation rules: where a stream is cut into updates and how far each update looks back.

A rule answers two questions for the engine (semantics: docs/semantics.md §2):

- ``next_length(start)``: steps shown on the forward pass before the next update (k1; ``None``
  = until the stream ends);
- ``cut(start, stop)``: for the update after chunk ``[start, stop)``, the step whose incoming
  state is held constant. Losses at steps ``>= max(start, cut)`` of the chunk are trained on.

>>> TBPTT(4, 6).cut(8, 12), TBPTT(4, 2).cut(8, 12), TBPTT(4).cut(8, 12), BPTT().cut(0, 99)
(6, 10, 8, 0)

The random rules :class:`ARTBP` (unbiased, Tallec & Ollivier 2017) and :class:`VariableLength`
(AWD-LSTM) draw each chunk's length from their own seeded generator.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


class TruncationRule:
    """What the engine asks a rule. Subclass it for new estimators.

    ``next_length(start)``: the length of the chunk that starts at stream step ``start``
    (``None``: until the stream ends); asked once per chunk, so it may be random. Rules with
    ``lookback > 0`` must give fixed lengths (their windows overlap later chunks).
    """

    lookback: int = 0  # steps an update reaches back before its own chunk (k2 - k1 if k2 > k1)
    needs_sum_reduction: bool = False  # True: the Engine must use reduction="sum" (ARTBP)

    def next_length(self, start: int) -> int | None:
        raise NotImplementedError

    def cut(self, start: int, stop: int) -> int:
        """The step whose incoming state is held constant for the update of ``[start, stop)``."""
        raise NotImplementedError

    def grad_scales(self, start: int, stop: int) -> dict[int, float]:
        """Step -> factor on every gradient that crosses into that step (ARTBP); none by default."""
        return {}

    def lr_scale(self, start: int, stop: int) -> float:
        """Factor on the learning rate for this update (variable-length BPTT); 1 by default."""
        return 1.0


def is_int(value: object) -> bool:
    """True for Python and numpy integers (sweeps, configs, pandas), False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for Python and numpy ints and floats, False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_steps(name: str, value: object) -> int:
    if not is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(
            f"{name} must be a positive integer number of steps, got {value!r}. "
            f"Pass e.g. {name}=25; for full backpropagation through time use tbptt.BPTT()."
        )
    return int(value)  # type: ignore[call-overload]


@dataclass(frozen=True)
class TBPTT(TruncationRule):
    """Truncated BPTT(k1, k2) (Williams & Peng 1990, "An efficient gradient-based algorithm for
    on-line training of recurrent network trajectories"; Sutskever 2013, §3.1).

    Every ``k1`` steps there is one update; its gradient reaches ``k2`` steps back.

    - ``k2 == k1`` (default): the familiar chunk-and-detach loop.
    - ``k2 > k1``: overlapping windows; each loss is backpropagated between ``k2 - k1 + 1`` and
      ``k2`` steps (the window reaches ``k2 - k1`` steps into earlier chunks).
    - ``k2 < k1``: only the last ``k2`` steps of each chunk are trained on; the earlier ones
      run forward only (Theano's ``truncate_gradient``).
    """

    k1: int
    k2: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "k1", _check_steps("k1", self.k1))  # numpy ints become ints
        k2 = self.k1 if self.k2 is None else self.k2
        object.__setattr__(self, "k2", _check_steps("k2", k2))

    def next_length(self, start: int) -> int:
        return self.k1

    @property
    def lookback(self) -> int:  # type: ignore[override]
        return max(0, self._k2 - self.k1)

    @property
    def _k2(self) -> int:
        assert self.k2 is not None  # set in __post_init__
        return self.k2

    def cut(self, start: int, stop: int) -> int:
        if self.lookback:
            return max(0, start - self.lookback)
        return max(start, stop - self._k2)


@dataclass(frozen=True)
class BPTT(TruncationRule):
    """Full backpropagation through time: one update when the stream ends, reaching its start
    (Rumelhart, Hinton & Williams 1986; Werbos 1990). Per-row resets still cut."""

    def next_length(self, start: int) -> None:
        return None

    def cut(self, start: int, stop: int) -> int:
        return start


def _check_probability(name: str, value: object, *, low_open: bool, high_open: bool) -> float:
    ok = is_real(value) and math.isfinite(value)  # type: ignore[arg-type]
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a probability in {interval}, got {value!r}.")
    return float(value)  # type: ignore[arg-type]


def _seeded_generator(seed: object) -> torch.Generator:
    """A CPU generator seeded with ``seed``; ``None`` takes a seed from torch's global generator,
    so that ``torch.manual_seed`` makes the rule reproducible."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    if not is_int(seed):
        raise TypeError(f"seed must be an int or None, got {seed!r}. Pass e.g. seed=0.")
    generator = torch.Generator()
    generator.manual_seed(int(seed))  # type: ignore[call-overload]
    return generator


class _RandomRule(TruncationRule):
    """A rule that draws its chunk lengths from its own generator (saved with ``state_dict``)."""

    _generator: torch.Generator

    def state_dict(self) -> dict[str, Any]:
        """The generator's state: save it with your checkpoint to resume the same draws."""
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if not isinstance(state, Mapping) or "generator" not in state:
            raise ValueError(
                f"state must be the dict returned by {type(self).__name__}.state_dict(), with a "
                f"'generator' entry, got {state!r}."
            )
        self._generator.set_state(state["generator"])


class ARTBP(_RandomRule):
    """Anticipated Reweighted Truncated Backpropagation (Tallec & Ollivier 2017, "Unbiasing
    Truncated Backpropagation Through Time", arXiv:1705.08209): an unbiased truncated BPTT.

    The stream is cut at random points. The boundary entering a step is a *truncation point*
    with probability ``c_j``, where ``j`` counts the steps since the last truncation point (the
    stream start is one). At each truncation point there is one update over the steps since the
    previous one, with the state entering that chunk held constant. Every gradient that crosses
    a boundary that was *not* truncated is multiplied by ``1 / (1 - c_j)`` on its way back.
    A dependency spanning d boundaries is thus seen with probability ``prod (1 - c_j)`` and
    weighted by the inverse of that probability, so the expected sum of the updates of a stream
    equals the full-BPTT gradient of its summed loss (parameters held fixed). TBPTT never sees a
    dependency longer than k2: it is biased (docs/semantics.md §2, §6).

    Schedules (``c_j`` as a function of ``j``):

    - constant ``c`` (default): chunk lengths are geometric with mean ``1 / c``; a dependency of
      d steps is weighted ``(1 - c) ** -d``. The variance is finite when the model's gradients
      through d steps shrink faster than ``(1 - c) ** (d / 2)``; pick ``c`` small enough for the
      memory of your model (examples/influence_balancing.py: c in {0.01, 0.03, 0.1}).
    - ``min_len``: ``c_j = 0`` for ``j < min_len``: every chunk has at least ``min_len`` steps,
      and dependencies shorter than that are never reweighted.
    - ``max_factor`` (bounded compensation; this library's choice, not the paper's): ``c_j = c``
      only while the product of the factors since the last truncation stays ``<= max_factor``,
      then ``c_j = 0``. No gradient is ever multiplied by more than ``max_factor``, so the
      estimate's second moment is at most ``max_factor * (sum |g|) ** 2``, the sum running over
      the contributions g of every (loss, lag) pair to the full gradient, whatever the model's
      dynamics.
      The price is unavoidable: an unbiased rule must keep a chance to cross every boundary, so
      bounded factors mean that with probability ``(1 - c) ** J >= 1 / max_factor`` (J: steps
      with ``c_j = c``) no truncation comes at all and the chunk runs until the stream ends
      (its update comes at ``engine.flush()``). Use it on finite sequences (episodes, documents)
      where a full-BPTT update is affordable; on an endless stream use a constant ``c``.

    How the engine runs it:

    - *drawing*: ``next_length`` draws a chunk's whole length at once from the rule's own seeded
      generator (a geometric variable). This is equivalent in distribution to flipping a
      ``c_j``-coin at every step of the forward pass because ``c_j`` depends only on the steps
      since the last truncation, never on the state; a state-dependent schedule would have to
      draw during the forward pass.
    - *the step path*: the factors sit on the step boundaries inside a chunk. A fused module
      call (one nn.LSTM call over the chunk) cannot reweight inside itself, so on the chunk path
      the engine splits the chunk at every boundary that carries a factor: one module call per
      step (boundaries with ``c_j = 0`` carry no factor and stay fused). The step path applies
      them inside its loop, eagerly or compiled (:mod:`tbptt.compiled`), so prefer a cell.
    - *reduction*: the estimate is unbiased for the **sum** of the losses. Build the engine with
      ``Engine(model, loss_fn, ARTBP(...), reduction="sum")``; it refuses ``"mean"`` (a mean over
      each random-length chunk would weight the steps of short chunks more).
    - per-row resets still cut the gradient; truncation points are common to all rows.

    Args:
        c: truncation probability per step, in (0, 1).
        min_len: no truncation in the first ``min_len - 1`` boundaries after a truncation.
        max_factor: bound on the product of compensation factors (``None``: unbounded); at least
            ``1 / (1 - c)``.
        seed: seed of the rule's generator; ``None`` takes one from torch's global generator (so
            ``torch.manual_seed`` makes runs reproducible). Save ``state_dict()`` to resume.

    >>> rule = ARTBP(c=0.25, seed=0)
    >>> lengths = [rule.next_length(0) for _ in range(1000)]
    >>> 3.5 < sum(lengths) / len(lengths) < 4.5          # geometric, mean 1 / c = 4
    True
    >>> rule.grad_scales(10, 13)                          # boundaries 11 and 12 were crossed
    {11: 1.3333333333333333, 12: 1.3333333333333333}
    >>> bounded = ARTBP(c=0.25, max_factor=2.0, min_len=3)
    >>> [bounded.probability(j) for j in range(1, 7)]     # (4/3) ** 2 <= 2 < (4/3) ** 3
    [0.0, 0.0, 0.25, 0.25, 0.0, 0.0]
    """

    needs_sum_reduction = True

    def __init__(
        self,
        c: float = 0.1,
        *,
        min_len: int = 1,
        max_factor: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.c = _check_probability("c", c, low_open=True, high_open=True)
        self.min_len = _check_steps("min_len", min_len)
        self.max_factor = max_factor
        self._budget: int | None = None  # boundaries with c_j = c after min_len; None: all
        if max_factor is not None:
            factor = 1.0 / (1.0 - self.c)
            if not is_real(max_factor) or not max_factor >= factor:
                raise ValueError(
                    f"max_factor must be a number >= 1 / (1 - c) = {factor:.6g} (else no "
                    f"truncation could ever happen), got {max_factor!r}. Raise it, or pass "
                    "max_factor=None for unbounded factors."
                )
            self.max_factor = max_factor = float(max_factor)
            self._budget = (
                int(math.log(max_factor) / -math.log1p(-self.c) + 1e-9)
                if math.isfinite(max_factor)
                else None
            )
        self._generator = _seeded_generator(seed)

    def __repr__(self) -> str:
        return f"ARTBP(c={self.c}, min_len={self.min_len}, max_factor={self.max_factor})"

    def probability(self, j: int) -> float:
        """``c_j``: the truncation probability of the boundary ``j >= 1`` steps after the last
        truncation point."""
        if j < self.min_len or (self._budget is not None and j >= self.min_len + self._budget):
            return 0.0
        return self.c

    def next_length(self, start: int) -> int | None:
        # k: coin flips with probability c until the first truncation (geometric, k >= 1)
        k = int(torch.empty((), dtype=torch.float64).geometric_(self.c, generator=self._generator))
        if self._budget is not None and k > self._budget:
            return None  # the budget ran out first: no truncation until the stream ends
        return self.min_len - 1 + k

    def cut(self, start: int, stop: int) -> int:
        return start

    def grad_scales(self, start: int, stop: int) -> dict[int, float]:
        factor = 1.0 / (1.0 - self.c)
        last = stop - 1  # the boundaries strictly inside the chunk were not truncated
        if self._budget is not None:
            last = min(last, start + self.min_len + self._budget - 1)
        return {t: factor for t in range(start + self.min_len, last + 1)}


class VariableLength(_RandomRule):
    """Variable-length BPTT (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM
    Language Models", §4.1, AWD-LSTM).

    Chunked TBPTT whose chunk length is drawn per chunk: ``bptt' = bptt`` with probability ``p``,
    else ``bptt / 2``; ``seq_len = max(min_len, round(N(bptt', std)))``. Over epochs every step
    gets to be at every position of a chunk, instead of always the same ones. The update's
    ``lr_scale`` is ``L / bptt`` for a chunk of ``L`` steps (``L = seq_len``, except for the last
    chunk at the end of a stream), so that with the engine's default mean reduction each step
    weighs the same whatever the chunk length: multiply the learning rate by it for that update,
    e.g. with :func:`tbptt.optim.scaled_lr`.

    >>> rule = VariableLength(70, seed=0)
    >>> n = rule.next_length(0)
    >>> n >= 5 and rule.cut(0, n) == 0 and rule.lr_scale(0, n) == n / 70
    True
    """

    def __init__(
        self,
        bptt: int,
        p: float = 0.95,
        std: float = 5.0,
        min_len: int = 5,
        seed: int | None = None,
    ) -> None:
        self.bptt = _check_steps("bptt", bptt)
        self.p = _check_probability("p", p, low_open=False, high_open=False)
        if not is_real(std) or not (math.isfinite(std) and std >= 0):
            raise ValueError(
                f"std must be a finite number >= 0 (steps), got {std!r}. AWD-LSTM uses std=5."
            )
        self.std = float(std)
        self.min_len = _check_steps("min_len", min_len)
        self._generator = _seeded_generator(seed)

    def __repr__(self) -> str:
        return (
            f"VariableLength(bptt={self.bptt}, p={self.p}, std={self.std}, min_len={self.min_len})"
        )

    def next_length(self, start: int) -> int:
        u = float(torch.rand((), dtype=torch.float64, generator=self._generator))
        z = float(torch.randn((), dtype=torch.float64, generator=self._generator))
        mean = self.bptt if u < self.p else self.bptt / 2
        return max(self.min_len, round(mean + self.std * z))

    def cut(self, start: int, stop: int) -> int:
        return start

    def lr_scale(self, start: int, stop: int) -> float:
        return (stop - start) / self.bptt

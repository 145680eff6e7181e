"""Synthetic long-dependency tasks, shaped for the engine, with their baselines.

- :func:`adding_problem` and :func:`copy_memory`: the definitions of Arjovsky, Shah & Bengio
  2016 ("Unitary Evolution Recurrent Neural Networks"), after Hochreiter &
  Schmidhuber 1997. Each returns a :class:`Task`: one independent sequence per row, ``reset``
  True at step 0 (so tasks can be fed one after another into one stream), and the loss of the
  best memoryless predictor (a model that beats it has learned the long dependency).
- :func:`long_delay`: recall one sign seen ``delay`` steps earlier through distractor noise, a
  dependency that truncation cannot see when ``delay`` exceeds the truncation length.
- :class:`InfluenceBalancing`: the linear system of Tallec & Ollivier's UORO paper ("Unbiased
  Online Recurrent Optimization", 2017), as set up in google-research's persistent_es
  ``influence_balancing``: the parameter's short-term effect on the loss has the opposite sign
  of its long-term effect, so truncations that are too short push it the wrong way.

>>> import torch
>>> task = adding_problem(4, 50, generator=torch.Generator().manual_seed(0))
>>> tuple(task.inputs.shape), tuple(task.targets.shape), int(task.mask.sum()), task.baseline
((4, 50, 2), (4, 50, 1), 4, 0.16666666666666666)
>>> task = long_delay(4, delay=1000)
>>> tuple(task.inputs.shape), int(task.mask.sum()), task.baseline
((4, 1001, 2), 4, 1.0)
>>> task = copy_memory(4, delay=30)
>>> tuple(task.inputs.shape), tuple(task.targets.shape), round(task.baseline, 4)
((4, 50, 10), (4, 50), 0.4159)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tbptt.chunk import Chunk

__all__ = [
    "InfluenceBalancing",
    "Task",
    "adding_problem",
    "copy_memory",
    "half_squared_error",
    "long_delay",
]


class Task(NamedTuple):
    """A batch of task sequences, one per row: ``engine.feed(*task.chunk)``."""

    inputs: Tensor  # (B, T, F) float, or (B, T) long token ids
    targets: Tensor  # (B, T, ...) what the loss compares the outputs with
    reset: Tensor  # (B, T) bool: True at step 0 (each row is a new sequence)
    mask: Tensor  # (B, T) bool: the steps whose loss counts
    baseline: float  # the memoryless predictor's loss (per counted step)

    @property
    def chunk(self) -> Chunk:
        return Chunk(self.inputs, self.targets, self.reset, self.mask)


def _check_positive(name: str, value: object, at_least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        raise ValueError(f"{name} must be an integer >= {at_least}, got {value!r}.")
    return value


def _first_step(batch: int, length: int) -> Tensor:
    reset = torch.zeros(batch, length, dtype=torch.bool)
    reset[:, 0] = True
    return reset  # (B, T)


def adding_problem(
    batch_size: int,
    length: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Task:
    """The adding problem: add the two numbers marked in a sequence of ``length`` steps.

    Input step t is ``(v_t, m_t)``: ``v_t ~ U[0, 1]`` and ``m_t`` is 1 at two steps, one drawn
    uniformly in the first half and one in the second half, 0 elsewhere. The target, at the last
    step only (the mask), is the sum of the two marked values; elsewhere it is 0 and masked.
    The baseline predicts 1 always: mean squared error ``Var(U + U') = 1/6 ~ 0.167`` (use
    ``tbptt.losses.mse``).

    Returns a :class:`Task` with inputs ``(B, T, 2)``, targets ``(B, T, 1)``.
    """
    b = _check_positive("batch_size", batch_size)
    t = _check_positive("length", length, at_least=2)
    dtype = dtype or torch.get_default_dtype()
    values = torch.rand(b, t, generator=generator, dtype=dtype)  # (B, T)
    half = t // 2
    first = torch.randint(0, half, (b,), generator=generator)
    second = torch.randint(half, t, (b,), generator=generator)
    marks = torch.zeros(b, t, dtype=dtype)
    rows = torch.arange(b)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    inputs = torch.stack([values, marks], dim=-1)  # (B, T, 2)
    targets = torch.zeros(b, t, 1, dtype=dtype)
    targets[:, -1, 0] = values[rows, first] + values[rows, second]
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[:, -1] = True
    return Task(inputs, targets, _first_step(b, t), mask, 1.0 / 6.0)


COPY_SYMBOLS, COPY_LENGTH, BLANK, DELIMITER = 8, 10, 8, 9


def copy_memory(
    batch_size: int,
    delay: int,
    *,
    one_hot: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Task:
    """The copy-memory task: remember 10 symbols over ``delay`` blanks, then reproduce them.

    10 categories: symbols 0..7, blank 8, delimiter 9. A sequence has ``delay + 20`` steps: 10
    symbols drawn uniformly from 0..7, ``delay - 1`` blanks, the delimiter, 10 blanks. The target
    is ``delay + 10`` blanks followed by the 10 symbols. Every step counts (the mask is all
    True). The memoryless baseline predicts blanks, then a uniform guess over the 8 symbols:
    cross-entropy ``10 log 8 / (delay + 20)`` nats per step (use ``tbptt.losses.cross_entropy``).

    Returns a :class:`Task` with inputs ``(B, T, 10)`` one-hot floats (or ``(B, T)`` long ids if
    ``one_hot=False``) and targets ``(B, T)`` long, ``T = delay + 20``.
    """
    b = _check_positive("batch_size", batch_size)
    d = _check_positive("delay", delay)
    t = d + 2 * COPY_LENGTH
    symbols = torch.randint(0, COPY_SYMBOLS, (b, COPY_LENGTH), generator=generator)  # (B, 10)
    ids = torch.full((b, t), BLANK, dtype=torch.long)
    ids[:, :COPY_LENGTH] = symbols
    ids[:, COPY_LENGTH + d - 1] = DELIMITER
    targets = torch.full((b, t), BLANK, dtype=torch.long)
    targets[:, -COPY_LENGTH:] = symbols
    inputs = F.one_hot(ids, 10).to(dtype or torch.get_default_dtype()) if one_hot else ids
    mask = torch.ones(b, t, dtype=torch.bool)
    baseline = COPY_LENGTH * math.log(COPY_SYMBOLS) / t
    return Task(inputs, targets, _first_step(b, t), mask, baseline)


def long_delay(
    batch_size: int,
    delay: int,
    *,
    noise: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Task:
    """Recall, after ``delay`` steps, the sign shown at step 0 (sequences of ``delay + 1`` steps).

    Input step t is ``(s * [t = 0], n_t)``: the sign ``s = +-1`` on channel 0 at step 0 only,
    and distractor noise ``n_t ~ N(0, noise^2)`` on channel 1 at every step. The target, at the
    last step only (the mask), is ``s``. The memoryless baseline predicts 0: mean squared error
    1 (use ``tbptt.losses.mse``). An update every k1 < ``delay`` steps with a gradient reaching
    k2 < ``delay`` steps back never sees step 0 from the loss, so it cannot learn to store ``s``
    (it can only learn to read out what the untrained state happens to keep); exact online
    gradients (:class:`tbptt.online.Online`) can.

    Returns a :class:`Task` with inputs ``(B, delay + 1, 2)``, targets ``(B, delay + 1, 1)``.
    """
    b = _check_positive("batch_size", batch_size)
    d = _check_positive("delay", delay)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    dtype = dtype or torch.get_default_dtype()
    t = d + 1
    sign = torch.randint(0, 2, (b,), generator=generator).to(dtype) * 2 - 1  # (B,)
    inputs = torch.zeros(b, t, 2, dtype=dtype)
    inputs[:, 0, 0] = sign
    inputs[:, :, 1] = noise * torch.randn(b, t, generator=generator, dtype=dtype)
    targets = torch.zeros(b, t, 1, dtype=dtype)
    targets[:, -1, 0] = sign
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[:, -1] = True
    return Task(inputs, targets, _first_step(b, t), mask, 1.0)


def half_squared_error(y: Tensor, targets: Tensor) -> Tensor:
    """``(B, L, ...) -> (B, L)``: ``0.5 * ||y - target||^2`` per step (the UORO paper's loss;
    ``tbptt.losses.mse`` has no 1/2 and averages over features).

    >>> half_squared_error(torch.zeros(1, 2, 1), torch.ones(1, 2, 1))
    tensor([[0.5000, 0.5000]])
    """
    return 0.5 * (y - targets).pow(2).flatten(2).sum(-1)


class InfluenceBalancing(nn.Module):
    """The influence-balancing system (Tallec & Ollivier 2017, UORO; the setting of
    google-research's persistent_es ``influence_balancing``), with one parameter ``theta``.

    State ``s`` (B, n), starting at ``s0 = 1`` (all ones); each step
    ``s_t = A s_{t-1} + theta * x_t * u`` with ``A = 0.5 I + 0.5 N`` (N: ones just above the
    diagonal) and ``u = (+1 x n_positive, -1 x (n - n_positive))``; the output is ``s_t[0]``. Feed
    ``x_t = 1`` and target 1 with :func:`half_squared_error`: the loss ``0.5 (s_t[0] - 1)^2`` is
    0 at the fixed point when ``theta = theta_star`` (-1/6 by default). ``theta`` reaches
    ``s[0]`` positively within a few steps (through the first ``n_positive`` coordinates) but
    negatively in the long run, so truncated gradients with short windows have the wrong sign.

    A step function (the step path: ``x`` (B, 1), returns ``(y (B, 1), s (B, n))``). It also takes
    a chunk ``x`` (B, L, 1) (the chunk path) and computes it in closed form, blocks of up to 128
    steps at a time, ``s_t = A^(t+1) s_in + theta * sum_k x_(t-k) A^k u``: a few tensor ops per
    block instead of a few per step, with the same values and gradients. ``state=None`` means
    ``s0``; pass ``init_state=model.initial_state`` to the engine if the stream has resets.

    >>> model = InfluenceBalancing()
    >>> round(model.theta_star, 6), model.theta.item()
    (-0.166667, 0.5)
    >>> y, s = model(torch.ones(1, 1, dtype=torch.float64), None)   # one step from s0
    >>> y.item(), tuple(s.shape)                                      # 0.5 + 0.5 + theta
    (1.5, (1, 23))
    """

    A: Tensor
    u: Tensor
    BLOCK = 128  # steps per closed-form block on the chunk path

    def __init__(
        self,
        n: int = 23,
        n_positive: int = 10,
        theta: float = 0.5,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        _check_positive("n", n, at_least=2)
        if (
            isinstance(n_positive, bool)
            or not isinstance(n_positive, int)
            or not 0 < n_positive < n
        ):
            raise ValueError(
                f"n_positive must be an integer in [1, n - 1] = [1, {n - 1}], got {n_positive!r}."
            )
        self.n = n
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=dtype))
        A = 0.5 * torch.eye(n, dtype=dtype) + 0.5 * torch.eye(n, dtype=dtype).roll(1, dims=1).triu(
            1
        )
        u = torch.cat(
            [torch.ones(n_positive, dtype=dtype), -torch.ones(n - n_positive, dtype=dtype)]
        )
        self.register_buffer("A", A)  # (n, n)
        self.register_buffer("u", u)  # (n,)
        self._kernels: tuple[Tensor, Tensor] | None = None

    @property
    def theta_star(self) -> float:
        """The theta whose fixed point has ``s[0] = 1``: ``s* = theta (I - A)^-1 u``."""
        eye = torch.eye(self.n, dtype=self.A.dtype, device=self.A.device)
        response = torch.linalg.solve(eye - self.A, self.u)[0]  # s*[0] / theta
        return float(1.0 / response)

    def initial_state(self, batch_size: int) -> Tensor:
        """``s0``: all ones, (B, n)."""
        return torch.ones(batch_size, self.n, dtype=self.A.dtype, device=self.A.device)

    def stream(self, length: int, batch_size: int = 1) -> tuple[Tensor, Tensor]:
        """Inputs ``x_t = 1`` (B, T, 1) and targets 1 (B, T, 1) for ``length`` steps."""
        ones = torch.ones(batch_size, length, 1, dtype=self.A.dtype, device=self.A.device)
        return ones, ones.clone()

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        s = self.initial_state(x.shape[0]) if state is None else state  # (B, n)
        if x.dim() == 3:  # a chunk (B, L, 1): the chunk path
            ys = []
            for lo in range(0, x.shape[1], self.BLOCK):
                y, s = self._block(x[:, lo : lo + self.BLOCK, 0], s)
                ys.append(y)
            return torch.cat(ys, dim=1), s  # (B, L, 1)
        s = s @ self.A.T + self.theta * x * self.u  # (B, n); x (B, 1)
        return s[:, :1], s

    def _block(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Steps ``x`` (B, l), l <= BLOCK, from ``s`` (B, n) in closed form."""
        length = x.shape[1]
        powers, kernel = self._block_kernels()
        padded = F.pad(x, (length - 1, 0)).unsqueeze(1)  # (B, 1, 2l - 1)
        drive = F.conv1d(padded, kernel[:, :, -length:]).transpose(1, 2)  # (B, l, n)
        free = (powers[:length] @ s.T).permute(2, 0, 1)  # (B, l, n): A^(t+1) s
        states = free + self.theta * drive  # (B, l, n)
        return states[..., :1], states[:, -1]

    def _block_kernels(self) -> tuple[Tensor, Tensor]:
        """A^1..A^BLOCK (BLOCK, n, n) and the drive kernel A^k u, time-reversed for conv1d
        (n, 1, BLOCK); built once per dtype and device (A and u are constants)."""
        if (
            self._kernels is None
            or self._kernels[0].dtype != self.A.dtype
            or self._kernels[0].device != self.A.device
        ):
            power = torch.eye(self.n, dtype=self.A.dtype, device=self.A.device)
            powers, drive = [], []
            for _ in range(self.BLOCK):
                drive.append(power @ self.u)  # A^k u
                power = self.A @ power
                powers.append(power)
            kernel = torch.stack(drive).flip(0).T.unsqueeze(1).contiguous()  # (n, 1, BLOCK)
            self._kernels = (torch.stack(powers), kernel)
        return self._kernels

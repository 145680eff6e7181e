"""Truncation rules: where a stream is cut into updates and how far each update looks back.

A rule answers two questions for the engine (semantics in DESIGN.md §2):

- ``next_length(start)``: steps shown on the forward pass before the next update (k1; ``None``
  = until the stream ends);
- ``cut(start, stop)``: for the update after chunk ``[start, stop)``, the step whose incoming
  state is held constant. Losses at steps ``>= max(start, cut)`` of the chunk are trained on.

>>> TBPTT(4, 6).cut(8, 12), TBPTT(4, 2).cut(8, 12), TBPTT(4).cut(8, 12), BPTT().cut(0, 99)
(6, 10, 8, 0)
"""

from __future__ import annotations

from dataclasses import dataclass


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


def _check_steps(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer number of steps, got {value!r}. "
            f"Pass e.g. {name}=25; for full backpropagation through time use tbptt.BPTT()."
        )
    return value


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
        _check_steps("k1", self.k1)
        if self.k2 is None:
            object.__setattr__(self, "k2", self.k1)
        _check_steps("k2", self.k2)

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

"""Input checks shared by the splitters and batchers, and the flat storage they build on.

Every check raises a ``TypeError``/``ValueError`` that names the argument, shows the value
received and says how to fix it. ``_prepare`` turns a list of sequences (and their targets)
into one flat tensor of steps plus per-sequence lengths and offsets; everything else in
``tbptt.data`` is integer index arithmetic over that storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
"""A ``torch.Tensor`` or a ``numpy.ndarray`` (converted with ``torch.as_tensor``)."""

Targets = Sequence[ArrayLike] | ArrayLike | Literal["next"] | None
"""``None`` (no targets), ``"next"`` (next-step prediction), or one target array per sequence."""

TargetAt = Literal["step", "end"]
Tail = Literal["pad", "drop"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name}: expected an int, got {value!r} ({type(value).__name__}). "
            f"Pass a whole number >= {minimum}, e.g. {name}={max(minimum, 1)}."
        )
    if value < minimum:
        raise ValueError(
            f"{name}: expected an int >= {minimum}, got {value}. Pass {name}>={minimum}."
        )
    return int(value)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected {options}, got {value!r}. Pass one of {options}.")
    return value


def _as_tensor(name: str, value: object) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    raise TypeError(
        f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}. "
        f"Convert it first, e.g. torch.as_tensor({name})."
    )


def _as_list(name: str, value: object, stacked_min_dim: int) -> list[Tensor]:
    """A list/tuple of arrays, or one array stacked along dim 0 (at least ``stacked_min_dim``)."""
    if isinstance(value, (Tensor, np.ndarray)):
        if value.ndim < stacked_min_dim:
            raise TypeError(
                f"{name}: got a single array of shape {tuple(value.shape)}; expected a list of "
                f"sequences (or an array (N, T, ...) of N sequences). For one sequence: [{name}]."
            )
        return [_as_tensor(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name}: expected a list of tensors/arrays, got {type(value).__name__}. "
            f"Pass a list such as [torch.randn(T_0, F), torch.randn(T_1, F)]."
        )
    return [_as_tensor(f"{name}[{i}]", v) for i, v in enumerate(value)]


def _check_finite(name: str, t: Tensor) -> None:
    if not (t.is_floating_point() or t.is_complex()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        what = "NaN" if bool(torch.isnan(t[first])) else "inf"
        raise ValueError(
            f"{name} contains {what} at index {first} (shape {tuple(t.shape)}). "
            "Clean or impute missing values first (e.g. torch.nan_to_num, or drop/interpolate "
            "the bad steps), or pass check_finite=False if this is intended."
        )


def check_sequences(sequences: object, *, check_finite: bool = True) -> list[Tensor]:
    """Validate a list of sequences ``(T_i, ...)`` with the same step shape; return tensors."""
    seqs = _as_list("sequences", sequences, stacked_min_dim=2)
    if not seqs:
        raise ValueError(
            "sequences: got an empty list. Pass at least one sequence of shape (T, F)."
        )
    step_shape = tuple(seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise ValueError(
                f"sequences[{i}]: got a 0-dim tensor ({s.item()!r}); each sequence needs a time "
                "dim, shape (T,) or (T, F). Wrap scalars: torch.tensor([x])."
            )
        if s.shape[0] == 0:
            raise ValueError(
                f"sequences[{i}] is empty (shape {tuple(s.shape)}). Remove empty sequences "
                "first, e.g. [s for s in sequences if len(s) > 0]."
            )
        if tuple(s.shape[1:]) != step_shape:
            raise ValueError(
                f"sequences[{i}] has step shape {tuple(s.shape[1:])} (shape {tuple(s.shape)}) but "
                f"sequences[0] has {step_shape}. Every sequence needs the same feature size; "
                "check for a missing or extra feature column."
            )
        if check_finite:
            _check_finite(f"sequences[{i}]", s)
    return seqs


@dataclass(frozen=True)
class Prepared:
    """Sequences flattened into one tensor of steps (internal)."""

    x: Tensor  # (S, ...) every step, sequence after sequence
    y: Tensor | None  # (S, ...) the target of every step, or None
    m: Tensor  # (S,) bool: this step's loss counts (False only before the end with "end")
    lengths: IntArray  # (N,) input steps of each sequence
    offsets: IntArray  # (N,) index of each sequence's first step in x
    next_step: bool = False  # targets="next": the target of x[i] is x[i + 1] (no copy kept)

    @property
    def num_sequences(self) -> int:
        return len(self.lengths)

    def targets(self, index: Tensor, valid: Tensor) -> Tensor | None:
        """The targets of the steps at ``index`` (zeros where not ``valid``), or None."""
        if self.next_step:
            return take(self.x, index + 1, valid)
        return None if self.y is None else take(self.y, index, valid)


def _check_targets(
    targets: object, seqs: list[Tensor], target_at: str, check_finite: bool
) -> list[Tensor]:
    tgts = _as_list("targets", targets, stacked_min_dim=1)
    if len(tgts) != len(seqs):
        raise ValueError(
            f"targets: got {len(tgts)} target entries for {len(seqs)} sequences. "
            "Give exactly one target per sequence, in the same order as sequences."
        )
    if target_at == "step":
        ref = None
        for i, (t, s) in enumerate(zip(tgts, seqs, strict=True)):
            if t.ndim == 0 or t.shape[0] != s.shape[0]:
                got = "a 0-dim target" if t.ndim == 0 else f"{t.shape[0]} steps"
                raise ValueError(
                    f"targets[{i}] has {got} (shape {tuple(t.shape)}) but sequences[{i}] has "
                    f"{s.shape[0]} steps. Per-step targets must be aligned with the inputs step by "
                    "step: for next-step prediction pass targets='next'; for one target per "
                    "sequence pass target_at='end'."
                )
            if ref is None:
                ref = tuple(t.shape[1:])
            elif tuple(t.shape[1:]) != ref:
                raise ValueError(
                    f"targets[{i}] has step shape {tuple(t.shape[1:])} but targets[0] has {ref}. "
                    "Every target sequence needs the same per-step shape."
                )
    else:
        for i, t in enumerate(tgts):
            if t.shape != tgts[0].shape:
                raise ValueError(
                    f"targets[{i}] has shape {tuple(t.shape)} but targets[0] has "
                    f"{tuple(tgts[0].shape)}. With target_at='end' give one target of the same "
                    "shape per sequence (e.g. a class id), not a target per step."
                )
    if check_finite:
        for i, t in enumerate(tgts):
            _check_finite(f"targets[{i}]", t)
    return tgts


def prepare(
    sequences: object,
    targets: object = None,
    target_at: object = "step",
    *,
    features_last: bool = False,
    check_finite: bool = True,
) -> Prepared:
    """Validate ``sequences``/``targets`` and flatten them (see ``Prepared``).

    ``targets``: ``None``; ``"next"`` (input ``x[t]``, target ``x[t+1]``: each sequence loses
    its last step); or one entry per sequence: ``(T_i, ...)`` aligned with the inputs when
    ``target_at="step"``, one target ``(...)`` per sequence when ``target_at="end"`` (it is
    repeated on every step of the sequence and only the last step's mask is True).
    ``features_last``: turn ``(T,)`` input sequences into ``(T, 1)`` (the splitters' layout).
    """
    at = check_choice("target_at", target_at, ("step", "end"))
    seqs = check_sequences(sequences, check_finite=check_finite)
    if features_last and seqs[0].ndim == 1:
        seqs = [s.unsqueeze(-1) for s in seqs]
    tgts: list[Tensor] | None = None
    if isinstance(targets, str):
        if targets != "next":
            raise ValueError(
                f"targets: got the string {targets!r}; the only string accepted is 'next' "
                "(next-step prediction). Otherwise pass one target array per sequence or None."
            )
        for i, s in enumerate(seqs):
            if s.shape[0] < 2:
                raise ValueError(
                    f"sequences[{i}] has {s.shape[0]} step; targets='next' needs at least 2 steps "
                    "per sequence (input x[t], target x[t+1]). Remove or merge the short sequences."
                )
    elif targets is not None:
        tgts = _check_targets(targets, seqs, at, check_finite)

    full = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(full)[:-1]]).astype(np.int64)
    next_step = isinstance(targets, str)
    lengths = full - 1 if next_step else full  # "next": the last step is only a target
    x = torch.cat(seqs)  # (S, ...)
    y: Tensor | None = None
    if tgts is not None:
        if at == "end":
            tgts = [t.expand(n, *t.shape) for t, n in zip(tgts, lengths.tolist(), strict=True)]
        y = torch.cat(tgts)  # (S, ...)
    if at == "end":
        m = torch.zeros(x.shape[0], dtype=torch.bool)
        m[torch.from_numpy(offsets + lengths - 1)] = True
    else:
        m = torch.ones(x.shape[0], dtype=torch.bool)
    return Prepared(x, y, m, lengths, offsets, next_step)


def take(flat: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """``flat[index]`` with zeros where ``valid`` is False. index/valid: (B, T) -> (B, T, ...)."""
    out = flat[index.clamp_min(0)]  # (B, T, ...)
    keep = valid.view(*valid.shape, *([1] * (out.ndim - valid.ndim)))
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype))

"""State pytrees: the hidden state a recurrent model carries from one step to the next.

A state is a tensor or a (nested) tuple, list or dict of tensors: ``h`` for nn.GRU/RNN,
``(h, c)`` for nn.LSTM, anything for a custom model. Each leaf has a *batch dim*: 1 for the
``(layers, B, H)`` states of nn.LSTM/GRU/RNN, 0 for cells and batch-first custom states.

>>> import torch
>>> h, c = torch.ones(2, 3, 4), torch.ones(2, 3, 4)       # (layers, B, H)
>>> rows = torch.tensor([False, True, False])              # reset row 1 only
>>> h2, c2 = reset_rows((h, c), rows, initial=None, batch_dim=1)
>>> h2[:, 1].abs().sum().item(), h2[:, 0].sum().item()
(0.0, 8.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

State = Any
"""A tensor, or a tuple/list/dict (nested) of tensors; ``None`` before the first step."""


def tree_map(fn: Callable[..., Any], tree: State, *rest: State) -> State:
    """Apply ``fn`` leaf-wise over one or more states of the same structure.

    >>> tree_map(lambda a, b: a + b, (torch.ones(1), [torch.ones(1)]), (torch.ones(1), [torch.ones(1)]))
    (tensor([2.]), [tensor([2.])])
    """
    if isinstance(tree, Tensor):
        return fn(tree, *rest)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        items = [tree_map(fn, *leaves) for leaves in zip(tree, *rest)]
        if isinstance(tree, list):
            return items
        if hasattr(tree, "_fields"):  # namedtuple
            return type(tree)(*items)
        return tuple(items)
    if tree is None:
        return None
    raise TypeError(
        f"state: expected a tensor or a tuple/list/dict of tensors, got {type(tree).__name__}. "
        "Return your model's state as tensors (e.g. `(h, c)`), not other objects."
    )


def leaves(tree: State) -> list[Tensor]:
    """All tensors of a state, in a fixed order."""
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    return []


def detach(state: State) -> State:
    """Cut the graph: the same values, no history (the truncation point)."""
    return tree_map(lambda t: t.detach(), state)


def zeros_like(state: State) -> State:
    """A state of zeros with the same structure, shapes, dtypes and devices."""
    return tree_map(torch.zeros_like, state)


def is_finite(state: State) -> bool:
    """True when every floating leaf is free of NaN and inf (one host sync)."""
    flags = [torch.isfinite(t).all() for t in leaves(state) if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _row_view(rows: Tensor, leaf: Tensor, batch_dim: int) -> Tensor:
    """Reshape a (B,) bool vector so it broadcasts along ``batch_dim`` of ``leaf``."""
    shape = [1] * leaf.dim()
    shape[batch_dim] = rows.shape[0]
    return rows.view(shape)


def reset_rows(state: State, rows: Tensor, initial: State, batch_dim: int | State = 0) -> State:
    """Put the batch rows where ``rows`` is True back to ``initial`` (zeros when ``None``).

    Other rows keep their values and their gradient history; no gradient crosses a reset.
    ``initial`` may have batch size 1 (a learned initial state), broadcast to every row.
    ``batch_dim`` is one int for every leaf, or a pytree of ints shaped like ``state``.
    """
    if not isinstance(rows, Tensor) or rows.dtype != torch.bool or rows.dim() != 1:
        got = f"{rows.dtype} {tuple(rows.shape)}" if isinstance(rows, Tensor) else repr(rows)
        raise TypeError(f"rows must be a (B,) bool tensor (True: reset that row), got {got}.")
    if initial is None:
        initial = zeros_like(state)
    dims = batch_dim if not isinstance(batch_dim, int) else tree_map(lambda _: batch_dim, state)

    def check(leaf: Tensor, d: int) -> None:
        if not 0 <= d < leaf.dim() or leaf.shape[d] != rows.shape[0]:
            raise ValueError(
                f"rows has {rows.shape[0]} entries but a state leaf of shape {tuple(leaf.shape)} "
                f"has batch dim {d}. Pass batch_dim= the dim that holds the {rows.shape[0]} rows."
            )

    tree_map(check, state, dims)
    return tree_map(
        lambda s, i, d: torch.where(_row_view(rows, s, d), i.to(s.dtype), s), state, initial, dims
    )

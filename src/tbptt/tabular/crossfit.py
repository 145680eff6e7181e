"""Cross-fitted ensembles for classification: how the training sequences are shared out.

A classify run's default (``--folds K``, K = 4) splits the training sequences into K stratified
folds and trains an :class:`tbptt.tabular.model.Ensemble` of K members side by side on one
stream: member m's loss is masked to 0 on fold m's sequences, so it learns from the other K-1
folds. Validation is out-of-fold: every training sequence is scored by the one member that did
not train on it, so the best checkpoint is chosen on *all* the training sequences (ArrowHead: 36
instead of the 12 of a 30 % held-out split), and the final model, the K members' class
probabilities averaged, has learned from every sequence. This is cross-validation turned into
an ensemble (Krogh & Vedelsby, 1995, "Neural network ensembles, cross validation, and active
learning", NeurIPS 7: each member trained on the data less one part and validated on that part),
and, for the out-of-fold scores, cross-fitting (Chernozhukov et al., 2018, "Double/debiased
machine learning for treatment and structural parameters", The Econometrics Journal 21(1)).

The fold of each sequence travels in its target: a classify target is ``(1 + K,)`` integers,
the class id then one weight per member (:func:`fold_targets`); the loss
(:func:`tbptt.tabular.model.crossfit_cross_entropy`) and the metrics
(:class:`tbptt.tabular.model.ClassifyMetrics`) read the weights, so one loss serves training
(weights ``fold != m``) and validation (``fold == m``).

>>> folds = assign_folds(np.array(["a", "a", "b", "b", "b", "a"]), 2, seed=0)
>>> np.bincount(folds).tolist(), np.bincount(folds[[0, 1, 5]]).tolist()  # sizes; class a
([3, 3], [2, 1])
>>> fold_targets(np.array([2, 0]), np.array([1, 0]), 2, held=False).tolist()
[[2, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tbptt.tabular.model import ClassifyMetrics, crossfit_cross_entropy

__all__ = [
    "CLASSIFY_BEST_BY",
    "CLASSIFY_FOLDS",
    "assign_folds",
    "choose_best_by",
    "choose_folds",
    "cross_fitted",
    "fold_targets",
]

CLASSIFY_FOLDS = 4
"""Classify: the default number of folds, and so of cross-fitted members (``--folds``). Against
one model with a held-out split, 4-fold cross-validation of the training splits (seeds 0, 1):
ArrowHead 0.667 -> 0.681, ACSF1 0.545 -> 0.535, UnitTest 0.975 -> 1.000, OSULeaf 0.675 -> 0.680
(docs/quality.md)."""


def assign_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) fold of each sequence in ``0 .. k-1``: stratified (each class's sequences, in an
    order drawn from ``seed``, dealt to the folds in turn, continuing from one class to the
    next, so that the folds' sizes differ by one at most and each class is spread evenly)."""
    if not 2 <= k <= len(labels):
        raise ValueError(
            f"--folds {k}: cross-fitting needs 2 to {len(labels)} folds for {len(labels)} "
            "sequences; give a smaller --folds, or --folds 1 for one model and a held-out "
            "--val-fraction."
        )
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c)) for c in pd.unique(labels)]
    )
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(labels)) % k
    return folds


def fold_targets(classes: np.ndarray, folds: np.ndarray, k: int, held: bool) -> np.ndarray:
    """(N, 1 + k) int64 targets: each sequence's class id, then member m's weight: 1 where m
    trains on it (``held=False``: the fold is not m's) or scores it (``held=True``: out-of-fold,
    the fold is m's), else 0."""
    own = folds[:, None] == np.arange(k)[None, :]  # (N, k)
    weights = own if held else ~own
    return np.concatenate([classes[:, None], weights], 1).astype(np.int64)


CLASSIFY_BEST_BY = "accuracy"
"""Classify: the validation score that chooses the best checkpoint (``--best-by``). The
cross-entropy peaks within the first few evaluations, while the out-of-fold accuracy keeps
rising. Pooled with 1-NN DTW as by default, 4-fold cross-validation of the training splits
(seeds 0; 1): ArrowHead 0.722 -> 0.750; 0.667 level, ACSF1 0.560 -> 0.660; 0.570 -> 0.670,
OSULeaf 0.685 -> 0.720; 0.715 -> 0.735, UnitTest 1.000 on both (docs/quality.md)."""


def choose_best_by(cfg: Any, task: str) -> str | None:
    """``--best-by`` of a run: classify: given, else ``CLASSIFY_BEST_BY``; refused for the
    other tasks (their loss chooses).

    >>> from types import SimpleNamespace as NS
    >>> choose_best_by(NS(best_by=None), "classify"), choose_best_by(NS(best_by=None), "regress")
    ('accuracy', None)
    """
    given = getattr(cfg, "best_by", None)
    if task != "classify":
        if given is not None:
            raise ValueError(
                f"--best-by {given}: accuracy and loss are the choices of --task classify (this "
                f"run is --task {task}, whose loss chooses its best checkpoint); drop --best-by."
            )
        return None
    return str(given or CLASSIFY_BEST_BY)


def choose_folds(cfg: Any, task: str) -> int:
    """The folds of a run (``data_defaults``): classify: ``--folds``, else
    ``CLASSIFY_FOLDS`` unless ``--members`` or ``--val-fraction`` asks for the held-out split
    (then 1); a --folds that contradicts them, or given for another task, is refused."""
    k = cfg.folds
    if task != "classify":
        if k is not None:
            raise ValueError(
                f"--folds {k}: cross-fitted members serve --task classify only (this run is "
                f"--task {task}); drop --folds."
            )
        return 1
    if k is None:
        return 1 if cfg.members is not None or cfg.val_fraction is not None else CLASSIFY_FOLDS
    if k > 1 and cfg.val_fraction is not None:
        raise ValueError(
            f"--folds {k} validates out-of-fold, with no held-out fraction; drop --val-fraction "
            f"{cfg.val_fraction}, or give --folds 1 to hold it out."
        )
    if k > 1 and cfg.members not in (None, k):
        raise ValueError(
            f"--folds {k} trains one member per fold, but --members is {cfg.members}; drop "
            f"--members, or give --folds 1 for {cfg.members} members and a held-out split."
        )
    return int(k)


def cross_fitted(parts: Any, xs: list[np.ndarray], ys: np.ndarray, folds: np.ndarray) -> Any:
    """A classify job's parts (``tbptt.tabular.job``: its sequences ``xs``, class ids ``ys``
    (N,)) made cross-fitted: every sequence trains the members of the other folds and
    validates the member of its own, out-of-fold; the loss, metrics, split and description
    say so."""
    k = int(folds.max()) + 1
    parts.train_x, parts.val_x = list(xs), list(xs)
    parts.train_y = list(fold_targets(ys, folds, k, held=False))  # (1 + k,) each
    parts.val_y = list(fold_targets(ys, folds, k, held=True))
    parts.loss_fn = crossfit_cross_entropy(k)
    parts.metrics = ClassifyMetrics(len(parts.spec.classes), k, parts.metrics.best_by)
    parts.split = {"folds": folds.tolist()}
    parts.extra["members"] = k
    parts.desc = (
        f"{len(xs)} sequences in {k} stratified folds, each member trained on {k - 1} of them; "
        "validation out-of-fold (each sequence scored by the member that did not train on it)"
    )
    return parts

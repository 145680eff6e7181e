"""The nearest-neighbour partner of ``--data`` classification: the network's class
probabilities pooled with those of 1-NN under dynamic time warping, where the run's own
validation says the pool does better.

1-NN DTW (Sakoe & Chiba, 1978, "Dynamic programming algorithm optimization for spoken word
recognition", IEEE TASSP 26(1)) is the standard baseline of the UCR/UEA archives (Dau et al.,
2019, "The UCR time series archive") and hard to beat where a test sequence has near-copies in
the training set (PLAID's appliance recordings), which a small recurrent network does not
memorise. So, once, after training, each validation sequence gets two class distributions:

- the network's (out-of-fold for a cross-fitted run, ``crossfit.py``: the member that did not
  train on it; the held-out sequences otherwise);
- the 1-NN's: the class of its nearest reference sequence under DTW (the references: the
  sequences the network trained on, the sequence itself left out), given probability ``a``, the
  1-NN's own validation accuracy with Laplace's rule of succession (``(k + 1) / (n + 2)`` for
  ``k`` of ``n`` right, so that no class gets probability 0), and the other classes
  ``(1 - a) / (C - 1)`` each;

and the network's weight ``w`` in ``w * network + (1 - w) * 1-NN`` (a linear opinion pool,
Stone 1961, "The opinion pool", Annals of Mathematical Statistics 32(4); the weight fitted on out-of-fold predictions, as in stacked generalisation, Wolpert
1992, "Stacked generalization", Neural Networks 5(2)) is the one of ``WEIGHTS`` with the lowest
validation cross-entropy. ``w = 1`` (the network alone) where the 1-NN adds nothing. Every class
probability of the run from then on is pooled with that weight: ``tbptt predict``,
``tbptt.load(RUN).predict`` and the report, which says the weight and the network's scores alone
(the validation scores of a pooled run are optimistic: the weight was chosen on them).

Cost: DTW is quadratic in the sequences' lengths, and every prediction is compared with every
reference. Sequences are first averaged over windows of ``p`` steps (piecewise aggregate
approximation, Keogh et al., 2001, "Dimensionality reduction for fast similarity search in large
time series databases", KAIS 3(3)), ``p`` the smallest with at most ``POOL_CELLS`` DTW cells for
all pairs of references; where that leaves fewer than ``MIN_POINTS`` points in a typical
sequence, there is no pool (sequences short to begin with are compared as they are). The
references (averaged) and the weight are saved in the run folder (``FILE``). DTW itself is
``dtaidistance``'s C implementation (Meert et al., 2020, "DTAIDistance", Zenodo).

>>> paa(np.arange(5.0).reshape(5, 1), 2).ravel().tolist()
[0.5, 2.5, 4.0]
>>> pool = DTWPool(0.5, 0.8, 0.8, 1, [np.zeros((3, 1)), np.ones((3, 1))], np.array([0, 1]), 2)
>>> pool.probabilities([np.full((4, 1), 0.9)]).round(2).tolist()  # nearest: the second
[[0.2, 0.8]]
>>> pool.apply(np.array([[1.0, 0.0]]), [np.full((4, 1), 0.9)]).round(2).tolist()
[[0.6, 0.4]]
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FILE",
    "MIN_POINTS",
    "POOL_CELLS",
    "WEIGHTS",
    "DTWPool",
    "choose_pool",
    "dtw_matrix",
    "fit_pool",
    "fit_run_pool",
    "paa",
    "pool_summary",
]

WEIGHTS = tuple(np.round(np.linspace(1.0, 0.0, 11), 2))
"""The network's weight in the candidate pools (1: the network alone, 0: the 1-NN alone)."""

POOL_CELLS = 5e9
"""DTW cells allowed for all pairs of references, ``(sum of lengths / p)^2 / 2``: about a
minute on one core of a 2-core AMD EPYC (PLAID, 537 sequences of 100 to 1,344 steps: p = 2)."""

MIN_POINTS = 8
"""No pool where the averaging leaves a median sequence fewer points than this."""

FILE = "dtw_pool.npz"
"""The pool's file in the run folder: the weight, the 1-NN accuracy, p, the references."""

_BLOCK = 256
"""Query sequences compared with the references at a time (bounds the distance matrix)."""


def paa(x: np.ndarray, p: int) -> np.ndarray:
    """(T, F) -> (ceil(T / p), F): the mean of each window of ``p`` steps (the last window
    over the steps it has)."""
    if p <= 1:
        return np.ascontiguousarray(x, dtype=np.float64)
    n = -(-len(x) // p)
    sums = np.add.reduceat(np.asarray(x, dtype=np.float64), np.arange(0, len(x), p), axis=0)
    counts = np.minimum(p, len(x) - np.arange(n) * p)[:, None]
    return sums / counts


def compression(lengths: np.ndarray, cells: float = POOL_CELLS) -> int | None:
    """The window ``p`` of :func:`paa` for references of these lengths (the smallest whose
    pairs take at most ``cells`` DTW cells), or ``None`` where averaging would leave a median
    sequence fewer than ``MIN_POINTS`` points (sequences that short are compared as they are).

    >>> compression(np.array([100] * 10)), compression(np.array([1000] * 10**5))
    (1, None)
    """
    total = float(np.sum(lengths))
    p = max(1, int(np.ceil(total / np.sqrt(2.0 * cells))))
    return p if p == 1 or np.median(lengths) / p >= MIN_POINTS else None


def _dtaidistance() -> tuple[Any, Any]:
    """dtaidistance's univariate and multivariate DTW modules, with their C library."""
    try:
        from dtaidistance import dtw, dtw_ndim
    except ImportError:
        raise ImportError(
            "the 1-NN DTW pool of classify runs needs dtaidistance: pip install dtaidistance "
            "(or pip install 'tbptt[train]'); --dtw-pool off trains without it."
        ) from None
    if not dtw.try_import_c():
        raise ImportError(
            "dtaidistance's compiled C library is missing (the pure-Python DTW would take "
            "hours): reinstall it from a wheel, pip install --force-reinstall dtaidistance, or "
            "train with --dtw-pool off."
        )
    return dtw, dtw_ndim


def dtw_matrix(queries: list[np.ndarray] | None, refs: list[np.ndarray]) -> np.ndarray:
    """(Q, R) DTW distances (the square root of the summed squared differences along the best
    warping path, the whole window) between sequences ``(T_i, F)`` of any lengths;
    ``queries=None``: the references with themselves, (R, R), each pair computed once."""
    dtw, dtw_ndim = _dtaidistance()
    univariate = refs[0].shape[1] == 1
    flat = [np.ascontiguousarray(r[:, 0]) for r in refs] if univariate else refs
    if queries is None:
        ndim = dtw if univariate else dtw_ndim
        return np.asarray(ndim.distance_matrix_fast(flat, compact=False))
    out = np.empty((len(queries), len(refs)))
    for start in range(0, len(queries), _BLOCK):
        part = queries[start : start + _BLOCK]
        q = [np.ascontiguousarray(s[:, 0]) for s in part] if univariate else part
        block = ((0, len(q)), (len(q), len(q) + len(flat)))
        if univariate:
            d = dtw.distance_matrix_fast(q + flat, block=block, compact=False)
        else:
            d = dtw_ndim.distance_matrix_fast(q + flat, block=block, compact=False)
        out[start : start + len(q)] = d[: len(q), len(q) :]
    return out


@dataclass
class DTWPool:
    """The network's ``weight``; the 1-NN's validation ``accuracy`` and the probability it
    gives its class, ``confidence``; the averaging window ``p``; the references (each
    averaged, ``(T_i / p, F)``) and their class ids."""

    weight: float
    accuracy: float
    confidence: float
    p: int
    refs: list[np.ndarray]
    labels: np.ndarray
    n_classes: int

    _memo: tuple[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def distances(self, seqs: list[np.ndarray]) -> np.ndarray:
        """(N, R) DTW distances of sequences ``(T_i, F)`` (not averaged) to the references;
        the last ones asked are kept (a report asks for the training file's twice, and its
        1-NN search with each left out is the same matrix)."""
        queries = [paa(s, self.p) for s in seqs]
        key = _digest(queries)
        if self._memo is None or self._memo[0] != key:
            same = key == _digest(self.refs)
            self._memo = (key, dtw_matrix(None if same else queries, self.refs))
        return self._memo[1]

    def probabilities(self, seqs: list[np.ndarray], loo: bool = False) -> np.ndarray:
        """(N, C) the 1-NN's class probabilities of sequences ``(T_i, F)`` (not averaged);
        ``loo``: they are the references themselves, each compared with the others only."""
        d = self.distances(seqs)
        if loo:
            d = d.copy()
            np.fill_diagonal(d, np.inf)
        return self._calibrated(self.labels[d.argmin(1)])

    def _calibrated(self, nearest: np.ndarray) -> np.ndarray:
        other = (1.0 - self.confidence) / max(1, self.n_classes - 1)
        q = np.full((len(nearest), self.n_classes), other)
        q[np.arange(len(nearest)), nearest] = self.confidence
        return q

    def apply(self, prob: np.ndarray, seqs: list[np.ndarray], loo: bool = False) -> np.ndarray:
        """(N, C) the pooled probabilities of the network's ``prob`` (N, C)."""
        if self.weight >= 1.0:
            return prob
        return self.weight * prob + (1.0 - self.weight) * self.probabilities(seqs, loo)

    def describe(self) -> str:
        return (
            f"{self.weight:.1f} x the network + {1 - self.weight:.1f} x 1-NN DTW (its class "
            f"given probability {self.confidence:.3f})"
        )

    def save(self, run_dir: Path) -> None:
        lengths = np.array([len(r) for r in self.refs])
        tmp = run_dir / (FILE + ".partial.npz")
        np.savez(
            tmp,
            weight=self.weight,
            accuracy=self.accuracy,
            confidence=self.confidence,
            p=self.p,
            refs=np.concatenate(self.refs),
            lengths=lengths,
            labels=self.labels,
            n_classes=self.n_classes,
        )
        tmp.replace(run_dir / FILE)

    @classmethod
    def read(cls, run_dir: Path) -> DTWPool | None:
        """The run's pool, or ``None`` (no pool: ``--dtw-pool off``, or a run before it)."""
        path = Path(run_dir) / FILE
        if not path.is_file():
            return None
        with np.load(path) as z:
            refs = np.split(z["refs"], np.cumsum(z["lengths"])[:-1])
            return cls(
                float(z["weight"]),
                float(z["accuracy"]),
                float(z["confidence"]),
                int(z["p"]),
                refs,
                z["labels"],
                int(z["n_classes"]),
            )


def _digest(seqs: list[np.ndarray]) -> str:
    """A fingerprint of a list of arrays (their shapes and bytes)."""
    h = hashlib.sha1()
    for x in seqs:
        h.update(str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _cross_entropy(prob: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(prob[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_pool(
    net_prob: np.ndarray,
    seqs: list[np.ndarray],
    labels: np.ndarray,
    scored: np.ndarray,
    refs: np.ndarray,
    n_classes: int,
) -> DTWPool | None:
    """The pool of a run: ``seqs`` every sequence ``(T_i, F)`` (the network's inputs before
    patching), ``labels`` (N,) their class ids, ``net_prob`` (len(scored), C) the network's
    validation probabilities of the sequences ``scored``; ``refs`` the indices of the
    sequences it trained on (a cross-fitted run: all, and ``scored`` too, each left out of its
    own 1-NN search). ``None`` where the references are too long for the budget
    (:func:`compression`) or fewer than two, nothing is scored, or an input is not finite."""
    lengths = np.array([len(seqs[i]) for i in refs])
    p = compression(lengths)
    if p is None or len(refs) < 2 or not len(scored) or not all(np.isfinite(s).all() for s in seqs):
        return None
    ref_seqs = [paa(seqs[i], p) for i in refs]
    pool = DTWPool(1.0, 1.0, 1.0, p, ref_seqs, labels[refs], n_classes)
    d = pool.distances([seqs[i] for i in scored])  # (S, R)
    if np.array_equal(scored, refs):  # each left out of its own search
        d = d.copy()
        np.fill_diagonal(d, np.inf)
    y, nearest = labels[scored], pool.labels[d.argmin(1)]
    right = int(np.sum(nearest == y))
    pool.accuracy = right / len(y)
    pool.confidence = (right + 1) / (len(y) + 2)  # Laplace's rule of succession
    q = pool._calibrated(nearest)  # (S, C)
    losses = [_cross_entropy(w * net_prob + (1 - w) * q, y) for w in WEIGHTS]
    pool.weight = float(WEIGHTS[int(np.argmin(losses))])  # ties: the larger network weight
    return pool


def pool_summary(pool: DTWPool | None) -> dict[str, Any]:
    """What ``summary.json`` says of a run's pool (``None``: none, the references too long)."""
    if pool is None:
        why = "the training sequences are too long for its budget, or fewer than 2"
        return {"used": False, "why": why}
    return {
        "used": pool.weight < 1.0,
        "network_weight": pool.weight,
        "p": pool.p,
        "nearest_neighbour_accuracy": pool.accuracy,
    }


def fit_run_pool(pred: Any, panel: Any) -> DTWPool | None:
    """:func:`fit_pool` for a trained classify run (``pred``, a
    :class:`~tbptt.tabular.predict.Predictor`) on its own training file's ``panel``: scored
    out-of-fold (cross-fitted, ``crossfit.py``) or on its held-out sequences."""
    spec, folds = pred.spec, pred.extra.get("folds")
    index = {c: j for j, c in enumerate(spec.classes)}
    labels = np.array([index[v] for v in panel.frame[spec.targets[0]].to_numpy()[panel.offsets]])
    every = np.arange(len(labels))
    if folds is not None:
        scored = refs = every
        net = pred.class_probabilities(panel, np.asarray(folds), pooled=False)  # (N, C)
    else:
        scored = np.asarray(pred.extra["val_ids"], dtype=np.int64)
        refs = np.setdiff1d(every, scored)
        net = pred.class_probabilities(panel, pooled=False)[scored]  # (S, C)
    return fit_pool(net, pred.sequences(panel), labels, scored, refs, len(spec.classes))


def choose_pool(cfg: Any, task: str, streamed: bool) -> str | None:
    """``--dtw-pool``'s value for a new run: ``on``/``off`` for classification (on where not
    given; off for a streamed file), ``None`` for the other tasks; refused where it cannot
    serve.

    >>> from types import SimpleNamespace as NS
    >>> choose_pool(NS(dtw_pool=None), "classify", False), choose_pool(NS(dtw_pool=None), "forecast", False)
    ('on', None)
    """
    given = getattr(cfg, "dtw_pool", None)
    if task != "classify":
        if given is not None:
            raise ValueError(
                f"--dtw-pool {given}: the 1-NN DTW pool serves --task classify only (this run "
                f"is --task {task}); drop --dtw-pool."
            )
        return None
    if given == "on" and streamed:
        raise ValueError(
            f"--dtw-pool on: {getattr(cfg, 'data', 'the file')} is streamed (too many rows to "
            "hold in memory), and the pool compares every sequence with every other; use "
            "--dtw-pool off or a smaller file."
        )
    resolved = given or ("off" if streamed else "on")
    if resolved == "on":
        try:
            _dtaidistance()
        except ImportError as e:
            if given == "on":
                raise ValueError(f"--dtw-pool on: {e}") from None
            warnings.warn(f"no 1-NN DTW pool for this run: {e}", stacklevel=2)
            return "off"
    return resolved

"""Sweep subsequence lengths or a (k1, k2) grid with Optuna; each trial is a real training run.

Every trial calls ``train_fn(k1, k2) -> metrics`` (a dict with at least the objective, by
default ``"val_loss"``; ``"tokens_per_s"``, ``"peak_memory_mb"`` and ``"seconds"`` are plotted
when present). The grid is searched with Optuna's ``GridSampler`` (Akiba et al. 2019, "Optuna: A
Next-generation Hyperparameter Optimization Framework"); with an RDB ``storage`` such as
``"sqlite:///sweep.db"``, several processes running the same :func:`sweep` share one study and
split the grid: each grid point is trained once (a trial whose point another process already
ran or is running is pruned before it trains).

>>> result = sweep(lambda k1, k2: {"val_loss": abs(k2 - 20) / 10 + 1 / k1}, lengths=[10, 20, 40])
>>> result.best["k1"], result.best["k2"], result.best["val_loss"]
(20, 20, 0.05)
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["StudyMismatch", "SweepResult", "grid", "load_sweep", "sweep"]

TrainFn = Callable[[int, int], dict[str, float]]


class StudyMismatch(ValueError):
    """The study named in the storage holds a sweep of another grid."""


@dataclass
class SweepResult:
    """The finished trials of a sweep (from every process sharing its storage)."""

    study_name: str
    objective: str  # the metric minimised
    trials: list[dict[str, Any]] = field(default_factory=list)  # k1, k2, number, metrics...

    @property
    def best(self) -> dict[str, Any]:
        """The trial with the lowest objective."""
        if not self.trials:
            raise ValueError("The sweep has no finished trials; run some before asking the best.")
        return min(self.trials, key=lambda t: t[self.objective])

    def summary(self) -> str:
        """A table of the trials, best last line."""
        keys = [
            k for k in ("k1", "k2", self.objective, "tokens_per_s", "peak_memory_mb", "seconds")
        ]
        keys = [k for k in dict.fromkeys(keys) if any(k in t for t in self.trials)]
        rows = ["  ".join(f"{k:>14}" for k in keys)]
        for t in sorted(self.trials, key=lambda t: (t["k1"], t["k2"])):
            rows.append("  ".join(f"{_fmt(t.get(k)):>14}" for k in keys))
        b = self.best
        rows.append(f"best: k1={b['k1']} k2={b['k2']} {self.objective}={_fmt(b[self.objective])}")
        return "\n".join(rows)

    def plot_loss(self, path: str | Path | None = None) -> Figure:
        """The objective against k2, one line per k1 (against the length when k1 = k2)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 4), layout="constrained")
        ax = fig.subplots()
        equal = all(t["k1"] == t["k2"] for t in self.trials)
        groups: dict[Any, list[dict[str, Any]]] = {}
        for t in self.trials:
            groups.setdefault("k1 = k2" if equal else t["k1"], []).append(t)
        for key, ts in groups.items():
            ts.sort(key=lambda t: t["k2"])
            label = key if equal else f"k1 = {key}"
            ax.plot([t["k2"] for t in ts], [t[self.objective] for t in ts], "o-", label=label)
        b = self.best
        ax.plot([b["k2"]], [b[self.objective]], "*", ms=15, color="gold", mec="k", label="best")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("subsequence length" if equal else "k2 (backward steps)")
        ax.set_ylabel(self.objective)
        ax.set_title(f"{self.study_name}: {self.objective} against length", fontsize=10)
        ax.legend(fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig

    def pareto(self, time_key: str = "seconds") -> list[dict[str, Any]]:
        """The trials no other trial beats on both the objective and ``time_key``."""
        ts = [t for t in self.trials if time_key in t]
        return sorted(
            (
                t
                for t in ts
                if not any(
                    o[self.objective] <= t[self.objective]
                    and o[time_key] <= t[time_key]
                    and (o[self.objective] < t[self.objective] or o[time_key] < t[time_key])
                    for o in ts
                )
            ),
            key=lambda t: t[time_key],
        )

    def plot_pareto(self, path: str | Path | None = None, time_key: str = "seconds") -> Figure:
        """The objective against training time (``time_key``), the Pareto front joined."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 4), layout="constrained")
        ax = fig.subplots()
        ts = [t for t in self.trials if time_key in t]
        ax.scatter([t[time_key] for t in ts], [t[self.objective] for t in ts], color="0.6")
        for t in ts:
            ax.annotate(
                f"({t['k1']},{t['k2']})",
                (t[time_key], t[self.objective]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        front = self.pareto(time_key)
        ax.plot(
            [t[time_key] for t in front],
            [t[self.objective] for t in front],
            "o-",
            color="tab:red",
            label="Pareto front",
        )
        ax.set_xlabel(time_key)
        ax.set_ylabel(self.objective)
        ax.set_title(f"{self.objective} against {time_key}, (k1,k2) labelled", fontsize=10)
        ax.legend(fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig


def sweep(
    train_fn: TrainFn,
    *,
    lengths: Sequence[int] | None = None,
    k1s: Sequence[int] | None = None,
    k2s: Sequence[int] | None = None,
    storage: str | None = None,
    study_name: str = "tbptt-sweep",
    objective: str = "val_loss",
    n_trials: int | None = None,
) -> SweepResult:
    """Train ``train_fn(k1, k2)`` on every point of a grid; return every finished trial.

    Args:
        train_fn: runs one training and returns its metrics, e.g. ``{"val_loss": 1.4,
            "tokens_per_s": 5e4, "peak_memory_mb": 210}``; the time it takes is recorded as
            ``"seconds"`` unless it reports that itself.
        lengths: subsequence lengths L, trained as TBPTT(L, L). Or give ``k1s`` and ``k2s``
            for the full grid (``k2s`` alone: every k2 with k1 = k2).
        storage: an Optuna storage URL (``"sqlite:///sweep.db"``) shared by several processes;
            ``None``: in memory. Start one process a moment before the others (or create the
            study first) so that they do not race to create the tables.
        study_name: the study in the storage (loaded if it exists).
        objective: the metric to minimise.
        n_trials: stop this process after that many trials (default: until the grid is done).
    """
    import optuna

    points = grid(lengths, k1s, k2s)
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable as train_fn(k1, k2) -> dict, got {train_fn!r}.")
    square = all(a == b for a, b in points)  # k1 = k2: one parameter, the length
    space: dict[str, list[int]] = (
        {"length": [a for a, _ in points]}
        if square
        else {"k1": sorted({a for a, _ in points}), "k2": sorted({b for _, b in points})}
    )
    rdb: Any = storage
    if isinstance(storage, str) and storage.startswith("sqlite"):
        # several processes write to one file: wait for its lock rather than fail after 5 s
        rdb = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 120}})
    study = optuna.create_study(
        study_name=study_name, storage=rdb, direction="minimize", load_if_exists=True
    )
    saved = study.user_attrs.get("grid")
    if saved is not None and saved != space:
        raise StudyMismatch(
            f"study {study_name!r} in storage {storage!r} holds a sweep of another grid "
            f"({saved}, now {space}); mixing them would mix their trials. Pass another "
            "study_name (--study-name) or the same grid."
        )
    if saved is None:
        study.set_user_attr("grid", space)
    # The grid sampler shuffles the grid with its seed and maps trial numbers (unique in the
    # storage) to grid points: one fixed seed makes every process agree on that map.
    study.sampler = optuna.samplers.GridSampler(space, seed=0)
    taken = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)

    def run(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        for other in study.get_trials(deepcopy=False, states=taken):
            if other.params == params and other.number < trial.number:
                raise optuna.TrialPruned(f"{params} is run by trial {other.number}")
        k1, k2 = (params["length"],) * 2 if square else (params["k1"], params["k2"])
        start = time.perf_counter()
        metrics = dict(train_fn(k1, k2))
        metrics.setdefault("seconds", time.perf_counter() - start)
        if objective not in metrics:
            raise KeyError(
                f"train_fn returned {sorted(metrics)} without the objective {objective!r}; "
                f"return it or pass objective=... naming one of those."
            )
        for key, value in metrics.items():
            trial.set_user_attr(key, float(value))
        return float(metrics[objective])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(run, n_trials=n_trials, catch=())
    return _result(study, objective)


def load_sweep(
    storage: str, study_name: str = "tbptt-sweep", objective: str = "val_loss"
) -> SweepResult:
    """The finished trials of a sweep kept in ``storage`` (e.g. after several processes ran)."""
    import optuna

    return _result(optuna.load_study(study_name=study_name, storage=storage), objective)


def _result(study: Any, objective: str) -> SweepResult:
    import optuna

    trials = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        params = dict(t.params)
        if "length" in params:
            params["k1"] = params["k2"] = params.pop("length")
        trials.append({"number": t.number, **params, **t.user_attrs})
    return SweepResult(study_name=study.study_name, objective=objective, trials=trials)


def grid(
    lengths: Sequence[int] | None, k1s: Sequence[int] | None, k2s: Sequence[int] | None
) -> list[tuple[int, int]]:
    """The (k1, k2) points of a sweep: ``lengths`` (k1 = k2 = L), ``k2s`` alone (k1 = k2) or
    ``k1s`` x ``k2s``.

    >>> grid(None, [8, 16], [16])
    [(8, 16), (16, 16)]
    """
    for name, values in (("lengths", lengths), ("k1s", k1s), ("k2s", k2s)):
        if values is not None and (
            not len(values)
            or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values
            )
        ):
            raise ValueError(
                f"{name} must be a non-empty list of positive integers, got {values!r}; "
                f"e.g. {name}=[16, 32, 64]."
            )
    lengths, k1s, k2s = (None if v is None else [int(k) for k in v] for v in (lengths, k1s, k2s))
    if lengths is not None:
        if k1s is not None or k2s is not None:
            raise ValueError(
                f"lengths={list(lengths)} and k1s/k2s both given; pass either lengths (k1 = k2 "
                "= L) or k1s with k2s (a grid), not both."
            )
        return [(k, k) for k in sorted(set(lengths))]
    if k2s is None and k1s is not None:
        raise ValueError(
            f"k1s={list(k1s)} needs k2s (the backward lengths of the grid), e.g. "
            f"k2s={list(k1s)}; or pass lengths={list(k1s)} for k1 = k2."
        )
    if k2s is None:
        raise ValueError("Give lengths=[...] (k1 = k2) or k2s=[...] (with k1s=[...] for a grid).")
    if k1s is None:
        return [(k, k) for k in sorted(set(k2s))]
    return [(a, b) for a in sorted(set(k1s)) for b in sorted(set(k2s))]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

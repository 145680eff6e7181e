"""Explain TBPTT(k1, k2): the unrolled network, which losses each update injects, how far back.

The data come from the truncation rule itself (:meth:`tbptt.TBPTT.cut`, the semantics of
docs/semantics.md §2), so the picture shows what the engine does:

- the forward pass runs every step once, carrying the state from step to step;
- after each chunk ``[start, stop)`` of ``k1`` steps there is one update; it holds constant the
  state entering step ``cut``, injects the losses of the chunk's steps ``>= cut`` and sends
  their gradient back to step ``cut``; the chunk's earlier steps (``k2 < k1``) only report their
  losses.

>>> e = explain(2, 4, 6)
>>> [(u.start, u.stop, u.cut) for u in e.updates]
[(0, 2, 0), (2, 4, 0), (4, 6, 2)]
>>> e.updates[2].reach
{4: 3, 5: 4}
>>> print(e.text())  # doctest: +NORMALIZE_WHITESPACE
TBPTT(k1=2, k2=4) over 6 steps
step       0 1 2 3 4 5
forward    o>o>o>o>o>o
update 0   L L . . . .   chunk [0, 2)  cut 0  losses 0-1  reach 1-2
update 1   < < L L . .   chunk [2, 4)  cut 0  losses 2-3  reach 3-4
update 2   . | < < L L   chunk [4, 6)  cut 2  losses 4-5  reach 3-4
L: loss injected   <: gradient flows back through   r: loss reported, not trained   |: state held constant
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tbptt.online import Online
from tbptt.truncation import BPTT, TBPTT, TruncationRule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_STEPS", "Explanation", "UpdatePlan", "explain", "rule_of"]

MAX_STEPS = 100  # the widest picture drawn: (steps / k1) rows of `steps` cells each


def rule_of(k1: int | None, k2: int | None = None, *, online: bool = False) -> TruncationRule:
    """The truncation rule the diagnostics draw and measure: ``BPTT()`` for ``k1=None``, else
    ``TBPTT(k1, k2)`` (``k2=None``: ``k2 = k1``), or ``Online(k1)`` with ``online=True``. The one
    place the diagnostics build rules.

    >>> rule_of(None), rule_of(4, 8), rule_of(4, online=True)
    (BPTT(), TBPTT(k1=4, k2=8), Online(k1=4))
    """
    if online:
        if k1 is None or k2 not in (None, k1):
            raise ValueError(
                f"online=True draws Online(k1): give k1 and no k2 (it reaches the whole past), got "
                f"k1={k1!r}, k2={k2!r}."
            )
        return Online(k1)
    if k1 is None:
        if k2 is not None:
            raise ValueError(
                f"k2={k2!r} needs k1 (without k1 the rule is full BPTT); pass k1 as well."
            )
        return BPTT()
    return TBPTT(k1, k2)


def rule_label(rule: TruncationRule) -> str:
    """How the pictures name a rule: ``"BPTT"``, ``"TBPTT(k1=4, k2=8)"`` or ``"Online(k1=4)"``."""
    return "BPTT" if isinstance(rule, BPTT) else repr(rule)


@dataclass(frozen=True)
class UpdatePlan:
    """One update of the unrolled network."""

    index: int
    start: int  # the chunk [start, stop) run forward before this update
    stop: int
    cut: int  # the state entering this step is held constant (no gradient crosses it)
    injected: tuple[int, ...]  # steps whose losses are trained on by this update
    reported: tuple[int, ...]  # steps of the chunk whose losses are only reported (k2 < k1)
    reach: dict[int, int]  # injected step t -> steps its gradient flows through (t - cut + 1)

    @property
    def window(self) -> tuple[int, int]:
        """The steps ``[cut, stop)`` the backward pass runs through."""
        return self.cut, self.stop


@dataclass(frozen=True)
class Explanation:
    """The data behind the picture of TBPTT(k1, k2) unrolled over ``steps`` steps."""

    label: str
    steps: int
    updates: tuple[UpdatePlan, ...]
    online: bool = False  # the influence before each cut is carried by sensitivities (RTRL)

    def text(self) -> str:
        """The picture as text for a terminal (one row per update)."""
        w = len(str(self.steps - 1))
        cell = "{:>" + str(w) + "}"
        head = "step       " + " ".join(cell.format(t) for t in range(self.steps))
        fwd = "forward    " + ">".join(cell.format("o") for _ in range(self.steps))
        rows = [f"{self.label} over {self.steps} steps", head, fwd]
        for u in self.updates:
            marks = []
            for t in range(self.steps):
                if t in u.reach:
                    m = "L"
                elif u.cut <= t < u.stop:
                    m = "<"
                elif self.online and t < u.cut:
                    m = "s"
                elif t in u.reported:
                    m = "r"
                elif t == u.cut - 1 and u.cut > 0:
                    m = "|"
                else:
                    m = "."
                marks.append(cell.format(m))
            lo, hi = min(u.reach.values(), default=0), max(u.reach.values(), default=0)
            losses = f"{u.injected[0]}-{u.injected[-1]}" if u.injected else "none"
            rows.append(
                f"update {u.index:<3} "
                + " ".join(marks)
                + f"   chunk [{u.start}, {u.stop})  cut {u.cut}  losses {losses}  reach {lo}-{hi}"
            )
        rows.append(
            "L: loss injected   <: gradient flows back through   r: loss reported, not trained"
            + ("   s: influence carried forward, exactly" if self.online else "")
            + "   |: state held constant"
        )
        return "\n".join(rows)

    def plot(self, path: str | Path | None = None) -> Figure:
        """The unrolled network: the forward chain on top, one row per update below it with
        its backward window, injected losses (filled) and reported-only losses (hollow).
        Saved to ``path`` (PNG/SVG by suffix) if given."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        n, rows = self.steps, len(self.updates)
        fig = Figure(
            figsize=(max(5.0, 0.45 * n + 2.5), 1.2 + 0.5 * (rows + 1)), layout="constrained"
        )
        ax = fig.subplots()
        y0 = 0.0  # the forward chain
        ax.scatter(range(n), [y0] * n, s=120, color="0.85", edgecolor="0.3", zorder=3)
        for t in range(n - 1):
            ax.annotate(
                "",
                (t + 0.78, y0),
                (t + 0.22, y0),
                arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 1},
            )
        for u in self.updates:
            y = -(u.index + 1.0)
            chunk = Rectangle((u.start - 0.5, y - 0.32), u.stop - u.start, 0.64, color="0.9")
            ax.add_patch(chunk)  # the chunk run forward before this update
            if u.stop > u.cut:  # the backward window, an arrow from the chunk's end to the cut
                ax.annotate(
                    "",
                    (u.cut - 0.4, y),
                    (u.stop - 0.6, y),
                    arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 2.5, "alpha": 0.6},
                )
            if u.cut > 0:
                ax.plot([u.cut - 0.5] * 2, [y - 0.3, y + 0.3], color="k", lw=2)
            ax.scatter(list(u.injected), [y] * len(u.injected), s=60, color="tab:red", zorder=3)
            ax.scatter(
                list(u.reported),
                [y] * len(u.reported),
                s=60,
                facecolor="white",
                edgecolor="tab:red",
                zorder=3,
            )
        ax.set_yticks(
            [y0] + [-(u.index + 1.0) for u in self.updates],
            ["forward"] + [f"update {u.index}" for u in self.updates],
        )
        ax.set_xticks(range(n))
        ax.set_xlabel("step")
        ax.set_xlim(-0.7, n - 0.3)
        ax.set_ylim(-(rows + 0.7), 0.7)
        ax.set_title(
            f"{self.label}: grey = chunk, red = losses injected, hollow = reported only, "
            "blue = gradient flow, | = cut",
            fontsize=9,
        )
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        if path is not None:
            fig.savefig(path, dpi=80)
        return fig


def explain(k1: int | None, k2: int | None, steps: int, *, online: bool = False) -> Explanation:
    """The unrolled picture of TBPTT(k1, k2) (``k1=None``: full BPTT) over ``steps`` steps.

    ``k2=None`` means ``k2 = k1``. The plan of each update comes from the rule's ``cut``, the
    definition the engine follows (docs/semantics.md §2; Williams & Peng 1990 for k2 > k1). ``online=True`` draws
    :class:`tbptt.online.Online` (k1): the graph is cut at each chunk's start, but the influence
    of every earlier step is carried forward exactly by the layers' sensitivities (``s``), so
    each loss reaches the start of the stream (Williams & Zipser 1989).

    >>> print(explain(2, None, 4, online=True).text())  # doctest: +NORMALIZE_WHITESPACE
    Online(k1=2) over 4 steps
    step       0 1 2 3
    forward    o>o>o>o
    update 0   L L . .   chunk [0, 2)  cut 0  losses 0-1  reach 1-2
    update 1   s s L L   chunk [2, 4)  cut 2  losses 2-3  reach 3-4
    L: loss injected   <: gradient flows back through   r: loss reported, not trained   s: influence carried forward, exactly   |: state held constant
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}; e.g. steps=12.")
    if steps > MAX_STEPS:
        raise ValueError(
            f"steps={steps} is more than the {MAX_STEPS} steps a picture can show (its size "
            f"grows as steps^2 / k1); pass steps <= {MAX_STEPS}: past the first k2 steps the "
            "pattern repeats every k1 steps."
        )
    rule = rule_of(k1, k2, online=online)
    label = rule_label(rule)
    updates: list[UpdatePlan] = []
    a = 0
    while a < steps:
        length = rule.next_length(a)
        b = steps if length is None else min(steps, a + length)
        cut = rule.cut(a, b)
        first = max(a, cut)
        injected = tuple(range(first, b))
        updates.append(
            UpdatePlan(
                index=len(updates),
                start=a,
                stop=b,
                cut=cut,
                injected=injected,
                reported=tuple(range(a, first)),
                reach={t: t + 1 if online else t - cut + 1 for t in injected},
            )
        )
        a = b
    return Explanation(label=label, steps=steps, updates=tuple(updates), online=online)

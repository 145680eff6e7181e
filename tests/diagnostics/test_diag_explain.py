"""explain(): the data behind the unrolled picture match docs/semantics.md §2, restated here per step."""

from __future__ import annotations

import pytest

from tbptt.diagnostics import explain


def expected(k1: int, k2: int, n: int) -> dict[int, tuple[int, int] | None]:
    """§2 restated per loss step t: (index of the update that trains it, first step its gradient
    reaches), or None when its loss is only reported.

    Chunks are [c*k1, min((c+1)*k1, n)), one update after each. If k2 >= k1, the update holds
    the state entering a - (k2 - k1) constant (not before the stream start) and trains every
    loss of its chunk; if k2 < k1 it trains only the chunk's last k2 steps, from max(a, b - k2).
    """
    out: dict[int, tuple[int, int] | None] = {}
    for t in range(n):
        c = t // k1  # the chunk holding step t
        a, b = c * k1, min(c * k1 + k1, n)
        if k2 >= k1:
            out[t] = (c, max(0, a - (k2 - k1)))
        else:
            first = max(a, b - k2)
            out[t] = (c, first) if t >= first else None
    return out


@pytest.mark.parametrize("k1, k2", [(2, 4), (4, 4), (4, 2)])
@pytest.mark.parametrize("n", [12, 11])
def test_explain_matches_the_semantics(k1, k2, n):
    e = explain(k1, k2, n)
    got: dict[int, tuple[int, int] | None] = {}
    for u in e.updates:
        assert (u.stop - u.start) == min(k1, n - u.start)  # the forward chunks tile the stream
        for t in u.injected:
            assert t not in got, f"loss {t} injected twice"
            got[t] = (u.index, u.cut)
            assert u.reach[t] == t - u.cut + 1  # steps the gradient flows through
        for t in u.reported:
            got[t] = None
    assert got == expected(k1, k2, n)
    assert len(e.updates) == -(-n // k1)


def test_explain_by_hand_for_2_4():
    """The example of docs/guide.md: losses backpropagated between k2 - k1 + 1 = 3 and k2 = 4 steps."""
    e = explain(2, 4, 8)
    assert [(u.start, u.stop, u.cut) for u in e.updates] == [
        (0, 2, 0),
        (2, 4, 0),
        (4, 6, 2),
        (6, 8, 4),
    ]
    assert e.updates[3].reach == {6: 3, 7: 4}
    text = e.text()
    assert "update 3" in text and "chunk [6, 8)  cut 4" in text


def test_explain_bptt_and_plot(tmp_path):
    e = explain(None, None, 5)
    assert [(u.start, u.stop, u.cut, u.injected) for u in e.updates] == [(0, 5, 0, (0, 1, 2, 3, 4))]
    explain(4, 2, 10).plot(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_explain_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match=rf"steps must be a positive integer, got {steps!r}"):
        explain(2, 2, steps)


def test_explain_rejects_bad_k():
    with pytest.raises(ValueError, match="k1 must be a positive integer"):
        explain(0, 2, 5)

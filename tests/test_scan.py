"""The custom-autograd scan (tbptt.scan) against a plain step loop, and chunked against whole."""

from __future__ import annotations

import pytest
import torch

from tbptt.elementwise import LRU, MinGRU
from tbptt.scan import scan, scan_loop


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("complex_", [False, True])
def test_scan_equals_step_loop_float32_4096(complex_: bool) -> None:
    """Values and all three gradients within 1e-6 relative at 4,096 steps in float32."""
    g = torch.Generator().manual_seed(0)
    shape = (2, 4096, 8)
    mag = 0.9 + 0.1 * torch.rand(shape, generator=g)  # long memory: |a| up to 1
    b = torch.randn(shape, generator=g)
    if complex_:
        a = mag * torch.exp(1j * 0.1 * torch.randn(shape, generator=g))
        b = torch.complex(b, torch.randn(shape, generator=g))
    else:
        a = mag
    h0 = torch.randn(2, 8, generator=g).to(a.dtype)
    w = torch.randn(shape, generator=g).to(a.dtype)  # a fixed linear loss
    got, want = [], []
    for fn, out in ((scan, got), (scan_loop, want)):
        leaves = [t.clone().requires_grad_() for t in (a, b, h0)]
        h = fn(*leaves)
        (h * w).real.sum().backward()
        out.extend([h.detach(), *(t.grad for t in leaves)])
    for x, y in zip(got, want):
        assert _rel(x, y) < 1e-6


def test_scan_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"same \(B, T, H\) shape"):
        scan(torch.zeros(1, 3, 2), torch.zeros(1, 4, 2))


@pytest.mark.parametrize("make", [lambda: MinGRU(3, 16), lambda: LRU(3, 16)])
@pytest.mark.parametrize("online", [False, True])
def test_chunked_with_carried_state_equals_whole(make, online: bool) -> None:
    """4,096 steps in float32, whole vs in chunks of 100 with the state carried."""
    torch.manual_seed(0)
    layer = make()
    layer.online = online
    x = torch.randn(2, 4096, 3)
    with torch.no_grad():
        whole, s_whole = layer(x, None)
        parts, state = [], None
        for lo in range(0, 4096, 100):
            y, state = layer(x[:, lo : lo + 100], state)
            parts.append(y)
    assert _rel(torch.cat(parts, 1), whole) < 1e-6
    for a, b in zip(state, s_whole):  # sensitivities too, when online
        assert _rel(a, b) < 1e-5

"""Receptive fields where a merge's inputs sit on different jumps: an FPN on an odd-sized input.

Along H, 33 -> 17 -> 9 -> 5 and ``interpolate(size=9)`` reads ``floor(o * 5/9)``: its units are uneven (mean
jump 4.44 against the lateral's 4), so no infinite-grid pattern holds the sum; the analysis follows both
axes unit by unit on the finite map. Reference: autograd back to the input (real pixels only), which the
analysis (padding positions count as grid positions) may exceed but never undercut; here they agree.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze


class _FPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = (nn.Conv2d(2, 2, 3, stride=2, padding=1) for _ in range(3))
        self.l1, self.l2, self.l3 = (nn.Conv2d(2, 2, 1) for _ in range(3))
        self.out = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.c1(x)
        b = self.c2(a)
        c = self.c3(b)
        p2 = self.l2(b) + F.interpolate(self.l3(c), size=b.shape[-2:], mode="nearest")
        p1 = self.l1(a) + F.interpolate(p2, size=a.shape[-2:], mode="nearest")
        return self.out(p1)


class _TwoJumps(nn.Module):
    """A 1x1 stride-2 conv and a 5x5 stride-1 conv both map 9 to 5: the sum mixes jumps 2 and 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 1, stride=2), nn.Conv2d(2, 2, 5)
        self.out = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.a(x) + self.b(x))


def _autograd(net: nn.Module, shape: tuple[int, int, int]) -> tuple[int, int]:
    net = net.double().eval()
    positive(net)
    x = (torch.rand(1, *shape, dtype=torch.double) + 0.5).requires_grad_(True)
    return widest_reach(net(x), x)


@pytest.mark.parametrize(
    ("make", "shape", "expected"),
    [(_FPN, (2, 33, 47), (23, 23)), (_FPN, (2, 64, 64), (23, 23)), (_TwoJumps, (2, 9, 9), (7, 7))],
    ids=["fpn 33x47", "fpn 64x64", "jumps 2 and 1"],
)
def test_merge_of_different_jumps_matches_autograd(
    make: type[nn.Module], shape: tuple[int, int, int], expected: tuple[int, int]
) -> None:
    truth = _autograd(make(), shape)
    rf = analyze(make(), shape).layers[-1].rf
    assert rf is not None
    assert all(got >= want for got, want in zip(rf.size, truth)), (rf.size, truth)  # never an under-count
    assert tuple(rf.size) == expected == truth  # no padding reaches the widest unit: exact


def test_a_nearest_x2_top_down_add_says_how_far_apart_the_centres_are() -> None:
    # FPN's nearest x2 repeats each coarse unit: the upsampled map's units sit half a fine unit off the
    # lateral's (the warning gave the two grids only)
    message = next(w.message for w in analyze(_FPN(), (2, 64, 64)).warnings if w.layer == "add")
    assert "along H and W the centres are 2 px apart, half a unit of 4 px" in message

"""Receptive fields through upsampling and padding modes, as PyTorch computes them.

Reference: autograd (float64, positive weights: the gradient of one output unit is non-zero exactly on the
units that reach it, bicubic's negative taps included), back to the output of a first 3x3 conv whose units
keep their textbook spans (padding positions are grid positions, as everywhere in cnnlab). ``size`` is the
widest span over the output units. On a finite map (after an uneven adaptive pool) that is exact for every
unit; on the infinite grid (a 12x12 map, no pool) the textbook size is what the units inside reach.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze
from cnnlab.arith import rf_input, rf_upsample


def fields(pre: nn.Conv2d, post: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Largest (H, W) field of ``post``'s units: autograd back to ``pre``'s output, then the textbook span
    of every ``pre`` unit reached (unit u of a k/p conv sees pixels u - p .. u - p + k - 1)."""
    pre, post = pre.double().eval(), post.double().eval()
    positive(pre, post)
    k, p = pre.kernel_size[0], pre.padding[0]
    assert isinstance(p, int) and pre.stride == (1, 1)
    h = pre(torch.rand(1, *shape, dtype=torch.double) + 0.5).detach().requires_grad_(True)
    return widest_reach(post(h), h, k)


class _Interpolate(nn.Module):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, **self.kwargs)


class _Pad(nn.Module):
    def __init__(self, pad: tuple[int, ...], mode: str) -> None:
        super().__init__()
        self.pad, self.mode = pad, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad, mode=self.mode)


# (the map the op sees: after an uneven pool 11 -> 4 or 7 -> 3 on the finite map, or 12x12 unpooled)
MAPS = {"11->4": (11, 4), "7->3": (7, 3), "12": (12, None)}

UPSAMPLING: dict[str, Any] = {
    # bicubic mixes four neighbours (it was followed as bilinear: 7 after 7 -> 3, autograd 9)
    "bicubic x2": lambda: nn.Upsample(scale_factor=2, mode="bicubic"),
    "bicubic size 7 corners": lambda: _Interpolate(size=7, mode="bicubic", align_corners=True),
    "bicubic x0.6": lambda: _Interpolate(scale_factor=0.6, mode="bicubic"),
    # PyTorch's bicubic copies the map when no axis changes size (x1.1 on 4 or 3 units: was 6 after 7 -> 3,
    # autograd 3); one axis that keeps its size while the other grows is resampled all the same
    "bicubic x1.1": lambda: _Interpolate(scale_factor=1.1, mode="bicubic"),
    "bicubic x(1.1, 1.5)": lambda: _Interpolate(scale_factor=(1.1, 1.5), mode="bicubic"),
    # align_corners reads o * (n-1)/(m-1), not (o + 1/2) * n/m - 1/2
    "bilinear size 7 corners": lambda: _Interpolate(size=7, mode="bilinear", align_corners=True),
    # PyTorch reads the given scale_factor, not the rounded size ratio (0.6 on 4 units: 2 units, 5/3 apart)
    "nearest x0.6": lambda: _Interpolate(scale_factor=0.6),
    "bilinear x0.6": lambda: _Interpolate(scale_factor=0.6, mode="bilinear"),
    "bilinear x1.3": lambda: nn.Upsample(scale_factor=1.3, mode="bilinear"),
    "nearest-exact x1.5": lambda: _Interpolate(scale_factor=1.5, mode="nearest-exact"),
    "nearest-exact size 7": lambda: _Interpolate(size=7, mode="nearest-exact"),
    # area is adaptive average pooling
    "area x2": lambda: _Interpolate(scale_factor=2, mode="area"),
    "area size 7": lambda: _Interpolate(size=7, mode="area"),
}

PADDING: dict[str, Any] = {
    # circular padding wraps: a unit at the border sees the opposite edge (11 after 11 -> 4, autograd 13;
    # 5 on the unpooled 12x12 map, autograd 14)
    "CircularPad2d(1) conv3": lambda: nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 1, 3)),
    "F.pad circular conv3 s2": lambda: nn.Sequential(_Pad((2, 0, 0, 2), "circular"), nn.Conv2d(1, 1, 3, stride=2)),
    "conv circular": lambda: nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"),
    # reflect and replicate read the units they copy: a dilated window at the border reaches further
    "ReflectionPad2d(1) conv2 d3": lambda: nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(1, 1, 2, dilation=3)),
    "F.pad reflect conv2 d3": lambda: nn.Sequential(_Pad((2, 2, 2, 2), "reflect"), nn.Conv2d(1, 1, 2, dilation=3)),
    "ReplicationPad2d(1) conv2 d3": lambda: nn.Sequential(nn.ReplicationPad2d(1), nn.Conv2d(1, 1, 2, dilation=3)),
    "conv replicate d2": lambda: nn.Conv2d(1, 1, 3, padding=2, dilation=2, padding_mode="replicate"),
    "conv reflect": lambda: nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"),
    "ZeroPad2d conv2 d3": lambda: nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 1, 2, dilation=3)),
}


def _check(where: str, op: nn.Module) -> None:
    """The op right after the pool, and with a padded 3x3 conv after it."""
    n, pooled = MAPS[where]
    pre = nn.Conv2d(1, 1, 3, padding=1)
    post = nn.Sequential(nn.AdaptiveAvgPool2d(pooled) if pooled else nn.Identity(), op)
    for after in (post, nn.Sequential(post, nn.Conv2d(1, 1, 3, padding=1, dtype=torch.double))):
        rf = analyze(nn.Sequential(pre, after), (1, n, n)).layers[-1].rf
        assert rf is not None and rf.size == fields(pre, after, (1, n, n)), after


@pytest.mark.parametrize("where", sorted(MAPS))
@pytest.mark.parametrize("case", sorted(UPSAMPLING))
def test_upsampling_modes(case: str, where: str) -> None:
    _check(where, UPSAMPLING[case]())


@pytest.mark.parametrize("where", sorted(MAPS))
@pytest.mark.parametrize("case", sorted(PADDING))
def test_padding_modes(case: str, where: str) -> None:
    _check(where, PADDING[case]())


def test_circular_padding_on_the_infinite_grid_sees_the_opposite_edge() -> None:
    # the textbook grid has no edge: 5 (3 + 2) where the units at the border see columns 0 and 11 (14)
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"))
    rows = analyze(net, (1, 12, 12)).layers
    assert rows[-1].rf is not None and rows[-1].rf.size == (14, 14)
    assert rows[-1].rf_min == (14, 14)
    # reflect keeps the textbook size there: a unit at the border sees no more than one inside
    net[1].padding_mode = "reflect"
    reflected = analyze(net, (1, 12, 12)).layers[-1]
    assert reflected.rf is not None and reflected.rf.size == (5, 5)


def test_bicubic_on_the_infinite_grid() -> None:
    assert rf_upsample(rf_input(1), 2, "bicubic").size == (4,)  # two source units on each side
    assert rf_upsample(rf_input(1), 2, "bilinear").size == (2,)
    assert rf_upsample(rf_input(1), 1, "bicubic").size == (1,)  # the source is a whole unit: weights 0, 1, 0, 0
    corners = rf_upsample(rf_input(1), 2, "bilinear", align_corners=True)  # o/2: 0, 0.5, 1, ...
    assert (corners.size, corners.start) == ((2,), (0.0,))


def test_an_antialiased_interpolate_is_not_followed() -> None:
    # its window grows with the downsampling factor: no exact-looking number, rf-unknown says so
    net = nn.Sequential(nn.Conv2d(1, 1, 3), _Interpolate(scale_factor=0.5, mode="bilinear", antialias=True))
    report = analyze(net, (1, 12, 12))
    assert report.layers[-1].rf is None
    assert "rf-unknown" in [w.rule for w in report.warnings if w.layer == report.layers[-1].name]

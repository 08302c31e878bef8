"""Gates broadcast from one unit (SE blocks, per-axis attention, ASPP's image pooling) widen the field but
do not move the grid.

``y + y * sigmoid(fc(y.mean((2, 3)))).view(...)`` is every SE-ResNet/MBConv block with a residual: the gate
sees the whole map, so each unit's field grows to it (autograd), but the gate says nothing about where the
units sit: start and jump stay those of ``y`` and nothing is misaligned.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze


class _SEResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.fc, self.post = nn.Conv2d(3, 3, 3), nn.Linear(3, 3), nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # (1, 3, 14, 14) on 16x16: start 1
        gate = torch.sigmoid(self.fc(y.mean((2, 3)))).view(-1, 3, 1, 1)  # (1, 3) -> (1, 3, 1, 1)
        out: torch.Tensor = self.post(y + y * gate)
        return out


class _AxisGates(nn.Module):
    """``sigmoid(y.mean(3, keepdim)) * sigmoid(y.mean(2, keepdim))``: (H, 1) times (1, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.post = nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        out: torch.Tensor = self.post(torch.sigmoid(y.mean(3, keepdim=True)) * torch.sigmoid(y.mean(2, keepdim=True)))
        return out


class _ImagePooling(nn.Module):
    """DeepLab ASPP's image-pooling branch: the map pooled to one unit, resampled back to full size, merged."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.a, self.b, self.proj = nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.pool, self.post, self.mode = nn.AdaptiveAvgPool2d(1), nn.Conv2d(6, 3, 3), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        pooled = nn.functional.interpolate(self.proj(self.pool(y)), size=y.shape[-2:], mode=self.mode)
        out: torch.Tensor = self.post(torch.cat([self.b(y), pooled], 1))
        return out


def _check(model: nn.Module, shape: tuple[int, int, int]) -> None:
    report = analyze(model, shape)
    assert not [w for w in report.warnings if w.rule == "rf-misaligned"]  # was start [1, 1] vs the map centre
    row = report.layer("post")
    assert row.rf is not None
    assert row.rf.start == (2.0, 2.0) and row.rf.jump == (1.0, 1.0)  # two unpadded 3x3 convs
    positive(model)
    # a small input keeps the sigmoids off saturation, where float64 rounds their gradient to 0
    x = (0.01 * torch.rand(1, *shape, dtype=torch.float64)).requires_grad_(True)
    assert row.rf.size == widest_reach(model.double()(x), x)  # the gate widens every unit to the map


def test_se_gate_with_residual_keeps_the_grid() -> None:
    _check(_SEResidual(), (3, 16, 16))  # start was 8.5: the gate's (the map centre) + 1


def test_per_axis_gates_keep_the_grid() -> None:
    _check(_AxisGates(), (3, 11, 13))  # start was (2, 6): W's place and start came from the (H, 1) gate
    assert analyze(_AxisGates(), (3, 11, 13)).layer("post").rf_min == (5, 5)  # was (5, 3)


def test_image_pooling_branch_keeps_the_grid() -> None:
    # the upsampled branch's units all see the whole map: its grid (jump 1/9 from resampling one unit) was
    # reported as rf-misaligned against the conv branch
    for mode in ("bilinear", "nearest"):
        _check(_ImagePooling(mode), (3, 11, 13))

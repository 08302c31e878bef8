"""cnnlab.layers inside graph tools: torch.fx traces them, cnnlab.analysis counts them like torch does."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import analyze
from cnnlab.layers import (
    Conv2d,
    ConvBNAct,
    EdgeFilter2d,
    GatedConv2d,
    MaxPool2dIndices,
    MaxUnpool2d,
    P4BatchNorm,
    P4GroupConv2d,
    P4LiftConv2d,
    P4MaxPool2d,
    P4RotationPool,
    ResizeConv2d,
    SumPool2d,
)


class EveryLayer(nn.Module):
    """One of each layer, with the size-dependent ones (strided 'same', unpooling) on odd sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.edge = EdgeFilter2d(["sobel_x", "sobel_y"], 3, padding=1)
        self.c1 = Conv2d(6, 8, 4, stride=2, padding="same", padding_mode="reflect")
        self.c2 = Conv2d(8, 8, 3, padding=((0, 1), (1, 0)))
        self.gated = GatedConv2d(8, 8, 3, stride=2)
        self.block = ConvBNAct(8, 8)
        self.pool = MaxPool2dIndices(2)
        self.unpool = MaxUnpool2d(2)
        self.sum = SumPool2d(2)
        self.up = ResizeConv2d(8, 4)
        self.lift = P4LiftConv2d(4, 2, 3, padding=1)
        self.group = P4GroupConv2d(2, 2, 3, padding=1)
        self.bn = P4BatchNorm(2)
        self.p4pool = P4MaxPool2d(2)
        self.rot = P4RotationPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.gated(self.c2(self.c1(self.edge(x)))))  # 27 -> 14 -> 14 -> 7 -> 7
        y, idx = self.pool(x)  # 7 -> 3
        x = self.unpool(y, idx, x.shape)  # 3 -> 7: the odd size travels with the indices
        x = self.up(self.sum(x))  # 7 -> 3 -> 6
        return self.rot(self.p4pool(self.bn(self.group(self.lift(x)))))  # (B, 2, 3, 3)


def test_symbolic_trace_reproduces_the_model() -> None:
    torch.manual_seed(0)
    model = EveryLayer().eval()
    traced = fx.symbolic_trace(model)  # torch's default tracer: cnnlab layers are traced through
    for size in (27, 30):  # the size-dependent padding is computed at run time, not frozen by the trace
        x = torch.randn(2, 3, size, size)
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_analysis_counts_match_torch() -> None:
    torch.manual_seed(1)
    model = EveryLayer().eval()
    x = torch.randn(1, 3, 27, 27)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(x)
    report = analyze(model, (3, 27, 27), lint=False)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.trainable_params == report.totals.params - 6 * 9  # the frozen edge filters
    assert report.totals.macs == counter.get_total_flops() // 2
    assert report.layers[-1].output_shape == tuple(out.shape)

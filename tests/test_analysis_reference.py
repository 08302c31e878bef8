"""Pinned reference numbers: DESIGN.md's table, the seeds' worked examples and textbook receptive fields."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
import torch.nn as nn

from cnnlab.analysis import analyze
from cnnlab.errors import AnalysisError
from cnnlab.models import create_model


def _meta_model(name: str, **kwargs: object) -> nn.Module:
    # full-size zoo models built on the meta device: exact shapes and counts, no weight memory
    with torch.device("meta"):
        return create_model(name, **kwargs)


def test_vgg16_at_224() -> None:
    report = analyze(_meta_model("vgg16"), (3, 224, 224))
    assert report.totals.params == 138_357_544
    assert round(report.totals.macs / 1e9, 2) == 15.47
    conv5_3, pool5 = report.layer("features.28"), report.layer("features.30")
    assert conv5_3.rf is not None and pool5.rf is not None
    assert (conv5_3.rf.size, conv5_3.rf.jump) == ((196, 196), (16.0, 16.0))
    assert (pool5.rf.size, pool5.rf.jump) == ((212, 212), (32.0, 32.0))


def test_resnet50_at_224() -> None:
    report = analyze(_meta_model("resnet50"), (3, 224, 224))
    assert report.totals.params == 25_557_032
    assert round(report.totals.macs / 1e9, 2) == 4.09
    last = report.final_spatial_rf
    assert last is not None and last.size == (427, 427) and last.jump == (32.0, 32.0)
    # the shortcut path of 1x1 convs is the smallest receptive field into the last stage
    assert report.layer("layer4.2.add").rf_min == (11, 11)


# seed 000_826d3f3e8e67bb60.txt: "# name n j RF" for VGG-16 on a 32x32 input
SEED_VGG16_32 = [
    ("input", 32, 1, 1), ("conv1_1", 32, 1, 3), ("conv1_2", 32, 1, 5), ("maxpool", 16, 2, 6),
    ("conv2_1", 16, 2, 10), ("conv2_2", 16, 2, 14), ("maxpool", 8, 4, 16), ("conv3_1", 8, 4, 24),
    ("conv3_2", 8, 4, 32), ("conv3_3", 8, 4, 40), ("maxpool", 4, 8, 44), ("conv4_1", 4, 8, 60),
    ("conv4_2", 4, 8, 76), ("conv4_3", 4, 8, 92), ("maxpool", 2, 16, 100), ("conv5_1", 2, 16, 132),
    ("conv5_2", 2, 16, 164), ("conv5_3", 2, 16, 196), ("maxpool", 1, 32, 212), ("adaptivepool", 1, 32, 212),
    ("linear", 1, 32, 212),
]  # fmt: skip


def test_seed_vgg16_table_on_32x32() -> None:
    report = analyze(_meta_model("vgg16_cifar"), (3, 32, 32))
    kinds = ("input", "conv", "pool", "adaptive_pool", "linear")
    rows = [r for r in report.layers if r.kind in kinds]
    assert len(rows) == len(SEED_VGG16_32) == 21
    for row, (label, n, j, rf) in zip(rows, SEED_VGG16_32):
        assert row.rf is not None
        spatial = row.output_shape[2:] or (1, 1)  # the linear layer's features: a 1x1 grid
        assert (spatial[0], row.rf.jump[0], row.rf.size[0]) == (n, j, rf), label


def test_lenet5_conv1_macs_and_connections() -> None:
    report = analyze(create_model("lenet5"), (1, 32, 32))
    conv1 = report.layers[1]
    assert conv1.type == "Conv2d"
    assert conv1.macs == 117_600  # 6 maps x 28x28 positions x 5x5 taps
    assert conv1.connections == 122_304  # the 1998 paper counts the bias as a connection too
    assert report.totals.params == 61_706


def test_dilated_1d_stack_has_rf_13() -> None:
    net = nn.Sequential(*(nn.Conv1d(1, 1, 3, dilation=d) for d in (1, 2, 3)))
    report = analyze(net, (1, 64))
    assert report.layer("2").rf is not None and report.layer("2").rf.size == (13,)
    assert report.layer("2").output_shape == (1, 1, 64 - 12)


def test_factorised_7x7() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, (1, 7)), nn.Conv2d(8, 8, (7, 1)))
    report = analyze(net, (3, 20, 20))
    assert report.layer("0").rf.size == (1, 7)  # type: ignore[union-attr]
    assert report.layer("1").rf.size == (7, 7)  # type: ignore[union-attr]


def test_seed_conv_layer_params() -> None:
    # seed 001: a 3x3 conv from 3 to 10 channels has (3*3*3*10)+10 = 280 parameters;
    # seed 000: 64 filters of 5x5 over 3 channels have 3*5*5*64+64 = 4,864
    assert analyze(nn.Conv2d(3, 10, 3), (3, 32, 32)).totals.params == 280
    assert analyze(nn.Conv2d(3, 64, 5), (3, 224, 224)).layers[-1].output_shape == (1, 64, 220, 220)
    assert analyze(nn.Conv2d(3, 6, 5), (3, 32, 32)).totals.params == 456


def test_alexnet_layer_shapes_seed_004() -> None:
    report = analyze(_meta_model("alexnet_original"), (3, 227, 227))
    convs = [r.output_shape[1:] for r in report.layers if r.kind == "conv"]
    assert convs[0] == (96, 55, 55)


@pytest.mark.parametrize("scale", [2, 4])
def test_upsample_keeps_size_and_divides_jump(scale: int) -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.Upsample(scale_factor=scale))
    report = analyze(net, (1, 16, 16))
    up = report.layer("1")
    assert up.rf is not None and up.rf.size == (3, 3)  # nearest: one source unit
    assert up.rf.jump == (2 / scale, 2 / scale)


class ScaledConv(nn.Module):
    """LeNet-5's trainable subsampling pattern: a conv, then per-channel and scalar parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5)
        self.coef = nn.Parameter(torch.ones(4))
        self.shift = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.coef.view(1, -1, 1, 1) * self.conv(x)  # the parameter operand comes first
        y = y + self.shift + torch.ones(1, 4, 1, 1)  # a scalar parameter and a constant made in forward
        return torch.nn.functional.avg_pool2d(y, 2)


def test_broadcast_parameter_keeps_rf() -> None:
    report = analyze(ScaledConv(), (1, 16, 16))
    conv, pool = report.layer("conv"), report.layer("avg_pool2d")
    assert conv.rf is not None and pool.rf is not None
    between = report.layers[report.layers.index(conv) + 1 : report.layers.index(pool)]
    assert [r.type for r in between if r.rf is not None] == ["mul", "add", "add"]
    assert {r.rf for r in between if r.rf is not None} == {conv.rf}
    assert (pool.rf.size, pool.rf.jump) == ((6, 6), (2.0, 2.0))
    assert report.layer("view").rf is None  # a parameter alone sees no pixel
    assert report.layer("view").activation_bytes == 0  # a view of a parameter allocates nothing
    assert not [w for w in report.warnings if w.rule in ("rf-misaligned", "rf-unknown")]


def test_lenet5_classic_rf_reaches_the_whole_input() -> None:
    report = analyze(create_model("lenet5_classic"), (1, 32, 32))
    rf = report.final_spatial_rf
    assert rf is not None and rf.size == (32, 32) and rf.jump == (4.0, 4.0)


class Lazy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.LazyLinear(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


def test_lazy_modules_are_sized_on_the_meta_copy() -> None:
    model = Lazy()
    report = analyze(model, (3, 8, 8))
    assert report.layer("head").params == 8 * 36 * 10 + 10 and report.layer("head").macs == 2880
    assert isinstance(model.head.weight, nn.parameter.UninitializedParameter)  # the user's model is untouched
    with pytest.raises(AnalysisError, match=r"layer 'conv' \(Conv2d\) fails on input shape\(s\) \(1, 3, 2, 2\)"):
        analyze(Lazy(), (3, 2, 2))


DOC_MODULES = [
    "", ".analyze", ".report", ".render", ".receptive", ".rfstate", ".onmap", ".seams", ".resample", ".memory",
    ".counts", ".target",
]  # fmt: skip


@pytest.mark.parametrize("name", [f"cnnlab.analysis{m}" for m in DOC_MODULES])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


class Branchy(nn.Module):
    """A strided stem, a residual block whose shortcut is a strided 1x1 conv, a concat, a dilated conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1))
        self.shortcut = nn.Conv2d(2, 2, 1, stride=2)
        self.wide = nn.Conv2d(2, 1, 5, padding=2)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.head = nn.Conv2d(3, 1, 3, dilation=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.body(x) + self.shortcut(x)
        return self.head(torch.cat([y, self.pool(self.wide(y))], dim=1))


def test_rf_of_a_branching_graph_equals_the_gradient_support() -> None:
    # with positive weights nothing cancels: one output unit's gradient covers exactly its receptive field
    net = Branchy()
    for p in net.parameters():
        nn.init.constant_(p, 0.1)
    x = torch.zeros(1, 1, 96, 96, requires_grad=True)
    out = net(x)
    i = out.shape[-1] // 2
    out[0, 0, i, i].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)  # type: ignore[index]
    rf = analyze(net, (1, 96, 96)).layer("head").rf
    assert rf is not None and rf.jump == (4.0, 4.0)
    assert rf.size == (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
    centre = rf.start[0] + i * rf.jump[0]  # the unit's centre in input pixels
    assert (rows.min() + rows.max()) / 2 == centre and (cols.min() + cols.max()) / 2 == rf.start[1] + i * rf.jump[1]

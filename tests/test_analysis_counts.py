"""Params, MACs, memory and receptive fields against PyTorch's own counters and autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _rf_autograd import positive, widest_reach
from cnnlab.analysis import analyze
from cnnlab.errors import AnalysisError
from cnnlab.models import create_model, list_models, model_info


@pytest.mark.parametrize("name", list_models())
def test_zoo_macs_match_flop_counter(name: str) -> None:
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name).eval()
        x = torch.empty(1, *info.input_size)
        with FlopCounterMode(display=False) as counter:  # counts conv and matmul ops, 2 FLOPs per MAC
            model(x)
    report = analyze(model, info.input_size, lint=False)
    assert report.totals.macs == counter.get_total_flops() // 2
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.flops == 2 * report.totals.macs


class Functional(nn.Module):
    """Convolutions and matmuls written with torch.nn.functional and a shared weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.up = nn.Parameter(torch.randn(4, 2, 2, 2))
        self.proj = nn.Linear(2, 5)
        self.unused = nn.Linear(7, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, padding=1) + F.conv2d(x, self.weight, padding=1)  # shared weight
        y = F.conv_transpose2d(y, self.up, stride=2)
        y = F.interpolate(y, scale_factor=0.5)
        return self.proj(y.flatten(2).transpose(1, 2)) @ torch.ones(5, 3)


def test_functional_ops_shared_and_unused_params() -> None:
    model = Functional()
    report = analyze(model, (3, 8, 8))
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 8, 8))
    assert report.totals.macs == counter.get_total_flops() // 2
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    convs = [r for r in report.layers if r.type == "conv2d"]
    assert [r.params for r in convs] == [108, 0]  # the shared weight counts once
    assert report.layer("(unused parameters)").params == 56
    assert any(w.rule == "unused-params" for w in report.warnings)
    assert sum(r.params for r in report.layers) == report.totals.params


def test_transposed_conv_macs_and_rf() -> None:
    net = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
    report = analyze(net, (8, 5, 5))
    row = report.layer("0")
    assert row.output_shape == (1, 4, 10, 10)
    assert row.macs == 8 * 4 * 16 * 25  # every input position scatters a full kernel per output channel
    assert row.rf is not None and row.rf.jump == (0.5, 0.5) and row.rf.size == (2, 2)


def test_misaligned_merge_warns() -> None:
    class Skewed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Sequential(nn.ZeroPad2d((2, 0, 2, 0)), nn.Conv2d(1, 1, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    report = analyze(Skewed(), (1, 8, 8))
    assert [w.layer for w in report.warnings if w.rule == "rf-misaligned"] == ["add"]
    message = next(w.message for w in report.warnings if w.rule == "rf-misaligned")
    assert "(jump [1, 1] start [-1, -1]; jump [1, 1] start [0, 0]); along H and W the centres are 1 px apart, " \
           "1 unit of 1 px:" in message  # fmt: skip
    aligned = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1))
    assert not [w for w in analyze(aligned, (1, 8, 8)).warnings if w.rule == "rf-misaligned"]


def test_memory_peak_and_saved() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3, padding=1))
    report = analyze(net, (1, 8, 8))
    x, a, b = 1 * 64 * 4, 4 * 64 * 4, 2 * 64 * 4  # bytes of the input and both conv outputs (float32)
    assert [r.activation_bytes for r in report.layers] == [x, a, 0, b]  # in-place ReLU allocates nothing
    assert report.totals.peak_inference_bytes == a + b  # the input is freed once conv 0 ran
    assert (
        report.totals.saved_bytes == x + a
    )  # autograd keeps each conv's input (ReLU's output is a's storage)


def test_rf_against_autograd() -> None:
    # the gradient of one central output unit reaches exactly its receptive field
    net = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, stride=2))
    for p in net.parameters():
        nn.init.constant_(p, 1.0)
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    y = net(x)
    y[0, 0, 3, 3].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)  # type: ignore[index]
    report = analyze(net, (1, 40, 40))
    rf = report.layer("2").rf
    assert rf is not None
    assert rf.size[0] >= int(rows.max() - rows.min()) + 1  # max-pool routes to one pixel per window
    centre = (rf.start[0] + 3 * rf.jump[0], rf.start[1] + 3 * rf.jump[1])
    assert rows.min() <= centre[0] <= rows.max() and cols.min() <= centre[1] <= cols.max()


def test_bad_input_size_names_the_layer() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2), nn.Conv2d(8, 8, 5))
    with pytest.raises(AnalysisError, match=r"layer '2' \(Conv2d\) fails on input shape\(s\) \(1, 8, 2, 2\)"):
        analyze(net, (3, 8, 8))
    with pytest.raises(AnalysisError, match=r"layer '0' \(Conv2d\).*expected input.*to have 3 channels"):
        analyze(net, (1, 32, 32))
    with pytest.raises(ValueError, match="input shape must be"):
        analyze(net, (3, 0, 8))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            y = y * 2
        return self.head(y.mean((2, 3)))


def test_hooks_fallback() -> None:
    report = analyze(Untraceable(), (3, 10, 10))
    assert report.capture == "hooks"
    assert any(w.rule == "capture" and "forward hooks" in w.message for w in report.warnings)
    assert report.layer("conv").output_shape == (1, 4, 8, 8)
    assert report.layer("head").macs == 8
    assert report.totals.params == 4 * 27 + 4 + 10
    with pytest.raises(
        AnalysisError, match=r"layer 'conv' \(Conv2d\) fails on input shape\(s\) \(1, 3, 2, 2\)"
    ):
        analyze(Untraceable(), (3, 2, 2))


class Skip(nn.Module):
    """y = conv1(x); out = y + conv2(y): y must stay alive until the add."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c1(x)
        return y + self.c2(y)


def test_memory_peak_with_a_skip_connection() -> None:
    report = analyze(Skip(), (1, 8, 8))
    x, fmap = 64 * 4, 4 * 64 * 4  # bytes of the input and of each 4x8x8 float32 map
    assert [r.activation_bytes for r in report.layers] == [x, fmap, fmap, fmap]
    # at the add, y (kept by the skip), conv2's output and the sum are live; x was freed after c1
    assert report.totals.peak_inference_bytes == 3 * fmap
    assert [r.saved_bytes for r in report.layers] == [0, x, fmap, 0]  # each conv keeps its input; add nothing
    # autograd agrees: the bytes it packs for backward in a real training-mode forward
    packed: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, nn.Parameter):
            packed.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        Skip()(torch.randn(1, 1, 8, 8))
    assert sum(packed) == report.totals.saved_bytes


def test_merge_of_different_jumps_warns() -> None:
    class Jumps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)  # 16 -> 8, jump 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(x) + x[:, :, :8, :8]  # a crop: 8x8 too, but jump 1

    warnings = [w for w in analyze(Jumps(), (1, 16, 16)).warnings if w.rule == "rf-misaligned"]
    assert [w.layer for w in warnings] == ["add"]
    assert "jump [1, 1]" in warnings[0].message and "jump [2, 2]" in warnings[0].message


class _BilinearHead(nn.Module):
    """A conv, then ``nn.Bilinear`` on the flattened map with itself (FlopCounterMode sees 0 MACs there)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bil = nn.Conv2d(1, 4, 3), nn.Bilinear(16, 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).flatten(1)[:, :16]
        return self.bil(y, y)


def test_bilinear_macs_count_every_weight_once_per_position() -> None:
    model = _BilinearHead()
    row = analyze(model, (1, 6, 6)).layers[-1]
    with FlopCounterMode(display=False) as counter:
        model.bil(torch.randn(1, 16), torch.randn(1, 16))
    assert counter.get_total_flops() == 0  # what torch's counter (and so torchscan-style tools) would report
    # y_k = x1^T W_k x2 + b_k: one multiply-add per weight (out * in1 * in2), one bias add per output
    assert (row.kind, row.macs, row.connections) == ("linear", 5 * 16 * 16, 5 * 16 * 16 + 5)
    assert row.params == sum(p.numel() for p in model.bil.parameters())


def test_bilinear_on_a_spatial_last_axis_mixes_that_axis() -> None:
    """``nn.Bilinear`` over W of a (1, 1, 6, 6) map mixes W as ``nn.Linear`` does: each unit reads a whole row."""

    class RowHead(nn.Module):
        def __init__(self, head: nn.Module) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 1, 3, padding=1), head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.head(y, x) if isinstance(self.head, nn.Bilinear) else self.head(y + x)

    model = RowHead(nn.Bilinear(6, 6, 6)).double()
    positive(model)
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True) + 0.5
    row = analyze(model, (1, 6, 6)).layers[-1]
    linear = analyze(RowHead(nn.Linear(6, 6)), (1, 6, 6)).layers[-1]
    assert row.macs == 6 * 6 * 6 * 6  # 6 positions (1 x 1 x 6 rows) x out 6 x in 6 x in 6
    assert row.rf is not None and linear.rf is not None
    assert widest_reach(model(x), x) == (3, 6)  # rows: the conv's 3; columns: the whole row
    assert row.rf.size[0] == 3
    assert row.rf.size == linear.rf.size  # W: the whole map with the conv's padding, as for nn.Linear

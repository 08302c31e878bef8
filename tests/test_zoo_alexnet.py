"""AlexNet against the 2012 paper (layer shapes, neuron counts, towers, LRN) and torchvision's sizes."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models import create_model
from cnnlab.models.alexnet import paper_lrn


def _meta_activations(name: str, size: int) -> list[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = create_model(name).eval()
    x = torch.empty(1, 3, size, size, device="meta")
    shapes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
            shapes.append((type(layer).__name__, tuple(x.shape[1:])))
    return shapes


def test_two_tower_layer_shapes_match_the_seed() -> None:
    """Seed 004: CONV1 55x55x96, POOL1 27x27x96, CONV2 27x27x256, POOL2 13x13x256, CONV3/4 13x13x384,
    CONV5 13x13x256, POOL3 6x6x256 (input 227x227x3)."""
    assert _meta_activations("alexnet_original", 227) == [
        ("Conv2d", (96, 55, 55)), ("MaxPool2d", (96, 27, 27)), ("Conv2d", (256, 27, 27)),
        ("MaxPool2d", (256, 13, 13)), ("Conv2d", (384, 13, 13)), ("Conv2d", (384, 13, 13)),
        ("Conv2d", (256, 13, 13)), ("MaxPool2d", (256, 6, 6)),
    ]  # fmt: skip


def test_neuron_counts_of_the_paper() -> None:
    """Paper, section 3.5: 253,440-186,624-64,896-64,896-43,264-4096-4096-1000 neurons. Every count
    from conv2 on matches; the first does not: 55x55x96 = 290,400 (the paper's number is a known
    erratum - 253,440 matches no integer conv1 map size with 96 maps)."""
    convs = [s for kind, s in _meta_activations("alexnet_original", 227) if kind == "Conv2d"]
    counts = [c * h * w for c, h, w in convs]
    assert counts[1:] == [186_624, 64_896, 64_896, 43_264]
    assert counts[0] == 290_400 and 253_440 % 96 == 0 and (253_440 // 96) ** 0.5 % 1 != 0
    model = create_model("alexnet_original", width_mult=1.0)
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [4096, 4096, 1000]


def test_towers_only_see_their_own_half() -> None:
    """conv2 of tower 1 (maps 0-127) has zero gradient w.r.t. the 48 input maps of tower 2."""
    model = create_model("alexnet_original", width_mult=1 / 8)  # 12 -> 32 maps, still 2 towers
    conv2 = model.features[4]
    assert conv2.groups == 2 and conv2.weight.shape == (32, 6, 5, 5)
    x = torch.randn(1, 12, 9, 9, requires_grad=True)
    conv2(x)[:, :16].sum().backward()
    assert x.grad[:, :6].abs().sum() > 0 and float(x.grad[:, 6:].abs().sum()) == 0.0
    groups = [m.groups for m in model.features if isinstance(m, nn.Conv2d)]
    assert groups == [1, 2, 1, 2, 2]  # conv3 crosses the towers


def test_lrn_equals_the_paper_formula() -> None:
    """b_i = a_i / (2 + 1e-4 * sum_{j=i-2..i+2} a_j^2) ** 0.75, computed by hand."""
    torch.manual_seed(0)
    a = torch.randn(1, 7, 3, 3) * 20
    expected = torch.empty_like(a)
    for i in range(7):
        window = a[:, max(0, i - 2) : min(7, i + 3)]
        expected[:, i] = a[:, i] / (2 + 1e-4 * window.square().sum(1)) ** 0.75
    torch.testing.assert_close(paper_lrn()(a), expected)


def test_parameter_counts() -> None:
    """Two towers: the paper's 60,965,224; one tower: torchvision's 61,100,840."""
    with torch.device("meta"):
        original, one = create_model("alexnet_original"), create_model("alexnet")
    assert sum(p.numel() for p in original.parameters()) == 60_965_224
    assert sum(p.numel() for p in one.parameters()) == 61_100_840


def test_one_tower_accepts_other_sizes_and_grey_input() -> None:
    model = create_model("alexnet", in_chans=1, num_classes=10, width_mult=1 / 16).eval()
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 10)


def test_dropout_sits_where_each_layout_puts_it() -> None:
    """The paper (and its Caffe model) drops the outputs of fc6 and fc7; torchvision drops their inputs.
    alexnet_original used torchvision's order."""
    kinds = {name: [type(m).__name__ for m in create_model(name, width_mult=1 / 16).classifier]
             for name in ("alexnet_original", "alexnet")}  # fmt: skip
    assert kinds["alexnet_original"] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert kinds["alexnet"] == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]

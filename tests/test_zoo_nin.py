"""Network in Network: no fully connected layer, 1x1 convs are per-position MLPs, GAP classifies."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.models import create_model


@pytest.mark.parametrize("name", ["nin", "nin_cifar"])
def test_no_fully_connected_layer(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert model.classifier.kernel_size == (1, 1)


def test_one_by_one_conv_is_a_linear_layer_at_every_position() -> None:
    """Reference: nn.Linear with the same weights on (B, H, W, C) equals the 1x1 conv on (B, C, H, W)."""
    torch.manual_seed(0)
    conv = create_model("nin_cifar", width_mult=0.25).features[0][2]  # first 1x1 of mlpconv 1
    lin = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        lin.weight.copy_(conv.weight[:, :, 0, 0])
        lin.bias.copy_(conv.bias)
    x = torch.randn(2, conv.in_channels, 5, 7)
    torch.testing.assert_close(conv(x), lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_logits_are_the_average_of_class_maps() -> None:
    torch.manual_seed(0)
    model = create_model("nin_cifar", width_mult=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = torch.relu(model.classifier(model.forward_features(x)))
    assert maps.shape == (2, 10, 8, 8)
    torch.testing.assert_close(model(x), maps.mean((2, 3)))


def test_published_size_and_grey_28px() -> None:
    """The CIFAR-10 model of the paper has about 0.97 M parameters."""
    with torch.device("meta"):
        model = create_model("nin_cifar")
    assert sum(p.numel() for p in model.parameters()) == 966_986
    small = create_model("nin_cifar", in_chans=1, width_mult=0.25).eval()
    assert small(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_imagenet_maps_follow_the_authors_caffe_model() -> None:
    """The authors' ImageNet NiN (Caffe, crop 224) pools with Caffe's rounding up: 54 -> 27 -> 13 -> 6, and
    its last layer is a 6x6 average pool (pool4) over the 6x6 class maps. Reference: the Caffe model
    converted by caffe-tensorflow (examples/imagenet/models/nin.py: pool1 'SAME', pool2/3 'VALID', pool4 6x6)."""
    model = create_model("nin", width_mult=1 / 16).eval()
    sizes = []
    x = torch.zeros(1, 3, 224, 224)
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Sequential):  # an mlpconv block
            sizes.append(x.shape[-1])
    assert sizes == [54, 27, 13, 6]
    maps = torch.relu(model.classifier(model.forward_features(torch.randn(1, 3, 224, 224))))
    assert maps.shape[-2:] == (6, 6)

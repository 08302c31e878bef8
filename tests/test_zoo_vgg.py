"""VGG against the seed's receptive-field table and torchvision's layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.models import create_model

# Seed 000_826d3f3e8e67bb60.txt: VGG-16 on a 32x32 input, rows (name, n, j, RF) up to pool5.
SEED_TABLE = [
    ("conv1_1", 32, 1, 3), ("conv1_2", 32, 1, 5), ("maxpool", 16, 2, 6),
    ("conv2_1", 16, 2, 10), ("conv2_2", 16, 2, 14), ("maxpool", 8, 4, 16),
    ("conv3_1", 8, 4, 24), ("conv3_2", 8, 4, 32), ("conv3_3", 8, 4, 40), ("maxpool", 4, 8, 44),
    ("conv4_1", 4, 8, 60), ("conv4_2", 4, 8, 76), ("conv4_3", 4, 8, 92), ("maxpool", 2, 16, 100),
    ("conv5_1", 2, 16, 132), ("conv5_2", 2, 16, 164), ("conv5_3", 2, 16, 196), ("maxpool", 1, 32, 212),
]  # fmt: skip


def test_vgg16_layers_reproduce_the_seed_rf_table() -> None:
    """Walk VGG-16's features on 32x32: measured n and the n/j/RF recurrence match every seed row."""
    model = create_model("vgg16", width_mult=1 / 16).eval()
    x = torch.zeros(1, 3, 32, 32)
    rows = []
    jump, rf = 1, 1
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            rf, jump = rf + (k - 1) * jump, jump * s  # RF_out = RF_in + (k-1) j_in; j_out = j_in s
            rows.append(("maxpool" if isinstance(layer, nn.MaxPool2d) else "conv", x.shape[-1], jump, rf))
    assert [r[1:] for r in rows] == [r[1:] for r in SEED_TABLE]


def test_vgg16_state_dict_names_follow_torchvision() -> None:
    with torch.device("meta"):
        sd = create_model("vgg16").state_dict()
    assert list(sd)[:2] == ["features.0.weight", "features.0.bias"]
    assert {"classifier.0.weight", "classifier.3.weight", "classifier.6.weight"} <= set(sd)
    assert sd["classifier.0.weight"].shape == (4096, 512 * 7 * 7)
    assert sd["features.28.weight"].shape == (512, 512, 3, 3)


@pytest.mark.parametrize("size", [28, 32])
def test_cifar_vgg_takes_grey_28_and_32(size: int) -> None:
    model = create_model("vgg11_cifar", in_chans=1, num_classes=10, width_mult=0.125).eval()
    x = torch.randn(2, 1, size, size)
    assert model.forward_features(x).shape == (2, 64, 1, 1)  # ceil-mode pools: 28-14-7-4-2-1
    assert model(x).shape == (2, 10)
    assert model.classifier[-1].in_features == 64


def test_cifar_head_is_one_linear_layer_from_512() -> None:
    model = create_model("vgg11_cifar")
    assert [type(m) for m in model.classifier] == [nn.Linear]
    assert model.classifier[0].in_features == 512 and model.num_features == 512


def test_batch_norm_variant_has_one_bn_per_conv() -> None:
    model = create_model("vgg16_bn_cifar", width_mult=0.125)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 13


def test_bad_head_is_rejected() -> None:
    from cnnlab.models.vgg import CFGS, VGG

    with pytest.raises(ValueError, match=r"head must be 'imagenet' or 'small'; received head='tiny'"):
        VGG(CFGS["vgg11"], head="tiny")

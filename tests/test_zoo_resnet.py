"""ResNet: the Bag-of-Tricks tweaks do what the paper says, and CIFAR ResNets match published sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnlab.models import create_model
from cnnlab.models.resnet import Bottleneck, PadShortcut


def _param_count(name: str, **kwargs: object) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, **kwargs).parameters())


def test_resnet_b_strides_in_the_3x3_and_a_in_the_1x1() -> None:
    b = create_model("resnet50", base_width=8).layer2[0]
    a = create_model("resnet50a", base_width=8).layer2[0]
    assert (b.conv1.stride, b.conv2.stride) == ((1, 1), (2, 2))
    assert (a.conv1.stride, a.conv2.stride) == ((2, 2), (1, 1))


def test_resnet_c_deep_stem_keeps_the_stem_output_shape() -> None:
    x = torch.randn(1, 3, 224, 224)
    plain, deep = (
        create_model("resnet50", base_width=8).eval(),
        create_model("resnet50c", base_width=8).eval(),
    )
    stem = [m for m in deep.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in stem] == [
        ((3, 3), (2, 2), 4), ((3, 3), (1, 1), 4), ((3, 3), (1, 1), 8)
    ]  # fmt: skip
    assert deep.maxpool(deep.conv1(x)).shape == plain.maxpool(plain.conv1(x)).shape == (1, 8, 56, 56)


def test_resnet_d_shortcut_averages_before_a_stride_1_conv() -> None:
    down = create_model("resnet50d", base_width=8).layer3[0].downsample
    assert isinstance(down[0], nn.AvgPool2d) and down[1].stride == (1, 1)
    plain = create_model("resnet50", base_width=8).layer3[0].downsample
    assert plain[0].stride == (2, 2)


def test_published_parameter_counts_of_the_variants() -> None:
    """torchvision: resnet18 11,689,512, resnet34 21,797,672; timm: resnet50d 25,576,264;
    He et al. 2016 CIFAR nets (option A) 0.27M / 0.46M / 0.85M: 269,722 / 464,154 / 853,018."""
    assert _param_count("resnet18") == 11_689_512
    assert _param_count("resnet34") == 21_797_672
    assert _param_count("resnet50d") == 25_576_264
    assert _param_count("resnet50a") == _param_count("resnet50")  # ResNet-B moves a stride, no weights
    assert [_param_count(n) for n in ("resnet20", "resnet32", "resnet56")] == [269_722, 464_154, 853_018]


def test_zero_gamma_makes_every_block_start_as_identity() -> None:
    """With the last BN's gamma at 0 (and beta 0), a block returns relu(shortcut(x))."""
    torch.manual_seed(0)
    model = create_model("resnet50", base_width=8, zero_init_residual=True).eval()
    x = torch.randn(2, 32, 14, 14)
    for block in model.layer2:
        assert isinstance(block, Bottleneck) and float(block.bn3.weight.detach().abs().sum()) == 0.0
        shortcut = x if block.downsample is None else block.downsample(x)
        y = block(x)
        torch.testing.assert_close(y, torch.relu(shortcut))
        x = y
    default = create_model("resnet50", base_width=8)
    assert float(default.layer2[0].bn3.weight.detach().abs().sum()) > 0  # the option is off by default


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    y = PadShortcut(2, 4, 2)(x)
    assert y.shape == (1, 4, 2, 2)
    torch.testing.assert_close(y[:, 1:3], x[:, :, ::2, ::2])
    assert float(y[:, 0].abs().sum()) == 0 and float(y[:, 3].abs().sum()) == 0


def test_cifar_resnet_in_chans_and_28px() -> None:
    model = create_model("resnet20", in_chans=1, num_classes=10, base_width=4).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.forward_features(torch.randn(1, 1, 32, 32)).shape == (1, 16, 8, 8)
    b = create_model("resnet20", shortcut="B")
    assert isinstance(b.layer2[0].downsample, nn.Sequential)


def test_cifar_resnet_rejects_unknown_shortcut() -> None:
    with pytest.raises(ValueError, match=r"shortcut must be 'A' .* received shortcut='C'"):
        create_model("resnet20", shortcut="C")

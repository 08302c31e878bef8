"""ResNet (He et al., 2016) with the Bag-of-Tricks tweaks (He et al., 2019), and CIFAR ResNets.

ImageNet ResNets keep torchvision's layout and names (``conv1 bn1 layer1..4 fc``). The tweaks of
"Bag of Tricks for Image Classification with Convolutional Neural Networks", section 4:

- **ResNet-B** (the default, = torchvision's "v1.5"): a bottleneck strides in its 3x3 conv, not in the
  first 1x1 which would skip three quarters of the input. ``stride_in_1x1=True`` gives ResNet-A.
- **ResNet-C** (``deep_stem=True``): the 7x7 stem conv becomes three 3x3 convs (32, 32, 64 wide).
- **ResNet-D** (``avg_down=True``): a downsampling shortcut averages 2x2 then applies a stride-1 1x1
  conv, instead of a stride-2 1x1 that discards three quarters of the activations.
- **zero-gamma** (``zero_init_residual=True``): each block's last BN starts with gamma = 0, so every
  residual block starts as the identity.

``resnet50`` is torchvision's v1.5: 25,557,032 parameters, 4.09 G multiply-adds at 224x224, receptive
field 427 at ``layer4``. The CIFAR ResNets (paper section 4.2: 6n+2 layers, widths 16/32/64, 32x32
input) use the parameter-free "option A" shortcut: subsample and zero-pad the channels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "PadShortcut", "ResNet"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    >>> BasicBlock(8, 8)(torch.zeros(1, 8, 6, 6)).shape
    torch.Size([1, 8, 6, 6])
    """

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity: torch.Tensor = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), plus a shortcut; strides in the 3x3 unless ResNet-A.

    >>> Bottleneck(16, 4)(torch.zeros(1, 16, 6, 6)).shape
    torch.Size([1, 16, 6, 6])
    """

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv1x1(in_ch, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity: torch.Tensor = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class PadShortcut(nn.Module):
    """CIFAR ResNet "option A": keep every ``stride``-th pixel and zero-pad new channels (no weights).

    >>> PadShortcut(16, 32, 2)(torch.ones(1, 16, 8, 8)).shape
    torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H, W) -> (B, C, H/s, W/s)
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))  # (B, C, ..) -> (B, C + pad, ..)


def _shortcut(in_ch: int, out_ch: int, stride: int, *, avg_down: bool) -> nn.Sequential:
    """Projection shortcut: 1x1 conv + BN, or ResNet-D's 2x2 average pool then a stride-1 1x1 conv."""
    if avg_down and stride > 1:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, _conv1x1(in_ch, out_ch), nn.BatchNorm2d(out_ch))
    return nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class _ResNetFace(nn.Module):
    """The shared face: ``forward_features`` ends at the last stage; the head is pool + ``fc``."""

    fc: nn.Linear
    num_features: int

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # Bag of Tricks 3.1: every block starts as the identity
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


class ResNet(_ResNetFace):
    """ImageNet ResNet: stem (7x7/2 or deep 3x3 stem, 3x3/2 max pool), four stages, global pool, fc.

    >>> ResNet(BasicBlock, (1, 1, 1, 1), num_classes=5, base_width=8)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 5])
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        base_width: int = 64,
        deep_stem: bool = False,
        avg_down: bool = False,
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        stem_out = base_width
        if deep_stem:  # ResNet-C: three 3x3 convs (base/2, base/2, base) see the same 7x7 window
            mid = base_width // 2
            self.conv1: nn.Module = nn.Sequential(
                _conv3x3(in_chans, mid, 2), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                _conv3x3(mid, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                _conv3x3(mid, stem_out),
            )  # fmt: skip
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_out, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._in_ch = stem_out
        stage = {"avg_down": avg_down, "stride_in_1x1": stride_in_1x1}
        self.layer1 = self._make_stage(block, base_width, layers[0], 1, **stage)
        self.layer2 = self._make_stage(block, base_width * 2, layers[1], 2, **stage)
        self.layer3 = self._make_stage(block, base_width * 4, layers[2], 2, **stage)
        self.layer4 = self._make_stage(block, base_width * 8, layers[3], 2, **stage)
        self.num_features = self._in_ch
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stage(
        self,
        block: type[BasicBlock | Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        *,
        avg_down: bool,
        stride_in_1x1: bool,
    ) -> nn.Sequential:
        out_ch = planes * block.expansion
        down = None
        if stride != 1 or self._in_ch != out_ch:
            down = _shortcut(self._in_ch, out_ch, stride, avg_down=avg_down)
        extra: dict[str, Any] = {"stride_in_1x1": stride_in_1x1} if block is Bottleneck else {}
        layers = [block(self._in_ch, planes, stride, down, **extra)]
        layers += [block(out_ch, planes, **extra) for _ in range(1, blocks)]
        self._in_ch = out_ch
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, in, 224, 224) -> (B, 64, 56, 56)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # -> (B, 2048, 7, 7) for ResNet-50
        return x


class CifarResNet(_ResNetFace):
    """He et al. 2016, section 4.2: 3x3 conv (16), three stages of n basic blocks (16, 32, 64 wide).

    >>> CifarResNet(1, num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        in_chans: int = 3,
        *,
        base_width: int = 16,
        shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(
                f"CifarResNet: shortcut must be 'A' (zero-padding, no weights) or 'B' (1x1 projection); "
                f"received shortcut={shortcut!r}."
            )
        self.conv1 = _conv3x3(in_chans, base_width)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self._in_ch = base_width
        self.layer1 = self._make_stage(base_width, n, 1, shortcut)
        self.layer2 = self._make_stage(base_width * 2, n, 2, shortcut)
        self.layer3 = self._make_stage(base_width * 4, n, 2, shortcut)
        self.num_features = self._in_ch
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stage(self, planes: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
        down: nn.Module | None = None
        if stride != 1 or self._in_ch != planes:
            if shortcut == "A":
                down = PadShortcut(self._in_ch, planes, stride)
            else:
                down = _shortcut(self._in_ch, planes, stride, avg_down=False)
        layers = [BasicBlock(self._in_ch, planes, stride, down)]
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        self._in_ch = planes
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, in, 32, 32) -> (B, 16, 32, 32)
        out: torch.Tensor = self.layer3(self.layer2(self.layer1(x)))  # -> (B, 64, 8, 8)
        return out


_LAYERS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def _create_resnet(depth: int, num_classes: int, in_chans: int, **kwargs: Any) -> ResNet:
    block, layers = _LAYERS[depth]
    return ResNet(block, layers, num_classes, in_chans, **kwargs)


def _create_cifar_resnet(depth: int, num_classes: int, in_chans: int, **kwargs: Any) -> CifarResNet:
    return CifarResNet((depth - 2) // 6, num_classes, in_chans, **kwargs)


_IMAGENET: dict[str, Any] = dict(
    family="resnet", input_size=(3, 224, 224), num_classes=1000, test_kwargs={"base_width": 8}
)
_CIFAR: dict[str, Any] = dict(
    family="resnet", input_size=(3, 32, 32), num_classes=10, test_kwargs={"base_width": 4}
)


@register_model("resnet18", params=11_689_512, macs=1_814_073_344, rf=435, **_IMAGENET)
def resnet18(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2), torchvision layout."""
    return _create_resnet(18, num_classes, in_chans, **kwargs)


@register_model("resnet18c", params=11_708_744, macs=2_053_713_920, rf=439, **_IMAGENET)
def resnet18c(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18-C: deep 3x3 stem."""
    return _create_resnet(18, num_classes, in_chans, deep_stem=True, **kwargs)


@register_model("resnet18d", params=11_708_744, macs=2_053_713_920, rf=439, **_IMAGENET)
def resnet18d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18-D: deep stem and average-pool downsampling shortcuts."""
    return _create_resnet(18, num_classes, in_chans, deep_stem=True, avg_down=True, **kwargs)


@register_model("resnet34", params=21_797_672, macs=3_663_761_408, rf=899, **_IMAGENET)
def resnet34(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3), torchvision layout."""
    return _create_resnet(34, num_classes, in_chans, **kwargs)


@register_model("resnet34c", params=21_816_904, macs=3_903_401_984, rf=903, **_IMAGENET)
def resnet34c(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34-C: deep 3x3 stem."""
    return _create_resnet(34, num_classes, in_chans, deep_stem=True, **kwargs)


@register_model("resnet34d", params=21_816_904, macs=3_903_401_984, rf=903, **_IMAGENET)
def resnet34d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34-D: deep stem and average-pool downsampling shortcuts."""
    return _create_resnet(34, num_classes, in_chans, deep_stem=True, avg_down=True, **kwargs)


@register_model("resnet50a", params=25_557_032, macs=3_857_973_248, rf=483, **_IMAGENET)
def resnet50a(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50-A: the 2016 original, striding in the first 1x1 of a bottleneck (v1)."""
    return _create_resnet(50, num_classes, in_chans, stride_in_1x1=True, **kwargs)


@register_model("resnet50", params=25_557_032, macs=4_089_184_256, rf=427, **_IMAGENET)
def resnet50(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50 = ResNet-B = torchvision v1.5 (stride in the 3x3): 25,557,032 parameters."""
    return _create_resnet(50, num_classes, in_chans, **kwargs)


@register_model("resnet50c", params=25_576_264, macs=4_328_824_832, rf=431, **_IMAGENET)
def resnet50c(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50-C: ResNet-B with the deep 3x3 stem."""
    return _create_resnet(50, num_classes, in_chans, deep_stem=True, **kwargs)


@register_model("resnet50d", params=25_576_264, macs=4_328_824_832, rf=431, **_IMAGENET)
def resnet50d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50-D: deep stem and average-pool downsampling shortcuts (Bag of Tricks' best)."""
    return _create_resnet(50, num_classes, in_chans, deep_stem=True, avg_down=True, **kwargs)


@register_model("resnet20", params=269_722, macs=40_551_040, rf=81, **_CIFAR)
def resnet20(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-20 (n=3, option-A shortcuts)."""
    return _create_cifar_resnet(20, num_classes, in_chans, **kwargs)


@register_model("resnet32", params=464_154, macs=68_862_592, rf=137, **_CIFAR)
def resnet32(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-32 (n=5, option-A shortcuts)."""
    return _create_cifar_resnet(32, num_classes, in_chans, **kwargs)


@register_model("resnet56", params=853_018, macs=125_485_696, rf=249, **_CIFAR)
def resnet56(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> CifarResNet:
    """CIFAR ResNet-56 (n=9, option-A shortcuts)."""
    return _create_cifar_resnet(56, num_classes, in_chans, **kwargs)

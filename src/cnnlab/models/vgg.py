"""VGG-11/13/16/19 (Simonyan and Zisserman, 2014), with and without batch norm.

The ImageNet models keep torchvision's layout and parameter names (``features`` / ``avgpool`` /
``classifier.0,3,6``), so state dicts load either way: VGG-16 has 138,357,544 parameters and does
15.47 G multiply-adds at 224x224. The ``*_cifar`` models keep the same convolutions but pool with
``ceil_mode`` (so 28x28 inputs survive five halvings: 28-14-7-4-2-1) and classify the globally
averaged 512 channels with one linear layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cnnlab.models._registry import register_model

__all__ = ["CFGS", "VGG", "make_features"]

# Convolution widths per configuration (paper, Table 1: A, B, D, E); "M" is a 2x2 max pool.
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


def make_features(
    cfg: list[int | str], in_chans: int, *, batch_norm: bool, width_mult: float = 1.0, ceil_mode: bool = False
) -> nn.Sequential:
    """The conv stack: 3x3 convs (padding 1, size-preserving) and 2x2 max pools, torchvision's order.

    >>> make_features(CFGS["vgg11"], 3, batch_norm=False)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 512, 1, 1])
    """
    layers: list[nn.Module] = []
    channels = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            continue
        out = _scaled(int(v), width_mult)
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` -> ``avgpool`` -> ``classifier``, with an ImageNet or a small head.

    ``head="imagenet"``: adaptive 7x7 average pool, FC-4096, FC-4096 (ReLU, dropout), FC-classes.
    ``head="small"``: global average pool and one FC from the last conv width to the classes.

    >>> VGG(CFGS["vgg11"], num_classes=10, head="small", width_mult=0.25)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        cfg: list[int | str],
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        batch_norm: bool = False,
        head: str = "imagenet",
        width_mult: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if head not in ("imagenet", "small"):
            raise ValueError(f"VGG: head must be 'imagenet' or 'small'; received head={head!r}.")
        small = head == "small"
        self.features = make_features(
            cfg, in_chans, batch_norm=batch_norm, width_mult=width_mult, ceil_mode=small
        )
        self.num_features = _scaled(512, width_mult)
        if small:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(self.num_features, num_classes))
        else:
            hidden = _scaled(4096, width_mult)
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(self.num_features * 7 * 7, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation: He (fan-out) for convs, N(0, 0.01) for linear layers.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)  # (B, in, 224, 224) -> (B, 512, 7, 7) (pool5)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512, h, w) -> (B, 512*7*7) or (B, 512)
        x = self.classifier[:-1](x)
        return x if pre_logits else self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        in_features = int(self.classifier[-1].in_features)  # type: ignore[arg-type]  # always a Linear
        self.classifier[-1] = nn.Linear(in_features, num_classes)


def _create_vgg(
    arch: str, num_classes: int, in_chans: int, *, batch_norm: bool, head: str = "imagenet", **kwargs: Any
) -> VGG:
    return VGG(
        CFGS[arch],
        num_classes,
        in_chans,
        batch_norm=batch_norm,
        head=head,
        **kwargs,
    )


# Shared registry metadata; test widths keep the registry test fast (VGG-16 at 1/16: 4..32 channels).
_IMAGENET: dict[str, Any] = dict(
    family="vgg", input_size=(3, 224, 224), num_classes=1000, test_kwargs={"width_mult": 1 / 16}
)
_CIFAR: dict[str, Any] = dict(
    family="vgg", input_size=(3, 32, 32), num_classes=10, test_kwargs={"width_mult": 1 / 8}
)


@register_model("vgg11", params=132_863_336, macs=7_609_090_048, rf=150, **_IMAGENET)
def vgg11(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 (configuration A), ImageNet head."""
    return _create_vgg("vgg11", num_classes, in_chans, batch_norm=False, **kwargs)


@register_model("vgg11_bn", params=132_868_840, macs=7_609_090_048, rf=150, **_IMAGENET)
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 with batch norm after every conv, ImageNet head."""
    return _create_vgg("vgg11", num_classes, in_chans, batch_norm=True, **kwargs)


@register_model("vgg13", params=133_047_848, macs=11_308_466_176, rf=156, **_IMAGENET)
def vgg13(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 (configuration B), ImageNet head."""
    return _create_vgg("vgg13", num_classes, in_chans, batch_norm=False, **kwargs)


@register_model("vgg13_bn", params=133_053_736, macs=11_308_466_176, rf=156, **_IMAGENET)
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 with batch norm, ImageNet head."""
    return _create_vgg("vgg13", num_classes, in_chans, batch_norm=True, **kwargs)


@register_model("vgg16", params=138_357_544, macs=15_470_264_320, rf=212, **_IMAGENET)
def vgg16(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 (configuration D), ImageNet head: 138,357,544 parameters."""
    return _create_vgg("vgg16", num_classes, in_chans, batch_norm=False, **kwargs)


@register_model("vgg16_bn", params=138_365_992, macs=15_470_264_320, rf=212, **_IMAGENET)
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 with batch norm, ImageNet head."""
    return _create_vgg("vgg16", num_classes, in_chans, batch_norm=True, **kwargs)


@register_model("vgg19", params=143_667_240, macs=19_632_062_464, rf=268, **_IMAGENET)
def vgg19(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 (configuration E), ImageNet head."""
    return _create_vgg("vgg19", num_classes, in_chans, batch_norm=False, **kwargs)


@register_model("vgg19_bn", params=143_678_248, macs=19_632_062_464, rf=268, **_IMAGENET)
def vgg19_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 with batch norm, ImageNet head."""
    return _create_vgg("vgg19", num_classes, in_chans, batch_norm=True, **kwargs)


@register_model("vgg11_cifar", params=9_225_610, macs=152_769_536, rf=150, **_CIFAR)
def vgg11_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg11", num_classes, in_chans, batch_norm=False, head="small", **kwargs)


@register_model("vgg11_bn_cifar", params=9_231_114, macs=152_769_536, rf=150, **_CIFAR)
def vgg11_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-11 with batch norm, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg11", num_classes, in_chans, batch_norm=True, head="small", **kwargs)


@register_model("vgg13_cifar", params=9_410_122, macs=228_267_008, rf=156, **_CIFAR)
def vgg13_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg13", num_classes, in_chans, batch_norm=False, head="small", **kwargs)


@register_model("vgg13_bn_cifar", params=9_416_010, macs=228_267_008, rf=156, **_CIFAR)
def vgg13_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-13 with batch norm, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg13", num_classes, in_chans, batch_norm=True, head="small", **kwargs)


@register_model("vgg16_cifar", params=14_719_818, macs=313_201_664, rf=212, **_CIFAR)
def vgg16_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg16", num_classes, in_chans, batch_norm=False, head="small", **kwargs)


@register_model("vgg16_bn_cifar", params=14_728_266, macs=313_201_664, rf=212, **_CIFAR)
def vgg16_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-16 with batch norm, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg16", num_classes, in_chans, batch_norm=True, head="small", **kwargs)


@register_model("vgg19_cifar", params=20_029_514, macs=398_136_320, rf=268, **_CIFAR)
def vgg19_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg19", num_classes, in_chans, batch_norm=False, head="small", **kwargs)


@register_model("vgg19_bn_cifar", params=20_040_522, macs=398_136_320, rf=268, **_CIFAR)
def vgg19_bn_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> VGG:
    """VGG-19 with batch norm, small head (global pool, FC 512 -> classes) for 28-32 px inputs."""
    return _create_vgg("vgg19", num_classes, in_chans, batch_norm=True, head="small", **kwargs)

"""Network in Network (Lin, Chen and Yan, 2013): mlpconv blocks and global average pooling.

An *mlpconv* block is one spatial convolution followed by two 1x1 convolutions, each with a ReLU: a
small multilayer perceptron slid over every position. There is no fully connected layer: the last
1x1 convolution makes one map per class and global average pooling turns each map into a score.

``nin_cifar`` is the paper's CIFAR-10 network (the authors' Caffe model: 192-160-96, 192-192-192,
192-192-classes, 3x3/2 max and average pools, dropout 0.5 between blocks). ``nin`` is the ImageNet
model (the authors' Caffe model: 11x11/4 stem, widths 96-256-384-1024, 3x3/2 max pools rounding up
as Caffe does, so a 224x224 input gives maps of 54, 27, 13 and 6 and the class maps are averaged
over 6x6).

Interface: ``forward_features`` stops before the classifying 1x1 conv, so ``num_features`` is the
width that conv reads and ``reset_classifier`` swaps that conv; ``pre_logits`` is the global average
of the features.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._registry import register_model

__all__ = ["NiN", "mlpconv"]


def mlpconv(
    in_ch: int, widths: tuple[int, int, int], k: int, stride: int = 1, padding: int = 0
) -> nn.Sequential:
    """One kxk conv then two 1x1 convs, each followed by ReLU.

    >>> mlpconv(3, (8, 8, 4), 5, padding=2)(torch.zeros(1, 3, 16, 16)).shape
    torch.Size([1, 4, 16, 16])
    """
    a, b, c = widths
    return nn.Sequential(
        nn.Conv2d(in_ch, a, k, stride=stride, padding=padding), nn.ReLU(inplace=True),
        nn.Conv2d(a, b, 1), nn.ReLU(inplace=True),
        nn.Conv2d(b, c, 1), nn.ReLU(inplace=True),
    )  # fmt: skip


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


class NiN(nn.Module):
    """mlpconv blocks with pooling between; the final 1x1 conv (``classifier``) makes class maps.

    >>> NiN(num_classes=10, width_mult=0.25)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        *,
        imagenet: bool = False,
        width_mult: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        w = functools.partial(_scaled, width_mult=width_mult)
        if imagenet:
            blocks: list[nn.Module] = [
                mlpconv(in_chans, (w(96), w(96), w(96)), 11, stride=4),  # (B, 3, 224, 224) -> 54x54
                nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 27x27 (Caffe rounds up; floor gives 26)
                mlpconv(w(96), (w(256), w(256), w(256)), 5, padding=2),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 13x13
                mlpconv(w(256), (w(384), w(384), w(384)), 3, padding=1),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 6x6, the authors' final 6x6 average pool
                nn.Dropout(dropout),
                mlpconv(w(384), (w(1024), w(1024), w(1024)), 3, padding=1)[:-2],  # last 1x1 -> classifier
            ]
        else:
            blocks = [
                mlpconv(in_chans, (w(192), w(160), w(96)), 5, padding=2),  # (B, 3, 32, 32)
                nn.MaxPool2d(3, stride=2, ceil_mode=True),  # -> 16x16 (Caffe rounds pool sizes up)
                nn.Dropout(dropout),
                mlpconv(w(96), (w(192), w(192), w(192)), 5, padding=2),
                nn.AvgPool2d(3, stride=2, ceil_mode=True),  # -> 8x8
                nn.Dropout(dropout),
                mlpconv(w(192), (w(192), w(192), w(192)), 3, padding=1)[:-2],  # last 1x1 -> classifier
            ]
        self.features = nn.Sequential(*blocks)
        self.num_features = w(1024) if imagenet else w(192)
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)  # (B, in, H, W) -> (B, num_features, h, w)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, C, h, w) -> (B, C)
        x = F.relu(self.classifier(x))  # (B, C, h, w) -> (B, classes, h, w): one map per class
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # global average pooling -> (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)


def _create_nin(num_classes: int, in_chans: int, **kwargs: Any) -> NiN:
    return NiN(num_classes, in_chans, **kwargs)


@register_model(
    "nin_cifar", family="nin", input_size=(3, 32, 32), num_classes=10,
    params=966_986, macs=222_486_528, rf=27, test_kwargs={"width_mult": 1 / 8},
)  # fmt: skip
def nin_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> NiN:
    """Network in Network, the paper's CIFAR-10 model (3 mlpconv blocks, global average pooling)."""
    return _create_nin(num_classes, in_chans, **kwargs)


@register_model(
    "nin", family="nin", input_size=(3, 224, 224), num_classes=1000,
    params=7_595_176, macs=1_100_188_800, rf=195, test_kwargs={"width_mult": 1 / 16},
)  # fmt: skip
def nin(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> NiN:
    """Network in Network for ImageNet (4 mlpconv blocks, global average pooling)."""
    return _create_nin(num_classes, in_chans, imagenet=True, **kwargs)

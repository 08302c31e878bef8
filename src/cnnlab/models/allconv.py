"""The all-convolutional net (Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for
simplicity", 2014): model All-CNN-C, only convolutions.

Max pooling is replaced by a 3x3 convolution with stride 2, and the fully connected layers by 1x1
convolutions: a fully connected layer on a C-channel vector is exactly a 1x1 convolution applied at
every position, so the network classifies with a last 1x1 conv making one map per class and a global
average. Because nothing fixes the input size, the same weights also give a class-score *map* on a
larger image (``class_maps``).

Table 2 of the paper, model C (32x32 input): dropout 0.2 on the input; 3x3 conv 96, 96, 96/2;
dropout 0.5; 3x3 conv 192, 192, 192/2; dropout 0.5; 3x3 conv 192 (valid); 1x1 conv 192; 1x1 conv
classes; global average over 6x6. Every conv has a ReLU. 1,369,738 parameters for 10 classes.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._registry import register_model

__all__ = ["AllConvNet", "conv_relu"]


def conv_relu(
    in_ch: int, out_ch: int, k: int, *, stride: int = 1, padding: int = 0, batch_norm: bool = False
) -> nn.Sequential:
    """Conv -> (BN) -> ReLU; the conv has a bias only when no BN follows.

    >>> conv_relu(3, 8, 3, stride=2, padding=1)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 8, 16, 16])
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


class AllConvNet(nn.Module):
    """All-CNN-C: strided 3x3 convs instead of pooling, 1x1 convs instead of fully connected layers.

    >>> AllConvNet(num_classes=10, width_mult=0.25)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        *,
        width_mult: float = 1.0,
        batch_norm: bool = False,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        a, b = _scaled(96, width_mult), _scaled(192, width_mult)
        block = functools.partial(conv_relu, batch_norm=batch_norm)
        self.features = nn.Sequential(
            nn.Dropout(input_dropout),
            block(in_chans, a, 3, padding=1),  # (B, 3, 32, 32)
            block(a, a, 3, padding=1),
            block(a, a, 3, stride=2, padding=1),  # replaces 3x3/2 max pooling -> (B, 96, 16, 16)
            nn.Dropout(dropout),
            block(a, b, 3, padding=1),
            block(b, b, 3, padding=1),
            block(b, b, 3, stride=2, padding=1),  # -> (B, 192, 8, 8)
            nn.Dropout(dropout),
            block(b, b, 3),  # valid padding -> (B, 192, 6, 6)
            block(b, b, 1),  # 1x1 conv: the first "fully connected" layer, at every position
        )
        self.num_features = b
        self.classifier = nn.Conv2d(b, num_classes, 1)  # 1x1 conv: the class layer, one map per class

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)  # (B, in, 32, 32) -> (B, 192, 6, 6)
        return out

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position class scores before the global average: (B, classes, h, w)."""
        return F.relu(self.classifier(self.forward_features(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 192, 6, 6) -> (B, 192)
        x = F.relu(self.classifier(x))  # (B, 192, 6, 6) -> (B, classes, 6, 6)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # global average -> (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)


def _create_allconv(num_classes: int, in_chans: int, **kwargs: Any) -> AllConvNet:
    return AllConvNet(num_classes, in_chans, **kwargs)


@register_model(
    "allcnn_c", family="allconv", input_size=(3, 32, 32), num_classes=10,
    params=1_369_738, macs=270_798_336, rf=27, test_kwargs={"width_mult": 1 / 8},
)  # fmt: skip
def allcnn_c(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> AllConvNet:
    """All-CNN-C: only convolutions (strided instead of pooling, 1x1 instead of fully connected)."""
    return _create_allconv(num_classes, in_chans, **kwargs)


@register_model(
    "allcnn_c_bn", family="allconv", input_size=(3, 32, 32), num_classes=10,
    params=1_370_986, macs=270_798_336, rf=27, test_kwargs={"width_mult": 1 / 8},
)  # fmt: skip
def allcnn_c_bn(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> AllConvNet:
    """All-CNN-C with batch norm after every conv (trains without the paper's careful tuning)."""
    return _create_allconv(num_classes, in_chans, batch_norm=True, **kwargs)

"""P4CNN: a small rotation-equivariant CNN (Cohen and Welling 2016) and its plain twin.

``p4cnn`` lifts the image to P4 feature maps (one plane per 90-degree orientation, see
:mod:`cnnlab.layers.p4`), runs P4 group convolutions with orientation-shared batch norm, pools over
the orientations (maps that rotate with the input) and then over space: its class scores do not
change when the input is rotated by a multiple of 90 degrees (exactly, up to float rounding).

``p4cnn_plain`` is the same network with ordinary convolutions and twice the width. A P4 layer with
``C_in -> C_out`` fields has ``4 * C_in * C_out * k * k`` weights (``C_in * k * k`` for the lifting
layer), a plain one with ``2 C_in -> 2 C_out`` channels has the same, so the twins have matched
parameter counts (within 2%: batch norm and the head differ) and differ only in weight sharing.

Layout for a 28x28 input (``w`` = width; the plain twin has ``2w``, ``4w`` channels and no orientation axis):
``(B, 1, 28, 28)`` -> lift ``(B, w, 4, 28, 28)`` -> pool ``14`` -> ``(B, w, 4, 14, 14)``
-> ``(B, 2w, 4, 14, 14)`` -> pool ``7`` -> ``(B, 2w, 4, 7, 7)`` -> rotation pool ``(B, 2w, 7, 7)``.
Every convolution is 3x3 with padding 1 and every pooling halves an even size, so the grid stays
rotation-symmetric (a 2x2 pool on an odd size would drop a row and break the invariance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from cnnlab.layers import P4BatchNorm, P4GroupConv2d, P4LiftConv2d, P4MaxPool2d, P4RotationPool
from cnnlab.models._registry import register_model

__all__ = ["P4CNN", "p4cnn", "p4cnn_plain"]


def _p4_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, P4BatchNorm(channels), nn.ReLU(inplace=True)]


def _plain_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class P4CNN(nn.Module):
    """Four 3x3 conv-BN-ReLU layers with two 2x2 max pools, pooled features, linear head.

    ``equivariant=True`` uses P4 layers with ``width`` and ``2 * width`` fields and ends with
    rotation pooling (``rotation_pool`` = "max" or "mean"); ``equivariant=False`` is the plain twin
    with ``2 * width`` and ``4 * width`` channels. ``forward_features`` returns ``(B, num_features,
    H/4, W/4)`` maps, the head pools them globally (mean) into the classifier.

    >>> P4CNN(width=4)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        *,
        width: int = 8,
        equivariant: bool = True,
        rotation_pool: str = "max",
    ) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(
                f"P4CNN: width must be a positive int (P4 fields of the first layer); received width={width!r}. "
                "Use e.g. width=8."
            )
        self.equivariant = equivariant
        layers: list[nn.Module]
        if equivariant:
            w1, w2 = width, 2 * width
            block: Callable[[nn.Module, int], list[nn.Module]] = _p4_block
            layers = [
                *block(P4LiftConv2d(in_chans, w1, 3, padding=1, bias=False), w1),
                P4MaxPool2d(2),
                *block(P4GroupConv2d(w1, w1, 3, padding=1, bias=False), w1),
                *block(P4GroupConv2d(w1, w2, 3, padding=1, bias=False), w2),
                P4MaxPool2d(2),
                *block(P4GroupConv2d(w2, w2, 3, padding=1, bias=False), w2),
                P4RotationPool(rotation_pool),  # (B, w2, 4, h, w) -> (B, w2, h, w)
            ]
        else:
            w1, w2 = 2 * width, 4 * width  # matches the P4 weight count layer by layer
            block = _plain_block
            layers = [
                *block(nn.Conv2d(in_chans, w1, 3, padding=1, bias=False), w1),
                nn.MaxPool2d(2),
                *block(nn.Conv2d(w1, w1, 3, padding=1, bias=False), w1),
                *block(nn.Conv2d(w1, w2, 3, padding=1, bias=False), w2),
                nn.MaxPool2d(2),
                *block(nn.Conv2d(w2, w2, 3, padding=1, bias=False), w2),
            ]
        self.features = nn.Sequential(*layers)
        self.num_features = w2
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats: torch.Tensor = self.features(x)  # (B, in, H, W) -> (B, num_features, H/4, W/4)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C): global average pooling, rotation invariant
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.forward_head(self.forward_features(x))
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def _create_p4cnn(num_classes: int, in_chans: int, **kwargs: Any) -> P4CNN:
    return P4CNN(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(
    "p4cnn", family="p4cnn", input_size=(1, 28, 28), num_classes=10,
    params=16_466, macs=7_451_296, rf=22,
    test_kwargs={"width": 2},
)  # fmt: skip
def p4cnn(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> P4CNN:
    """P4-equivariant CNN for 28x28 gray images; class scores invariant to 90-degree rotations."""
    return _create_p4cnn(num_classes, in_chans, **kwargs)


@register_model(
    "p4cnn_plain", family="p4cnn", input_size=(1, 28, 28), num_classes=10,
    params=16_794, macs=1_919_552, rf=22,
    test_kwargs={"width": 2},
)  # fmt: skip
def p4cnn_plain(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> P4CNN:
    """The plain twin of p4cnn: ordinary convolutions, twice the width, matched parameter count."""
    return _create_p4cnn(num_classes, in_chans, equivariant=False, **kwargs)

"""Gated convolution (Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019).

One convolution computes a feature map and a gate map side by side; the output is
``phi(feature) * sigmoid(gate)``, so every location and channel learns how much of its feature to let
through (a soft, learned mask, where partial convolution uses a hard rule).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from cnnlab.layers._act import ActLike, make_act
from cnnlab.layers.conv import Conv2d

__all__ = ["Gate", "GatedConv2d"]


class Gate(nn.Module):
    """Splits the channels in halves ``(feature, gate)`` and returns ``act(feature) * sigmoid(gate)``.

    >>> Gate(None)(torch.zeros(1, 4, 2, 2))[0, :, 0, 0].tolist()
    [0.0, 0.0]
    """

    def __init__(self, activation: ActLike = nn.ELU) -> None:
        super().__init__()
        self.act = make_act(activation, "Gate", "activation")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and (x.dim() not in (3, 4) or x.shape[-3] % 2):  # a fx Proxy has no shape
            raise ValueError(
                f"Gate: the input must be (B, 2C, H, W) or one unbatched (2C, H, W) map with an even channel "
                f"count (the first half are features, the second half their gates); received shape "
                f"{tuple(x.shape)}. Give the convolution before it 2 * out_channels outputs, as GatedConv2d does."
            )
        # the channel axis is -3 for a batch and for one unbatched map, as for nn.Conv2d
        feature, gate = x.chunk(2, dim=-3)  # (B, 2C, H, W) -> 2 x (B, C, H, W)
        out: torch.Tensor = self.act(feature) * torch.sigmoid(gate)
        return out


class GatedConv2d(nn.Sequential):
    """``conv`` (:class:`Conv2d` with ``2 * out_channels`` maps: features, then gates) and ``gate``.

    ``activation`` (``phi``) is a module class, an instance, a tensor function (``torch.relu``) or None
    for the identity; the paper uses ELU or LeakyReLU. ``padding`` is :class:`Conv2d`'s and defaults to
    'same' (inpainting keeps the size).

    >>> GatedConv2d(4, 8, 3)(torch.zeros(1, 4, 9, 9)).shape
    torch.Size([1, 8, 9, 9])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = "same",
        dilation: Any = 1,
        activation: ActLike = nn.ELU,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        conv = Conv2d(
            in_channels,
            2 * out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            padding_mode=padding_mode,
        )
        super().__init__(OrderedDict(conv=conv, gate=Gate(activation)))
        self.in_channels = in_channels
        self.out_channels = out_channels

"""Convolution, batch norm, activation: the block every modern CNN repeats."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch.nn as nn

from cnnlab.layers._act import ActLike, make_act
from cnnlab.layers.conv import Conv2d

__all__ = ["ConvBNAct"]


class ConvBNAct(nn.Sequential):
    """``conv`` (:class:`Conv2d`, ``bias=False``), ``bn`` (``nn.BatchNorm2d``), ``act``.

    The convolution has no bias because batch norm subtracts the mean right after it, which would
    cancel any bias; BN's own ``beta`` takes its place. ``act`` is a module class, an instance, a
    tensor function (``F.relu``) or None (no activation, e.g. before a residual addition).

    >>> ConvBNAct(3, 16, stride=2)(torch.zeros(2, 3, 15, 15)).shape
    torch.Size([2, 16, 8, 8])
    >>> ConvBNAct(3, 16).conv.bias is None
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any = 3,
        stride: Any = 1,
        padding: Any = "same",
        act: ActLike = nn.ReLU,
        *,
        dilation: Any = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        conv = Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
            padding_mode=padding_mode,
        )
        super().__init__(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels), act=make_act(act, "ConvBNAct", "act")))
        self.in_channels = in_channels
        self.out_channels = out_channels

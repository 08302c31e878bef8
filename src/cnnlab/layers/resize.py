"""Resize-convolution: upsample (bilinear or nearest), then a 'same' convolution.

The alternative to a transposed convolution (``nn.ConvTranspose2d``) for learned upsampling: a
transposed convolution whose kernel size is not a multiple of its stride overlaps unevenly and
paints checkerboard artefacts; resizing first and convolving after spreads every input pixel
evenly (Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch.nn as nn

from cnnlab.layers.conv import Conv2d, check_padding_mode

__all__ = ["ResizeConv2d"]

_MODES = ("nearest", "bilinear")


class ResizeConv2d(nn.Sequential):
    """``upsample`` (``nn.Upsample(scale_factor, mode)``) then ``conv`` (:class:`Conv2d`, padding 'same').

    The output is ``scale_factor`` times the input size with ``out_channels`` maps. Bilinear uses
    ``align_corners=False`` (the pixel-area convention of ``F.interpolate`` and TensorFlow 2).

    >>> ResizeConv2d(8, 4)(torch.zeros(1, 8, 5, 7)).shape
    torch.Size([1, 4, 10, 14])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any = 3,
        scale_factor: float = 2,
        mode: str = "bilinear",
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        if mode not in _MODES:
            raise ValueError(
                f"ResizeConv2d: mode must be 'bilinear' or 'nearest'; received mode={mode!r}. "
                "Use mode='bilinear' for smooth upsampling or 'nearest' to repeat pixels."
            )
        if isinstance(scale_factor, bool) or not isinstance(scale_factor, int | float) or scale_factor <= 0:
            raise ValueError(
                f"ResizeConv2d: scale_factor must be a positive number; received scale_factor={scale_factor!r}. "
                "Use scale_factor=2 to double the height and width."
            )
        check_padding_mode(padding_mode, "ResizeConv2d")
        align = False if mode == "bilinear" else None
        super().__init__(
            OrderedDict(
                upsample=nn.Upsample(scale_factor=scale_factor, mode=mode, align_corners=align),
                conv=Conv2d(
                    in_channels, out_channels, kernel_size, padding="same", bias=bias, padding_mode=padding_mode
                ),
            )
        )
        self.in_channels = in_channels
        self.out_channels = out_channels

"""U-Net (Ronneberger, Fischer and Brox, 2015) for semantic segmentation, small by default.

The encoder is a stack of levels, each two 3x3 conv-BN-ReLU (padding 1, so sizes are kept, unlike the
paper's unpadded convs that force a crop) followed by 2x2 max pooling; the last level is the
bottleneck. Each decoder level doubles the resolution, halves the channels, concatenates the encoder
map of the same size (the skip connection that restores detail lost by pooling) and applies two more
3x3 conv-BN-ReLU. Two ways to upsample, selectable with ``up=``:

* ``"transposed"``: a learned 2x2 transposed convolution with stride 2, the paper's "up-convolution";
* ``"bilinear"`` (default): bilinear upsampling by 2 then a 3x3 convolution (resize-conv, Odena et
  al. 2016), which cannot produce the checkerboard artefacts of a stride-2 transposed convolution.

The defaults fit cnnlab's generated ``shapes`` dataset: one channel, 64x64, four classes
(background, circle, square, triangle). H and W must be divisible by ``2 ** (len(widths) - 1)``.

Encoder-decoder face (see :mod:`cnnlab.models._base`): ``forward_features`` runs encoder and decoder
and returns the last full-resolution decoder map ``(B, widths[0], H, W)`` (``num_features`` channels);
``forward_head`` is the per-pixel classifier, a 1x1 convolution, so ``reset_classifier(n)`` gives ``n``
output classes. ``bottleneck_channels`` is the width of the deepest level.

>>> UNet(num_classes=4, widths=(4, 8))(torch.zeros(1, 1, 16, 16)).shape
torch.Size([1, 4, 16, 16])
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
import torch.fx
import torch.nn as nn

from cnnlab.models._dense import DenseHeadModel
from cnnlab.models._registry import register_model

__all__ = ["DoubleConv", "UNet", "Up", "conv_bn_relu", "unet", "unet_transposed"]

UpMode = Literal["bilinear", "transposed"]


def conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    """3x3 conv (no bias: BN has one), BN, ReLU; keeps the spatial size.

    Plain ``torch.nn`` layers (not ``cnnlab.layers.ConvBNAct``): fx-based tools see leaf ``nn.Conv2d``s.
    """
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU: the unit of every U-Net level.

    >>> DoubleConv(1, 4)(torch.zeros(1, 1, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(*conv_bn_relu(in_ch, out_ch), *conv_bn_relu(out_ch, out_ch))


class Up(nn.Module):
    """Upsample by 2 with ``out_ch`` channels, concatenate the skip map, then a DoubleConv.

    >>> Up(8, 4, "transposed")(torch.zeros(1, 8, 4, 4), torch.zeros(1, 4, 8, 8)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(self, in_ch: int, out_ch: int, mode: UpMode = "bilinear") -> None:
        super().__init__()
        if mode == "transposed":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, out_ch, 3, padding=1),
            )
        self.conv = DoubleConv(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # (B, in, h, w) -> (B, out, 2h, 2w); cat with skip (B, out, 2h, 2w) -> (B, 2*out, 2h, 2w)
        x = torch.cat([skip, self.up(x)], dim=1)
        out: torch.Tensor = self.conv(x)
        return out


class UNet(DenseHeadModel):
    """U-Net with ``len(widths)`` levels; ``widths[-1]`` is the bottleneck width.

    >>> UNet(widths=(4, 8, 16)).bottleneck_channels
    16
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 1,
        *,
        widths: tuple[int, ...] | list[int] = (8, 16, 32, 64),
        up: UpMode = "bilinear",
    ) -> None:
        super().__init__()
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(
                f"UNet: widths must list at least 2 positive channel counts (one per level, the last is the "
                f"bottleneck); received widths={widths!r}. Use e.g. widths=(8, 16, 32, 64)."
            )
        if up not in ("bilinear", "transposed"):
            raise ValueError(
                f"UNet: up must be 'bilinear' (upsample + 3x3 conv) or 'transposed' (2x2 transposed conv, "
                f"stride 2); received up={up!r}."
            )
        ws = [int(w) for w in widths]
        self.up_mode = up
        self.multiple = 2 ** (len(ws) - 1)  # H and W must be divisible by this
        self.bottleneck_channels = ws[-1]
        self.num_features = ws[0]
        # encoder: level 0 at full size, level i at 1/2**i after a 2x2 max pool
        self.inc = DoubleConv(in_chans, ws[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(a, b)) for a, b in itertools.pairwise(ws))
        # decoder: from the bottleneck back to level 0
        self.ups = nn.ModuleList(Up(b, a, up) for a, b in reversed(list(itertools.pairwise(ws))))
        self.head = nn.Conv2d(ws[0], num_classes, 1)

    def _check_size(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.fx.Proxy):  # symbolic tracing (analysis) has no sizes to check
            return
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(
                f"UNet: input height and width must be divisible by 2**(levels-1) = {self.multiple} so that "
                f"each upsampled map matches its skip map; received {h}x{w}. Resize or pad the input "
                f"(e.g. to {-(-h // self.multiple) * self.multiple}x{-(-w // self.multiple) * self.multiple}) "
                "or use fewer levels."
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        skips = [self.inc(x)]  # (B, w0, H, W)
        for down in self.downs:
            skips.append(down(skips[-1]))  # (B, w_i, H/2**i, W/2**i); the last is the bottleneck
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return x  # (B, w0, H, W)


def _create_unet(num_classes: int, in_chans: int, **kwargs: Any) -> UNet:
    return UNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(
    "unet", family="unet", input_size=(1, 64, 64), num_classes=4, task="segmentation",
    params=134_500, macs=48_791_552, rf=124,
    test_kwargs={"widths": (4, 8, 16, 32)},
)  # fmt: skip
def unet(num_classes: int = 4, in_chans: int = 1, **kwargs: Any) -> UNet:
    """U-Net, bilinear upsampling + 3x3 conv in the decoder, widths 8-64 (for 64x64 shapes)."""
    return _create_unet(num_classes, in_chans, **kwargs)


@register_model(
    "unet_transposed", family="unet", input_size=(1, 64, 64), num_classes=4, task="segmentation",
    params=121_060, macs=36_208_640, rf=100,
    test_kwargs={"widths": (4, 8, 16, 32)},
)  # fmt: skip
def unet_transposed(num_classes: int = 4, in_chans: int = 1, **kwargs: Any) -> UNet:
    """U-Net with the paper's 2x2 transposed-conv "up-convolution", widths 8-64 (for 64x64 shapes)."""
    return _create_unet(num_classes, in_chans, up="transposed", **kwargs)

"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017): an encoder-decoder that upsamples by max unpooling.

Each encoder level is ``convs_per_level`` 3x3 conv-BN-ReLU then a 2x2 max pool that also returns the
*indices* of the maxima. The mirrored decoder level puts every value back where its maximum came from
(``nn.MaxUnpool2d`` with those indices, zeros elsewhere), then densifies the sparse map with 3x3
conv-BN-ReLU; the last conv of a level goes down to the width of the level above. Only the indices
are kept, not whole encoder maps as in U-Net: memory-light boundaries. The unpooling is given the
size of the map before pooling (``output_size``), so odd sizes (7 -> 3 -> 7) come back exactly and
any input of at least ``2 ** levels`` pixels per side works.

Encoder-decoder face: ``forward_features`` returns the last full-resolution decoder map
``(B, widths[0], H, W)`` (``num_features`` channels); ``forward_head`` is the paper's per-pixel
soft-max classifier, a 1x1 convolution, which ``reset_classifier(n)`` replaces.
``bottleneck_channels`` is the width of the deepest level.

>>> SegNet(num_classes=4, widths=(4, 8))(torch.zeros(1, 1, 13, 11)).shape
torch.Size([1, 4, 13, 11])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cnnlab.models._dense import DenseHeadModel
from cnnlab.models._registry import register_model
from cnnlab.models.unet import conv_bn_relu

__all__ = ["SegNet", "segnet"]


class SegNet(DenseHeadModel):
    """SegNet with ``len(widths)`` pooling levels and ``convs_per_level`` convs in each.

    >>> SegNet(widths=(4, 8, 16)).bottleneck_channels
    16
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_chans: int = 1,
        *,
        widths: tuple[int, ...] | list[int] = (8, 16, 32),
        convs_per_level: int = 2,
    ) -> None:
        super().__init__()
        if len(widths) < 1 or min(widths) < 1 or convs_per_level < 1:
            raise ValueError(
                f"SegNet: widths must list at least 1 positive channel count (one per pooling level) and "
                f"convs_per_level must be >= 1; received widths={widths!r}, convs_per_level={convs_per_level}. "
                "Use e.g. widths=(8, 16, 32), convs_per_level=2."
            )
        ws = [int(w) for w in widths]
        n = convs_per_level
        self.bottleneck_channels = ws[-1]
        self.num_features = ws[0]
        ins = [in_chans, *ws[:-1]]
        self.encoders = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(a, b), *[m for _ in range(n - 1) for m in conv_bn_relu(b, b)])
            for a, b in zip(ins, ws)
        )
        self.pools = nn.ModuleList(nn.MaxPool2d(2, 2, return_indices=True) for _ in ws)
        self.unpools = nn.ModuleList(nn.MaxUnpool2d(2, 2) for _ in ws)
        # decoder level i (deepest first): n-1 convs at width w_i, then one down to w_{i-1} (w_0 at the top)
        outs = [ws[0], *ws[:-1]]
        self.decoders = nn.ModuleList(
            nn.Sequential(*[m for _ in range(n - 1) for m in conv_bn_relu(w, w)], *conv_bn_relu(w, o))
            for w, o in reversed(list(zip(ws, outs)))
        )
        self.head = nn.Conv2d(ws[0], num_classes, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        saved = []
        for encoder, pool in zip(self.encoders, self.pools):
            x = encoder(x)
            size = x.shape[-2:]  # the size before pooling: odd sizes need it to unpool exactly
            pooled = pool(x)  # (values (B, C, h//2, w//2), indices of the maxima in the (h, w) map)
            x = pooled[0]
            saved.append((pooled[1], size))
        for unpool, decoder in zip(self.unpools, self.decoders):
            indices, size = saved.pop()
            x = decoder(unpool(x, indices, output_size=size))  # (B, C, h//2, w//2) -> (B, C', h, w)
        return x  # (B, w0, H, W)


def _create_segnet(num_classes: int, in_chans: int, **kwargs: Any) -> SegNet:
    return SegNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(
    "segnet", family="segnet", input_size=(1, 64, 64), num_classes=4, task="segmentation",
    params=36_796, macs=21_659_648, rf=68,
    test_kwargs={"widths": (4, 8, 16)},
)  # fmt: skip
def segnet(num_classes: int = 4, in_chans: int = 1, **kwargs: Any) -> SegNet:
    """SegNet-style encoder-decoder with max unpooling by saved indices, widths 8-32 (for 64x64 shapes)."""
    return _create_segnet(num_classes, in_chans, **kwargs)

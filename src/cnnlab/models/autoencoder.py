"""A convolutional autoencoder: reconstruct the input through a narrow spatial code.

The encoder halves the resolution at each level with a 3x3 stride-2 conv-BN-ReLU (28 -> 14 -> 7 -> 4
for the defaults), then a 1x1 conv squeezes the channels to ``code_channels``: the bottleneck (8 maps
of 4x4 = 128 numbers for a 784-pixel Fashion-MNIST image). The decoder mirrors it with 3x3 stride-2
transposed convs; each is told the size of the matching encoder input (``output_size``), so odd sizes
(7 -> 4 -> 7) come back exactly and the output always has the input's shape. The output is linear
(no sigmoid): train it with an MSE loss on the same normalisation as the input.

Encoder-decoder face: ``forward_features`` returns the last full-resolution decoder map
``(B, widths[0], H, W)`` (``num_features`` channels); ``forward_head`` is a 1x1 conv to the output
channels (``in_chans`` unless ``num_classes`` says otherwise), which ``reset_classifier(n)`` replaces.
``encode(x)`` gives the code ``(B, code_channels, h, w)`` (``bottleneck_channels``) and
``decode(code, size)`` the reconstruction.

>>> ConvAutoencoder(widths=(4, 8))(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cnnlab.models._dense import DenseHeadModel
from cnnlab.models._registry import register_model

__all__ = ["ConvAutoencoder", "conv_autoencoder"]


def _down(in_ch: int, out_ch: int) -> nn.Sequential:
    # (B, in, h, w) -> (B, out, ceil(h/2), ceil(w/2))
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class _Up(nn.Module):
    """3x3 stride-2 transposed conv-BN-ReLU to an exact ``size`` (2h or 2h-1; 2h when not given)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, size: Any = None) -> torch.Tensor:
        # (B, in, h, w) -> (B, out, size) with size in {2h - 1, 2h} per axis
        out: torch.Tensor = self.act(self.bn(self.deconv(x, output_size=size)))
        return out


class ConvAutoencoder(DenseHeadModel):
    """Encoder of ``len(widths)`` stride-2 levels, a ``code_channels`` 1x1 bottleneck, a mirrored decoder.

    >>> ConvAutoencoder(widths=(4, 8), code_channels=2).encode(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 2, 7, 7])
    """

    def __init__(
        self,
        num_classes: int | None = None,
        in_chans: int = 1,
        *,
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        code_channels: int = 8,
    ) -> None:
        super().__init__()
        if len(widths) < 1 or min(widths) < 1 or code_channels < 1:
            raise ValueError(
                f"ConvAutoencoder: widths must list at least 1 positive channel count (one per stride-2 level) "
                f"and code_channels must be >= 1; received widths={widths!r}, code_channels={code_channels}. "
                "Use e.g. widths=(16, 32, 64), code_channels=8."
            )
        ws = [int(w) for w in widths]
        self.bottleneck_channels = code_channels
        self.num_features = ws[0]
        self.encoder = nn.ModuleList(_down(a, b) for a, b in zip([in_chans, *ws[:-1]], ws))
        self.to_code = nn.Conv2d(ws[-1], code_channels, 1)  # linear bottleneck: no BN, no ReLU
        self.from_code = nn.Sequential(nn.Conv2d(code_channels, ws[-1], 1), nn.ReLU(inplace=True))
        # level i of the decoder (deepest first) goes from w_i to w_{i-1}; the top level stays at w_0
        self.decoder = nn.ModuleList(_Up(w, o) for w, o in reversed(list(zip(ws, [ws[0], *ws[:-1]]))))
        self.head = nn.Conv2d(ws[0], in_chans if num_classes is None else num_classes, 1)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
        sizes = []
        for level in self.encoder:
            sizes.append(x.shape[-2:])  # what the matching decoder level must give back
            x = level(x)
        code: torch.Tensor = self.to_code(x)
        return code, sizes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``(B, code_channels, ceil(H / 2**L), ceil(W / 2**L))`` for ``L = len(widths)``."""
        return self._encode(x)[0]

    def _decode_features(self, code: torch.Tensor, sizes: list[Any]) -> torch.Tensor:
        x: torch.Tensor = self.from_code(code)
        for level in self.decoder:
            x = level(x, sizes.pop() if sizes else None)
        return x

    def decode(self, code: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Reconstruct from a code; ``size`` is the original (H, W) (default: ``2**L`` times the code's)."""
        sizes: list[Any] = []
        if size is not None:
            h, w = size
            for _ in self.decoder:
                sizes.append((h, w))
                h, w = -(-h // 2), -(-w // 2)  # ceil(h / 2): the encoder's stride-2 conv
        return self.forward_head(self._decode_features(code, sizes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        code, sizes = self._encode(x)
        return self._decode_features(code, sizes)  # (B, w0, H, W)


def _create_autoencoder(num_classes: int | None, in_chans: int, **kwargs: Any) -> ConvAutoencoder:
    return ConvAutoencoder(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(
    "conv_autoencoder", family="autoencoder", input_size=(1, 28, 28), num_classes=1, task="reconstruction",
    params=49_993, macs=1_550_144, rf=23,
    test_kwargs={"widths": (4, 8, 8), "code_channels": 2},
)  # fmt: skip
def conv_autoencoder(num_classes: int | None = None, in_chans: int = 1, **kwargs: Any) -> ConvAutoencoder:
    """Convolutional autoencoder, 28x28 -> 8@4x4 code -> 28x28 (output channels = in_chans by default)."""
    return _create_autoencoder(num_classes, in_chans, **kwargs)

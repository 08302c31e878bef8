"""FastNet: cnnlab's default classifier, a small CNN that trains to about 93% on Fashion-MNIST on a CPU.

The cost sits where a CPU is efficient: full resolution only for a cheap, narrow stem (16 channels:
its 28x28 activations, max pooling and their backward pass are memory-bound, and on the validation
split 16 channels trained faster and no less accurately than 32), then each stage halves the
resolution with max pooling while widening (convolutions 1->16 @ 28x28, 16->64 @ 14x14, 64->128 @
7x7, 128->256 @ 3x3 for a 28x28 input: 8.2 M multiply-adds, 381 k parameters). Each convolution is
followed by max pooling and only then by batch norm and ReLU (airbench's order: the elementwise
work runs on a quarter of the pixels); optional residual blocks (zero-gamma ready) sit at the low
resolutions, where the CPU is cheapest per multiply-add; global average + max pooling feeds a
linear head. ``init_whitening(images)`` sets the stem to patch-whitening filters of the training
images and freezes it (the default recipe does; airbench's trick). Tuned on a validation split for
the default recipe (``cnnlab train``); see ``benchmarks/results/train_speed.md``. It works for any
input of at least 8x8 pixels (28x28 and 32x32 are the design sizes).

>>> FastNet(num_classes=10)(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from cnnlab.layers.matmul_grad import MatmulGradConv2d
from cnnlab.layers.whitening import patch_whitening
from cnnlab.models._registry import register_model

__all__ = ["ConvBN", "FastNet", "ResidualBlock", "fastnet"]


class ConvBN(nn.Sequential):
    """3x3 convolution (no bias: the batch norm has one), [2x2 max pool], batch norm, ReLU.

    With ``pool=True`` the pool sits between the convolution and the batch norm (airbench's order):
    the same convolution at full resolution, but the batch norm and ReLU, forward and backward, run
    on a quarter of the pixels, which makes the whole net about 1.5x faster on a CPU.

    >>> ConvBN(1, 8)(torch.zeros(1, 1, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    >>> ConvBN(1, 8, pool=True)(torch.zeros(1, 1, 6, 6)).shape
    torch.Size([1, 8, 3, 3])
    """

    def __init__(self, in_ch: int, out_ch: int, *, act: bool = True, pool: bool = False) -> None:
        # MatmulGradConv2d is an nn.Conv2d that trains faster on CPU on tiny (3x3, 4x4) maps; pooled=True lets
        # it skip, in training, the row and column of an odd map (7x7) that the floor-mode pool drops.
        layers: list[nn.Module] = [MatmulGradConv2d(in_ch, out_ch, 3, padding=1, bias=False, pooled=pool)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.BatchNorm2d(out_ch))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``; ``zero_init_last()`` zeroes the last BN's gamma.

    With gamma = 0 the block starts as the identity, which lets deeper nets train at a high learning
    rate from the first step (Goyal et al. 2017; the Bag-of-Tricks "zero gamma" trick).

    >>> ResidualBlock(4)(torch.zeros(1, 4, 3, 3)).shape
    torch.Size([1, 4, 3, 3])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(channels, channels)
        self.conv2 = ConvBN(channels, channels, act=False)
        self.act = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        bn = self.conv2[-1]  # (conv, bn): the BN whose output joins the skip path
        nn.init.zeros_(bn.weight)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(x + self.conv2(self.conv1(x)))
        return out


class FastNet(nn.Module):
    """Stem and three conv stages with 2x2 max pooling between them, optional residual block, pooled head.

    ``widths`` are the channel counts of the stem and the three stages; ``blocks`` the number of
    residual blocks after stage 1, 2 and 3 (at 7x7, 3x3 and 3x3 for a 28x28 input: depth where
    the resolution is already low and the CPU cheap); ``residual=True`` adds one more after the last
    stage (the model then supports zero-gamma initialisation); ``pool_last=False`` keeps stages 2
    and 3 at 7x7 instead of pooling to 3x3. ``logit_scale`` multiplies the logits (airbench scales
    its head by 1/9): each of the 256 pooled features is a spatial mean plus a max, so at the
    default recipe's learning rate one step of an unscaled head moves the logits by tens of units.
    With 0.25 a 10-step run no longer diverges (train loss 1.7 instead of 15.5; 30 steps reach 80%
    instead of 28%) and 8 epochs end level on the validation split (seeds 0/1/2: 94.32/93.88/94.27
    against 93.87/93.85/94.48 with 1.0).

    >>> FastNet(widths=(8, 8, 16, 16), blocks=(0, 0, 0)).num_features
    16
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        *,
        widths: tuple[int, int, int, int] | list[int] = (16, 64, 128, 256),
        blocks: tuple[int, int, int] | list[int] = (0, 0, 0),
        residual: bool = False,
        pool_last: bool = True,
        dropout: float = 0.0,
        logit_scale: float = 0.25,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(
                f"FastNet: widths must be 4 positive channel counts (stem, stage 1, 2, 3); received "
                f"widths={widths!r}. Use e.g. widths=(16, 32, 64, 128)."
            )
        if len(blocks) != 3 or min(blocks) < 0:
            raise ValueError(
                f"FastNet: blocks must be 3 counts >= 0 (residual blocks after stage 1, 2, 3); received "
                f"blocks={blocks!r}. Use e.g. blocks=(0, 1, 1)."
            )
        if not (math.isfinite(logit_scale) and logit_scale > 0):
            raise ValueError(
                f"FastNet: logit_scale must be a finite number > 0 (it multiplies the logits); received "
                f"logit_scale={logit_scale!r}. Use 0.25 (the default) or 1.0 for an unscaled head."
            )
        w0, w1, w2, w3 = (int(w) for w in widths)
        n1, n2, n3 = (int(b) for b in blocks)
        n3 += int(residual)  # residual=True: one more block after the last stage (zero-gamma ready)
        # Every convolution runs at the resolution before its pool (conv -> pool -> BN -> ReLU):
        # (B, in, 28, 28) -> stem conv @28 -> (B, w0, 14, 14) -> conv @14 -> (B, w1, 7, 7) [blocks]
        # -> conv @7 -> (B, w2, 3, 3) [blocks] (7 x 7 with pool_last=False) -> conv -> (B, w3, 3, 3) [blocks]
        self.features = nn.Sequential(
            ConvBN(in_chans, w0, pool=True),
            ConvBN(w0, w1, pool=True),
            *(ResidualBlock(w1) for _ in range(n1)),
            ConvBN(w1, w2, pool=pool_last),
            *(ResidualBlock(w2) for _ in range(n2)),
            ConvBN(w2, w3),
            *(ResidualBlock(w3) for _ in range(n3)),
        )
        self.num_features = w3
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.logit_scale = float(logit_scale)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, *, freeze: bool = True) -> None:
        """Set the stem convolution to the patch-whitening filters of ``images`` and (by default) freeze it.

        ``images`` are normalised training images ``(N, C, H, W)``; see
        :func:`cnnlab.layers.whitening.patch_whitening`. Freezing fixes the whole stem: the filters
        and its batch norm's scale and shift (the norm still uses each batch's statistics). That
        makes training cheaper: nothing in the stem needs a gradient, so the backward pass skips the
        stem's max pool and convolution at full resolution (FastNet's CPU step at batch 256: 1.14x on
        a Xeon with AMX, ``benchmarks/results/step_profile_amx.md``, 1.12x on an AMD EPYC Zen 5 with
        AVX-512 BF16, ``benchmarks/results/step_profile.md``) and the next convolution's input gradient (with the
        pooled convolutions, fp32 training on a 2-core AMD EPYC went from 1556 to 1789 images/s:
        ``benchmarks/results/train_speed_avx2.md``). On the validation split the frozen scale and shift cost
        nothing: after 8 epochs of the default recipe (fp32), seeds 0/1/2 reached 94.15/93.65/94.32
        (mean 94.04) against 94.03/93.83/94.35 (94.07) with them trained, and after 3 epochs 92.65
        against 92.66 on average.

        >>> net = FastNet(widths=(8, 8, 16, 16)); net.init_whitening(torch.randn(16, 1, 8, 8))
        >>> net.features[0][0].weight.requires_grad, net.features[0][2].weight.requires_grad
        (False, False)
        """
        conv = self.features[0][0]  # type: ignore[index]  # the stem ConvBN's convolution
        conv.weight.copy_(patch_whitening(images, conv.kernel_size[0], conv.out_channels))
        for p in self.features[0].parameters():  # the filters, the batch norm's affine
            p.requires_grad_(not freeze)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats: torch.Tensor = self.features(x)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # (B, w3, h, w) -> (B, w3): global average plus global max pooling.
        x = x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))
        x = self.drop(x)
        return x if pre_logits else self.fc(x) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.forward_head(self.forward_features(x))
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def _create_fastnet(num_classes: int, in_chans: int, **kwargs: object) -> FastNet:
    return FastNet(num_classes=num_classes, in_chans=in_chans, **kwargs)  # type: ignore[arg-type]


@register_model(
    "fastnet", family="fastnet", input_size=(1, 28, 28), num_classes=10,
    params=381_498, macs=8_188_672, rf=38,
    test_kwargs={"widths": (8, 8, 16, 16)},
)  # fmt: skip
def fastnet(num_classes: int = 10, in_chans: int = 1, **kwargs: object) -> FastNet:
    """cnnlab's default classifier for 28x28 and 32x32 images (Fashion-MNIST, MNIST, CIFAR)."""
    return _create_fastnet(num_classes, in_chans, **kwargs)

"""GoogLeNet / Inception-v1 (Szegedy et al., "Going deeper with convolutions", 2014), as in the paper.

An Inception block runs four branches on the same input and concatenates them along channels:
a 1x1 conv; a 1x1 reduction then a 3x3; a 1x1 reduction then a **true 5x5** (torchvision's GoogLeNet
uses a 3x3 there, a known slip copied from an early port); a 3x3 max pool then a 1x1 projection.
The 1x1 reductions are what make the 3x3 and 5x5 affordable.

Faithful to Table 1 of the paper: conv 7x7/2, max pool, LRN, conv 1x1 + 3x3, LRN, max pool, Inception
3a-3b, pool, 4a-4e, pool, 5a-5b, 7x7 average pool, dropout 0.4, linear. Every conv has a bias and a
ReLU. ``lrn=False`` drops the two LRN layers; ``batch_norm=True`` puts BN after every conv instead
(the later practice). ``aux_logits=True`` adds the two auxiliary classifiers on 4a and 4d (off by
default): ``forward_aux`` returns them next to the main logits for the paper's loss,
``loss = ce(main) + 0.3 * (ce(aux1) + ce(aux2))``; ``forward`` always returns the main logits.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._registry import register_model

__all__ = ["AuxHead", "BasicConv", "GoogLeNet", "Inception"]

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) for each Inception block.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class BasicConv(nn.Sequential):
    """Conv (bias unless BN follows) -> optional BN -> ReLU.

    >>> BasicConv(3, 8, 3, padding=1)(torch.zeros(1, 3, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, *, batch_norm: bool = False, **conv: Any) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, bias=not batch_norm, **conv)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Inception(nn.Module):
    """Four parallel branches concatenated: 1x1 | 1x1-3x3 | 1x1-5x5 | maxpool3x3-1x1.

    >>> Inception(192, 64, 96, 128, 16, 32, 32)(torch.zeros(1, 192, 28, 28)).shape
    torch.Size([1, 256, 28, 28])
    """

    def __init__(
        self,
        in_ch: int,
        c1: int,
        c3r: int,
        c3: int,
        c5r: int,
        c5: int,
        pool_proj: int,
        *,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        conv = functools.partial(BasicConv, batch_norm=batch_norm)
        self.out_channels = c1 + c3 + c5 + pool_proj
        self.branch1 = conv(in_ch, c1, 1)
        self.branch2 = nn.Sequential(conv(in_ch, c3r, 1), conv(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(conv(in_ch, c5r, 1), conv(c5r, c5, 5, padding=2))  # a true 5x5
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_ch, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # 4 x (B, c_i, H, W) -> (B, sum c_i, H, W)


class AuxHead(nn.Module):
    """Auxiliary classifier: 5x5/3 average pool, 1x1 conv (128), FC 1024, dropout 0.7, FC classes.

    >>> AuxHead(512, 10)(torch.zeros(2, 512, 14, 14)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_ch: int, num_classes: int, *, width: int = 128, hidden: int = 1024) -> None:
        super().__init__()
        self.conv = BasicConv(in_ch, width, 1)
        self.fc1 = nn.Linear(width * 4 * 4, hidden)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, stride=3)  # (B, C, 14, 14) -> (B, C, 4, 4), the paper's 5x5/3 pool
        x = F.adaptive_avg_pool2d(x, 4)  # a no-op at 224x224; keeps other input sizes working
        x = torch.flatten(self.conv(x), 1)  # (B, 128, 4, 4) -> (B, 2048)
        x = self.dropout(F.relu(self.fc1(x)))
        out: torch.Tensor = self.fc2(x)
        return out


def _norm(lrn: bool) -> nn.Module:
    # The Caffe model's LRN: size 5, alpha 1e-4 (averaged over the window, as torch does), beta 0.75, k 1.
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if lrn else nn.Identity()


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, round(channels * width_mult))


class GoogLeNet(nn.Module):
    """GoogLeNet: stem, nine Inception blocks with max pools between, average pool, dropout, fc.

    >>> GoogLeNet(num_classes=10, width_mult=0.125)(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        lrn: bool = True,
        batch_norm: bool = False,
        aux_logits: bool = False,
        width_mult: float = 1.0,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        w = functools.partial(_scaled, width_mult=width_mult)
        conv = functools.partial(BasicConv, batch_norm=batch_norm)
        norm = functools.partial(_norm, lrn)
        pool = functools.partial(nn.MaxPool2d, 3, stride=2, ceil_mode=True)
        self.conv1 = conv(in_chans, w(64), 7, stride=2, padding=3)  # (B, 3, 224, 224) -> (B, 64, 112, 112)
        self.maxpool1 = pool()  # -> 56x56
        self.norm1 = norm()
        self.conv2 = conv(w(64), w(64), 1)
        self.conv3 = conv(w(64), w(192), 3, padding=1)  # -> (B, 192, 56, 56)
        self.norm2 = norm()
        self.maxpool2 = pool()  # -> 28x28
        blocks: dict[str, Inception] = {}
        in_ch = w(192)
        for name, cfg in INCEPTION_CFG.items():
            blocks[name] = Inception(in_ch, *(w(c) for c in cfg), batch_norm=batch_norm)
            in_ch = blocks[name].out_channels
        self.inception3a, self.inception3b = blocks["3a"], blocks["3b"]  # -> (B, 480, 28, 28)
        self.maxpool3 = pool()  # -> 14x14
        self.inception4a, self.inception4b, self.inception4c = blocks["4a"], blocks["4b"], blocks["4c"]
        self.inception4d, self.inception4e = blocks["4d"], blocks["4e"]  # -> (B, 832, 14, 14)
        self.maxpool4 = pool()  # -> 7x7
        self.inception5a, self.inception5b = blocks["5a"], blocks["5b"]  # -> (B, 1024, 7, 7)
        self.num_features = in_ch
        aux = functools.partial(AuxHead, num_classes=num_classes, width=w(128), hidden=w(1024))
        self.aux1 = aux(blocks["4a"].out_channels) if aux_logits else None
        self.aux2 = aux(blocks["4d"].out_channels) if aux_logits else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def _stem_to_4a(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.maxpool1(self.conv1(x)))
        x = self.maxpool2(self.norm2(self.conv3(self.conv2(x))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        out: torch.Tensor = self.inception4a(x)  # (B, 512, 14, 14)
        return out

    def _4a_to_4d(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inception4d(self.inception4c(self.inception4b(x)))  # (B, 528, 14, 14)
        return out

    def _4d_to_end(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool4(self.inception4e(x))
        out: torch.Tensor = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._4d_to_end(self._4a_to_4d(self._stem_to_4a(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # (B, 1024, 7, 7) -> (B, 1024)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and the auxiliary logits (an empty list when built without ``aux_logits``)."""
        a = self._stem_to_4a(x)
        d = self._4a_to_4d(a)
        logits = self.forward_head(self._4d_to_end(d))
        aux = [head(t) for head, t in ((self.aux1, a), (self.aux2, d)) if head is not None]
        return logits, aux

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)
        for name in ("aux1", "aux2"):
            head = getattr(self, name)
            if head is not None:
                head.fc2 = nn.Linear(head.fc2.in_features, num_classes)


def _create_googlenet(num_classes: int, in_chans: int, **kwargs: Any) -> GoogLeNet:
    return GoogLeNet(num_classes, in_chans, **kwargs)


@register_model(
    "googlenet", family="inception", input_size=(3, 224, 224), num_classes=1000,
    params=6_998_552, macs=1_582_671_872, rf=715, test_kwargs={"width_mult": 1 / 16},
)  # fmt: skip
def googlenet(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet / Inception-v1 as in the paper: true 5x5 branches, LRN, no aux heads by default."""
    return _create_googlenet(num_classes, in_chans, **kwargs)


@register_model(
    "googlenet_bn", family="inception", input_size=(3, 224, 224), num_classes=1000,
    params=7_005_832, macs=1_582_671_872, rf=715, test_kwargs={"width_mult": 1 / 16},
)  # fmt: skip
def googlenet_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet with BN after every conv instead of LRN (still true 5x5 branches)."""
    return _create_googlenet(num_classes, in_chans, lrn=False, batch_norm=True, **kwargs)

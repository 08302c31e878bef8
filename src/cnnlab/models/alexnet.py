"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012): the original two-tower net and the one-tower one.

*Two-tower* (``alexnet_original``) is the 2012 paper's network on a 227x227 input, with the two GPUs'
halves as ``groups=2``: conv2, conv4 and conv5 only see the 48/192/192 maps of their own tower, conv3
and the fully connected layers see both. Local response normalisation follows conv1 and conv2, max
pools overlap (3x3, stride 2), dropout 0.5 guards fc6 and fc7. 60,965,224 parameters.

*One-tower* (``alexnet``) is torchvision's variant (Krizhevsky's "one weird trick" widths 64-192-384-
256-256, no LRN, an adaptive 6x6 average pool so any input from 63 px works): 61,100,840 parameters.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from cnnlab.models._registry import register_model

__all__ = ["AlexNet", "paper_lrn"]


def paper_lrn() -> nn.LocalResponseNorm:
    """The paper's LRN: ``b = a / (k + alpha * sum_{5 neighbours} a^2) ** beta``, k=2, alpha=1e-4, beta=0.75.

    ``nn.LocalResponseNorm`` divides ``alpha`` by the window size, so the paper's alpha is passed as
    ``alpha * size`` to get the same formula.

    >>> paper_lrn()
    LocalResponseNorm(5, alpha=0.0005, beta=0.75, k=2.0)
    """
    size, alpha = 5, 1e-4
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=0.75, k=2.0)


def _scaled(channels: int, width_mult: float, multiple: int = 1) -> int:
    return max(multiple, round(channels * width_mult / multiple) * multiple)


class AlexNet(nn.Module):
    """``features`` (5 convs, 3 max pools) -> ``avgpool`` (6x6) -> ``classifier`` (3 FC layers).

    >>> AlexNet(num_classes=10, width_mult=0.125)(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        *,
        two_tower: bool = False,
        width_mult: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        g = 2 if two_tower else 1
        widths = (96, 256, 384, 384, 256) if two_tower else (64, 192, 384, 256, 256)
        c1, c2, c3, c4, c5 = (_scaled(c, width_mult, multiple=g) for c in widths)
        pad1 = 0 if two_tower else 2  # the paper's 227 input needs no padding; torchvision pads 224 by 2
        lrn: list[nn.Module] = [paper_lrn()] if two_tower else []
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 11, stride=4, padding=pad1),  # (B, 3, 227, 227) -> (B, 96, 55, 55)
            nn.ReLU(inplace=True),
            *lrn,
            nn.MaxPool2d(3, stride=2),  # -> 27x27
            nn.Conv2d(c1, c2, 5, padding=2, groups=g),  # each tower: 48 -> 128 maps
            nn.ReLU(inplace=True),
            *[paper_lrn() for _ in lrn],
            nn.MaxPool2d(3, stride=2),  # -> 13x13
            nn.Conv2d(c2, c3, 3, padding=1),  # conv3 crosses the towers
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=g),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=g),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),  # -> (B, 256, 6, 6)
        )
        self.num_features = c5
        hidden = _scaled(4096, width_mult)
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        fc6, fc7 = nn.Linear(c5 * 6 * 6, hidden), nn.Linear(hidden, hidden)
        if two_tower:  # the paper's (Caffe's) order: dropout on the outputs of fc6 and fc7 (fc6 -> relu -> drop)
            layers = [fc6, nn.ReLU(inplace=True), nn.Dropout(dropout), fc7, nn.ReLU(inplace=True), nn.Dropout(dropout)]
        else:  # torchvision's order (dropout before fc6 and fc7), so its state dicts load unchanged
            layers = [nn.Dropout(dropout), fc6, nn.ReLU(inplace=True), nn.Dropout(dropout), fc7, nn.ReLU(inplace=True)]
        self.classifier = nn.Sequential(*layers, nn.Linear(hidden, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)  # (B, in, 227, 227) -> (B, 256, 6, 6)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # (B, 256, 6, 6) -> (B, 9216)
        x = self.classifier[:-1](x)
        return x if pre_logits else self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        in_features = int(self.classifier[-1].in_features)  # type: ignore[arg-type]  # always a Linear
        self.classifier[-1] = nn.Linear(in_features, num_classes)


def _create_alexnet(num_classes: int, in_chans: int, **kwargs: Any) -> AlexNet:
    return AlexNet(num_classes, in_chans, **kwargs)


@register_model(
    "alexnet", family="alexnet", input_size=(3, 224, 224), num_classes=1000,
    params=61_100_840, macs=714_188_480, rf=195, test_kwargs={"width_mult": 1 / 16},
)  # fmt: skip
def alexnet(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet, one tower (torchvision's layout): 61,100,840 parameters."""
    return _create_alexnet(num_classes, in_chans, **kwargs)


@register_model(
    "alexnet_original", family="alexnet", input_size=(3, 227, 227), num_classes=1000,
    params=60_965_224, macs=724_406_816, rf=195, test_kwargs={"width_mult": 1 / 16},
)  # fmt: skip
def alexnet_original(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> AlexNet:
    """AlexNet as in the 2012 paper: two towers (groups=2), LRN, 227x227 input."""
    return _create_alexnet(num_classes, in_chans, two_tower=True, **kwargs)

"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), classic and modern.

*Classic* follows the 1998 paper: 32x32 input, C1 6@5x5, S2 subsampling (the sum of each 2x2 block
times one trainable coefficient plus one trainable bias per map), C3 16@5x5 wired to S2 through the
paper's partial connection table (Table I), S4, C5 120@5x5, F6 84, and the scaled tanh
``1.7159 * tanh(2/3 * a)`` after every layer. The paper's Euclidean RBF output units are replaced
by a linear layer, as in every modern re-implementation.

*Modern* keeps the shapes but uses max pooling, ReLU and a fully connected C3: 61,706 parameters with
10 classes on a 1x32x32 input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models._registry import register_model

__all__ = ["LeNet5", "PartialConv2d", "ScaledTanh", "Subsampling", "lenet5", "lenet5_classic"]

# Table I of the 1998 paper: which S2 maps (columns 0-5) feed each C3 map (rows 0-15). The first six
# C3 maps see 3 contiguous maps, the next six 4 contiguous, three see 4 discontiguous, the last all 6.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


class ScaledTanh(nn.Module):
    """LeCun's squashing function ``A * tanh(S * a)`` with ``A = 1.7159`` and ``S = 2/3``.

    The constants make ``f(1) = 1`` and ``f(-1) = -1``, so targets of +-1 sit where the second
    derivative is largest (paper, appendix A).

    >>> round(float(ScaledTanh()(torch.tensor(1.0))), 4)
    1.0
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class Subsampling(nn.Module):
    """The paper's S-layer: per map, ``coefficient * sum(2x2 block) + bias`` (2 parameters per map).

    >>> Subsampling(6)(torch.zeros(1, 6, 28, 28)).shape
    torch.Size([1, 6, 14, 14])
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        area = self.kernel_size * self.kernel_size
        # (B, C, H, W) -> (B, C, H/k, W/k): the block mean times k*k is the block sum.
        summed = F.avg_pool2d(x, self.kernel_size) * area
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution whose output map ``o`` sees only the input maps ``table[o]``.

    Output maps that see the same number of inputs are computed by one grouped convolution over the
    gathered input maps, so the weights, and the multiply-adds, are exactly those of the table
    (C3 of LeNet-5: 1,516 parameters, 150,000 multiply-adds at 10x10 instead of 2,416 / 240,000).

    >>> PartialConv2d(C3_TABLE, 5)(torch.zeros(1, 6, 14, 14)).shape
    torch.Size([1, 16, 10, 10])
    """

    restore: torch.Tensor

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        self.out_channels = len(table)
        fan_ins = sorted({len(row) for row in table})
        self.convs = nn.ModuleList()
        order: list[int] = []
        for fan_in in fan_ins:
            rows = [o for o, row in enumerate(table) if len(row) == fan_in]
            gather = [i for o in rows for i in table[o]]
            self.register_buffer(f"gather{len(self.convs)}", torch.tensor(gather), persistent=False)
            self.convs.append(nn.Conv2d(fan_in * len(rows), len(rows), kernel_size, groups=len(rows)))
            order.extend(rows)
        # Outputs come out grouped by fan-in; ``restore`` puts them back in table order.
        self.register_buffer("restore", torch.tensor(order).argsort(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for g, conv in enumerate(self.convs):
            index: torch.Tensor = getattr(self, f"gather{g}")
            outs.append(conv(x.index_select(1, index)))  # (B, fan_in*rows, H, W) -> (B, rows, H', W')
        return torch.cat(outs, dim=1).index_select(1, self.restore)


class LeNet5(nn.Module):
    """LeNet-5: ``features`` (C1 .. C5, ending at 120 maps of 1x1) then ``head`` (F6, output).

    >>> LeNet5(num_classes=10)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        *,
        classic: bool = False,
        conv1_padding: int = 0,
    ) -> None:
        super().__init__()
        act: type[nn.Module] = ScaledTanh if classic else nn.ReLU
        c3: nn.Module = PartialConv2d(C3_TABLE, 5) if classic else nn.Conv2d(6, 16, 5)
        self.classic = classic
        self.num_features = 120
        # (B, in, 32, 32) -> C1 (B, 6, 28, 28) -> S2 14 -> C3 (B, 16, 10, 10) -> S4 5 -> C5 (B, 120, 1, 1)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=conv1_padding),
            act(),
            Subsampling(6) if classic else nn.MaxPool2d(2),
            *([act()] if classic else []),  # the paper squashes after each S-layer too
            c3,
            act(),
            Subsampling(16) if classic else nn.MaxPool2d(2),
            *([act()] if classic else []),
            nn.Conv2d(16, 120, 5),
            act(),
        )
        self.fc6 = nn.Linear(120, 84)
        self.act6 = act()
        self.fc = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)  # (B, in, 32, 32) -> (B, 120, 1, 1)
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act6(self.fc6(torch.flatten(x, 1)))  # (B, 120, 1, 1) -> (B, 84)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)


def _create_lenet(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(
    "lenet5", family="lenet", input_size=(1, 32, 32), num_classes=10,
    params=61_706, macs=416_520, rf=32,
)  # fmt: skip
def lenet5(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> LeNet5:
    """LeNet-5, modern: max pooling, ReLU, fully connected C3 (61,706 parameters)."""
    return _create_lenet(num_classes, in_chans, **kwargs)


@register_model(
    "lenet5_classic", family="lenet", input_size=(1, 32, 32), num_classes=10,
    params=60_850, macs=326_520, rf=32,
)  # fmt: skip
def lenet5_classic(num_classes: int = 10, in_chans: int = 1, **kwargs: Any) -> LeNet5:
    """LeNet-5 as in the 1998 paper: C3 connection table, trainable subsampling, scaled tanh."""
    return _create_lenet(num_classes, in_chans, classic=True, **kwargs)

"""Sum pooling, and max pooling that returns its indices paired with max unpooling (SegNet, DeepPainter).

Max unpooling puts each pooled value back where the maximum came from and zeros everywhere else.
The size it restores is ambiguous after a pooling that dropped a last row or column (a 7x7 map and a
6x6 map both pool to 3x3 with a 2x2 window), so the encoder's size must travel with the indices:
pass the pre-pool tensor's shape as ``output_size``.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.arith import pool_out
from cnnlab.arith._norm import to_tuple

__all__ = ["MaxPool2dIndices", "MaxUnpool2d", "SumPool2d", "max_unpool2d"]


def _check_window(owner: str, kernel_size: Any, stride: Any, padding: Any) -> None:
    """A pooling window that torch would accept here and refuse only at the first forward (kernel_size=0)."""
    try:
        to_tuple(kernel_size, 2, "kernel_size", minimum=1)
        if stride is not None:
            to_tuple(stride, 2, "stride", minimum=1)
        to_tuple(padding, 2, "padding", minimum=0)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None


class SumPool2d(nn.AvgPool2d):
    """Sum of every window (not the mean); zero padding counts as zeros.

    The sum is average pooling with the divisor fixed at 1 (``divisor_override=1``), so it equals
    ``F.avg_pool2d(x, k, s, p) * k * k`` wherever a window lies inside the padded input; with
    ``ceil_mode`` a last window hanging over the edge sums only what it covers.

    >>> SumPool2d(2)(torch.arange(16.0).view(1, 1, 4, 4))[0, 0].tolist()
    [[10.0, 18.0], [42.0, 50.0]]
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False) -> None:
        _check_window("SumPool2d", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=True, divisor_override=1)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"
        )


class MaxPool2dIndices(nn.MaxPool2d):
    """``nn.MaxPool2d`` that returns ``(y, indices)``, for :class:`MaxUnpool2d`.

    ``indices`` are flat positions in each input map (``h * W + w``), as ``nn.MaxUnpool2d`` expects.
    Keep the input's shape too and pass it to :class:`MaxUnpool2d` (``output_size=x.shape[-2:]``):
    the indices only make sense for that width, and unpooling needs the size when it was odd.

    >>> y, idx = MaxPool2dIndices(2)(torch.arange(16.0).view(1, 1, 4, 4))
    >>> y[0, 0].tolist(), idx[0, 0].tolist()
    ([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        _check_window("MaxPool2dIndices", kernel_size, stride, padding)
        super().__init__(kernel_size, stride, padding, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, indices = super().forward(x)
        return y, indices


def _spatial_size(output_size: Any) -> tuple[int, int] | None:
    """(H, W) from ``output_size`` given as (H, W), a full (B, C, H, W) shape, a ``torch.Size`` or None."""
    if output_size is None:
        return None
    try:
        if isinstance(output_size, str | bytes):
            raise TypeError
        size = tuple(operator.index(v) for v in output_size)
    except TypeError:
        raise ValueError(
            f"MaxUnpool2d: output_size must be (H, W) or a full (B, C, H, W) shape of ints; received "
            f"output_size={output_size!r}. Pass the shape of the tensor that went into the pooling, e.g. "
            "output_size=x.shape[-2:]."
        ) from None
    if len(size) < 2:
        raise ValueError(
            f"MaxUnpool2d: output_size must be (H, W) or a full (B, C, H, W) shape; received "
            f"output_size={output_size!r}. Pass the shape of the tensor that went into the pooling, e.g. "
            "output_size=x.shape."
        )
    return size[-2], size[-1]


class MaxUnpool2d(nn.MaxUnpool2d):
    """Max unpooling: ``y`` back to the positions in ``indices``, zeros elsewhere, at ``output_size``.

    Called as ``unpool(y, indices, output_size)``. ``output_size`` is the pre-pool spatial size (H, W)
    or the pre-pool tensor's full shape. It is checked twice before PyTorch scatters: against the
    pooling arithmetic (the size must pool to ``y``'s size), and against the indices, which must each
    name a pixel inside their own pooling window of a map that wide (a 6x6 size for indices from a
    7x7 map is refused: both pool to 3x3, but row * 7 + column read with width 6 lands elsewhere).
    The indices do not record the height, nor the width of a single row of windows, so a size that
    differs from the true one only by rows or columns holding no maximum, or, when ``y`` has one row,
    by its width, can still pass; pass the input's own shape. Without ``output_size`` the default
    ``(n - 1) * stride - 2 * padding + kernel`` is used, which is wrong for an input whose last row or
    column the pooling dropped.

    >>> x = torch.arange(49.0).view(1, 1, 7, 7)
    >>> y, idx = MaxPool2dIndices(2)(x)
    >>> MaxUnpool2d(2)(y, idx, x.shape).shape
    torch.Size([1, 1, 7, 7])
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__(kernel_size, stride, padding)

    @classmethod
    def like(cls, pool: nn.MaxPool2d) -> MaxUnpool2d:
        """The unpooling that inverts ``pool``'s geometry (kernel, stride, padding).

        >>> MaxUnpool2d.like(MaxPool2dIndices(3, 2, 1))
        MaxUnpool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
        """
        if to_tuple(pool.dilation, 2, "dilation") != (1, 1):  # dropping it would misplace every window
            raise ValueError(
                f"MaxUnpool2d.like: max unpooling (nn.MaxUnpool2d) has no dilation, so it cannot invert a "
                f"dilated pool; received a pool with dilation={pool.dilation}. Pool with dilation=1, or scatter "
                "the values back yourself with the indices (e.g. torch.zeros(...).flatten(2).scatter_(2, ...))."
            )
        return cls(pool.kernel_size, pool.stride, pool.padding)

    def forward(self, y: torch.Tensor, indices: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        k = to_tuple(self.kernel_size, 2, "kernel_size")
        s = to_tuple(self.stride, 2, "stride")
        p = to_tuple(self.padding, 2, "padding")
        return max_unpool2d(y, indices, k, s, p, output_size)


def max_unpool2d(
    y: torch.Tensor,
    indices: torch.Tensor,
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_size: Any = None,
) -> torch.Tensor:
    """``F.max_unpool2d`` with checked arguments; ``output_size`` is (H, W) or a full shape.

    Registered with ``torch.fx.wrap`` (a symbolic trace keeps it as one node: the size check needs
    real shapes).

    >>> max_unpool2d(torch.ones(1, 1, 1, 1), torch.tensor([[[[4]]]]), (2, 2), (2, 2), (0, 0), (3, 3))[0, 0]
    tensor([[0., 0., 0.],
            [0., 1., 0.],
            [0., 0., 0.]])
    """
    if y.shape != indices.shape:
        raise ValueError(
            f"MaxUnpool2d: indices must have the shape of the pooled values; received y of shape "
            f"{tuple(y.shape)} and indices of shape {tuple(indices.shape)}. Pass the indices returned "
            "together with y by the same MaxPool2dIndices call."
        )
    size = _spatial_size(output_size)
    if size is not None:
        _check_size(size, (int(y.shape[-2]), int(y.shape[-1])), kernel_size, stride, padding)
        _check_indices(indices, size, kernel_size, stride, padding)
    out: torch.Tensor = F.max_unpool2d(y, indices, kernel_size, stride, padding, None if size is None else list(size))
    return out


torch.fx.wrap("max_unpool2d")


def _check_size(
    size: tuple[int, int],
    pooled: tuple[int, int],
    k: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
) -> None:
    try:
        floor, ceil = pool_out(size, k, s, p), pool_out(size, k, s, p, ceil_mode=True)
    except ValueError as err:
        raise ValueError(f"MaxUnpool2d: output_size={size} cannot have been pooled: {err}") from None
    if pooled not in (floor, ceil):
        raise ValueError(
            f"MaxUnpool2d: output_size must be the size that was pooled; an input of {size} pools to "
            f"{floor} with kernel {k}, stride {s}, padding {p}, but the values to unpool are {pooled}. "
            "Pass the shape of the tensor that went into the matching MaxPool2dIndices, e.g. "
            "output_size=x.shape[-2:]."
        )


def _check_indices(
    indices: torch.Tensor, size: tuple[int, int], k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...]
) -> None:
    """Every flat index ``h * W + w`` must name a pixel of an ``size`` map inside its own pooling window.

    The indices were computed with the pooled input's width, so read with another width they land in
    other windows (or outside the map); a few tensor ops over the indices, no loop.
    """
    if indices.device.type == "meta":  # shape-only tensors (cnnlab.analysis) hold no indices to read
        return
    h, w = size
    ho, wo = indices.shape[-2], indices.shape[-1]
    rows = torch.div(indices, w, rounding_mode="floor")  # (..., Ho, Wo)
    cols = indices - rows * w
    top = torch.arange(ho, device=indices.device).view(ho, 1) * s[0] - p[0]  # first row of each window
    left = torch.arange(wo, device=indices.device) * s[1] - p[1]  # first column of each window
    outside = (indices < 0) | (rows >= h) | (rows < top) | (rows >= top + k[0]) | (cols < left) | (cols >= left + k[1])
    if bool(outside.any()):
        flat = int(outside.flatten().nonzero()[0, 0])
        where = tuple(int(v) for v in torch.unravel_index(torch.tensor(flat), tuple(indices.shape)))
        raise ValueError(
            f"MaxUnpool2d: output_size must be the size of the map that was pooled, because the indices are "
            f"flat positions (row * width + column) in that map; received output_size={size}, but index "
            f"{int(indices[where])} at {where} then lies outside its {k[0]}x{k[1]} pooling window (or the map), so "
            "values would land in the wrong places. Pass the pooled input's own shape, e.g. "
            "output_size=x.shape[-2:]."
        )

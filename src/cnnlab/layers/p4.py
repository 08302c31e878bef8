"""P4 group-equivariant layers (Cohen and Welling, "Group Equivariant Convolutional Networks", ICML 2016).

P4 is the group of translations and rotations by multiples of 90 degrees. A P4 feature map has one
plane per orientation. **Layout:** ``(B, C, 4, H, W)``; plane ``r`` along axis 2 answers "filter
rotated by ``r * 90`` degrees counter-clockwise" (``torch.rot90(w, r, dims=(-2, -1))``).

Rotating the input image by 90 degrees (``torch.rot90(x, 1, dims=(-2, -1))``) acts on a P4 feature
map by rotating every plane *and* shifting the orientation axis by one (:func:`p4_rotate`):

* :class:`P4LiftConv2d` (Z2 -> P4) correlates the image with the four rotated copies of each filter;
* :class:`P4GroupConv2d` (P4 -> P4) rotates each filter spatially and cyclically permutes its input
  orientations, ``w_r[o, i, s] = rot90(w[o, i, (s - r) mod 4], r)``;
* :class:`P4BatchNorm` shares its statistics and affine parameters across the four orientations
  (``nn.BatchNorm3d`` over ``(B, C, 4, H, W)``), :class:`P4MaxPool2d` pools each plane, and
  :class:`P4RotationPool` takes the max (or mean) over orientations, giving maps that rotate with the
  input (and, after global pooling, features that do not change at all).

Exactness needs a rotation-symmetric grid: symmetric padding (an odd kernel with ``padding=k//2``,
or none) and strides/pools that read the whole map (``(n + 2p - k) % s == 0``; a 2x2 pool on an odd
size drops the last row and column and breaks it).

The two convolutions *are* ``nn.Conv2d`` layers (with ``4 * out_channels`` outputs) whose weight and
bias are computed from the smaller free parameters by :mod:`torch.nn.utils.parametrize`, so
parameter counts, ``state_dict`` (``parametrizations.weight.original``: ``(out, in, k, k)`` when
lifting, ``(out, in * 4, k, k)`` in a group convolution), MAC counters and graph tools see an
ordinary convolution. ``in_channels``/``out_channels`` are the convolution's own
(orientation planes included); ``p4_in_channels``/``p4_out_channels`` count P4 fields.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from cnnlab.layers.conv import check_padding_mode

__all__ = [
    "P4BatchNorm",
    "P4GroupConv2d",
    "P4LiftConv2d",
    "P4MaxPool2d",
    "P4RotationPool",
    "p4_rotate",
    "rotation_pool",
]

ORIENTATIONS = 4


def p4_rotate(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    """How a rotation of the input by ``k * 90`` degrees acts on a P4 feature map ``(B, C, 4, H, W)``.

    Every plane rotates and the orientation axis shifts by ``k``: the equivariance of a P4 layer
    ``f`` reads ``f(rot90(x, k)) == p4_rotate(f(x), k)``.

    >>> y = torch.arange(4.0).view(1, 1, 4, 1, 1)
    >>> p4_rotate(y)[0, 0, :, 0, 0].tolist()
    [3.0, 0.0, 1.0, 2.0]
    """
    return torch.rot90(x, k, dims=(-2, -1)).roll(k, dims=2)


def _check_p4(x: Any, owner: str, fields: int | None = None) -> None:
    """``x`` is a P4 map ``(B, C, 4, H, W)``, with ``C == fields`` when given (said in P4 fields, not planes)."""
    # a torch.fx Proxy is not a Tensor: graph tracing skips the check, real calls get it
    if not isinstance(x, torch.Tensor):
        return
    if x.dim() != 5 or x.shape[2] != ORIENTATIONS:
        raise ValueError(
            f"{owner}: the input must be a P4 feature map of shape (B, C, 4, H, W); received shape "
            f"{tuple(x.shape)}. Lift an image (B, C, H, W) with P4LiftConv2d first."
        )
    if fields is not None and x.shape[1] != fields:
        raise ValueError(
            f"{owner}: expects {fields} P4 fields (input (B, {fields}, 4, H, W)); received {x.shape[1]} fields, "
            f"shape {tuple(x.shape)}. Set in_channels={x.shape[1]} or feed the layer {fields} fields."
        )


def _check_image(x: Any, owner: str, channels: int) -> None:
    """``x`` is a batch of images ``(B, channels, H, W)``: the lifting convolution's input."""
    if not isinstance(x, torch.Tensor):  # a torch.fx Proxy: tracing has no shape to check
        return
    if x.dim() != 4 or x.shape[1] != channels:
        unbatched = " (one unbatched image: add the batch axis with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"{owner}: the input must be a batch of images of shape (B, {channels}, H, W); received shape "
            f"{tuple(x.shape)}{unbatched}. Feed (B, {channels}, H, W) images, or set in_channels to their channel "
            "count; a P4 feature map (B, C, 4, H, W) goes to P4GroupConv2d instead."
        )


def _check_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int; received {name}={value!r}.")
    return value


class _LiftWeight(nn.Module):
    """Base filters ``(out, in, k, k)`` -> the four rotations stacked ``(out * 4, in, k, k)``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # (out, in, k, k) -> (out, 4, in, k, k) -> (out*4, in, k, k); output channel o*4 + r
        rotated = torch.stack([torch.rot90(w, r, dims=(-2, -1)) for r in range(ORIENTATIONS)], dim=1)
        return rotated.flatten(0, 1)

    def right_inverse(self, full: torch.Tensor) -> torch.Tensor:
        return torch.unflatten(full, 0, (-1, ORIENTATIONS))[:, 0]  # the r = 0 copy


class _GroupWeight(nn.Module):
    """Base filters ``(out, in * 4, k, k)`` -> ``(out * 4, in * 4, k, k)`` (rotate, permute orientations).

    The base keeps the input orientations merged into its channel axis (input channel ``i * 4 + s``),
    so every parameter is 4-D and ``model.to(memory_format=torch.channels_last)`` works.
    """

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w5 = torch.unflatten(w, 1, (-1, ORIENTATIONS))  # (out, in*4, k, k) -> (out, in, 4, k, k)
        # plane r: w_r[o, i, s] = rot90(w[o, i, (s - r) mod 4], r); roll(w, r)[..., s, :, :] = w[..., s - r, :, :]
        planes = [torch.rot90(w5.roll(r, dims=2), r, dims=(-2, -1)) for r in range(ORIENTATIONS)]
        # (out, 4, in, 4, k, k) -> (out*4, in*4, k, k): output channel o*4 + r, input channel i*4 + s
        return torch.stack(planes, dim=1).flatten(2, 3).flatten(0, 1)

    def right_inverse(self, full: torch.Tensor) -> torch.Tensor:
        # (out*4, in*4, k, k) -> (out, 4, in*4, k, k) -> the r = 0 block (out, in*4, k, k)
        return torch.unflatten(full, 0, (-1, ORIENTATIONS))[:, 0]


class _TiedBias(nn.Module):
    """One bias per P4 field ``(out,)``, shared by its four orientation channels ``(out * 4,)``."""

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return b.repeat_interleave(ORIENTATIONS)

    def right_inverse(self, full: torch.Tensor) -> torch.Tensor:
        return full[::ORIENTATIONS]


def _original(module: nn.Module, name: str) -> torch.Tensor:
    """The free parameter behind a parametrized tensor (``module.parametrizations[name].original``)."""
    plist: Any = module.parametrizations[name]  # type: ignore[index]
    original: torch.Tensor = plist.original
    return original


class _P4Conv(nn.Conv2d):
    """Shared part: an ``nn.Conv2d`` whose weight and bias are parametrized by P4 weight sharing."""

    p4_in_channels: int
    p4_out_channels: int

    def _parametrize(self, weight_map: nn.Module) -> None:
        parametrize.register_parametrization(self, "weight", weight_map)
        if self.bias is not None:
            parametrize.register_parametrization(self, "bias", _TiedBias())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform base filters, as ``nn.Conv2d`` (the base has the full layer's fan-in)."""
        if not parametrize.is_parametrized(self):
            super().reset_parameters()  # called by nn.Conv2d.__init__, before the parametrization
            return
        base = _original(self, "weight")
        nn.init.kaiming_uniform_(base, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = base[0].numel()  # in * k * k (lift) or in * 4 * k * k (group)
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(_original(self, "bias"), -bound, bound)

    def extra_repr(self) -> str:
        p4 = f"p4_in_channels={self.p4_in_channels}, p4_out_channels={self.p4_out_channels}, "
        return p4 + str(super().extra_repr())  # type: ignore[no-untyped-call]


class P4LiftConv2d(_P4Conv):
    """Lifting convolution Z2 -> P4: ``(B, in, H, W)`` -> ``(B, out, 4, H', W')``.

    Each of the ``out`` base filters is applied in its four 90-degree rotations; plane ``r`` of the
    output uses the filter rotated by ``r * 90`` degrees. Parameters: ``out * in * k * k`` (+ ``out``
    biases, one per field), a quarter of an ``nn.Conv2d(in, 4 * out, k)`` with the same cost.

    >>> conv = P4LiftConv2d(1, 8, 3, padding=1)
    >>> x = torch.randn(2, 1, 9, 9)
    >>> conv(x).shape
    torch.Size([2, 8, 4, 9, 9])
    >>> torch.allclose(conv(torch.rot90(x, 1, (-2, -1))), p4_rotate(conv(x)), atol=1e-5)
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        _check_int(in_channels, "in_channels", "P4LiftConv2d")
        _check_int(out_channels, "out_channels", "P4LiftConv2d")
        _check_int(kernel_size, "kernel_size", "P4LiftConv2d")
        check_padding_mode(padding_mode, "P4LiftConv2d")
        super().__init__(
            in_channels,
            ORIENTATIONS * out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            padding_mode=padding_mode,  # type: ignore[arg-type]
        )
        self.p4_in_channels = in_channels
        self.p4_out_channels = out_channels
        self._parametrize(_LiftWeight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.Conv2d also takes an unbatched (C, H, W) image; the unflatten below would then split H
        _check_image(x, "P4LiftConv2d", self.p4_in_channels)
        y: torch.Tensor = super().forward(x)
        return torch.unflatten(y, 1, (-1, ORIENTATIONS))  # (B, out*4, H, W) -> (B, out, 4, H, W)


class P4GroupConv2d(_P4Conv):
    """Group convolution P4 -> P4: ``(B, in, 4, H, W)`` -> ``(B, out, 4, H', W')``.

    A base filter has one ``k x k`` slice per input field and orientation, stored as ``(out, in * 4, k, k)``
    (slice ``i * 4 + s``: field ``i``, orientation ``s``); output plane
    ``r`` uses it rotated by ``r * 90`` degrees with its input orientations shifted by ``r``.
    Parameters: ``out * in * 4 * k * k`` (+ ``out``), a quarter of ``nn.Conv2d(4 * in, 4 * out, k)``.

    >>> conv = P4GroupConv2d(3, 5, 3, padding=1)
    >>> y = torch.randn(2, 3, 4, 7, 7)
    >>> conv(y).shape
    torch.Size([2, 5, 4, 7, 7])
    >>> torch.allclose(conv(p4_rotate(y)), p4_rotate(conv(y)), atol=1e-5)
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
    ) -> None:
        _check_int(in_channels, "in_channels", "P4GroupConv2d")
        _check_int(out_channels, "out_channels", "P4GroupConv2d")
        _check_int(kernel_size, "kernel_size", "P4GroupConv2d")
        check_padding_mode(padding_mode, "P4GroupConv2d")
        super().__init__(
            ORIENTATIONS * in_channels,
            ORIENTATIONS * out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            padding_mode=padding_mode,  # type: ignore[arg-type]
        )
        self.p4_in_channels = in_channels
        self.p4_out_channels = out_channels
        self._parametrize(_GroupWeight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_p4(x, "P4GroupConv2d", self.p4_in_channels)
        y: torch.Tensor = super().forward(x.flatten(1, 2))  # (B, in, 4, H, W) -> (B, in*4, H, W)
        return torch.unflatten(y, 1, (-1, ORIENTATIONS))  # (B, out*4, H', W') -> (B, out, 4, H', W')


class P4BatchNorm(nn.BatchNorm3d):
    """Batch norm of P4 feature maps with one mean, variance, gamma and beta per field.

    Statistics are taken over the batch, the four orientations and space (``nn.BatchNorm3d`` on
    ``(B, C, 4, H, W)``), so rotating the input permutes planes without changing the normalisation:
    the layer stays equivariant in training mode too.

    >>> bn = P4BatchNorm(8).eval()
    >>> y = torch.randn(2, 8, 4, 5, 5)
    >>> torch.allclose(bn(p4_rotate(y)), p4_rotate(bn(y)))
    True
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        _check_p4(input, "P4BatchNorm")


class P4MaxPool2d(nn.MaxPool2d):
    """Spatial max pooling of every orientation plane: ``(B, C, 4, H, W)`` -> ``(B, C, 4, H', W')``.

    >>> P4MaxPool2d(2)(torch.zeros(1, 3, 4, 8, 8)).shape
    torch.Size([1, 3, 4, 4, 4])
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_p4(x, "P4MaxPool2d")
        y: torch.Tensor = super().forward(x.flatten(1, 2))  # (B, C, 4, H, W) -> (B, C*4, H, W)
        return torch.unflatten(y, 1, (-1, ORIENTATIONS))  # (B, C*4, H', W') -> (B, C, 4, H', W')


def rotation_pool(x: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Pool a P4 map over its orientations: ``(B, C, 4, H, W)`` -> ``(B, C, H, W)``.

    The result rotates with the input image (``rotation_pool(p4_rotate(y)) == rot90(rotation_pool(y))``).

    >>> rotation_pool(torch.arange(4.0).view(1, 1, 4, 1, 1))[0, 0].tolist()
    [[3.0]]
    """
    _check_p4(x, "rotation_pool")
    if mode == "max":
        return x.amax(dim=2)
    if mode == "mean":
        return x.mean(dim=2)
    raise ValueError(
        f"rotation_pool: mode must be 'max' or 'mean'; received mode={mode!r}. Use mode='max' (Cohen and "
        "Welling's choice) or mode='mean'."
    )


class P4RotationPool(nn.Module):
    """:func:`rotation_pool` as a layer: ``(B, C, 4, H, W)`` -> ``(B, C, H, W)``, max or mean.

    >>> P4RotationPool("mean")(torch.ones(2, 3, 4, 5, 5)).shape
    torch.Size([2, 3, 5, 5])
    """

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(
                f"P4RotationPool: mode must be 'max' or 'mean'; received mode={mode!r}. Use mode='max' "
                "(Cohen and Welling's choice) or mode='mean'."
            )
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rotation_pool(x, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

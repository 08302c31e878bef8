"""Max / average / sum pooling and max unpooling in NumPy with hand-written backward passes.

Rules follow PyTorch: stride defaults to the kernel; padding may be at most half the kernel; in
ceil mode a last window that would start in the right padding is dropped; max pooling records the
flat ``H*W`` index of each maximum (the first one in row-major order on ties), which
:func:`max_unpool2d_forward` uses to put values back; average pooling counts zero padding in the
divisor unless ``count_include_pad=False`` but never counts cells beyond the padding.

Example:
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, cache = max_pool2d_forward(x, 2)
    >>> out[0, 0].tolist(), cache.indices[0, 0].tolist()
    ([[5.0, 7.0], [13.0, 15.0]], [[5, 7], [13, 15]])
    >>> up, _ = max_unpool2d_forward(out, cache.indices, 2)
    >>> up[0, 0, 1].tolist()
    [0.0, 5.0, 0.0, 7.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.arith import pool_out
from cnnlab.reference._common import (
    Pads,
    col2im,
    pad2d,
    pad2d_backward,
    pair,
    positive_pair,
    windows,
)

IntPair = int | tuple[int, int]


def _padding(padding: IntPair) -> tuple[int, int]:
    p = pair(padding, "padding")
    if min(p) < 0:
        raise ValueError(f"padding must be >= 0; received padding={padding!r}. Use padding=0 or more.")
    return p


@dataclass(frozen=True)
class _Geometry:
    """Pooling geometry: kernel, stride, padding, dilation, output size and the padded frame."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    pads: Pads  # (top, bottom + extra), (left, right + extra): ceil mode may need extra cells

    @property
    def padded_size(self) -> tuple[int, int]:
        return (
            self.in_size[0] + sum(self.pads[0]),
            self.in_size[1] + sum(self.pads[1]),
        )


def _geometry(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> _Geometry:
    if x.ndim != 4:
        raise ValueError(
            f"pooling input must be a 4-D array (N, C, H, W); received shape {tuple(x.shape)}. "
            "Add the missing axes with x[None]."
        )
    k = positive_pair(kernel, "kernel_size")
    s = k if stride is None else positive_pair(stride, "stride")
    d = positive_pair(dilation, "dilation")
    p = _padding(padding)
    h, w = x.shape[-2:]
    # PyTorch's rule, including padding <= kernel // 2 and ceil mode's dropped last window
    ho, wo = pool_out((h, w), k, s, p, d, ceil_mode=ceil_mode)
    # ceil mode: the last window may run past the right padding; pad those cells too (never counted)
    extra_h = max(0, (ho - 1) * s[0] + d[0] * (k[0] - 1) + 1 - (h + 2 * p[0]))
    extra_w = max(0, (wo - 1) * s[1] + d[1] * (k[1] - 1) + 1 - (w + 2 * p[1]))
    pads_: Pads = ((p[0], p[0] + extra_h), (p[1], p[1] + extra_w))
    return _Geometry(k, s, p, d, (h, w), (ho, wo), pads_)


@dataclass(frozen=True)
class MaxPoolCache:
    """Flat H*W indices of every maximum (N, C, Ho, Wo), as ``return_indices=True`` gives them."""

    indices: np.ndarray
    x_shape: tuple[int, ...]


def max_pool2d_forward(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, MaxPoolCache]:
    """Max pooling like ``F.max_pool2d``; ``cache.indices`` equals PyTorch's ``return_indices``."""
    x = np.asarray(x, dtype=np.float64)
    g = _geometry(x, kernel, stride, padding, dilation, ceil_mode)
    xp = pad2d(x, g.pads, "zeros", fill=-np.inf)
    # (N, C, Ho, Wo, kh, kw) -> (N, C, Ho, Wo, kh*kw)
    cols = windows(xp, g.kernel, g.stride, g.dilation).reshape(*x.shape[:2], *g.out_size, -1)
    best = cols.argmax(axis=-1)  # first maximum in row-major order, like PyTorch
    out = np.take_along_axis(cols, best[..., None], axis=-1)[..., 0]
    rows = (
        np.arange(g.out_size[0])[:, None] * g.stride[0] - g.padding[0] + (best // g.kernel[1]) * g.dilation[0]
    )
    cols_ = (
        np.arange(g.out_size[1])[None, :] * g.stride[1] - g.padding[1] + (best % g.kernel[1]) * g.dilation[1]
    )
    indices = rows * g.in_size[1] + cols_
    return out, MaxPoolCache(indices.astype(np.int64), x.shape)


def max_pool2d_backward(dout: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Gradient of max pooling: each output gradient goes to the input cell that was the maximum."""
    n, c, h, w = cache.x_shape
    dx = np.zeros(n * c * h * w)
    # flat index into (N*C*H*W): plane offset + H*W index; add.at sums overlapping windows
    planes = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    np.add.at(dx, (planes + cache.indices).ravel(), np.asarray(dout, dtype=np.float64).ravel())
    return dx.reshape(cache.x_shape)


@dataclass(frozen=True)
class AvgPoolCache:
    """Per-window divisors (Ho, Wo) and the geometry, for the backward pass."""

    divisor: np.ndarray
    geometry: _Geometry
    x_shape: tuple[int, ...]


def _divisors(g: _Geometry, count_include_pad: bool) -> np.ndarray:
    """Window sizes (Ho, Wo) used as divisors, PyTorch's avg_pool2d rule."""
    sizes = []
    for axis in (0, 1):
        start = np.arange(g.out_size[axis]) * g.stride[axis] - g.padding[axis]
        end = np.minimum(start + g.kernel[axis], g.in_size[axis] + g.padding[axis])
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, g.in_size[axis])
        sizes.append(end - start)
    return np.outer(sizes[0], sizes[1]).astype(np.float64)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[np.ndarray, AvgPoolCache]:
    """Average pooling like ``F.avg_pool2d`` (x: (N, C, H, W) -> (N, C, Ho, Wo))."""
    x = np.asarray(x, dtype=np.float64)
    g = _geometry(x, kernel, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        if divisor_override < 1:
            raise ValueError(f"divisor_override must be >= 1; received {divisor_override}. Leave it unset.")
        divisor = np.full(g.out_size, float(divisor_override))
    else:
        divisor = _divisors(g, count_include_pad)
    xp = pad2d(x, g.pads)
    sums = windows(xp, g.kernel, g.stride, g.dilation).sum(axis=(-2, -1))  # (N, C, Ho, Wo)
    return sums / divisor, AvgPoolCache(divisor, g, x.shape)


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Gradient of average pooling: every cell of a window receives dout / divisor."""
    g = cache.geometry
    share = np.asarray(dout, dtype=np.float64) / cache.divisor
    # (N, C, Ho, Wo) -> (N, C, Ho, Wo, kh, kw), the same share for every cell of a window
    dcols = np.broadcast_to(share[..., None, None], (*share.shape, *g.kernel))
    dxp = col2im(dcols, g.padded_size, g.stride, g.dilation)
    return pad2d_backward(dxp, g.in_size, g.pads)


def sum_pool2d_forward(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
) -> tuple[np.ndarray, AvgPoolCache]:
    """Sum pooling: the sum of each window (average pooling with divisor 1); zero padding adds 0."""
    return avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, divisor_override=1)


def sum_pool2d_backward(dout: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Gradient of sum pooling: every cell of a window receives dout."""
    return avg_pool2d_backward(dout, cache)


@dataclass(frozen=True)
class MaxUnpoolCache:
    """Flat indices used to scatter, and the input shape."""

    indices: np.ndarray
    x_shape: tuple[int, ...]


def _unpool_size(
    in_size: tuple[int, int],
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    output_size: Sequence[int] | None,
) -> tuple[int, int]:
    default = tuple((n - 1) * ss - 2 * pp + kk for n, kk, ss, pp in zip(in_size, k, s, p))
    if output_size is None:
        return default[0], default[1]
    size = tuple(int(v) for v in output_size)[-2:]
    for axis, want, base, ss in zip("HW", size, default, s):
        if not base - ss < want < base + ss:
            raise ValueError(
                f"max_unpool2d: output_size along {axis} must lie strictly between {base - ss} and "
                f"{base + ss} (the default (H-1)*stride - 2*padding + kernel = {base}, +/- stride); "
                f"received output_size={list(output_size)}. Pass the size of the tensor that was pooled."
            )
    return size[0], size[1]


def max_unpool2d_forward(
    x: np.ndarray,
    indices: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    output_size: Sequence[int] | None = None,
) -> tuple[np.ndarray, MaxUnpoolCache]:
    """Max unpooling like ``F.max_unpool2d``: put each value at its recorded flat index, zeros elsewhere.

    x, indices: (N, C, H, W) -> (N, C, Ho, Wo), Ho = (H-1)*stride - 2*padding + kernel unless output_size.
    """
    x = np.asarray(x, dtype=np.float64)
    indices = np.asarray(indices)
    if x.ndim != 4 or indices.shape != x.shape:
        raise ValueError(
            f"max_unpool2d: input and indices must both be (N, C, H, W) of the same shape; received "
            f"{tuple(x.shape)} and {tuple(indices.shape)}. Use the indices returned by max pooling."
        )
    k = positive_pair(kernel, "kernel_size")
    s = k if stride is None else positive_pair(stride, "stride")
    p = _padding(padding)
    ho, wo = _unpool_size(x.shape[-2:], k, s, p, output_size)
    if indices.size and (indices.min() < 0 or indices.max() >= ho * wo):
        raise ValueError(
            f"max_unpool2d: indices must lie in [0, {ho * wo}) for an output of {ho}x{wo}; found values "
            f"from {indices.min()} to {indices.max()}. Check kernel, stride, padding and output_size."
        )
    n, c = x.shape[:2]
    out = np.zeros((n, c, ho * wo))
    # (N, C, H, W) -> (N, C, H*W): scatter every value to its flat H*W index in its own plane
    np.put_along_axis(out, indices.reshape(n, c, -1), x.reshape(n, c, -1), axis=-1)
    return out.reshape(n, c, ho, wo), MaxUnpoolCache(indices, x.shape)


def max_unpool2d_backward(dout: np.ndarray, cache: MaxUnpoolCache) -> np.ndarray:
    """Gradient of max unpooling: gather dout at the recorded indices."""
    n, c = cache.x_shape[:2]
    flat = np.asarray(dout, dtype=np.float64).reshape(n, c, -1)
    return np.take_along_axis(flat, cache.indices.reshape(n, c, -1), axis=-1).reshape(cache.x_shape)

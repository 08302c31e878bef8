"""Convolution and transposed convolution in NumPy with hand-written backward passes.

Both compute what PyTorch computes (cross-correlation, weight layouts of ``nn.Conv2d`` and
``nn.ConvTranspose2d``). Windows come from ``sliding_window_view`` (im2col without a copy), the
sums over (channel, kernel row, kernel column) are one ``einsum`` per group, and the backward pass
scatters window gradients back with :func:`cnnlab.reference._common.col2im`.

Example:
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> out, cache = conv2d_forward(x, np.ones((1, 1, 3, 3)))
    >>> out[0, 0].tolist()
    [[45.0, 54.0], [81.0, 90.0]]
    >>> dx, dw, db = conv2d_backward(np.ones_like(out), cache)
    >>> dx[0, 0, 0].tolist()
    [1.0, 2.0, 2.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from cnnlab.arith import conv_out, conv_transpose_out, resolve_padding
from cnnlab.reference._common import (
    Pads,
    col2im,
    pad2d,
    pad2d_backward,
    pads,
    positive_pair,
    windows,
)

Grads = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _check_groups(name: str, c_in: int, c_out: int, groups: int) -> None:
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(
            f"{name}: groups must be >= 1 and divide both in_channels and out_channels; received "
            f"groups={groups}, in_channels={c_in}, out_channels={c_out}. Choose groups from the common "
            f"divisors of {c_in} and {c_out}."
        )


def _check_4d(name: str, arr: np.ndarray, layout: str) -> None:
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D array {layout}; received shape {tuple(arr.shape)}. "
            "Add the missing axes with arr[None] or reshape."
        )


@dataclass(frozen=True)
class ConvCache:
    """What conv2d's backward pass needs: padded input windows, weight and settings."""

    x_shape: tuple[int, ...]
    xp_shape: tuple[int, int]
    cols: np.ndarray  # (N, G, C/G, Ho, Wo, kh, kw) view of the padded input
    w: np.ndarray  # (F, C/G, kh, kw)
    has_bias: bool
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads
    groups: int
    padding_mode: str


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | Pads | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[np.ndarray, ConvCache]:
    """2-D cross-correlation like ``torch.nn.functional.conv2d`` (plus PyTorch's padding modes).

    x: (N, C, H, W); w: (F, C/groups, kh, kw); b: (F,) or None -> out (N, F, Ho, Wo). ``padding`` is
    an int, (ph, pw), ((top, bottom), (left, right)), ``"valid"`` or ``"same"`` (TensorFlow's rule,
    which equals PyTorch's ``padding="same"`` at stride 1).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_4d("conv2d input x", x, "(N, C, H, W)")
    _check_4d("conv2d weight w", w, "(out_channels, in_channels/groups, kh, kw)")
    s, d = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    if isinstance(padding, str):  # 'same' / 'valid', resolved to (left, right) pairs by cnnlab.arith
        (t, b_), (l, r) = resolve_padding(cast(Any, padding), (h, wd), (kh, kw), s, d)
        p: Pads = ((t, b_), (l, r))
    else:
        p = pads(padding)
    _check_groups("conv2d", c, f, groups)
    if cg * groups != c:
        raise ValueError(
            f"conv2d: weight of shape {tuple(w.shape)} with groups={groups} expects {cg * groups} input "
            f"channels, but x has {c}. Make w.shape[1] == in_channels / groups."
        )
    ho, wo = conv_out((h, wd), (kh, kw), s, p, d)
    xp = pad2d(x, p, padding_mode)
    # (N, C, Hp, Wp) -> (N, G, C/G, Hp, Wp) -> windows (N, G, C/G, Ho, Wo, kh, kw)
    cols = windows(xp.reshape(n, groups, cg, *xp.shape[-2:]), (kh, kw), s, d)
    wg = w.reshape(groups, f // groups, cg, kh, kw)
    out = np.einsum("ngcijpq,gfcpq->ngfij", cols, wg, optimize=True).reshape(n, f, ho, wo)
    if b is not None:
        out = out + np.asarray(b, dtype=np.float64)[None, :, None, None]
    cache = ConvCache(x.shape, xp.shape[-2:], cols, w, b is not None, s, d, p, groups, padding_mode)
    return out, cache


def conv2d_backward(dout: np.ndarray, cache: ConvCache) -> Grads:
    """Gradients (dx, dw, db) of :func:`conv2d_forward`; db is None without bias."""
    n, c, h, wd = cache.x_shape
    f, cg, kh, kw = cache.w.shape
    g = cache.groups
    dout_g = dout.reshape(n, g, f // g, *dout.shape[-2:])  # (N, G, F/G, Ho, Wo)
    wg = cache.w.reshape(g, f // g, cg, kh, kw)
    dw = np.einsum("ngfij,ngcijpq->gfcpq", dout_g, cache.cols, optimize=True).reshape(cache.w.shape)
    dcols = np.einsum("ngfij,gfcpq->ngcijpq", dout_g, wg, optimize=True)
    dxp = col2im(dcols, cache.xp_shape, cache.stride, cache.dilation).reshape(n, c, *cache.xp_shape)
    dx = pad2d_backward(dxp, (h, wd), cache.pads, cache.padding_mode)
    db = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw, db


@dataclass(frozen=True)
class ConvTransposeCache:
    """What conv_transpose2d's backward pass needs."""

    x: np.ndarray  # (N, Cin, H, W)
    w: np.ndarray  # (Cin, Cout/G, kh, kw)
    has_bias: bool
    full_size: tuple[int, int]  # uncropped output size before removing the padding
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]
    groups: int


def conv_transpose2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvTransposeCache]:
    """Transposed convolution like ``torch.nn.functional.conv_transpose2d``.

    Every input pixel scatters ``pixel * kernel`` onto the output at stride ``s``; then ``padding``
    rows/columns are cropped from each side. x: (N, Cin, H, W); w: (Cin, Cout/groups, kh, kw) ->
    (N, Cout, Ho, Wo) with Ho = (H-1)s - 2p + d(k-1) + output_padding + 1.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _check_4d("conv_transpose2d input x", x, "(N, C, H, W)")
    _check_4d("conv_transpose2d weight w", w, "(in_channels, out_channels/groups, kh, kw)")
    s, d = positive_pair(stride, "stride"), positive_pair(dilation, "dilation")
    p = pads(padding)
    ph, pw = p[0][0], p[1][0]
    op = pads(output_padding, "output_padding")
    oph, opw = op[0][0], op[1][0]
    n, c, h, wd = x.shape
    cin, fg, kh, kw = w.shape
    if cin != c:
        raise ValueError(
            f"conv_transpose2d: weight of shape {tuple(w.shape)} expects {cin} input channels, but x has "
            f"{c}. The weight layout is (in_channels, out_channels/groups, kh, kw)."
        )
    _check_groups("conv_transpose2d", c, fg * groups, groups)
    # (H-1)s - 2p + d(k-1) + output_padding + 1; arith rejects a bad output_padding or an empty output
    ho, wo = conv_transpose_out((h, wd), (kh, kw), s, (ph, pw), (oph, opw), d)
    full = (ho + 2 * ph, wo + 2 * pw)  # before cropping the padding
    g = groups
    # (N, G, Cin/G, H, W) x (G, Cin/G, Cout/G, kh, kw) -> cols (N, G, Cout/G, H, W, kh, kw)
    xg = x.reshape(n, g, c // g, h, wd)
    wg = w.reshape(g, c // g, fg, kh, kw)
    cols = np.einsum("ngcij,gcfpq->ngfijpq", xg, wg, optimize=True)
    out_full = col2im(cols, full, s, d).reshape(n, g * fg, *full)
    out = out_full[:, :, ph : ph + ho, pw : pw + wo]
    if b is not None:
        out = out + np.asarray(b, dtype=np.float64)[None, :, None, None]
    return out, ConvTransposeCache(x, w, b is not None, full, s, d, (ph, pw), g)


def conv_transpose2d_backward(dout: np.ndarray, cache: ConvTransposeCache) -> Grads:
    """Gradients (dx, dw, db) of :func:`conv_transpose2d_forward` (its adjoint is a plain conv)."""
    n, c, h, wd = cache.x.shape
    _, fg, kh, kw = cache.w.shape
    g = cache.groups
    ph, pw = cache.padding
    # put dout back into the uncropped frame; cropped cells received no gradient
    dfull = np.zeros((n, g * fg, *cache.full_size), dtype=np.float64)
    dfull[:, :, ph : ph + dout.shape[2], pw : pw + dout.shape[3]] = dout
    dcols = windows(dfull.reshape(n, g, fg, *cache.full_size), (kh, kw), cache.stride, cache.dilation)
    dcols = dcols[:, :, :, :h, :wd]  # (N, G, Cout/G, H, W, kh, kw); extra windows come from output_padding
    wg = cache.w.reshape(g, c // g, fg, kh, kw)
    xg = cache.x.reshape(n, g, c // g, h, wd)
    dx = np.einsum("ngfijpq,gcfpq->ngcij", dcols, wg, optimize=True).reshape(cache.x.shape)
    dw = np.einsum("ngcij,ngfijpq->gcfpq", xg, dcols, optimize=True).reshape(cache.w.shape)
    db = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw, db

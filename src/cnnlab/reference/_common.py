"""Shared helpers of the NumPy reference: argument normalisation, padding with its backward pass
and sliding windows (output sizes come from :mod:`cnnlab.arith`).

Padding is done with index maps (padded coordinate -> source coordinate, or -1 for a zero), so the
same map serves the forward pass (a gather) and the backward pass (a scatter-add): reflect and
replicate padding send the gradient of every copy back to the pixel it was copied from.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PaddingMode = Literal["zeros", "reflect", "replicate"]
PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate")

# (top, bottom), (left, right)
Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(value: int | tuple[int, ...] | list[int], name: str) -> tuple[int, int]:
    """Normalise ``3`` or ``(3, 2)`` to a (height, width) pair of ints.

    >>> pair(3, "stride")
    (3, 3)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints; received {value!r}.")
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    items = tuple(value)
    if len(items) != 2 or not all(isinstance(v, int | np.integer) for v in items):
        raise ValueError(
            f"{name} must be an int or a (height, width) pair of ints; received {value!r}. "
            f"Pass for example {name}=2 or {name}=(2, 1)."
        )
    return int(items[0]), int(items[1])


def positive_pair(value: int | tuple[int, ...] | list[int], name: str) -> tuple[int, int]:
    """Like :func:`pair`, but every entry must be >= 1 (strides, dilations, kernel sizes)."""
    out = pair(value, name)
    if min(out) < 1:
        raise ValueError(
            f"{name} must be >= 1 along each axis; received {name}={value!r}. "
            f"Use a positive value such as {name}=1."
        )
    return out


def pads(padding: int | tuple[int, ...] | tuple[tuple[int, int], ...] | list[Any], name: str = "padding") -> Pads:
    """Normalise padding to ((top, bottom), (left, right)).

    Accepts an int (all sides), a (ph, pw) pair (symmetric per axis) or ((top, bottom), (left, right)).

    >>> pads((1, 2))
    ((1, 1), (2, 2))
    """
    value: Any = padding
    if _is_int(value):
        result: Pads = ((int(value), int(value)), (int(value), int(value)))
    elif isinstance(value, tuple | list) and len(value) == 2 and all(_is_int(v) for v in value):
        result = ((int(value[0]), int(value[0])), (int(value[1]), int(value[1])))
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, tuple | list) and len(v) == 2 and all(_is_int(e) for e in v) for v in value)
    ):
        result = ((int(value[0][0]), int(value[0][1])), (int(value[1][0]), int(value[1][1])))
    else:
        raise ValueError(
            f"{name} must be an int, a (height, width) pair or ((top, bottom), (left, right)); "
            f"received {name}={padding!r}. Pass for example {name}=1."
        )
    if min(min(result[0]), min(result[1])) < 0:
        raise ValueError(
            f"{name} must be >= 0 on every side; received {name}={padding!r}. Use {name}=0 or more."
        )
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _index_map(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index for every padded coordinate along one axis; -1 marks a zero (constant) pad."""
    idx = np.arange(-before, n + after)
    if mode == "zeros":
        return np.where((idx < 0) | (idx >= n), -1, idx)
    if mode == "replicate":
        return np.clip(idx, 0, n - 1)
    # reflect without repeating the edge: -1 -> 1, n -> n - 2 (PyTorch/NumPy 'reflect')
    idx = np.abs(idx)
    return np.where(idx >= n, 2 * (n - 1) - idx, idx)


def check_padding_mode(mode: str, size: tuple[int, int], p: Pads) -> None:
    """Reject unknown modes, and reflect padding as wide as the input (PyTorch's rule)."""
    if mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {', '.join(PADDING_MODES)}; received {mode!r}. "
            "Use padding_mode='zeros' for the usual zero padding."
        )
    if mode == "reflect":
        for axis, (n, (lo, hi)) in zip("HW", zip(size, p)):
            if max(lo, hi) >= n:
                raise ValueError(
                    f"reflect padding must be smaller than the input along {axis}: input {n}, "
                    f"padding {max(lo, hi)}. Use padding < {n} or padding_mode='replicate'."
                )


def pad2d(x: np.ndarray, p: Pads, mode: str = "zeros", fill: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``x`` (..., H, W) -> (..., H+t+b, W+l+r).

    >>> pad2d(np.ones((1, 2)), ((0, 0), (1, 1))).tolist()
    [[0.0, 1.0, 1.0, 0.0]]
    """
    h, w = x.shape[-2:]
    check_padding_mode(mode, (h, w), p)
    rows = _index_map(h, *p[0], mode)
    cols = _index_map(w, *p[1], mode)
    out = x[..., np.maximum(rows, 0)[:, None], np.maximum(cols, 0)[None, :]].astype(np.float64)
    if mode == "zeros":
        out[..., (rows < 0)[:, None] | (cols < 0)[None, :]] = fill
    return out


def pad2d_backward(dxp: np.ndarray, size: tuple[int, int], p: Pads, mode: str = "zeros") -> np.ndarray:
    """Gradient of :func:`pad2d`: every padded cell adds its gradient to the pixel it copied."""
    h, w = size
    rows = _index_map(h, *p[0], mode)
    cols = _index_map(w, *p[1], mode)
    if mode == "zeros":
        return dxp[..., p[0][0] : p[0][0] + h, p[1][0] : p[1][0] + w].copy()
    dx = np.zeros((*dxp.shape[:-2], h, w), dtype=np.float64)
    # scatter-add along H then along W; each stage is a plain index-add over one axis
    tmp = np.zeros((*dxp.shape[:-2], h, dxp.shape[-1]), dtype=np.float64)
    np.add.at(np.moveaxis(tmp, -2, 0), rows, np.moveaxis(dxp, -2, 0))
    np.add.at(np.moveaxis(dx, -1, 0), cols, np.moveaxis(tmp, -1, 0))
    return dx


def windows(
    xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> np.ndarray:
    """Strided view of all kernel windows: (..., Hp, Wp) -> (..., Ho, Wo, kh, kw) (no copy)."""
    ek = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    view = sliding_window_view(xp, ek, axis=(-2, -1))
    return view[..., :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def col2im(
    cols: np.ndarray,
    padded_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Adjoint of :func:`windows`: sum (..., Ho, Wo, kh, kw) back onto (..., Hp, Wp)."""
    *lead, ho, wo, kh, kw = cols.shape
    out = np.zeros((*lead, *padded_size), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            out[
                ...,
                r0 : r0 + stride[0] * (ho - 1) + 1 : stride[0],
                c0 : c0 + stride[1] * (wo - 1) + 1 : stride[1],
            ] += cols[..., i, j]
    return out

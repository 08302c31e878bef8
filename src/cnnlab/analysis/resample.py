"""Ops that resample or pad a grid, as PyTorch computes them: upsampling per interpolate mode, padding per
mode, and adaptive pooling's windows.

``upsample_geometry`` and ``pad_geometry`` classify ``nn.Upsample``/``F.interpolate``/``nn.PixelShuffle`` and
the padding modules/``F.pad`` for :mod:`cnnlab.analysis.nodes`; :func:`adaptive_windows` gives the windows
:mod:`cnnlab.analysis.receptive` follows.
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn as nn

from cnnlab.analysis.geometry import ADAPTIVE, PAD, UNKNOWN, UPSAMPLE, Geometry, per_axis, spatial

# interpolate's modes -> the receptive-field rule that follows them (arith.rf_upsample)
UPSAMPLE_MODES = {
    "nearest": "nearest", "nearest-exact": "nearest-exact", "linear": "bilinear", "bilinear": "bilinear",
    "trilinear": "bilinear", "bicubic": "bicubic",
}  # fmt: skip
# padding modules -> their mode as conv's padding_mode names it
PAD_MODES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.padding._ConstantPadNd, "zeros"),
    (nn.modules.padding._ReflectionPadNd, "reflect"),
    (nn.modules.padding._ReplicationPadNd, "replicate"),
    (nn.modules.padding._CircularPadNd, "circular"),
)


def upsample_geometry(
    nd: int,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    mode: str,
    scale_factor: Any = None,
    align_corners: Any = None,
    recompute: Any = None,
) -> Geometry:
    """Upsampling as PyTorch computes it: unit ``o`` reads around ``o / scale`` with ``scale`` the given
    ``scale_factor`` (unless recomputed from the sizes), else ``m / n`` for ``n`` units to ``m``."""
    si, so = spatial(in_shape, nd), spatial(out_shape, nd)
    if mode == "area":  # interpolate's area mode is adaptive average pooling to the output size
        return Geometry(ADAPTIVE)
    if mode not in UPSAMPLE_MODES:
        return Geometry(UNKNOWN)
    rf_mode = UPSAMPLE_MODES[mode]
    corners = bool(align_corners) and rf_mode in ("bilinear", "bicubic")
    given = _floats(scale_factor, nd) if scale_factor is not None and not recompute else None
    scale = []
    for a, (n, m) in enumerate(zip(si, so)):
        # PyTorch (CPU) copies an axis that keeps its size (nearest, linear), bicubic only the whole map when
        # every axis keeps its size (x1.1 on 5x5), and reads o >> 1 for nearest x2
        same = (m == n and rf_mode in ("nearest", "bilinear")) or (si == so and rf_mode == "bicubic")
        shortcut = same or (m == 2 * n and rf_mode == "nearest")
        if corners:  # source o * (n-1)/(m-1); one unit in or out: every output reads unit 0
            scale.append((m - 1) / (n - 1) if n > 1 and m > 1 else float(m) if n == 1 else 1 / n)
        elif given is None or shortcut:
            scale.append(m / n)
        else:
            scale.append(given[a])
    return Geometry(UPSAMPLE, scale=tuple(scale), mode=rf_mode, align_corners=corners)


def _floats(v: Any, nd: int) -> tuple[float, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(float(x) for x in v) if len(v) == nd else tuple(float(v[0]) for _ in range(nd))
    return (float(v),) * nd


def pad_geometry(pad: Any, nd: int, mode: str = "zeros") -> Geometry:
    """Padding by ``F.pad``'s ``pad`` (an int, or (left, right) pairs from the last axis back) in ``mode``."""
    # F.pad order: last axis first, (left, right) per axis
    flat = per_axis(pad, 2 * nd) if isinstance(pad, (tuple, list)) else (int(pad),) * (2 * nd)
    pairs = [(0, 0)] * nd
    for i in range(min(nd, len(flat) // 2)):
        pairs[nd - 1 - i] = (flat[2 * i], flat[2 * i + 1])
    return Geometry(PAD, p=tuple(pairs), pad_mode="zeros" if mode == "constant" else mode)


def adaptive_windows(n: int, m: int) -> tuple[int, int, float, float]:
    """Adaptive pooling of ``n`` cells to ``m``: (largest window, smallest window, step, centre of window 0).

    PyTorch's window ``i`` spans ``[floor(i*n/m), ceil((i+1)*n/m))``.

    >>> adaptive_windows(11, 4)  # windows 0..2, 2..5, 5..8, 8..10: centres 1 .. 9
    (4, 3, 2.6666666666666665, 1.0)
    """
    starts = [(i * n) // m for i in range(m)]
    ends = [math.ceil((i + 1) * n / m) for i in range(m)]
    sizes = [e - s for s, e in zip(starts, ends)]
    centres = [(s + e - 1) / 2 for s, e in zip(starts, ends)]
    # mean spacing of the window centres: n/m when m divides n, 0 when every window is the same cell;
    # one window over the whole map (global pooling) slides by one cell, as fc and explain rf's gap do
    step = (centres[-1] - centres[0]) / (m - 1) if m > 1 else 1.0
    return max(sizes), min(sizes), step, centres[0]

"""Kernel grids: the first layer's filters as RGB (or per-channel) tiles, deeper kernels by channel.

Every kernel is min-max normalised on its own (over all its input channels), so a filter with small
weights is as visible as one with large weights: the picture shows the *pattern*, not the scale.

>>> import torch.nn as nn
>>> g = kernel_grid(nn.Conv2d(3, 8, 5).weight)
>>> g.tiles
8
"""

from __future__ import annotations

import difflib

import numpy as np
import torch
import torch.nn as nn

from cnnlab.viz.grid import Grid, tile_grid

__all__ = ["MAX_TILES", "conv_layers", "find_conv", "kernel_grid", "normalise_per_kernel"]

MAX_TILES = 1024  # deeper layers have out*in kernels; beyond this the grid is cut (and says so)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """``(name, module)`` of every ``nn.Conv2d`` in definition order (the first is the first layer)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_conv(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """The conv layer called ``layer`` (default: the first one); ValueError lists the valid names.

    >>> find_conv(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)))[0]
    '1'
    """
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"the model {type(model).__name__} has no nn.Conv2d layer, so it has no kernels to show.")
    if layer is None:
        return convs[0]
    for name, m in convs:
        if name == layer:
            return name, m
    names = [n for n, _ in convs]
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.3)
    raise ValueError(
        f"--layer must name a Conv2d of the model; received {layer!r}. Conv layers: "
        f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}."
        + (f" Did you mean {', '.join(close)}?" if close else "")
    )


def normalise_per_kernel(weight: torch.Tensor) -> np.ndarray:
    """``(O, I, kh, kw)`` weights mapped to 0..1, each output filter on its own min..max.

    >>> normalise_per_kernel(torch.tensor([[[[1.0, 3.0]]], [[[-4.0, -2.0]]]])).tolist()
    [[[[0.0, 1.0]]], [[[0.0, 1.0]]]]
    """
    w = weight.detach().float().cpu().numpy()
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    out: np.ndarray = (w - lo) / span
    return out


def kernel_grid(weight: torch.Tensor, *, mode: str = "auto", tile: int = 32, gap: int = 2) -> Grid:
    """A grid of the kernels of one conv weight ``(O, I, kh, kw)``.

    ``mode="rgb"`` draws each filter as one colour tile (needs I == 3); ``"channels"`` draws one
    grayscale tile per (filter, input channel) pair, a row per filter; ``"auto"`` picks rgb for 3
    input channels, one tile per filter for 1, and channels otherwise.

    >>> kernel_grid(torch.zeros(4, 2, 3, 3)).tiles
    8
    """
    if weight.ndim != 4:
        raise ValueError(f"kernel_grid: weight must be (out, in, kh, kw); received shape {tuple(weight.shape)}.")
    o, i = weight.shape[:2]
    if mode not in ("auto", "rgb", "channels"):
        raise ValueError(f"mode must be 'auto', 'rgb' or 'channels'; received mode={mode!r}.")
    if mode == "rgb" and i != 3:
        raise ValueError(f"mode='rgb' needs 3 input channels; this layer has {i}. Use mode='channels'.")
    w = normalise_per_kernel(weight)  # (O, I, kh, kw) in 0..1
    if mode == "rgb" or (mode == "auto" and i == 3):
        return tile_grid(w.transpose(0, 2, 3, 1), tile=tile, gap=gap)  # (O, kh, kw, 3)
    if i == 1:
        return tile_grid(w[:, 0], tile=tile, gap=gap, cmap="gray")
    rows = min(o, max(1, MAX_TILES // i))
    flat = w[:rows].reshape(rows * i, *w.shape[2:])  # (rows, I, kh, kw) -> (rows*I, kh, kw)
    return tile_grid(flat, tile=tile, gap=gap, cols=i, cmap="gray")

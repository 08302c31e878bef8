"""Hand-made edge detectors of the seeds applied to any image, signed and in absolute value.

The seeds' vertical kernel ``[[1, 0, -1]] x 3`` answers bright-then-dark (left to right) with positive
values and dark-then-bright with negative ones; ``abs`` keeps only the edge strength. Sobel and Scharr
put more weight on the middle row. Like the seeds (and every deep-learning library) the kernels are
applied as cross-correlation without padding, so a 6x6 image gives a 4x4 answer.

>>> img = torch.tensor([[10.0] * 3 + [0.0] * 3] * 6)
>>> edge_responses(img)["vertical"][0].tolist()
[0.0, 30.0, 30.0, 0.0]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.layers import EDGE_KERNELS
from cnnlab.viz.grid import compact, figure_array, new_figure, save_png

__all__ = ["DEFAULT_KERNELS", "EDGE_KERNELS", "MAX_ASPECT", "edge_figure", "edge_responses", "stretched", "to_gray"]

# The shown kernels, in page order; the table itself (with Prewitt and Laplacian too) is cnnlab.layers'.
DEFAULT_KERNELS = ("vertical", "horizontal", "sobel_x", "sobel_y", "scharr_x", "scharr_y")
MAX_ASPECT = 4  # images longer or taller than 4:1 are stretched to fill their panels


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` or ``(H, W)`` image as float ``(H, W)`` luminance (ITU-R 601 weights for RGB)."""
    x = image.float()
    if x.ndim == 2:
        return x
    if x.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (x * weights).sum(0)
    return x.mean(0)


def edge_responses(image: torch.Tensor, kernels: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Cross-correlate the gray image with each kernel (no padding): name -> ``(H-2, W-2)`` signed map."""
    gray = to_gray(image)
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        raise ValueError(f"edge detection needs an image of at least 3x3 pixels; received {tuple(gray.shape)}.")
    names = list(kernels or DEFAULT_KERNELS)
    unknown = [n for n in names if n not in EDGE_KERNELS]
    if unknown:
        raise ValueError(f"--kernels: unknown edge kernel(s) {unknown}; choose from {', '.join(EDGE_KERNELS)}.")
    weight = torch.tensor([EDGE_KERNELS[n] for n in names]).unsqueeze(1)  # (K, 1, 3, 3)
    out = F.conv2d(gray[None, None], weight)[0]  # (1, 1, H, W) -> (K, H-2, W-2)
    return {n: out[i] for i, n in enumerate(names)}


def stretched(image: torch.Tensor) -> bool:
    """True when the image is so long or so tall (beyond :data:`MAX_ASPECT`) that its panels are stretched."""
    h, w = image.shape[-2:]
    return max(h, w) > MAX_ASPECT * min(h, w)


def _kernel_rows(n: int) -> int:
    # the first row holds the input and 3 kernels; further kernels take rows of 4
    return 1 + math.ceil(max(0, n - 3) / 4)


def _draw_kernel(ax: Any, name: str) -> None:
    k = np.array(EDGE_KERNELS[name])
    big = float(np.abs(k).max()) or 1.0
    ax.imshow(k, cmap="RdBu_r", vmin=-big, vmax=big)  # white = 0, as in the responses
    ax.set_title(f"kernel {name}", fontsize=8)
    for (yy, xx), v in np.ndenumerate(k):
        colour = "white" if abs(v) > 0.6 * big else "black"  # readable on the dark ends of RdBu
        ax.text(xx, yy, f"{v:g}", ha="center", va="center", fontsize=7, color=colour)


def edge_figure(
    image: torch.Tensor, path: str | os.PathLike[str] | None = None, kernels: Sequence[str] | None = None
) -> np.ndarray:
    """Input and every kernel on top, then per kernel the signed response (red +, blue -) and |.|.

    ``kernels`` are names of :data:`EDGE_KERNELS` (default :data:`DEFAULT_KERNELS`). An image longer
    or taller than :data:`MAX_ASPECT` to 1 is stretched to fill its panels (else they would be a
    hairline). Returns the rendered ``uint8 (H, W, 3)`` picture and writes it to ``path`` as PNG when given.
    """
    names = list(kernels or DEFAULT_KERNELS)
    responses = edge_responses(image, names)
    n, top = len(responses), _kernel_rows(len(names))
    aspect = "auto" if stretched(image) else "equal"
    fig = new_figure(2.2 * 3, 2.0 * (n + 1) * 0.55 + 1.0 + 1.1 * (top - 1))
    axes = np.asarray(fig.subplots(top + math.ceil(n / 2), 4)).reshape(-1, 4)  # type: ignore[attr-defined]
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(to_gray(image).numpy(), cmap="gray", aspect=aspect)
    axes[0, 0].set_title("input" + (" (stretched)" if aspect == "auto" else ""), fontsize=8)
    for i, (name, r) in enumerate(responses.items()):
        row, col = top + i // 2, (i % 2) * 2
        lim = float(r.abs().max()) or 1.0
        axes[row, col].imshow(r.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect=aspect)
        axes[row, col].set_title(name, fontsize=8)
        axes[row, col + 1].imshow(r.abs().numpy(), cmap="gray", aspect=aspect)
        axes[row, col + 1].set_title(f"|{name}|", fontsize=8)
    for j, name in enumerate(names):
        row, col = (0, j + 1) if j < 3 else (1 + (j - 3) // 4, (j - 3) % 4)
        _draw_kernel(axes[row, col], name)
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.95, hspace=0.35)
    picture = figure_array(fig)
    if path is not None:
        save_png(picture, Path(path))
    return picture

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

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.layers import EDGE_KERNELS
from cnnlab.viz.grid import compact, figure_array, new_figure, save_png

__all__ = ["DEFAULT_KERNELS", "EDGE_KERNELS", "edge_figure", "edge_responses", "to_gray"]

# The shown kernels, in page order; the table itself (with Prewitt and Laplacian too) is cnnlab.layers'.
DEFAULT_KERNELS = ("vertical", "horizontal", "sobel_x", "sobel_y", "scharr_x", "scharr_y")


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


def edge_figure(
    image: torch.Tensor, path: str | os.PathLike[str] | None = None, kernels: Sequence[str] | None = None
) -> np.ndarray:
    """Input and the first three kernels on top, then per kernel the signed response (red +, blue -) and |.|.

    ``kernels`` are names of :data:`EDGE_KERNELS` (default :data:`DEFAULT_KERNELS`). Returns the
    rendered ``uint8 (H, W, 3)`` picture and writes it to ``path`` as PNG when given.
    """
    names = list(kernels or DEFAULT_KERNELS)
    responses = edge_responses(image, names)
    n = len(responses)
    fig = new_figure(2.2 * 3, 2.0 * (n + 1) * 0.55 + 1.0)
    axes = np.asarray(fig.subplots(1 + math.ceil(n / 2), 4)).reshape(-1, 4)  # type: ignore[attr-defined]
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(to_gray(image).numpy(), cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    for i, (name, r) in enumerate(responses.items()):
        row, col = 1 + i // 2, (i % 2) * 2
        lim = float(r.abs().max()) or 1.0
        axes[row, col].imshow(r.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[row, col].set_title(name, fontsize=8)
        axes[row, col + 1].imshow(r.abs().numpy(), cmap="gray")
        axes[row, col + 1].set_title(f"|{name}|", fontsize=8)
    for j, name in enumerate(names[:3]):
        k = np.array(EDGE_KERNELS[name])
        big = float(np.abs(k).max()) or 1.0
        axes[0, j + 1].imshow(k, cmap="RdBu_r", vmin=-big, vmax=big)  # white = 0, as in the responses
        axes[0, j + 1].set_title(f"kernel {name}", fontsize=8)
        for (yy, xx), v in np.ndenumerate(k):
            colour = "white" if abs(v) > 0.6 * big else "black"  # readable on the dark ends of RdBu
            axes[0, j + 1].text(xx, yy, f"{v:g}", ha="center", va="center", fontsize=7, color=colour)
    compact(fig, left=0.02, right=0.98, bottom=0.02, top=0.95, hspace=0.35)
    picture = figure_array(fig)
    if path is not None:
        save_png(picture, Path(path))
    return picture

"""Tile grids drawn with NumPy and Pillow: one tile per kernel or feature map, exact pixel layout.

A grid of ``n`` tiles of ``t x t`` pixels with ``gap`` pixels between them and around them has
``rows * (t + gap) + gap`` by ``cols * (t + gap) + gap`` pixels, so tests can count tiles.

>>> g = tile_grid(np.zeros((5, 3, 3)), tile=6)
>>> g.tiles, g.rows, g.cols, g.image.shape
(5, 2, 3, (18, 26, 3))
"""

from __future__ import annotations

import base64
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "Grid",
    "figure_array",
    "label_image",
    "new_figure",
    "png_bytes",
    "png_data_uri",
    "save_png",
    "stack_vertical",
    "tile_grid",
]

_BACKGROUND = (255, 255, 255)


@dataclass
class Grid:
    """A rendered grid: ``image`` is ``uint8 (H, W, 3)``; ``tiles`` drawn in ``rows x cols`` cells."""

    image: np.ndarray
    tiles: int
    rows: int
    cols: int
    tile: int
    gap: int


def _to_uint8(tile: np.ndarray) -> np.ndarray:
    # floats are already in 0..1 (normalised by the caller)
    return tile if tile.dtype == np.uint8 else (np.clip(tile, 0.0, 1.0) * 255).round().astype(np.uint8)


def tile_grid(
    tiles: np.ndarray, *, tile: int = 32, gap: int = 2, cols: int | None = None, cmap: str | None = None
) -> Grid:
    """Lay out ``tiles`` ((N, h, w) grayscale or (N, h, w, 3) RGB, values in 0..1 or uint8) as a grid.

    Each tile is scaled with nearest-neighbour to ``tile`` pixels on its long side, so small kernels
    stay crisp. ``cmap`` (a matplotlib colormap name) colours grayscale tiles.

    >>> tile_grid(np.ones((4, 2, 2)), tile=4, gap=1).image.shape
    (11, 11, 3)
    """
    arr = np.asarray(tiles)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("tile_grid: received no tiles (N=0); pass at least one kernel or feature map.")
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = arr.shape[1:3]
    scale = max(1, tile // max(h, w))
    th, tw = h * scale, w * scale
    cell = max(th, tw)
    canvas = np.full((rows * (cell + gap) + gap, cols * (cell + gap) + gap, 3), 255, np.uint8)
    colour = None
    if cmap is not None and arr.ndim == 3:
        import matplotlib

        colour = matplotlib.colormaps[cmap]
    for i in range(n):
        t = arr[i]
        if t.ndim == 2:
            t = colour(np.clip(t, 0, 1))[..., :3] if colour is not None else np.repeat(t[..., None], 3, axis=2)
        t = _to_uint8(np.asarray(t)).repeat(scale, axis=0).repeat(scale, axis=1)
        r, c = divmod(i, cols)
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        canvas[y : y + th, x : x + tw] = t
    return Grid(canvas, n, rows, cols, cell, gap)


def label_image(image: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """``image`` (H, W, 3) with a white strip of ``height`` pixels on top holding ``text``."""
    strip = Image.new("RGB", (image.shape[1], height), _BACKGROUND)
    ImageDraw.Draw(strip).text((2, 1), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), image], axis=0)


def stack_vertical(images: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Stack (H, W, 3) images top to bottom, left-aligned on white."""
    width = max(im.shape[1] for im in images)
    height = sum(im.shape[0] for im in images) + gap * (len(images) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for im in images:
        out[y : y + im.shape[0], : im.shape[1]] = im
        y += im.shape[0] + gap
    return out


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write ``uint8 (H, W, 3)`` as PNG (parent folders created); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(p, format="PNG")
    return p


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of ``uint8 (H, W, 3)``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def png_data_uri(data: bytes | np.ndarray) -> str:
    """``data:image/png;base64,...`` for PNG bytes or an image array (for the self-contained report)."""
    raw = png_bytes(data) if isinstance(data, np.ndarray) else data
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def new_figure(width: float, height: float, dpi: int = 100) -> object:
    """A matplotlib Figure on an Agg canvas (no pyplot, no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def compact(fig: object, **margins: float) -> None:
    """Fixed margins (figure fractions) instead of ``tight_layout``, which costs ~1 s per figure."""
    fig.subplots_adjust(**{"left": 0.05, "right": 0.98, "bottom": 0.08, "top": 0.9, **margins})  # type: ignore[attr-defined]


def figure_array(fig: object) -> np.ndarray:
    """Render a Figure from :func:`new_figure` to ``uint8 (H, W, 3)``."""
    canvas = fig.canvas  # type: ignore[attr-defined]
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()

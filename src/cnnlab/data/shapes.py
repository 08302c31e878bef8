"""``shapes``: a generated segmentation dataset of circles, squares and triangles on noise.

Each image holds one to ``max_shapes`` shapes of random size, position, rotation and brightness
over a noisy background, each whole in its own cell of a 2 x 2 grid (or, with ``overlap=True``,
anywhere, later shapes occluding earlier ones); the mask gives each pixel's class id
(0 background, 1 circle, 2 square, 3 triangle). Everything is drawn from one seeded
``torch.Generator``, so the same arguments give the same tensors on every machine, and the
rasterisation is vectorised over images and shapes (chunks of images, no per-pixel Python).
"""

from __future__ import annotations

import math

import torch

from cnnlab.data.dataset import ImageDataset

CLASSES = ["background", "circle", "square", "triangle"]
DEFAULT_N = {"train": 2000, "test": 500}  # images per split
CHUNK = 256  # images rasterised at once: (CHUNK, K, H, W) float temporaries

SQUARE_HALF = math.sqrt(math.pi) / 2  # half-side of the square with the area of a unit circle
TRIANGLE_R = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))  # circumradius of that equilateral triangle


def shape_masks(
    kind: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, r: torch.Tensor, angle: torch.Tensor, size: int
) -> torch.Tensor:
    """Boolean masks ``(B, K, size, size)`` of the shapes described by ``(B, K)`` parameter tensors.

    ``kind`` is 1 circle, 2 square, 3 triangle; ``(cy, cx)`` the centre in pixels, ``r`` the radius of
    the circle of equal area (so all kinds cover about ``pi r^2`` pixels), ``angle`` in radians.

    >>> one = lambda v: torch.tensor([[float(v)]])
    >>> m = shape_masks(torch.tensor([[1]]), one(16), one(16), one(8), one(0), 32)
    >>> abs(int(m.sum()) - math.pi * 64) < 10
    True
    """
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    dy = coords.view(1, 1, size, 1) - cy[..., None, None]  # (B, K, H, 1)
    dx = coords.view(1, 1, 1, size) - cx[..., None, None]  # (B, K, 1, W)
    r4 = r[..., None, None]
    cos, sin = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # coordinates in the shape's rotated frame
    circle = dx * dx + dy * dy <= r4 * r4
    half = SQUARE_HALF * r4
    square = (u.abs() <= half) & (v.abs() <= half)
    # Equilateral triangle: inside all three edges, whose outward normals are 120 degrees apart and
    # at distance circumradius / 2 from the centre.
    inradius = TRIANGLE_R * r4 / 2
    triangle = torch.ones_like(circle)
    for k in range(3):
        a = 2 * math.pi * k / 3
        triangle &= u * math.cos(a) + v * math.sin(a) <= inradius
    kind4 = kind[..., None, None]
    return torch.where(kind4 == 1, circle, torch.where(kind4 == 2, square, triangle))


def make_shapes(
    n: int,
    size: int = 64,
    *,
    seed: int = 0,
    max_shapes: int = 3,
    channels: int = 1,
    noise: float = 40.0,
    overlap: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate ``(images uint8 (n, C, size, size), masks int64 (n, size, size), labels int64 (n,))``.

    Without ``overlap`` (the default) each shape gets its own cell of a 2 x 2 grid, so shapes are
    whole and never touch (``max_shapes`` <= 4); with ``overlap`` they are placed anywhere and later
    shapes occlude earlier ones (a harder task). ``labels`` is the class that covers most pixels of
    each image (for classification use).

    >>> images, masks, labels = make_shapes(4, 32, seed=1)
    >>> images.shape, masks.shape, sorted(set(masks.unique().tolist()) - {0, 1, 2, 3})
    (torch.Size([4, 1, 32, 32]), torch.Size([4, 32, 32]), [])
    """
    _check_args(n, size, max_shapes, channels, overlap)
    g = torch.Generator().manual_seed(int(seed))
    k = max_shapes
    # All random parameters are drawn up front, in a fixed order, so chunking cannot change them.
    kind = torch.randint(1, 4, (n, k), generator=g)
    present = torch.rand(n, k, generator=g) < 0.7
    present[:, 0] = True  # at least one shape per image
    if overlap:
        cell, top, left = float(size), torch.zeros(n, k), torch.zeros(n, k)
        r = (0.10 + 0.12 * torch.rand(n, k, generator=g)) * size
    else:
        cell = size / 2
        quadrant = torch.argsort(torch.rand(n, 4, generator=g), dim=1)[:, :k]  # distinct cells, (n, K)
        top, left = (quadrant // 2) * cell, (quadrant % 2) * cell
        # Radius up to the largest that keeps a triangle (the widest kind) inside its cell.
        r = (0.18 + 0.14 * torch.rand(n, k, generator=g)) * cell
    margin = r * TRIANGLE_R  # keep every kind wholly inside its cell
    cy = top + margin + torch.rand(n, k, generator=g) * (cell - 2 * margin)
    cx = left + margin + torch.rand(n, k, generator=g) * (cell - 2 * margin)
    angle = torch.rand(n, k, generator=g) * (2 * math.pi)
    colour = 150 + 105 * torch.rand(n, k, channels, generator=g)  # bright shapes, (n, K, C)
    background = 90 * torch.rand(n, channels, 1, 1, generator=g)  # per-image grey level
    pixel_noise = noise * torch.randn(n, channels, size, size, generator=g)

    masks = torch.zeros(n, size, size, dtype=torch.int64)
    images = background.expand(n, channels, size, size).clone()
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        inside = shape_masks(kind[lo:hi], cy[lo:hi], cx[lo:hi], r[lo:hi], angle[lo:hi], size)
        inside &= present[lo:hi, :, None, None]  # (b, K, H, W)
        for slot in range(k):  # paint in order: later shapes occlude earlier ones
            sel = inside[:, slot]  # (b, H, W)
            masks[lo:hi][sel] = kind[lo:hi, slot, None, None].expand_as(sel)[sel]
            paint = colour[lo:hi, slot, :, None, None].expand(hi - lo, channels, size, size)
            images[lo:hi] = torch.where(sel[:, None], paint, images[lo:hi])
    images = (images + pixel_noise).round().clamp(0, 255).to(torch.uint8)
    counts = torch.stack([(masks == c).flatten(1).sum(1) for c in (1, 2, 3)], dim=1)  # (n, 3)
    labels = counts.argmax(dim=1) + 1
    return images, masks, labels


def _check_args(n: int, size: int, max_shapes: int, channels: int, overlap: bool) -> None:
    if n < 1:
        raise ValueError(f"shapes: n must be >= 1 image; received n={n}.")
    if size < 16:
        raise ValueError(f"shapes: size must be >= 16 pixels (shapes need room); received size={size}.")
    if max_shapes < 1:
        raise ValueError(f"shapes: max_shapes must be >= 1; received max_shapes={max_shapes}.")
    if not overlap and max_shapes > 4:
        raise ValueError(
            f"shapes: max_shapes must be <= 4 without overlap (one shape per cell of a 2 x 2 grid); "
            f"received max_shapes={max_shapes}. Pass overlap=True for more shapes per image."
        )
    if channels not in (1, 3):
        raise ValueError(f"shapes: channels must be 1 (grey) or 3 (colour); received channels={channels}.")


def load_shapes(
    split: str = "train",
    *,
    n: int | None = None,
    size: int = 64,
    seed: int = 0,
    max_shapes: int = 3,
    channels: int = 1,
    noise: float = 40.0,
    overlap: bool = False,
) -> ImageDataset:
    """The ``shapes`` segmentation dataset; train and test are generated from different seeds.

    >>> ds = load_shapes("test", n=8, size=32)
    >>> ds.task, ds.classes
    ('segmentation', ['background', 'circle', 'square', 'triangle'])
    """
    count = DEFAULT_N[split] if n is None else n
    # Distinct streams for the two splits: test images are never training images.
    split_seed = 2 * int(seed) + (1 if split == "test" else 0)
    images, masks, labels = make_shapes(
        count, size, seed=split_seed, max_shapes=max_shapes, channels=channels, noise=noise, overlap=overlap
    )
    return ImageDataset(images, labels, list(CLASSES), "shapes", masks=masks)

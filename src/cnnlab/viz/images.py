"""Load and validate images for the pictures: clear :class:`~cnnlab.errors.ImageError` for bad files.

Images come back as ``uint8 (C, H, W)`` tensors, the layout of :class:`cnnlab.data.ImageDataset`.
Grayscale and RGB convert into each other when ``convert=True`` (the default); anything else that does
not match the model's channel count is an error, as are files that are not images, truncated files and
images with more than :data:`MAX_PIXELS` pixels (a guard against decompression bombs).

>>> import numpy as np, tempfile, PIL.Image
>>> p = tempfile.mktemp(suffix=".png"); PIL.Image.fromarray(np.zeros((4, 6), np.uint8)).save(p)
>>> load_image(p, channels=3).shape
torch.Size([3, 4, 6])
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import ImageError

__all__ = ["MAX_PIXELS", "check_channels", "load_image", "to_display"]

MAX_PIXELS = 40_000_000  # 40 megapixels: a 6000x6000 photo is fine, a decompression bomb is not

_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "I": 1, "I;16": 1, "F": 1, "CMYK": 4}


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise ImageError(f"image {str(path)!r} does not exist; pass the path of a PNG or JPEG file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise ImageError(
                f"image {str(path)!r} is not an image Pillow can read (received {path.stat().st_size} bytes "
                "that are not PNG/JPEG/BMP/GIF/TIFF/WebP); pass an image file."
            ) from None
        raise ImageError(
            f"image {str(path)!r} has more pixels than the limit of {max_pixels:,} (Pillow: {err}); resize it "
            "first (e.g. to 1024 pixels on the long side)."
        ) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"image {str(path)!r} has {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,}; resize it first (e.g. to 1024 pixels on the long side)."
        )
    try:
        img.load()  # decode now so a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"image {str(path)!r} is truncated or damaged ({err}); re-export or re-download it.") from None
    return img


def _convert(img: Image.Image, channels: int | None, convert: bool, source: str) -> Image.Image:
    native = _MODE_CHANNELS.get(img.mode, len(img.getbands()))
    if img.mode in ("I", "I;16", "F"):
        arr = np.asarray(img, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        native = len(img.getbands())
    if channels is None or channels == native:
        return img if img.mode != "1" else img.convert("L")
    if convert and channels in (1, 3) and native in (1, 2, 3, 4):
        return img.convert("L" if channels == 1 else "RGB")
    hint = "convert it to grayscale/RGB" if convert else "allow conversion (drop --no-convert)"
    raise ImageError(
        f"image {source} has {native} channels (mode {img.mode}) but the model expects {channels}; "
        f"{hint} or use a model with in_chans={native}."
    )


def load_image(
    path: str | os.PathLike[str],
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    convert: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Read an image file as ``uint8 (C, H, W)``, checked and optionally converted and resized.

    ``channels`` is the model's input channel count (None keeps the file's); ``size`` is ``(H, W)``
    to resize to (bilinear). Raises :class:`ImageError` for a missing file, a file that is not an
    image, a truncated file, more than ``max_pixels`` pixels, or a channel count that cannot be
    converted (every mismatch when ``convert=False``).

    >>> load_image("missing.png")  # doctest: +SKIP
    Traceback (most recent call last):
    cnnlab.errors.ImageError: image 'missing.png' does not exist; ...
    """
    p = Path(path).expanduser()
    img = _convert(_open(p, max_pixels), channels, convert, repr(str(p)))
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr  # (H, W) -> (H, W, 1)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def check_channels(images: torch.Tensor, channels: int, source: str = "the image") -> None:
    """Raise :class:`ImageError` unless ``images`` ((C, H, W) or (N, C, H, W)) has ``channels`` channels.

    >>> check_channels(torch.zeros(3, 4, 4), 3)
    """
    c = images.shape[-3] if images.ndim >= 3 else -1
    if images.ndim not in (3, 4) or c != channels:
        raise ImageError(
            f"{source} must have shape (C, H, W) or (N, C, H, W) with C={channels} channels for this model; "
            f"received shape {tuple(images.shape)}. Convert it with load_image(path, channels={channels})."
        )


def to_display(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image (uint8 or float) as ``uint8 (H, W, 3)`` for drawing.

    >>> to_display(torch.zeros(1, 2, 2, dtype=torch.uint8)).shape
    (2, 2, 3)
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / ((hi - lo) or 1.0) * 255).round().astype(np.uint8)
    arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])

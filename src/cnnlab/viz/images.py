"""Load and validate images for the pictures: clear :class:`~cnnlab.errors.ImageError` for bad files.

Images come back as ``uint8 (C, H, W)`` tensors, the layout of :class:`cnnlab.data.ImageDataset`.
Grayscale and RGB convert into each other when ``convert=True`` (the default); anything else that does
not match the model's channel count is an error, as are files that are not images, truncated files and
images with more than :data:`MAX_PIXELS` pixels (a guard against decompression bombs). A photo whose EXIF
orientation tag says it is stored on its side is turned upright, as image viewers and ``folder:`` training
data (:mod:`cnnlab.data.folder`) do.

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
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import ImageError

__all__ = ["MAX_PIXELS", "check_channels", "load_image", "no_image_has", "read_image", "to_display"]

MAX_PIXELS = 40_000_000  # 40 megapixels: a 6000x6000 photo is fine, a decompression bomb is not

_ORIENTATION = 0x0112  # the EXIF tag: 1 = stored as shown, 2..8 = mirrored and/or turned by 90/180/270 degrees
_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "I": 1, "I;16": 1, "F": 1, "CMYK": 4}


def _folder_error(path: Path) -> ImageError:
    inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:1]
    example = f" (e.g. {path / inside[0]})" if inside else ""
    return ImageError(
        f"image {str(path)!r} is a folder, not an image file; pass the path of one PNG or JPEG file in "
        f"it{example}, or a dataset test image written DATASET:INDEX."
    )


def _open(path: Path, max_pixels: int) -> Image.Image:
    if path.is_dir():
        raise _folder_error(path)
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
    except PermissionError as err:
        raise ImageError(
            f"image {str(path)!r} cannot be read ({err.strerror}); make it readable (chmod) or copy it somewhere else."
        ) from None
    except (OSError, SyntaxError, ValueError) as err:  # the header itself is cut short (a JPEG cut inside it)
        raise ImageError(f"image {str(path)!r} is truncated or damaged ({err}); re-export or re-download it.") from None
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


def _upright(img: Image.Image, source: str) -> tuple[Image.Image, list[str]]:
    # A phone stores a portrait photo as landscape pixels plus an orientation tag; viewers (and the folder
    # loader that trained the model) turn it, so the pictures must too.
    if img.getexif().get(_ORIENTATION, 1) not in range(2, 9):  # 1 (or none): stored as shown
        return img, []
    turned = ImageOps.exif_transpose(img)
    return turned, [
        f"turned {source} upright by its EXIF orientation tag ({img.width}x{img.height} stored, "
        f"{turned.width}x{turned.height} shown, WxH), as image viewers and folder: training data do."
    ]


def _stretch(img: Image.Image, source: str) -> tuple[Image.Image, str]:
    # 16-bit and float images have no fixed white: map this image's own min..max onto 0..255
    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    stretched = Image.fromarray(((arr - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8))
    kind = "floating-point" if img.mode == "F" else "16/32-bit integer"
    note = (
        f"{source} is a {kind} image (mode {img.mode}); its values {lo:g}..{hi:g} were stretched to 0..255 "
        "for this image alone, so it is used at full contrast whatever its real brightness."
    )
    return stretched, note


def no_image_has(channels: int) -> str:
    """Why no image can feed a model that takes ``channels`` (not 1 or 3) input channels, and what to do."""
    return (
        f"Image files have 1 (grayscale) or 3 (RGB) channels, never {channels}, so pictures from an image need "
        "a model whose first layer takes 1 or 3 (in_chans=1 or 3): a whole network, not a block from inside one."
    )


def _describe(mode: str, channels: int) -> str:
    return {"L": "grayscale", "LA": "grayscale with alpha", "RGB": "RGB", "RGBA": "RGBA"}.get(mode, f"mode {mode}") + (
        f" ({channels} channels)" if channels != 1 else " (1 channel)"
    )


def _convert(img: Image.Image, channels: int | None, convert: bool, source: str) -> tuple[Image.Image, list[str]]:
    native = _MODE_CHANNELS.get(img.mode, len(img.getbands()))
    notes: list[str] = []
    if img.mode in ("I", "I;16", "F"):
        img, note = _stretch(img, source)
        notes.append(note)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        native = len(img.getbands())
    if channels is None or channels == native:
        return (img if img.mode != "1" else img.convert("L")), notes
    if convert and channels in (1, 3) and native in (1, 2, 3, 4):
        target = "L" if channels == 1 else "RGB"
        alpha = "; its alpha channel was dropped" if img.mode in ("RGBA", "LA") else ""
        notes.append(
            f"converted {source} from {_describe(img.mode, native)} to {_describe(target, channels)} for the "
            f"model{alpha} (--no-convert refuses such images instead)."
        )
        return img.convert(target), notes
    if channels not in (1, 3):  # no image file has e.g. 192 channels: converting the file cannot help
        raise ImageError(
            f"image {source} has {native} channels (mode {img.mode}) but the model expects {channels}. "
            + no_image_has(channels)
        )
    hint = "convert it to grayscale/RGB" if convert else "allow conversion (drop --no-convert)"
    raise ImageError(
        f"image {source} has {native} channels (mode {img.mode}) but the model expects {channels}; "
        f"{hint} or use a model with in_chans={native}."
    )


def read_image(
    path: str | os.PathLike[str],
    *,
    channels: int | None = None,
    convert: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> tuple[torch.Tensor, list[str]]:
    """:func:`load_image` without resizing, plus one note per silent change (channel conversion, contrast).

    >>> import numpy as np, tempfile, PIL.Image
    >>> p = tempfile.mktemp(suffix=".png"); PIL.Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(p)
    >>> read_image(p, channels=1)[1]  # doctest: +ELLIPSIS
    ["converted '...png' from RGB (3 channels) to grayscale (1 channel) for the model (--no-convert ...)."]
    """
    p = Path(path).expanduser()
    img, turned = _upright(_open(p, max_pixels), repr(str(p)))
    img, notes = _convert(img, channels, convert, repr(str(p)))
    return _to_tensor(img), turned + notes


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr  # (H, W) -> (H, W, 1)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


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
    img, _ = _convert(_upright(_open(p, max_pixels), repr(str(p)))[0], channels, convert, repr(str(p)))
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)
    return _to_tensor(img)


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

"""``folder:PATH``: an image folder with one sub-folder per class (PNG/JPEG, read with Pillow).

Layout: ``PATH/<class>/<image>``, class names sorted alphabetically give the label ids. When
``PATH/train/`` and ``PATH/test/`` both exist they are the two splits; otherwise each class is split
deterministically (a seeded permutation per class, ``test_fraction`` of it for the test split).
Images are resized to ``size`` and converted to grayscale or RGB. A file with an image extension
that Pillow cannot decode (a text file named ``.png``, a zero-byte or truncated JPEG) is reported by
name: skipped with a warning (``on_error="skip"``, the default) or fatal (``on_error="raise"``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
ON_ERROR = ("skip", "raise")


class SkippedImagesWarning(UserWarning):
    """Some files of an image folder could not be read and were left out."""


@dataclass
class FolderScan:
    """The files of one split of an image folder: paths, label ids, class names."""

    root: Path
    classes: list[str]
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def scan_folder(
    path: str | Path, split: str = "train", *, test_fraction: float = 0.2, seed: int = 0
) -> FolderScan:
    """List the image files and labels of ``split`` (no image is opened).

    >>> scan_folder("/no/such/folder")  # doctest: +SKIP
    Traceback (most recent call last):
    cnnlab.errors.DataError: Image folder /no/such/folder does not exist ...
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(
            f"Image folder {root} does not exist or is not a folder. --data folder:PATH needs a folder "
            "with one sub-folder of PNG/JPEG images per class, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; received split={split!r}.")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); received test_fraction={test_fraction}.")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if has_splits else root
    classes = sorted(d.name for d in class_root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(
            f"Image folder {class_root} has no class sub-folders. Put the images of each class in their "
            "own sub-folder, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    scan = FolderScan(root=root / split if has_splits else root, classes=classes)
    generator = torch.Generator().manual_seed(int(seed))
    for label, name in enumerate(classes):
        files = _image_files(scan.root / name)
        if not has_splits:
            # Per-class seeded permutation: the same files land in the test split on every run.
            order = torch.randperm(len(files), generator=generator).tolist()
            n_test = round(test_fraction * len(files))
            chosen = set(order[:n_test]) if split == "test" else set(order[n_test:])
            files = [f for i, f in enumerate(files) if i in chosen]
        scan.files += files
        scan.labels += [label] * len(files)
    if not scan.files:
        raise DataError(
            f"Image folder {scan.root} has no {'/'.join(EXTENSIONS)} files for split {split!r} in its "
            f"class sub-folders ({', '.join(classes)})."
        )
    return scan


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not p.name.startswith("."))


def _open_image(path: Path) -> tuple[object | None, str]:
    """The decoded Pillow image, or ``(None, reason)`` when the file is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated data only fails here
            return img.copy(), ""
    except UnidentifiedImageError:
        return None, "not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"cannot decode ({exc})"


def load_folder(
    path: str | Path,
    split: str = "train",
    *,
    size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    on_error: str = "skip",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """Load one split of an image folder as an :class:`ImageDataset`.

    ``size`` is the output ``H = W`` (int) or ``(H, W)``; ``None`` keeps the size of the first image.
    ``grayscale`` ``None`` picks grayscale when every image is grayscale, else RGB.

    >>> ds = load_folder("my_images", size=28, grayscale=True)  # doctest: +SKIP
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}; received on_error={on_error!r}.")
    scan = scan_folder(path, split, test_fraction=test_fraction, seed=seed)
    images, labels, bad = [], [], []
    for file, label in zip(scan.files, scan.labels):
        img, reason = _open_image(file)
        if img is None:
            bad.append(f"{file} ({reason})")
        else:
            images.append(img)
            labels.append(label)
    if bad and on_error == "raise":
        raise DataError(
            f"Image folder {scan.root}: {len(bad)} file(s) are not readable images: {'; '.join(bad)}. "
            "Delete or replace them, or pass on_error='skip' to leave them out."
        )
    if bad:
        warnings.warn(
            f"Image folder {scan.root}: skipped {len(bad)} unreadable file(s): {'; '.join(bad)}.",
            SkippedImagesWarning,
            stacklevel=2,
        )
    if not images:
        raise DataError(f"Image folder {scan.root}: none of the {len(scan.files)} image files could be read.")
    array = _to_array(images, size, grayscale)
    return ImageDataset(
        torch.from_numpy(array), torch.tensor(labels, dtype=torch.int64), scan.classes,
        f"folder:{Path(path).expanduser()}",
    )


def _to_array(images: list[object], size: int | tuple[int, int] | None, grayscale: bool | None) -> np.ndarray:
    """Stack Pillow images into ``uint8 (N, C, H, W)`` after resizing and mode conversion."""
    from PIL import Image

    pil: list[Image.Image] = [im for im in images if isinstance(im, Image.Image)]
    if size is None:
        height, width = pil[0].height, pil[0].width
    elif isinstance(size, int):
        height = width = size
    else:
        height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive; received size={size}.")
    gray = all(im.mode in GRAY_MODES for im in pil) if grayscale is None else grayscale
    mode = "L" if gray else "RGB"
    arrays = []
    for im in pil:
        im = im.convert(mode)
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        arrays.append(arr[None] if gray else arr.transpose(2, 0, 1))  # (H, W[, 3]) -> (C, H, W)
    return np.stack(arrays)


def write_folder(ds: ImageDataset, root: str | Path, *, per_class: int | None = None) -> Path:
    """Save ``ds`` as PNG files in ``root/<class>/<index>.png`` (lossless), the layout ``folder:`` reads.

    ``per_class`` keeps only the first images of each class. Class names are made safe as folder
    names (``/`` becomes ``-``) and prefixed with their id so the alphabetical order keeps the ids.

    >>> write_folder(load_dataset("mnist", "test"), "/tmp/mnist-png", per_class=20)  # doctest: +SKIP
    PosixPath('/tmp/mnist-png')
    """
    from PIL import Image

    out = Path(root).expanduser()
    width = len(str(ds.num_classes - 1))
    for label, name in enumerate(ds.classes):
        members = torch.nonzero(ds.labels == label).flatten()
        if per_class is not None:
            members = members[:per_class]
        folder = out / f"{label:0{width}d}-{name.replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in members.tolist():
            pixels = ds.images[i].permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
            image = Image.fromarray(pixels[:, :, 0] if ds.in_chans == 1 else pixels)
            image.save(folder / f"{i:06d}.png")
    return out

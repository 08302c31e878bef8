"""``folder:PATH``: an image folder with one sub-folder per class (read with Pillow).

Layout: ``PATH/<class>/<image>``, class names sorted alphabetically give the label ids (as
torchvision's ``ImageFolder``), and the image extensions are ImageFolder's: .jpg .jpeg .png .ppm .bmp
.pgm .tif .tiff .webp. When ``PATH/train/`` exists beside ``PATH/test/`` (or, without ``test/``,
``val/``, ``valid/`` or ``validation/``) they are the two splits (validation data is always drawn
from the training split, so a ``val/`` beside ``test/`` is not read); otherwise each class is split
deterministically (a seeded permutation per class, ``test_fraction`` of it for the test split).
Images are turned upright by their EXIF orientation (as a photo viewer shows them), 16-bit images are
scaled to 8 bits (65535 -> 255), then resized to ``size`` and converted to grayscale or RGB. A file
with an image extension that Pillow cannot decode (a text file named ``.png``, a zero-byte or
truncated JPEG) is reported by name: skipped with a warning (``on_error="skip"``, the default) or
fatal (``on_error="raise"``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ON_ERROR = ("skip", "raise")
TRAIN_DIR = "train"
HELD_OUT_DIRS = ("test", "val", "valid", "validation")  # the first that exists is the test split
ORIENTATION = 0x0112  # EXIF tag; values 5-8 store the picture turned by 90 degrees


class SkippedImagesWarning(UserWarning):
    """Some files of an image folder could not be read and were left out."""


class ResizedImagesWarning(UserWarning):
    """Images of an image folder had other sizes than the one chosen, and were stretched to it."""


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
        # A run trained before paths were recorded absolute names its folder relative to where it was trained.
        where = "" if root.is_absolute() else f" (a relative path, looked up in the current directory {Path.cwd()})"
        raise DataError(
            f"Image folder {root} does not exist or is not a folder{where}. A folder:PATH dataset needs a folder "
            "with one sub-folder of images per class, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; received split={split!r}.")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); received test_fraction={test_fraction}.")
    held_out = _split_layout(root)
    has_splits = held_out is not None
    class_root = root / TRAIN_DIR if has_splits else root
    classes = _class_names(class_root)
    if not classes:
        raise DataError(
            f"Image folder {class_root} has no class sub-folders. Put the images of each class in their "
            "own sub-folder, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    if held_out is not None:
        _check_same_classes(root, classes, held_out)
    split_dir = (TRAIN_DIR if split == "train" else held_out) if held_out is not None else ""
    scan = FolderScan(root=root / split_dir, classes=classes)
    per_class = [_image_files(scan.root / name) for name in classes]
    _check_no_empty_class(scan.root, classes, per_class)
    generator = torch.Generator().manual_seed(int(seed))
    for label, files in enumerate(per_class):
        if not has_splits:
            # Per-class seeded permutation: the same files land in the test split on every run.
            order = torch.randperm(len(files), generator=generator).tolist()
            n_test = round(test_fraction * len(files))
            chosen = set(order[:n_test]) if split == "test" else set(order[n_test:])
            files = [f for i, f in enumerate(files) if i in chosen]
        scan.files += files
        scan.labels += [label] * len(files)
    if not scan.files:
        raise DataError(_empty_split_message(scan.root, split, [len(f) for f in per_class], test_fraction))
    return scan


def _class_names(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _split_layout(root: Path) -> str | None:
    """The held-out folder name when ``root`` holds ``train/`` and a test folder, else ``None``.

    A split folder without its partner would be read as one class named ``train`` (or ``val``) holding
    every image below it, so it is refused instead.
    """
    names = _class_names(root)
    held_out = next((name for name in HELD_OUT_DIRS if name in names), None)
    if TRAIN_DIR in names and held_out is not None:
        return held_out
    split_like = [name for name in names if name.lower() in (TRAIN_DIR, *HELD_OUT_DIRS)]
    if not split_like:
        return None
    found = ", ".join(f"{name}/" for name in split_like)
    if TRAIN_DIR in names:
        fix = f"add PATH/test/<class>/ beside it, or pass folder:{root / TRAIN_DIR} to split train/ per class"
    elif any(name in HELD_OUT_DIRS for name in split_like):
        fix = "add PATH/train/<class>/ beside it (the training images)"
    else:
        fix = "rename them to the lower-case train/ and test/"
    raise DataError(
        f"Image folder {root} holds {found}, which look like split folders, but not the pair cnnlab reads as "
        f"splits: train/ beside test/ (or {', '.join(f'{n}/' for n in HELD_OUT_DIRS[1:])}), each with one "
        f"sub-folder per class; received the sub-folders {', '.join(names)}. Read as they are, each would be "
        f"one class holding every image below it. To fix: {fix}."
    )


def _check_same_classes(root: Path, train_classes: list[str], held_out: str) -> None:
    """``train/`` and the held-out folder must hold the same class names: a label id is a name's sorted position."""
    test_classes = _class_names(root / held_out)
    only_test = sorted(set(test_classes) - set(train_classes))
    only_train = sorted(set(train_classes) - set(test_classes))
    parts = [f"{held_out}/ has {', '.join(only_test)}, which train/ lacks"] if only_test else []
    parts += [f"train/ has {', '.join(only_train)}, which {held_out}/ lacks"] if only_train else []
    if parts:
        raise DataError(
            f"Image folder {root}: train/ and {held_out}/ must hold the same class sub-folders (a label id is the "
            f"position of the class name in sorted order), but {' and '.join(parts)}. Add the missing class "
            "folders, with images, or remove the extra ones."
        )


def _check_no_empty_class(folder: Path, classes: list[str], per_class: list[list[Path]]) -> None:
    """Every class sub-folder needs images (torchvision's ImageFolder refuses empty ones too)."""
    empty = [name for name, files in zip(classes, per_class) if not files]
    if not empty or len(empty) == len(classes):  # none at all: _empty_split_message says so
        return
    one = len(empty) == 1
    raise DataError(
        f"Image folder {folder}: the class sub-folder{'' if one else 's'} {', '.join(empty)} "
        f"{'holds' if one else 'hold'} no image files ({' '.join(EXTENSIONS)}). Every sub-folder is a class the model "
        f"must predict, so each needs images of its own; add images to {'it' if one else 'them'}, or move "
        f"{'it' if one else 'them'} out of {folder}."
    )


def _split_sizes(counts: list[int], test_fraction: float) -> tuple[int, int]:
    """(train, test) image counts of the per-class split; each class gives round(fraction * count) to test."""
    test = sum(round(test_fraction * c) for c in counts)
    return sum(counts) - test, test


def _empty_split_message(folder: Path, split: str, counts: list[int], test_fraction: float) -> str:
    """Why ``split`` of ``folder`` got no files: none at all, or the per-class split left it empty.

    >>> _empty_split_message(Path("pics"), "test", [1, 1], 0.2)[:70]
    "Image folder pics has images (per class: 1, 1) but none for the 'test'"
    """
    if sum(counts) == 0:
        return (
            f"Image folder {folder} has no image files ({' '.join(EXTENSIONS)}) in its class sub-folders; "
            "put the images of each class in their own sub-folder, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    workable = [f / 10 for f in range(1, 10) if min(_split_sizes(counts, f / 10)) > 0]
    if workable:
        option = f"--set data_opts='{{\"test_fraction\": {workable[0]}}}'"
        other = f"set a test_fraction that splits them (cnnlab train: {option})"
    else:
        other = "add images: no test_fraction puts images of these counts into both splits"
    return (
        f"Image folder {folder} has images (per class: {', '.join(map(str, counts))}) but none for the {split!r} "
        f"split: a folder without train/ and test/ sub-folders is split per class, round(test_fraction * count) "
        f"images of each class to the test split and the rest to training, and test_fraction={test_fraction} "
        f"leaves the {split} split empty. Split the images yourself into PATH/train/<class>/ and "
        f"PATH/test/<class>/, or {other}."
    )


def _image_files(folder: Path) -> list[Path]:
    """Image files below ``folder``, skipping hidden files and folders (.DS_Store, ._x.png, .ipynb_checkpoints/)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _open_image(path: Path) -> tuple[object | None, str]:
    """The decoded Pillow image, upright by its EXIF orientation, or ``(None, reason)`` when unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated data only fails here
            # A phone stores a portrait photo as landscape pixels plus an orientation tag; viewers turn it.
            upright = ImageOps.exif_transpose(img)
            return (upright if upright is not img else img.copy()), ""
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

    ``size`` is the output ``H = W`` (int) or ``(H, W)``; ``None`` keeps the size of the first training
    image. ``grayscale`` ``None`` picks grayscale when every training image is grayscale, else RGB. The
    test split follows the training split in both, so a model trained on one can be evaluated on the other.

    >>> ds = load_folder("my_images", size=28, grayscale=True)  # doctest: +SKIP
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}; received on_error={on_error!r}.")
    scan = scan_folder(path, split, test_fraction=test_fraction, seed=seed)
    user_size = size
    if split != "train" and (size is None or grayscale is None):
        # The test split takes the training split's size and colour mode: a model trained on one is
        # evaluated on the other (each split picking its own gave 33x70 RGB train, 29x61 gray test).
        train_size, train_gray = _train_layout(path, test_fraction, seed)
        size = train_size if size is None else size
        grayscale = train_gray if grayscale is None else grayscale
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
    if user_size is None and not isinstance(size, int):
        _warn_resized(scan, images, None if size is None else (size[0], size[1]))
    array = _to_array(images, size, grayscale)
    return ImageDataset(
        torch.from_numpy(array), torch.tensor(labels, dtype=torch.int64), scan.classes,
        f"folder:{Path(path).expanduser()}",
    )


def _train_layout(path: str | Path, test_fraction: float, seed: int) -> tuple[tuple[int, int] | None, bool | None]:
    """(H, W) of the first readable training image and whether all training images are gray (headers only)."""
    from PIL import Image, UnidentifiedImageError

    size: tuple[int, int] | None = None
    modes = []
    for file in scan_folder(path, "train", test_fraction=test_fraction, seed=seed).files:
        try:
            with Image.open(file) as img:  # reads the header, not the pixels
                turned = img.getexif().get(ORIENTATION) in (5, 6, 7, 8)  # stored on its side
                size = size or ((img.width, img.height) if turned else (img.height, img.width))
                modes.append(img.mode)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            continue  # unreadable: the training split skips it too
    return size, (all(m in GRAY_MODES for m in modes) if modes else None)


def _warn_resized(scan: FolderScan, images: list[object], train_size: tuple[int, int] | None = None) -> None:
    """Warn when ``size=None`` stretches images: mixed sizes, or test images unlike the training size."""
    from collections import Counter

    from PIL import Image

    shapes = Counter((im.height, im.width) for im in images if isinstance(im, Image.Image))
    target = next(iter(shapes)) if train_size is None else train_size
    if set(shapes) == {target}:
        return
    listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in shapes.most_common(4))
    listed += f" and {len(shapes) - 4} more sizes" if len(shapes) > 4 else ""
    if train_size is None:
        what = f"its images come in {len(shapes)} sizes (H x W, count: {listed})"
        chosen = "the size of its first image"
        suggest = shapes.most_common(1)[0][0]
    else:
        what = f"its images (H x W, count: {listed}) differ from the training images"
        chosen = "the size of the first training image, so that a model trained on those can read them"
        suggest = train_size
    warnings.warn(
        f"Image folder {scan.root}: {what}; with size=None every image is resized to {target[0]}x{target[1]}, "
        f"{chosen}, which stretches images of another shape. Choose the size of both splits yourself: "
        f"size=N or size=(H, W) (cnnlab train: --set data_opts='{{\"size\": [{suggest[0]}, {suggest[1]}]}}').",
        ResizedImagesWarning,
        stacklevel=3,
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
        im = _to_8_bit(im).convert(mode)
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
        arrays.append(arr[None] if gray else arr.transpose(2, 0, 1))  # (H, W[, 3]) -> (C, H, W)
    return np.stack(arrays)


def _to_8_bit(im: Image.Image) -> Image.Image:
    """16-bit grayscale (mode I;16*, or I as older Pillow opens 16-bit PNGs) scaled to 8 bits: v * 255 / 65535.

    Pillow's own ``convert("L")`` clips instead, so every value above 255 (nearly all of a 16-bit image)
    became white. Mode I values outside 0..65535 are clipped to it first.
    """
    from PIL import Image

    if not (im.mode.startswith("I;16") or im.mode == "I"):
        return im
    values = np.clip(np.asarray(im, dtype=np.int64), 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def write_folder(ds: ImageDataset, root: str | Path, *, per_class: int | None = None) -> Path:
    """Save ``ds`` as PNG files in ``root/<class>/<index>.png`` (lossless), the layout ``folder:`` reads.

    ``per_class`` keeps only the first images of each class. Class names are made safe as folder
    names (``/`` becomes ``-``) and prefixed with their id so the alphabetical order keeps the ids.
    A class without images gets no folder (``folder:`` refuses empty class folders), so the classes
    after it are read back with ids one lower.

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
        if members.numel() == 0:
            continue
        folder = out / f"{label:0{width}d}-{name.replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in members.tolist():
            pixels = ds.images[i].permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
            image = Image.fromarray(pixels[:, :, 0] if ds.in_chans == 1 else pixels)
            image.save(folder / f"{i:06d}.png")
    return out

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
        # A run trained before paths were recorded absolute names its folder relative to where it was trained.
        where = "" if root.is_absolute() else f" (a relative path, looked up in the current directory {Path.cwd()})"
        raise DataError(
            f"Image folder {root} does not exist or is not a folder{where}. A folder:PATH dataset needs a folder "
            "with one sub-folder of PNG/JPEG images per class, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; received split={split!r}.")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); received test_fraction={test_fraction}.")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if has_splits else root
    classes = _class_names(class_root)
    if not classes:
        raise DataError(
            f"Image folder {class_root} has no class sub-folders. Put the images of each class in their "
            "own sub-folder, e.g. PATH/cat/1.png, PATH/dog/2.png."
        )
    if has_splits:
        _check_same_classes(root, classes)
    scan = FolderScan(root=root / split if has_splits else root, classes=classes)
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


def _check_same_classes(root: Path, train_classes: list[str]) -> None:
    """``train/`` and ``test/`` must hold the same class names: a label id is a name's sorted position."""
    test_classes = _class_names(root / "test")
    only_test = sorted(set(test_classes) - set(train_classes))
    only_train = sorted(set(train_classes) - set(test_classes))
    parts = [f"test/ has {', '.join(only_test)}, which train/ lacks"] if only_test else []
    parts += [f"train/ has {', '.join(only_train)}, which test/ lacks"] if only_train else []
    if parts:
        raise DataError(
            f"Image folder {root}: train/ and test/ must hold the same class sub-folders (a label id is the "
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
        f"{'holds' if one else 'hold'} no {'/'.join(EXTENSIONS)} files. Every sub-folder is a class the model "
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
            f"Image folder {folder} has no {'/'.join(EXTENSIONS)} files in its class sub-folders; "
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

    ``size`` is the output ``H = W`` (int) or ``(H, W)``; ``None`` keeps the size of the first training
    image. ``grayscale`` ``None`` picks grayscale when every training image is grayscale, else RGB. The
    test split follows the training split in both, so a model trained on one can be evaluated on the other.

    >>> ds = load_folder("my_images", size=28, grayscale=True)  # doctest: +SKIP
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}; received on_error={on_error!r}.")
    scan = scan_folder(path, split, test_fraction=test_fraction, seed=seed)
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
                size = size or (img.height, img.width)
                modes.append(img.mode)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            continue  # unreadable: the training split skips it too
    return size, (all(m in GRAY_MODES for m in modes) if modes else None)


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

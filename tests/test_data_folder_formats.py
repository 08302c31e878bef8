"""Image folders as users have them: BMP/TIFF/WebP files, 16-bit PNGs, EXIF-rotated photos, palette and
alpha images, hidden files, train/ + val/ splits and images of mixed sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.folder import ResizedImagesWarning
from cnnlab.errors import DataError

H, W = 6, 8


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _save(path: Path, image: Image.Image, **kwargs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def test_every_imagefolder_extension_is_read(tmp_path: Path) -> None:
    """Only .png/.jpg/.jpeg were read: a class of BMP files was 'empty' and BMPs beside PNGs were dropped."""
    lossless = {".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".webp": "WEBP", ".png": "PNG"}
    expected = []
    for i, (ext, fmt) in enumerate(lossless.items()):
        pixels = _rgb(i)
        options = {"lossless": True} if fmt == "WEBP" else {}
        _save(tmp_path / "a" / f"{i}{ext.upper() if i % 2 else ext}", Image.fromarray(pixels), format=fmt, **options)
        expected.append(pixels.transpose(2, 0, 1))
    gray = _rgb(9)[..., 0]
    _save(tmp_path / "b" / "0.pgm", Image.fromarray(gray), format="PPM")
    _save(tmp_path / "b" / "1.png", Image.fromarray(gray))
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert ds.class_counts().tolist() == [6, 2] and ds.in_chans == 3
    np.testing.assert_array_equal(ds.images[:6].numpy(), np.stack(expected))  # sorted names: 0.png, 1.TIF, ...
    np.testing.assert_array_equal(ds.images[6:, 0].numpy(), np.stack([gray, gray]))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    """Pillow's convert('L') clips I;16 at 255: 8-bit value v stored as v * 257 came out white for v >= 1."""
    values = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 5  # 0..235
    _save(tmp_path / "a" / "deep.png", Image.fromarray(values * 257))  # mode I;16
    _save(tmp_path / "b" / "flat.png", Image.fromarray(values.astype(np.uint8)))
    assert Image.open(tmp_path / "a" / "deep.png").mode.startswith("I")
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert ds.in_chans == 1
    np.testing.assert_array_equal(ds.images[0, 0].numpy(), values)
    np.testing.assert_array_equal(ds.images[0].numpy(), ds.images[1].numpy())
    rgb = load_dataset(f"folder:{tmp_path}", test_fraction=0.0, grayscale=False)
    np.testing.assert_array_equal(rgb.images[0].numpy(), np.stack([values] * 3))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path: Path, orientation: int) -> None:
    """A phone's portrait photo (landscape pixels + orientation tag) was loaded on its side."""
    stored = np.zeros((H, W), dtype=np.uint8)
    stored[:, : W // 2] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    for name in ("a", "b"):
        _save(tmp_path / name / "photo.jpg", Image.fromarray(stored), exif=exif, quality=100)
        _save(tmp_path / name / "z-plain.png", Image.fromarray(np.rot90(stored, {3: 2, 6: -1, 8: 1}[orientation])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # upright photos have the same size as the plain files: no resizing
        ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    photo, plain = ds.images[0, 0].numpy().astype(int), ds.images[1, 0].numpy().astype(int)
    assert photo.shape == plain.shape
    assert np.abs(photo - plain).max() < 40  # JPEG rounding only; on its side half the pixels differ by 255


def test_the_test_split_takes_the_upright_training_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    for split in ("train", "test"):
        for name in ("a", "b"):
            _save(tmp_path / split / name / "photo.jpg", Image.fromarray(_rgb(1)), exif=exif)
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert train.input_size == test.input_size == (3, W, H)


def test_palette_alpha_and_gray_alpha_modes_match_pillow(tmp_path: Path) -> None:
    pixels = _rgb(3)
    alpha = _rgb(4)[..., 0]
    images = {
        "0-p.png": Image.fromarray(pixels).quantize(16),
        "1-rgba.png": Image.fromarray(np.dstack([pixels, alpha])),
        "2-la.png": Image.fromarray(np.dstack([pixels[..., 0], alpha])),
        "3-bilevel.png": Image.fromarray(pixels[..., 0] > 127),
    }
    for name, image in images.items():
        _save(tmp_path / "a" / name, image)
    _save(tmp_path / "b" / "x.png", Image.fromarray(pixels))
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert ds.in_chans == 3
    for i, name in enumerate(images):
        expected = np.asarray(Image.open(tmp_path / "a" / name).convert("RGB")).transpose(2, 0, 1)
        np.testing.assert_array_equal(ds.images[i].numpy(), expected)


def test_hidden_files_and_folders_inside_classes_are_ignored(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _save(tmp_path / name / "1.png", Image.fromarray(_rgb(1)))
        _save(tmp_path / name / ".ipynb_checkpoints" / "1-checkpoint.png", Image.fromarray(_rgb(2)))
        _save(tmp_path / name / "._1.png", Image.fromarray(_rgb(2)))  # macOS AppleDouble name
        (tmp_path / name / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _save(tmp_path / ".cache" / "x.png", Image.fromarray(_rgb(2)))
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert ds.classes == ["a", "b"] and len(ds) == 2


@pytest.mark.parametrize("held_out", ["test", "val", "valid", "validation"])
def test_train_beside_val_is_a_split_not_two_classes(tmp_path: Path, held_out: str) -> None:
    """train/ + val/ was read as two classes, 'train' and 'val', each holding every image below it."""
    for split, n in (("train", 3), (held_out, 2)):
        for c, name in enumerate(("cat", "dog")):
            for i in range(n):
                _save(tmp_path / split / name / f"{i}.png", Image.fromarray(np.full((H, W), 10 * c + i, np.uint8)))
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert train.classes == test.classes == ["cat", "dog"]
    assert train.images[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11, 12]
    assert test.images[:, 0, 0, 0].tolist() == [0, 1, 10, 11] and test.labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize(("folders", "message"), [
    (("train",), r"holds train/, which look like split folders.*received the sub-folders train\. Read as they are, "
                 r"each would be one class .*To fix: add PATH/test/<class>/ beside it, or pass folder:.*/train "),
    (("val",), r"holds val/, .*To fix: add PATH/train/<class>/ beside it"),
    (("Train", "Test"), r"holds Test/, Train/, .*rename them to the lower-case train/ and test/"),
])
def test_a_lone_split_folder_is_refused(tmp_path: Path, folders: tuple[str, ...], message: str) -> None:
    for folder in folders:
        for name in ("cat", "dog"):
            _save(tmp_path / folder / name / "0.png", Image.fromarray(_rgb(0)))
    with pytest.raises(DataError, match=message):
        load_dataset(f"folder:{tmp_path}")


def test_mixed_sizes_warn_with_the_sizes_and_the_fix(tmp_path: Path) -> None:
    """Images of other sizes were silently stretched to the size of whichever file sorted first."""
    _save(tmp_path / "a" / "0.png", Image.fromarray(_rgb(0)))
    _save(tmp_path / "a" / "1.png", Image.fromarray(np.zeros((30, 20, 3), np.uint8)))
    _save(tmp_path / "b" / "0.png", Image.fromarray(np.zeros((30, 20, 3), np.uint8)))
    expected = (r"its images come in 2 sizes \(H x W, count: 30x20 \(2\), 6x8 \(1\)\); with size=None every image is "
                r"resized to 6x8, the size of its first image, which stretches images of another shape\. "
                r".*size=\(H, W\) \(cnnlab train: --set data_opts='\{\"size\": \[30, 20\]\}'\)")
    with pytest.warns(ResizedImagesWarning, match=expected):
        ds = load_dataset(f"folder:{tmp_path}", test_fraction=0.0)
    assert ds.input_size == (3, 6, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(f"folder:{tmp_path}", test_fraction=0.0, size=[30, 20]).input_size == (3, 30, 20)

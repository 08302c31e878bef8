"""Image folders: classes from sub-folders, resizing, modes, deterministic split, corrupt files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.folder import ResizedImagesWarning, SkippedImagesWarning, scan_folder, write_folder
from cnnlab.errors import DataError


def make_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 5,
                size: tuple[int, int] = (12, 10), mode: str = "L") -> Path:
    """Class sub-folders of PNG files: pixel (0, 0) encodes (class, index), the rest is a gradient."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            value = 10 * c + i
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = np.full(shape, value, dtype=np.uint8)
            ramp = (100 + 5 * np.arange(size[0] - 1)).astype(np.uint8)  # along the width
            pixels[1:, 1:] = ramp[:, None] if mode == "RGB" else ramp
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i}.png")
    return root


def test_classes_labels_and_pixels(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    (root / "notes.txt").write_text("not a class")  # files beside the class folders are ignored
    (root / "dog" / "README.md").write_text("ignored: not an image extension")
    train = load_dataset(f"folder:{root}", "train", test_fraction=0.4)
    test = load_dataset(f"folder:{root}", "test", test_fraction=0.4)
    assert train.classes == ["cat", "dog"] and (len(train), len(test)) == (6, 4)
    assert train.images.shape == (6, 1, 10, 12)  # (N, C, H, W); size kept from the first image
    assert test.class_counts().tolist() == [2, 2]
    values = sorted(train.images[:, 0, 0, 0].tolist() + test.images[:, 0, 0, 0].tolist())
    assert values == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]  # disjoint and complete
    for ds in (train, test):
        assert torch.equal(ds.images[:, 0, 0, 0] // 10, ds.labels)  # the label matches the folder
    again = load_dataset(f"folder:{root}", "test", test_fraction=0.4)
    assert torch.equal(again.images, test.images)  # deterministic split
    other = load_dataset(f"folder:{root}", "test", test_fraction=0.4, seed=1)
    assert not torch.equal(other.images, test.images)


def test_resize_and_colour_conversion(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "rgb", mode="RGB", size=(40, 20))
    rgb = load_dataset(f"folder:{root}", size=28)
    assert rgb.images.shape[1:] == (3, 28, 28) and rgb.images.dtype == torch.uint8
    gray = load_dataset(f"folder:{root}", size=(14, 7), grayscale=True, test_fraction=0.0)
    assert gray.images.shape[1:] == (1, 14, 7)
    pil = Image.open(root / "dog" / "3.png").convert("L").resize((7, 14), Image.Resampling.BILINEAR)
    assert np.array_equal(gray.images[8, 0].numpy(), np.asarray(pil))  # files sorted: cat 0-4, dog 0-4


def test_train_test_subfolders_are_used_as_splits(tmp_path: Path) -> None:
    make_folder(tmp_path / "ds" / "train", per_class=3)
    make_folder(tmp_path / "ds" / "test", per_class=2)
    assert len(load_dataset(f"folder:{tmp_path / 'ds'}", "train")) == 6
    assert len(load_dataset(f"folder:{tmp_path / 'ds'}", "test")) == 4


def corrupt_folder(tmp_path: Path) -> Path:
    root = make_folder(tmp_path / "bad", per_class=4)
    (root / "cat" / "fake.png").write_text("this is text, not a PNG")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    (root / "dog" / "cut.jpeg").write_bytes(buffer.getvalue()[:200])  # truncated JPEG
    return root


def test_corrupt_files_are_skipped_with_their_names(tmp_path: Path) -> None:
    root = corrupt_folder(tmp_path)
    with pytest.warns(SkippedImagesWarning) as record:
        ds = load_dataset(f"folder:{root}", test_fraction=0.0, size=10)
    message = str(record[0].message)
    assert "skipped 3 unreadable file(s)" in message
    assert "fake.png (not an image Pillow can identify)" in message
    assert "empty.jpg (empty file (0 bytes))" in message and "cut.jpeg (cannot decode" in message
    assert len(ds) == 8 and ds.class_counts().tolist() == [4, 4]


def test_corrupt_files_raise_when_asked(tmp_path: Path) -> None:
    root = corrupt_folder(tmp_path)
    with pytest.raises(DataError, match=r"3 file\(s\) are not readable images: .*fake\.png .*empty\.jpg.*"
                       r"on_error='skip'"):
        load_dataset(f"folder:{root}", test_fraction=0.0, on_error="raise")
    with pytest.raises(ValueError, match=r"on_error must be one of \['skip', 'raise'\]; received on_error="):
        load_dataset(f"folder:{root}", on_error="ignore")


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Image folder .*nope does not exist or is not a folder\. A folder:PATH"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


def test_a_missing_relative_folder_says_where_it_was_looked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/report on a run that recorded 'folder:pics' said only that 'pics' does not exist (and named --data)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"Image folder pics does not exist or is not a folder \(a relative path, "
                       rf"looked up in the current directory {tmp_path}\)\. A folder:PATH dataset needs"):
        load_dataset("folder:pics")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"has no class sub-folders"):
        scan_folder(tmp_path / "flat")


def test_write_folder_round_trip(tmp_path: Path) -> None:
    shapes = load_dataset("shapes", "test", n=24, size=16, channels=3)
    root = write_folder(shapes, tmp_path / "png", per_class=5)
    back = load_dataset(f"folder:{root}", test_fraction=0.0)
    # background labels no whole image, so it gets no (empty) folder, which folder: would refuse
    assert shapes.class_counts()[0] == 0 and not (root / "0-background").exists()
    assert back.classes == ["1-circle", "2-square", "3-triangle"]
    counts = shapes.class_counts()[1:].clamp(max=5)
    assert back.class_counts().tolist() == counts.tolist() and back.in_chans == 3
    for label in range(1, 4):  # PNG is lossless: the same pixels, in the same order
        original = shapes.images[shapes.labels == label][:5]
        assert torch.equal(back.images[back.labels == label - 1], original)


@pytest.mark.parametrize("name", ["folder:", "folder:  "])
def test_folder_without_a_path_is_an_error_not_the_current_directory(name: str) -> None:
    # 'folder:' used to load the current directory (Path('') is '.') and complain about its contents.
    with pytest.raises(ValueError, match=r"names no folder: folder:PATH needs the path"):
        load_dataset(name)


def test_an_empty_class_folder_is_refused_by_name(tmp_path: Path) -> None:
    """An empty dog/ was kept as a class that never occurs (model.json listed it), without a word."""
    root = make_folder(tmp_path / "imgs", classes=("bird", "cat", "dog", "eel"))
    for name in ("bird", "eel"):
        for f in (root / name).iterdir():
            f.unlink()
    with pytest.raises(DataError, match=r"Image folder .*imgs: the class sub-folders bird, eel hold no image files "
                       r"\(\.png \.jpg \.jpeg \.ppm \.bmp .*\)\. .*add images to them, or move them out of"):
        load_dataset(f"folder:{root}")
    (root / "eel").rmdir()
    with pytest.raises(DataError, match=r"the class sub-folder bird holds no .*add images to it"):
        scan_folder(root, "test")
    (root / "bird").rmdir()
    assert load_dataset(f"folder:{root}").classes == ["cat", "dog"]


def test_train_and_test_folders_must_hold_the_same_classes(tmp_path: Path) -> None:
    """test/bird (not in train/) was dropped from the test split without a word."""
    make_folder(tmp_path / "ds" / "train", classes=("cat", "dog", "emu"), per_class=2)
    make_folder(tmp_path / "ds" / "test", classes=("bird", "cat", "dog"), per_class=2)
    expected = (r"train/ and test/ must hold the same class sub-folders .*but test/ has bird, which train/ lacks "
                r"and train/ has emu, which test/ lacks\. Add the missing class folders")
    for split in ("train", "test"):
        with pytest.raises(DataError, match=expected):
            load_dataset(f"folder:{tmp_path / 'ds'}", split)


def test_a_split_left_empty_by_the_per_class_fractions_says_why(tmp_path: Path) -> None:
    """One image per class gave "no .png/.jpg/.jpeg files for split 'test'" although the folder holds images."""
    root = make_folder(tmp_path / "tiny", per_class=1)
    assert len(load_dataset(f"folder:{root}", "train")) == 2
    with pytest.raises(DataError, match=r"has images \(per class: 1, 1\) but none for the 'test' split: .*split per "
                       r"class, round\(test_fraction \* count\).*test_fraction=0\.2 leaves the test split empty\. "
                       r"Split the images yourself into PATH/train/<class>/ .*no test_fraction puts images"):
        load_dataset(f"folder:{root}", "test")
    two = make_folder(tmp_path / "two", per_class=2)
    with pytest.raises(DataError, match=r"--set data_opts='\{\"test_fraction\": 0\.3\}'"):
        load_dataset(f"folder:{two}", "test")
    assert len(load_dataset(f"folder:{two}", "test", test_fraction=0.3)) == 2  # the suggestion works


def test_the_test_split_takes_the_training_split_size_and_colour(tmp_path: Path) -> None:
    # Each split picked its own size and mode: train 3x33x70, test 3x29x61 (or RGB train, gray test),
    # so a model trained on one was evaluated on the other, or failed with an internal normalize error.
    make_folder(tmp_path / "ds" / "train", per_class=3, size=(16, 12), mode="RGB")
    make_folder(tmp_path / "ds" / "test", per_class=2, size=(20, 9), mode="L")
    train = load_dataset(f"folder:{tmp_path / 'ds'}", "train")
    with pytest.warns(ResizedImagesWarning, match=r"ds/test: its images \(H x W, count: 9x20 \(4\)\) differ from the "
                      r"training images; with size=None every image is resized to 12x16"):
        test = load_dataset(f"folder:{tmp_path / 'ds'}", "test")
    assert train.images.shape[1:] == test.images.shape[1:] == (3, 12, 16)
    explicit = load_dataset(f"folder:{tmp_path / 'ds'}", "test", size=8, grayscale=True)  # options still win
    assert explicit.images.shape[1:] == (1, 8, 8)


def test_a_decompression_bomb_in_the_training_split_is_skipped_by_both_splits(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    make_folder(tmp_path / "ds" / "train", per_class=3, size=(16, 12))
    make_folder(tmp_path / "ds" / "test", per_class=2, size=(20, 9))
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # 400 Mpx claimed: past Pillow's bomb guard
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
    (tmp_path / "ds" / "train" / "cat" / "0-first.png").write_bytes(bomb)  # read first when sorted
    with pytest.warns(SkippedImagesWarning, match="0-first.png"):
        train = load_dataset(f"folder:{tmp_path / 'ds'}", "train")
    with pytest.warns(ResizedImagesWarning, match="resized to 12x16"):  # it escaped as a raw DecompressionBombError
        test = load_dataset(f"folder:{tmp_path / 'ds'}", "test")
    assert len(train) == 6 and train.images.shape[1:] == test.images.shape[1:] == (1, 12, 16)

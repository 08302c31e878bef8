"""Bad images give one clear ImageError; good ones load as uint8 (C, H, W) with channel conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import ImageError
from cnnlab.viz.images import check_channels, load_image, to_display


def _png(path, arr: np.ndarray, mode: str | None = None):
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_loads_and_converts(tmp_path) -> None:
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 255
    p = _png(tmp_path / "red.png", rgb)
    x = load_image(p)
    assert x.dtype == torch.uint8 and x.shape == (3, 5, 7) and int(x[0].min()) == 255
    gray = load_image(p, channels=1)
    assert gray.shape == (1, 5, 7) and int(gray.max()) == 76  # ITU-R 601 luma of pure red
    assert load_image(p, channels=3, size=(10, 14)).shape == (3, 10, 14)
    assert to_display(gray).shape == (5, 7, 3)


def test_not_an_image(tmp_path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("this is text, not pixels")
    with pytest.raises(ImageError, match=r"not an image Pillow can read"):
        load_image(p)


def test_missing(tmp_path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_truncated(tmp_path) -> None:
    rng = np.random.default_rng(0)
    p = _png(tmp_path / "full.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(cut)


def test_too_many_pixels(tmp_path) -> None:
    p = _png(tmp_path / "big.png", np.zeros((100, 120), np.uint8))
    with pytest.raises(ImageError, match=r"100 = 12,000 pixels, more than the limit of 10,000"):
        load_image(p, max_pixels=10_000)


def test_wrong_channel_count(tmp_path) -> None:
    p = _png(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match=r"has 3 channels .* but the model expects 1"):
        load_image(p, channels=1, convert=False)
    with pytest.raises(ImageError, match=r"has 3 channels .* but the model expects 2"):
        load_image(p, channels=2)
    with pytest.raises(ImageError, match="C=1 channels"):
        check_channels(torch.zeros(1, 3, 8, 8), 1)


def test_folder_is_not_missing(tmp_path) -> None:
    _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError, match=r"is a folder, not an image file; .* in it \(e\.g\. .*a\.png\)"):
        load_image(tmp_path)


def test_silent_changes_become_notes(tmp_path) -> None:
    from cnnlab.viz.images import read_image

    rgba = _png(tmp_path / "rgba.png", np.full((4, 4, 4), 200, np.uint8))
    image, notes = read_image(rgba, channels=1)
    assert image.shape == (1, 4, 4)
    assert len(notes) == 1 and "from RGBA (4 channels) to grayscale (1 channel)" in notes[0]
    assert "alpha channel was dropped" in notes[0] and "--no-convert" in notes[0]
    assert read_image(rgba, channels=4)[1] == []  # nothing changed, nothing said
    dark = _png(tmp_path / "dark16.png", np.array([[1000, 1200], [1100, 1300]], np.uint16))
    image, notes = read_image(dark)
    assert image.flatten().tolist() == [0, 170, 85, 255]  # min-max stretched per image
    assert len(notes) == 1 and "values 1000..1300 were stretched to 0..255 for this image alone" in notes[0]

"""The user's own image files: phone photos stored on their side, and models no image file can feed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from cnnlab.errors import ImageError
from cnnlab.viz.images import load_image, read_image
from cnnlab.viz.sources import load_picture

_ORIENTATION = 0x0112  # the EXIF tag a phone writes instead of turning the pixels


def _sideways_photo(path: Path, orientation: int) -> np.ndarray:
    """A 30x60 (HxW) stored image with a bright strip on the left, tagged to be shown turned."""
    stored = np.zeros((30, 60), np.uint8)
    stored[:, :10] = 255
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[_ORIENTATION] = orientation
    img.save(path, exif=exif.tobytes())
    return stored


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path: Path, orientation: int) -> None:
    # Pillow's exif_transpose is what image viewers do and what `cnnlab train --data folder:...` feeds the model
    path = tmp_path / "phone.png"
    _sideways_photo(path, orientation)
    with Image.open(path) as img:
        shown = ImageOps.exif_transpose(img)
    expected = torch.from_numpy(np.asarray(shown, dtype=np.uint8).copy())[None]
    image, notes = read_image(path)
    torch.testing.assert_close(image, expected)
    assert image.shape == ((1, 30, 60) if orientation == 3 else (1, 60, 30))
    assert any("upright by its EXIF orientation" in n for n in notes)
    torch.testing.assert_close(load_image(path), expected)


def test_upright_photo_has_no_note(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    stored = _sideways_photo(path, 1)  # orientation 1: stored as shown
    image, notes = read_image(path)
    assert image[0].numpy().tolist() == stored.tolist() and notes == []


def test_the_cli_tells_of_the_turn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.cli.main import main

    path = tmp_path / "phone.png"
    _sideways_photo(path, 6)  # turned 90 degrees: the bright strip is on top, a horizontal edge
    assert (
        main(["viz", "edges", str(path), "--out", str(tmp_path / "e.png"), "--kernels", "vertical", "horizontal"]) == 0
    )
    out = capsys.readouterr().out
    assert "upright by its EXIF orientation tag (60x30 stored, 30x60 shown" in out
    assert "vertical: max |response|      0.0, no edges" in out
    assert "strongest row 9" in out  # the last bright row: the strip went from the left to the top


@pytest.mark.parametrize("convert", [True, False])
def test_a_model_no_image_can_feed_gets_honest_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, convert: bool
) -> None:
    # e.g. a spec of a block from inside a network (examples/specs/inception_block.yaml takes 192 channels)
    from cnnlab.viz import sources

    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    gray_sample = (torch.zeros(1, 4, 4, dtype=torch.uint8), "T-shirt/top", [])  # a test image, without the dataset
    monkeypatch.setattr(sources, "_dataset_sample", lambda name, index, data_dir: gray_sample)
    for spec in (str(path), "fashion-mnist:0"):
        with pytest.raises(ImageError, match=r"expects 192\. Image files have 1 \(grayscale\) or 3 \(RGB\)") as info:
            load_picture(spec, channels=192, convert=convert)
        assert "convert it" not in str(info.value) and "--no-convert" not in str(info.value)


def test_a_jpeg_cut_inside_its_header_is_damaged_not_a_crash(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(full)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:600])  # Pillow's Image.open itself fails: OSError, "Truncated File Read"
    with pytest.raises(ImageError, match=r"image '.*cut\.jpg' is truncated or damaged \(Truncated File Read\)"):
        read_image(cut)


def test_an_unreadable_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)

    def refuse(*_args: object, **_kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied")  # what open() raises without read permission (not as root)

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageError, match=r"'.*locked\.png' cannot be read \(Permission denied\); make it readable"):
        read_image(path)


def test_a_folder_loaders_warning_becomes_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.cli.main import main

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):  # images of mixed sizes: the loader resizes them and warns
            h, w = 10 + i, 12 + 2 * i
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    code = main(["viz", "edges", f"folder:{tmp_path / 'imgs'}:0", "--out", str(tmp_path / "e.png")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "note: Image folder" in out and "resized to" in out
    assert "Warning" not in err and "loader(" not in err  # no Python warning with its source line

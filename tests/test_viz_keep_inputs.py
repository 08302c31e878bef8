"""A picture never replaces the user's own image: ``--out`` (or the default output) that is the image is refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main


def _photo(path: Path) -> bytes:
    arr = np.zeros((12, 16, 3), np.uint8)
    arr[:, 8:] = 200
    Image.fromarray(arr).save(path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["edges", "{img}", "--out", "{img}"], "IMG"),
        (["edges", "{img}", "--out", "{alias}"], "IMG"),  # the same file under another spelling
        (["features", "lenet5", "--image", "{img}", "--out", "{img}"], "--image"),
    ],
)
def test_out_that_is_the_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    img = tmp_path / "photo.png"
    before = _photo(img)
    (tmp_path / "sub").mkdir()
    alias = tmp_path / "sub" / ".." / "photo.png"
    code = main(["viz", *(a.format(img=img, alias=alias) for a in argv)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert f"is the {option} file itself; writing the picture there would replace your image" in err
    assert img.read_bytes() == before


def test_default_output_that_is_the_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _photo(tmp_path / "edges.png")  # the user's image happens to carry the default output's name
    assert main(["viz", "edges", "edges.png"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "the default output 'edges.png' (no --out given) is the IMG file itself" in err
    assert "--out edges-edges.png" in err
    assert (tmp_path / "edges.png").read_bytes() == before
    assert main(["viz", "edges", "edges.png", "--out", "e.png"]) == 0 and os.path.getsize("e.png") > 0

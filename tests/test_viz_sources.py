"""``--image DATASET:INDEX``: mistyped samples say so, and ``--data-dir`` is where viz finds the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _idx_files import write_striped_mnist
from cnnlab.cli.main import main
from cnnlab.errors import ImageError
from cnnlab.viz.sources import load_picture


@pytest.mark.parametrize(
    ("spec", "wording"),
    [
        ("fashion-mnist:-1",
         r"INDEX must be a whole number from 0 \(the form is DATASET:INDEX, e\.g\. fashion-mnist:0\); received '-1'"),
        ("fashion-mnist:abc", r"INDEX must be a whole number from 0 .* received 'abc'"),
        ("Fashion-MNIST:0",
         r"'Fashion-MNIST' is not a dataset name .* one of fashion-mnist, mnist, .* Did you mean fashion-mnist:0\?"),
        ("fashon-mnist:3", r"is neither an existing file nor a dataset test image.* Did you mean fashion-mnist:3\?"),
        ("missing.png", r"image 'missing.png' does not exist"),
    ],
)  # fmt: skip
def test_mistyped_samples(spec: str, wording: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageError, match=wording):
        load_picture(spec)


def test_a_file_with_a_colon_is_still_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # an odd name, but an existing file wins over DATASET:INDEX
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mnist:0", format="PNG")
    assert load_picture("mnist:0", channels=1).image.shape == (1, 4, 4)


def test_data_dir_finds_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    data = write_striped_mnist(tmp_path / "data" / "mnist", n_train=10, n_test=10)
    out = tmp_path / "e.png"
    code = main(["viz", "edges", "mnist:3", "--data-dir", str(data), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "for mnist:3 (3)" in text and out.is_file()
    help_text = _help(["viz", "gradcam"], capsys)
    assert "--data-dir DIR" in help_text and "$CNNLAB_DATA" in help_text


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*args, "--help"])
    return capsys.readouterr().out


def test_conversions_are_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(rgb)
    code = main(["viz", "rf", "lenet5", "--layer", "features.0", "--image", str(rgb), "--out", str(tmp_path / "r.png")])
    text = capsys.readouterr().out
    assert code == 0
    assert f"note: converted '{rgb}' from RGB (3 channels) to grayscale (1 channel) for the model" in text

"""``cnnlab train`` on bad input: one paragraph naming the file and the problem, exit code 2, no traceback.

The data-level messages are tested in ``tests/test_data_*.py``; these tests check that they reach the
user of the command line intact. All but one run ``cnnlab.cli.main.main`` in-process (the same code
path as the console script); one runs the real console entry in a subprocess.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _idx_files import idx_bytes
from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.data.folder import SkippedImagesWarning


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private cache, no dataset folder from the environment, and a mirror where nothing listens."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CNNLAB_MIRROR", f"http://127.0.0.1:{port}/")  # closed once the socket is: offline
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``cnnlab train ARGV``; assert exit 2 with a one-paragraph error; return the paragraph."""
    code = main(["train", "--set", "progress=none", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "\n\n" not in err.strip()  # one paragraph
    return " ".join(err.split())


def _write_mnist(folder: Path, n: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        images = np.zeros((n, 28, 28))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    return folder


def test_missing_folder_through_the_console_script(isolated: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--data", "folder:/bad"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CI": "true"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: Image folder") and "/bad does not exist" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())  # no empty run left


def test_missing_dataset_offline(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    (isolated / "empty").mkdir()
    text = _train(capsys, "--data-dir", str(isolated / "empty"), "--set", 'data_opts={"system_dirs": []}')
    for needle in ("is missing file train-images-idx3-ubyte.gz", "apt-get install dataset-fashion-mnist",
                   "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "--data-dir"):  # fmt: skip
        assert needle in text


def test_idx_wrong_magic(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    folder = _write_mnist(isolated / "data")
    wrong_magic = idx_bytes(np.zeros((20, 28, 28)), b"\x00\x00\x07")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(wrong_magic))
    text = _train(capsys, "--data", "mnist", "--data-dir", str(folder))
    assert "train-images-idx3-ubyte.gz has a wrong magic number" in text


def test_idx_truncated_gzip(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    folder = _write_mnist(isolated / "data")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    text = _train(capsys, "--data", "mnist", "--data-dir", str(folder))
    assert "t10k-labels-idx1-ubyte.gz is a damaged gzip file" in text


def test_idx_count_mismatch_and_label_range(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    folder = _write_mnist(isolated / "data")
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.arange(19) % 10)))
    assert "20 images but" in _train(capsys, "--data", "mnist", "--data-dir", str(folder))
    labels.write_bytes(gzip.compress(idx_bytes(np.full(20, 12))))
    text = _train(capsys, "--data", "mnist", "--data-dir", str(folder))
    assert "train-labels-idx1-ubyte.gz: labels must lie in 0..9" in text


def test_cifar_binary_of_the_wrong_length(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    from cnnlab.data.cifar import CIFAR10, CIFAR10_CLASSES

    folder = isolated / "data" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [*CIFAR10.files["train"], *CIFAR10.files["test"]]:
        (folder / name).write_bytes(bytes(3073 * 2))  # two records of label 0, black
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n")
    (folder / "data_batch_2.bin").write_bytes(bytes(3073 * 2 + 5))
    text = _train(capsys, "--data", "cifar10", "--data-dir", str(isolated / "data"))
    assert "data_batch_2.bin has 6151 bytes, which is not a whole number of 3073-byte records" in text


def test_image_folder_with_a_text_png_and_an_empty_jpeg(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    root = isolated / "pictures"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "cat" / "notes.png").write_text("this is text, not a PNG")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    text = _train(capsys, "--data", f"folder:{root}", "--set", 'data_opts={"on_error": "raise", "test_fraction": 0.0}')
    assert "notes.png" in text and "not an image" in text and "empty.jpg" in text and "0 bytes" in text
    # the default skips them with a warning naming both files, and trains on the rest; the warning is one
    # clean line per split that holds a bad file (it was Python's 'file:line: SkippedImagesWarning' and a source line)
    code = main(["train", "--no-report", "--data", f"folder:{root}", "--epochs", "1",
                 "--out", str(isolated / "run"),
                 "--set", 'model_kwargs={"widths": [4, 8, 8, 8]}',
                 "--set", "progress=none", "--set", "val_fraction=0.25", "--set", "batch_size=4",
                 "--set", 'data_opts={"size": 8, "test_fraction": 0.34}'])  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"warning: Image folder {root}: skipped 1 ") for line in lines)
    assert "notes.png (not an image" in lines[0] and "empty.jpg (empty file (0 bytes))" in lines[1]
    assert "SkippedImagesWarning" not in " ".join(lines) and ".py:" not in " ".join(lines)
    assert code == 0 and (isolated / "run" / "metrics.json").is_file()
    with pytest.warns(SkippedImagesWarning):  # the library still warns as Python does
        load_dataset(f"folder:{root}", size=8)


def test_model_that_cannot_take_the_image_size(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    """lenet5 is built for 32x32; on 28x28 images its C5 5x5 convolution meets a 4x4 map (was a raw traceback)."""
    folder = _write_mnist(isolated / "data", n=100)
    text = _train(capsys, "--model", "lenet5", "--data", "mnist", "--data-dir", str(folder), "--out", "run")
    assert text.startswith("error: model 'lenet5' cannot take the 'mnist' images (1x28x28): layer 'features.6'")
    assert "Kernel size can't be greater than actual input size" in text and "conv1_padding=2" in text
    assert not (isolated / "run" / "model.safetensors").exists()
    padded = ["train", "--set", "progress=none", "--model", "lenet5", "--data", "mnist", "--data-dir", str(folder),
              "--out", "padded", "--no-report", "--set", 'model_kwargs={"conv1_padding": 2}']  # fmt: skip
    assert main(padded) == 0  # the geometry the message suggests trains


def test_shape_check_lets_value_dependent_models_train() -> None:
    """A forward that branches on tensor values cannot be traced on meta tensors; the check must not block it."""
    from torch import nn

    from cnnlab.train.setup import _output_shape

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.conv(x) if float(x.sum()) >= 0 else -self.conv(x)

    assert _output_shape(Branchy(), "branchy", "mnist", (1, 8, 8)) == (1, 2, 6, 6)
    with pytest.raises(ValueError, match="model 'branchy' cannot take the 'mnist' images"):
        _output_shape(Branchy(), "branchy", "mnist", (1, 2, 2))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "segnet"], "model 'segnet' returns (1, 10, 28, 28) for one image, but the task on 'mnist' is "
         "classification: its loss needs one score per class, shape (1, 10). Use a classification model"),
        (["--set", "task=reconstruction"], "model 'fastnet' returns (1, 1) for one image, but the task on 'mnist' is "
         "reconstruction: its loss needs an image of the input's size and channels, shape (1, 1, 28, 28)."),
    ],
)  # fmt: skip
def test_model_output_that_does_not_fit_the_task(
    capsys: pytest.CaptureFixture[str], isolated: Path, argv: list[str], expected: str
) -> None:
    """segnet on a classification set died in F.cross_entropy with a raw traceback; now one paragraph, no run."""
    folder = _write_mnist(isolated / "data", n=100)
    text = _train(capsys, *argv, "--data", "mnist", "--data-dir", str(folder), "--out", "run")
    assert expected in text
    assert not (isolated / "run" / "model.safetensors").exists()


def test_translate_as_large_as_the_image(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    folder = _write_mnist(isolated / "data", n=100)
    text = _train(capsys, "--data", "mnist", "--data-dir", str(folder), "--set", "translate=28")
    assert "TrainConfig.translate must be smaller than the image side" in text and "received translate=28" in text
    assert main(["train", "--set", "progress=none", "--data", "mnist", "--data-dir", str(folder), "--out", "ok",
                 "--no-report", "--epochs", "1", "--set", "translate=27"]) == 0  # fmt: skip


def test_recipe_help_names_every_recipe() -> None:
    # The help is a fixed string (cnnlab --help imports no torch, which the recipes module does): keep it whole.
    import argparse

    from cnnlab.cli.cmd_train import add_arguments
    from cnnlab.train.recipes import RECIPES

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (action,) = [a for a in parser._actions if "--recipe" in a.option_strings]
    listed = action.help.split(":", 1)[1].replace(",", " ").split() if action.help else []
    assert sorted(listed) == sorted(RECIPES)

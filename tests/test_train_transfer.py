"""Transfer learning end to end: a Fashion-MNIST checkpoint fine-tuned on folders of 28x28 PNG files
(``cnnlab train --data folder:DIR --init-from RUN [--freeze features]``).

The PNG folders are written from Fashion-MNIST *test* images (``cnnlab.data.write_folder``), so the
pre-trained features are meaningful for them while none of them was seen in pre-training.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.folder import write_folder
from cnnlab.errors import DataError
from cnnlab.train.checkpoint import load_run
from cnnlab.train.config import TrainConfig
from cnnlab.train.loop import fit

SMALL = {"widths": [8, 8, 16, 16]}
COMMON = ["--no-report", "--set", "progress=none", "--set", "threads=1", "--set", "precision=fp32",
          "--set", "batch_size=32"]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Real Fashion-MNIST (from the machine, never downloaded here) and a private cache."""
    root = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        with socket.socket() as s:  # a mirror where nothing listens: a missing dataset fails fast
            s.bind(("127.0.0.1", 0))
            mp.setenv("CNNLAB_MIRROR", f"http://127.0.0.1:{s.getsockname()[1]}/")
        try:
            load_dataset("fashion-mnist", "test", quiet=True)
        except DataError as err:
            pytest.skip(f"Fashion-MNIST is not installed on this machine: {str(err)[:120]}")
        yield root


@pytest.fixture(scope="module")
def pretrained(workdir: Path) -> Path:
    cfg = TrainConfig(model="fastnet", model_kwargs=SMALL, limit_train=4000, limit_test=500, epochs=2,
                      progress="none", threads=1, precision="fp32", batch_size=64)  # fmt: skip
    run = workdir / "fmnist"
    assert fit(cfg, run).metrics["test_accuracy"] > 0.6
    return run


def _png_folder(root: Path, num_classes: int, per_class: int = 40) -> Path:
    test = load_dataset("fashion-mnist", "test", quiet=True)
    keep = torch.nonzero(test.labels < num_classes).flatten()
    part = ImageDataset(test.images[keep], test.labels[keep], test.classes[:num_classes], "fmnist-test-slice")
    return write_folder(part, root, per_class=per_class)


def test_fine_tune_on_a_10_class_png_folder(workdir: Path, pretrained: Path) -> None:
    folder = _png_folder(workdir / "png10", 10)
    assert len(list(folder.rglob("*.png"))) == 400
    out = workdir / "tuned10"
    code = main(["train", "--data", f"folder:{folder}", "--init-from", str(pretrained), "--epochs", "2",
                 "--out", str(out), *COMMON, "--set", "lr=0.05"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert meta["init_from"] == str(pretrained) and meta["num_classes"] == 10 and meta["input_size"] == [1, 28, 28]
    assert meta["init_from_sha256"] == json.loads((pretrained / "model.json").read_text())["sha256"]
    source_norm = json.loads((pretrained / "model.json").read_text())["normalization"]
    assert meta["normalization"] == source_norm  # the features see images as in pre-training
    assert metrics["test_accuracy"] > 0.5  # 80 held-out PNGs of 10 classes; chance is 0.1
    assert load_run(out).model.fc.out_features == 10


def test_freeze_features_with_a_new_5_class_head(workdir: Path, pretrained: Path) -> None:
    folder = _png_folder(workdir / "png5", 5)
    out = workdir / "tuned5"
    code = main(["train", "--data", f"folder:{folder}", "--init-from", str(pretrained), "--freeze", "features",
                 "--epochs", "5", "--out", str(out), *COMMON, "--set", "lr=0.1"])  # fmt: skip
    assert code == 0
    before = load_run(pretrained).model.state_dict()
    after = load_run(out).model.state_dict()
    head = {"fc.weight", "fc.bias"}
    assert tuple(after["fc.weight"].shape) == (5, 16) and tuple(before["fc.weight"].shape) == (10, 16)
    features = [k for k in before if k not in head]
    assert features and all(torch.equal(before[k], after[k]) for k in features)  # incl. BN running stats
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_params"] == 5 * 16 + 5 < metrics["params"]
    assert metrics["test_accuracy"] > 0.4  # 40 held-out PNGs of 5 classes; chance is 0.2
    assert len(metrics["per_class_accuracy"]) == 5 and len(metrics["confusion_matrix"]) == 5


def test_init_from_with_the_wrong_channel_count_says_how_to_fix_it(
    workdir: Path, pretrained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _png_folder(workdir / "png3", 3, per_class=20)
    code = main(["train", "--data", f"folder:{folder}", "--init-from", str(pretrained), "--epochs", "1",
                 "--out", str(workdir / "rgb"), *COMMON, "--set", 'data_opts={"grayscale": false}'])  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "takes 1-channel images but" in err and '"grayscale": true' in err

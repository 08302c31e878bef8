"""MNIST files where other tools leave them: torchvision's <root>/MNIST/raw/ and Kaggle's dotted names."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from _idx_files import idx_bytes
from cnnlab.data import load_dataset
from cnnlab.errors import DataError


def _write(folder: Path, names: dict[str, str], gz: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training images and labels under the given file names (gzip or raw); returns what was written."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(7, 28, 28)), rng.integers(0, 10, size=7)
    folder.mkdir(parents=True)
    for key, array in (("images", images), ("labels", labels)):
        raw = idx_bytes(array)
        (folder / names[key]).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return images, labels


@pytest.mark.parametrize("via_env", [False, True])
def test_torchvision_raw_folder_under_data_dir(isolated: Path, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    """--data-dir ~/data did not find torchvision's ~/data/MNIST/raw/ and tried to download instead."""
    names = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}
    images, labels = _write(isolated / "data" / "MNIST" / "raw", names, gz=False)
    if via_env:
        monkeypatch.setenv("CNNLAB_DATA", str(isolated / "data"))
    ds = load_dataset("mnist", "train", None if via_env else isolated / "data", cache_tensors=False)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels.tolist() == labels.tolist()
    with pytest.raises(DataError, match=r"Looked in: .*data/FashionMNIST/raw"):  # each set has its own folder
        load_dataset("fashion-mnist", "train", None if via_env else isolated / "data", system_dirs=())


@pytest.mark.parametrize("gz", [False, True])
def test_dotted_file_names(isolated: Path, gz: bool) -> None:
    """train-images.idx3-ubyte (as some copies name it) was not recognised."""
    suffix = ".gz" if gz else ""
    names = {"images": f"train-images.idx3-ubyte{suffix}", "labels": f"train-labels.idx1-ubyte{suffix}"}
    images, labels = _write(isolated / "kaggle", names, gz=gz)
    ds = load_dataset("mnist", "train", isolated / "kaggle", cache_tensors=False)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels.tolist() == labels.tolist()

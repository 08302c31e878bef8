"""CIFAR-10/100 Python release (``cifar-10-batches-py/``, as torchvision downloads it): exact pixels and
labels, class names from ``meta``, and an unpickler that refuses anything but arrays and plain data."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.cifar import CIFAR10, CIFAR10_CLASSES, CIFAR100
from cnnlab.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated")  # conftest: a private cache, no $CNNLAB_DATA/$CNNLAB_MIRROR


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Writes bytes as Python 2 wrote its ``str`` (BINSTRING), as in the published CIFAR files."""

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        self.write(b"T" + struct.pack("<i", len(obj)) + obj)  # BINSTRING
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _py2_pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _batch(rng: np.random.Generator, n: int, label_keys: dict[bytes, int]) -> tuple[dict[bytes, Any], np.ndarray]:
    pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    batch: dict[bytes, Any] = {b"batch_label": b"training batch 1 of 5", b"data": pixels,
                               b"filenames": [b"x_%d.png" % i for i in range(n)]}  # fmt: skip
    for key, classes in label_keys.items():
        batch[key] = rng.integers(0, classes, size=n).tolist()
    return batch, pixels


def write_cifar10_python(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    """cifar-10-batches-py/ with Python 2 pickles; returns the training pixels (N, 3072) and labels."""
    rng = np.random.default_rng(0)
    folder = root / CIFAR10.python_folder
    folder.mkdir(parents=True)
    pixels, labels = [], []
    for name in [*CIFAR10.python_files["train"], *CIFAR10.python_files["test"]]:
        batch, data = _batch(rng, per_batch, {b"labels": 10})
        (folder / name).write_bytes(_py2_pickle(batch))
        if name.startswith("data_batch"):
            pixels.append(data)
            labels += batch[b"labels"]
    meta = {b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    return np.concatenate(pixels), labels


def test_cifar10_python_release_pixels_labels_and_names(isolated: Path) -> None:
    pixels, labels = write_cifar10_python(isolated / "data")
    ds = load_dataset("cifar10", "train", isolated / "data", download_missing=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images.numpy().reshape(20, -1), pixels)  # R, G, B planes, row-major
    assert ds.labels.tolist() == labels and ds.classes == CIFAR10_CLASSES
    assert len(load_dataset("cifar10", "test", isolated / "data" / "cifar-10-batches-py", download_missing=False)) == 4


@pytest.mark.parametrize(("mode", "key", "classes"), [("fine", b"fine_labels", 100), ("coarse", b"coarse_labels", 20)])
def test_cifar100_python_release_fine_and_coarse(isolated: Path, mode: str, key: bytes, classes: int) -> None:
    rng = np.random.default_rng(1)
    folder = isolated / CIFAR100.python_folder
    folder.mkdir()
    batches = {}
    for name in ("train", "test"):
        batches[name] = _batch(rng, 6, {b"fine_labels": 100, b"coarse_labels": 20})
        (folder / name).write_bytes(pickle.dumps(batches[name][0], protocol=4))  # Python 3 pickles work too
    names = {b"fine_label_names": [b"f%d" % i for i in range(100)],
             b"coarse_label_names": [b"c%d" % i for i in range(20)]}
    (folder / "meta").write_bytes(_py2_pickle(names))
    ds = load_dataset("cifar100", "test", isolated, label_mode=mode, download_missing=False)
    np.testing.assert_array_equal(ds.images.numpy().reshape(6, -1), batches["test"][1])
    assert ds.labels.tolist() == batches["test"][0][key] and ds.num_classes == classes
    assert ds.classes[:2] == ([f"{mode[0]}0", f"{mode[0]}1"])


def test_a_pickle_that_would_run_code_is_refused(isolated: Path) -> None:
    """The Python release is pickled: a plain pickle.load would run whatever a tampered file asks for."""
    write_cifar10_python(isolated)
    marker = isolated / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (subprocess.call, (["touch", str(marker)],))

    (isolated / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(DataError, match=r"test_batch \(\d+ bytes\) is not a readable batch of the Python release: "
                       r"UnpicklingError: it asks for subprocess\.call, which a CIFAR batch never holds"):
        load_dataset("cifar10", "test", isolated, download_missing=False)
    assert not marker.exists()


def test_a_truncated_or_wrong_python_batch_names_the_file(isolated: Path) -> None:
    write_cifar10_python(isolated)
    batch = isolated / "cifar-10-batches-py" / "test_batch"
    whole = batch.read_bytes()
    batch.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"CIFAR file .*test_batch \(\d+ bytes\) is not a readable batch .*delete the "
                       r"folder .*cifar-10-batches-py and download the release again"):
        load_dataset("cifar10", "test", isolated, download_missing=False)
    batch.write_bytes(_py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'data' must be a uint8 array of shape \(N, 3072\) .*received uint8 "
                       r"\(2, 100\)"):
        load_dataset("cifar10", "test", isolated, download_missing=False)
    batch.write_bytes(_py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'labels' must hold one label per image \(2\); received 'NoneType'.*"
                       r"keys: data, fine_labels"):
        load_dataset("cifar10", "test", isolated, download_missing=False)


def test_a_truncated_binary_file_no_longer_says_the_python_release_is_not_read(isolated: Path) -> None:
    folder = isolated / CIFAR10.folder
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DataError, match=r"test_batch\.bin has 6151 bytes, .*2 full records and 5 bytes left over\. "
                       r"The file is truncated or is not from the binary release \(a \.bin name\): delete the folder"):
        load_dataset("cifar10", "test", isolated, download_missing=False)

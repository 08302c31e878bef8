"""CIFAR-10/100 binary release: record parsing, lookup, wrong-length files, download + unpack."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.cifar import CIFAR10, CIFAR10_CLASSES, load_cifar
from cnnlab.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated")  # conftest: a private cache, no $CNNLAB_DATA/$CNNLAB_MIRROR


def records(labels: np.ndarray, images: np.ndarray) -> bytes:
    """Binary CIFAR records: label byte(s) then the 3072 pixels (R plane, G plane, B plane)."""
    labels = labels.reshape(len(images), -1).astype(np.uint8)
    return np.concatenate([labels, images.reshape(len(images), -1).astype(np.uint8)], axis=1).tobytes()


def write_cifar10(folder: Path, per_batch: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write a small cifar-10-batches-bin/; returns the training images (N, 3, 32, 32) and labels."""
    rng = np.random.default_rng(seed)
    out = folder / "cifar-10-batches-bin"
    out.mkdir(parents=True)
    all_images, all_labels = [], []
    for name in [*CIFAR10.files["train"], *CIFAR10.files["test"]]:
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32))
        labels = rng.integers(0, 10, size=per_batch)
        (out / name).write_bytes(records(labels, images))
        if name.startswith("data_batch"):
            all_images.append(images)
            all_labels.append(labels)
    (out / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    return np.concatenate(all_images), np.concatenate(all_labels)


def test_cifar10_records_decode_to_planar_rgb(isolated: Path) -> None:
    images, labels = write_cifar10(isolated / "data")
    ds = load_dataset("cifar10", "train", data_dir=isolated / "data")
    assert ds.images.shape == (15, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images.numpy(), images) and ds.labels.tolist() == labels.tolist()
    assert ds.classes == CIFAR10_CLASSES
    assert len(load_dataset("cifar10", "test", data_dir=isolated / "data")) == 3


def test_cifar100_fine_and_coarse_labels(isolated: Path) -> None:
    folder = isolated / "cache" / "cnnlab" / "cifar100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    images = np.zeros((4, 3, 32, 32))
    images[:, 1] = 7  # green plane
    pairs = np.array([[0, 99], [19, 0], [5, 50], [3, 3]])  # (coarse, fine)
    (folder / "train.bin").write_bytes(records(pairs, images))
    fine = load_dataset("cifar100")
    coarse = load_dataset("cifar100", label_mode="coarse")
    assert fine.labels.tolist() == [99, 0, 50, 3] and fine.num_classes == 100
    assert coarse.labels.tolist() == [0, 19, 5, 3] and coarse.num_classes == 20
    assert fine.images[:, 1].eq(7).all() and fine.images[:, 0].eq(0).all()


def test_wrong_length_file_names_file_and_sizes(isolated: Path) -> None:
    write_cifar10(isolated / "data")
    bad = isolated / "data" / "cifar-10-batches-bin" / "data_batch_3.bin"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_3\.bin has 9119 bytes, which is not a whole number of "
                       r"3073-byte records .*2 full records and 2973 bytes left over"):
        load_dataset("cifar10", data_dir=isolated / "data")


def test_label_out_of_range_is_reported(isolated: Path) -> None:
    write_cifar10(isolated / "data")
    test_file = isolated / "data" / "cifar-10-batches-bin" / "test_batch.bin"
    test_file.write_bytes(records(np.array([3, 12]), np.zeros((2, 3, 32, 32))))
    with pytest.raises(DataError, match=r"test_batch\.bin: labels must lie in 0\.\.9 .*max 12"):
        load_dataset("cifar10", "test", data_dir=isolated / "data")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_md5_of_release(isolated: Path, mirror: tuple[str, Path]) -> None:
    url, root = mirror
    write_cifar10(isolated / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(isolated / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    (root / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    # The tiny archive is not the published one, so the md5 check must refuse it.
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz .*published checksum is "
                       r"c32a1d4ab5d03f1284b67883e8d87530"):
        load_cifar("cifar10", "train", mirror=url, quiet=True)
    assert not (isolated / "cache" / "cnnlab" / "cifar10" / "cifar-10-batches-bin").exists()
    # With the archive's own checksum it is downloaded, unpacked into the cache and read.
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    ds = load_cifar("cifar10", "test", mirror=url, checksum=md5, quiet=True)
    cached = isolated / "cache" / "cnnlab" / "cifar10"
    assert len(ds) == 3 and (cached / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert not (cached / "cifar-10-binary.tar.gz").exists()  # the archive is removed after unpacking


def test_missing_when_offline_explains_the_fix(isolated: Path) -> None:
    with pytest.raises(DataError, match=r"'cifar10' \(binary release, or the Python release in cifar-10-batches-py/\) "
                       r"was not found.*Downloading is "
                       r"switched off.*cifar-10-binary\.tar\.gz.*--data-dir DIR \(or set CNNLAB_DATA\)"):
        load_cifar("cifar10", "train", download_missing=False)

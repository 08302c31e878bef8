"""IDX datasets (Fashion-MNIST, MNIST): parsing, corrupt files, lookup, download from a loopback mirror."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset, split_train_val
from cnnlab.data.download import cache_dir, download
from cnnlab.data.idx import FASHION_MNIST, parse_idx, read_idx
from cnnlab.data.loader import channel_stats
from cnnlab.errors import DataError

DEBIAN_DIR = FASHION_MNIST.system_dirs[0]
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 00 00 08 ndim, big-endian sizes, data)."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_small_mnist(folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, bytes]:
    """Write the four gzip IDX files of a tiny 10-class dataset; returns name -> file bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays = {
            f"{prefix}-images-idx3-ubyte.gz": rng.integers(0, 256, size=(n, 28, 28)),
            f"{prefix}-labels-idx1-ubyte.gz": np.arange(n) % 10,
        }
        for name, arr in arrays.items():
            data = gzip.compress(idx_bytes(arr), mtime=0)
            (folder / name).write_bytes(data)
            out[name] = data
    return out




class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS) serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens here once the socket is closed


# -- parsing ---------------------------------------------------------------------------------------


def test_parse_idx_roundtrip_and_raw_files(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr)), arr)
    raw = tmp_path / "x-idx3-ubyte"
    raw.write_bytes(idx_bytes(arr))
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(raw), read_idx(gz))


def test_wrong_magic_number_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x07\x03" + bytes(16)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz has a wrong magic number.*00 00 07 03"):
        read_idx(bad)


def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is a damaged gzip file.*truncated"):
        read_idx(bad)


def test_truncated_payload_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "labels-idx1-ubyte"
    bad.write_bytes(idx_bytes(np.zeros(10, dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match=r"labels-idx1-ubyte has 15 bytes.*requires 18"):
        read_idx(bad)


def test_count_mismatch_and_label_range(isolated: Path) -> None:
    folder = isolated / "data" / "mnist"
    write_small_mnist(folder)
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.arange(11) % 10)))
    with pytest.raises(DataError, match=r"12 images but .*train-labels-idx1-ubyte\.gz has 11 labels"):
        load_dataset("mnist", data_dir=isolated / "data", mirror=closed_port_url())
    labels.write_bytes(gzip.compress(idx_bytes(np.full(12, 10))))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: labels must lie in 0\.\.9.*max 10"):
        load_dataset("mnist", data_dir=isolated / "data", mirror=closed_port_url())


# -- lookup ----------------------------------------------------------------------------------------


def test_lookup_order_data_dir_env_cache(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_small_mnist(isolated / "cache" / "cnnlab" / "mnist", n_train=7)
    assert cache_dir("mnist") == isolated / "cache" / "cnnlab" / "mnist"
    assert len(load_dataset("mnist", mirror=closed_port_url())) == 7
    write_small_mnist(isolated / "env" / "mnist", n_train=8)
    monkeypatch.setenv("CNNLAB_DATA", str(isolated / "env"))
    assert len(load_dataset("mnist", mirror=closed_port_url())) == 8
    write_small_mnist(isolated / "given", n_train=9)  # files directly in --data-dir
    ds = load_dataset("mnist", data_dir=isolated / "given", mirror=closed_port_url())
    assert len(ds) == 9 and ds.images.shape == (9, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.classes == [str(d) for d in range(10)]


@pytest.mark.skipif(
    not (DEBIAN_DIR / FILES[0]).is_file(), reason="Debian package dataset-fashion-mnist absent"
)
def test_fashion_mnist_from_debian_location(isolated: Path) -> None:
    train = load_dataset("fashion-mnist", "train", mirror=closed_port_url(), cache_tensors=False)
    test = load_dataset("fashion-mnist", "test", mirror=closed_port_url(), cache_tensors=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.num_classes == 10 and train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    tr, va = split_train_val(train, 0.1, seed=0)
    assert (len(tr), len(va)) == (54000, 6000)
    # The widely quoted normalisation constants of Fashion-MNIST's training set.
    mean, std = channel_stats(train.images)
    assert round(mean[0], 4) == 0.2860 and round(std[0], 4) == 0.3530


# -- download --------------------------------------------------------------------------------------


def test_download_from_loopback_mirror(isolated: Path, mirror: tuple[str, Path]) -> None:
    url, root = mirror
    files = write_small_mnist(root, n_train=20, n_test=6)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    ds = load_dataset("mnist", "train", mirror=url, checksums=sums, quiet=True)
    assert len(ds) == 20 and ds.labels.tolist() == [i % 10 for i in range(20)]
    cached = cache_dir("mnist")
    downloaded = sorted(p.name for p in cached.iterdir() if p.is_file())
    assert downloaded == sorted(FILES[:2])  # the test split was not fetched
    assert (cached / FILES[0]).read_bytes() == files[FILES[0]]
    # A second load reads the cache, even with the server gone.
    again = load_dataset("mnist", "train", mirror=closed_port_url())
    assert torch.equal(again.images, ds.images)


def test_download_plain_progress_when_not_a_tty(
    isolated: Path, mirror: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, root = mirror
    (root / "f.bin").write_bytes(b"x" * 1000)
    dest = download(url + "f.bin", isolated / "dl" / "f.bin", hashlib.md5(b"x" * 1000).hexdigest())
    assert dest.read_bytes() == b"x" * 1000
    err = capsys.readouterr().err
    assert "downloading" in err and "downloaded 1000 bytes" in err


def test_checksum_mismatch_leaves_no_file(isolated: Path, mirror: tuple[str, Path]) -> None:
    url, root = mirror
    write_small_mnist(root)
    # The published md5 values belong to the real MNIST files, not to these small ones.
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz .* has md5 [0-9a-f]{32}, but the "
                       r"published checksum is f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_dataset("mnist", mirror=url, quiet=True)
    cached = cache_dir("mnist")
    assert not cached.exists() or list(cached.iterdir()) == []  # no partial or temporary file


def test_offline_error_says_how_to_get_the_files(isolated: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", mirror=closed_port_url(), system_dirs=(), quiet=True)
    message = str(info.value)
    for needle in ("apt-get install dataset-fashion-mnist", "train-images-idx3-ubyte.gz",
                   "fashion-mnist.s3-website.eu-central-1.amazonaws.com", "--data-dir",
                   "github.com/zalandoresearch/fashion-mnist", "Could not download"):
        assert needle in message
    assert not list(cache_dir("fashion-mnist").glob("*"))


def test_mirror_from_environment(
    isolated: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = mirror
    files = write_small_mnist(root, n_test=4)
    monkeypatch.setenv("CNNLAB_MIRROR", url.rstrip("/"))
    sums = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    assert len(load_dataset("mnist", "test", checksums=sums, quiet=True)) == 4


def test_unknown_name_and_split() -> None:
    with pytest.raises(ValueError, match=r"received 'fashion_mnist'. Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]; received split='val'"):
        load_dataset("mnist", "val")


def test_rich_progress_bar_on_a_terminal(
    isolated: Path, mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.data import download as dl

    url, root = mirror
    payload = bytes(range(256)) * 1000
    (root / "big.bin").write_bytes(payload)
    monkeypatch.setattr(dl, "_is_tty", lambda: True)
    dest = dl.download(url + "big.bin", isolated / "dl" / "big.bin", hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["big.bin"]  # the temporary file is gone
    with pytest.raises(ValueError, match=r"checksum must be 32 \(md5\) or 64 \(sha256\) hex digits"):
        dl.download(url + "big.bin", isolated / "dl" / "other.bin", "abc")


def test_unknown_loader_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"'fashion-mnist' does not take the option\(s\) size; it accepts "
                       r"mirror, checksums, system_dirs, quiet, cache_tensors"):
        load_dataset("fashion-mnist", size=32)


def test_tensor_cache_is_used_refreshed_and_survives_corruption(isolated: Path) -> None:
    folder = isolated / "data"
    write_small_mnist(folder, n_train=10)
    first = load_dataset("mnist", data_dir=folder, mirror=closed_port_url())
    cached = list((cache_dir("mnist") / "parsed").glob("train-*.pt"))
    assert len(cached) == 1
    # The second load reads the cache: prove it by planting different (valid) tensors there.
    torch.save({"images": first.images[:3].clone(), "labels": first.labels[:3].clone()}, cached[0])
    assert len(load_dataset("mnist", data_dir=folder, mirror=closed_port_url())) == 3
    # Replacing a source file changes the key, so the stale cache is not used (and is removed).
    new = write_small_mnist(folder / "new", n_train=12)
    for name in FILES[:2]:
        (folder / name).write_bytes(new[name])
    assert len(load_dataset("mnist", data_dir=folder, mirror=closed_port_url())) == 12
    current = list((cache_dir("mnist") / "parsed").glob("train-*.pt"))
    assert len(current) == 1 and current != cached
    current[0].write_bytes(b"garbage")  # a damaged cache is ignored and rebuilt
    assert len(load_dataset("mnist", data_dir=folder, mirror=closed_port_url())) == 12
    uncached = load_dataset("mnist", data_dir=folder, mirror=closed_port_url(), cache_tensors=False)
    assert uncached.labels.numel() == 12


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes([0, 0, 8, 1]) + b"\xff\xff\xff\xff", r"declares a negative size in its header: shape \(-1,\)"),
        (bytes([0, 0, 8, 2]) + b"\x7f\xff\xff\xff" * 2, r"has 12 bytes, but its header .* requires 46116860"),
        (bytes([0, 0, 8, 3, 0, 0]), r"truncated inside its header \(6 bytes\)"),
        (b"", r"wrong magic number.*received an empty file"),
    ],
)
def test_bad_headers(raw: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_idx(raw, "x.idx")


def test_a_data_dir_that_is_not_a_folder_is_said(tmp_path: Path) -> None:
    # `--data-dir /tmp/typo` used to be skipped without a word, training on files found elsewhere.
    from cnnlab.data.download import DataDirWarning, search_dirs

    with pytest.warns(DataDirWarning, match=r"--data-dir .*typo is not a folder: mnist is looked for in the usual"):
        dirs = search_dirs("mnist", tmp_path / "typo", ())
    assert dirs[:2] == [tmp_path / "typo", tmp_path / "typo" / "mnist"]  # still the download target
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search_dirs("mnist", tmp_path, ())  # an existing folder: no warning

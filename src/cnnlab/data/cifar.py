"""CIFAR-10 and CIFAR-100 from the binary or the Python release (https://www.cs.toronto.edu/~kriz/cifar.html).

The binary files are fixed-length records: CIFAR-10 has 1 label byte + 3072 pixel bytes
(1024 red, 1024 green, 1024 blue, each 32x32 row-major); CIFAR-100 has 2 label bytes (coarse,
fine) + 3072 pixel bytes. The binary release is what cnnlab downloads. The Python release (the
``cifar-10-batches-py/`` that torchvision downloads) holds pickled dicts with the same pixel layout; it is
read when no binary release is found, by an unpickler that builds only NumPy arrays, dicts, lists,
numbers and strings and refuses anything else, so neither release can run code.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.dataset import ImageDataset, check_labels
from cnnlab.data.download import ChecksumError, cache_dir, download, mirror_url, search_dirs
from cnnlab.errors import DataError

PIXELS = 3 * 32 * 32  # bytes of one image


@dataclass(frozen=True)
class CifarSource:
    name: str
    archive: str  # file name of the .tar.gz release
    md5: str  # published md5 of the archive
    folder: str  # the folder the archive unpacks to
    files: dict[str, tuple[str, ...]]  # split -> binary files
    label_bytes: int
    num_classes: dict[str, int]  # label mode -> classes
    names_file: dict[str, str]  # label mode -> text file with one class name per line
    python_folder: str  # the folder the Python release unpacks to
    python_files: dict[str, tuple[str, ...]]  # split -> pickled batches
    python_meta: str  # pickled dict with the class names
    label_keys: dict[str, tuple[str, str]]  # label mode -> (labels key in a pickled batch, names key in meta)


BASE_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10 = CifarSource(
    name="cifar10",
    archive="cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    folder="cifar-10-batches-bin",
    files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    label_bytes=1,
    num_classes={"fine": 10},
    names_file={"fine": "batches.meta.txt"},
    python_folder="cifar-10-batches-py",
    python_files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    python_meta="batches.meta",
    label_keys={"fine": ("labels", "label_names")},
)
CIFAR100 = CifarSource(
    name="cifar100",
    archive="cifar-100-binary.tar.gz",
    md5="03b5dce01913d631647c71ecec9e9cb8",
    folder="cifar-100-binary",
    files={"train": ("train.bin",), "test": ("test.bin",)},
    label_bytes=2,
    num_classes={"coarse": 20, "fine": 100},
    names_file={"coarse": "coarse_label_names.txt", "fine": "fine_label_names.txt"},
    python_folder="cifar-100-python",
    python_files={"train": ("train",), "test": ("test",)},
    python_meta="meta",
    label_keys={"coarse": ("coarse_labels", "coarse_label_names"), "fine": ("fine_labels", "fine_label_names")},
)
SOURCES = {CIFAR10.name: CIFAR10, CIFAR100.name: CIFAR100}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_cifar_binary(path: Path, label_bytes: int, label_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)`` from one binary CIFAR file.

    ``label_index`` picks the label byte (CIFAR-100: 0 coarse, 1 fine). Raises :class:`DataError`
    naming the file when its length is not a whole number of records.
    """
    record = label_bytes + PIXELS
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read CIFAR file {path}: {exc.strerror or exc}.") from exc
    if len(raw) == 0 or len(raw) % record != 0:
        raise DataError(
            f"CIFAR binary file {path} has {len(raw)} bytes, which is not a whole number of "
            f"{record}-byte records ({label_bytes} label byte{'s' if label_bytes > 1 else ''} + {PIXELS} "
            f"pixel bytes); {len(raw) // record} full records and {len(raw) % record} bytes left over. "
            "The file is truncated or is not from the binary release (a .bin name): delete the folder and "
            "download the binary release again."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)  # (N, label_bytes + 3072)
    labels = torch.from_numpy(records[:, label_index].astype(np.int64))
    # (N, 3072) -> (N, 3, 32, 32): channel planes, each row-major.
    images = torch.from_numpy(records[:, label_bytes:].copy()).view(-1, 3, 32, 32)
    return images, labels


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # NumPy's array constructor, whatever module it lives in
# The only globals a CIFAR batch refers to; anything else (os.system, builtins.eval, ...) is refused.
_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the name in the files (NumPy 1)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # NumPy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 at protocol 2
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds NumPy arrays, dicts, lists, numbers and strings; refuses every other global (no code runs)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds")


def _unpickle(path: Path) -> dict[str, object]:
    """The dict of one Python-release file, keys as ``str``; raises :class:`DataError` naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read CIFAR file {path}: {exc.strerror or exc}.") from exc
    try:
        # latin1: the files were pickled by Python 2, whose byte strings hold the pixels.
        data = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # a damaged pickle fails in many ways (EOFError, UnpicklingError, ValueError, ...)
        raise DataError(
            f"CIFAR file {path} ({len(raw)} bytes) is not a readable batch of the Python release: "
            f"{type(exc).__name__}: {exc}. It is truncated, damaged or not a CIFAR file: delete the "
            f"folder {path.parent} and download the release again (cnnlab downloads the binary release)."
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"CIFAR file {path} holds a {type(data).__name__}, not the dict of a CIFAR batch.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in data.items()}


def read_cifar_python(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 (N, 3, 32, 32)`` and labels ``int64 (N,)`` from one Python-release batch.

    ``label_key`` is ``"labels"`` (CIFAR-10), ``"fine_labels"`` or ``"coarse_labels"`` (CIFAR-100).
    """
    batch = _unpickle(path)
    pixels, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != PIXELS:
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise DataError(
            f"CIFAR file {path}: 'data' must be a uint8 array of shape (N, {PIXELS}) (one row of R, G, B planes "
            f"per image); received {got}. Is it a file of the CIFAR Python release?"
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(pixels):
        got = f"{len(labels)} labels" if isinstance(labels, list | np.ndarray) else repr(type(labels).__name__)
        raise DataError(
            f"CIFAR file {path}: {label_key!r} must hold one label per image ({len(pixels)}); received {got}. "
            f"The file is damaged or belongs to the other CIFAR release (keys: {', '.join(batch)})."
        )
    # (N, 3072) -> (N, 3, 32, 32): channel planes, each row-major, as in the binary release.
    images = torch.from_numpy(np.ascontiguousarray(pixels)).view(-1, 3, 32, 32).clone()
    return images, torch.tensor(np.asarray(labels, dtype=np.int64))


def _find_folder(source: CifarSource, split: str, dirs: list[Path]) -> tuple[Path, str] | None:
    """The first folder holding all files of ``split`` of a release (``d`` or ``d/<release folder>``), and
    which release: ``"binary"``, else ``"python"``."""
    releases: Sequence[tuple[str, str, tuple[str, ...]]] = (
        ("binary", source.folder, source.files[split]),
        ("python", source.python_folder, source.python_files[split]),
    )
    for release, folder, files in releases:
        for d in dirs:
            for candidate in (d / folder, d):
                if all((candidate / f).is_file() for f in files):
                    return candidate, release
    return None


def _class_names(source: CifarSource, folder: Path, mode: str, release: str = "binary") -> list[str]:
    path = folder / source.names_file[mode]
    count = source.num_classes[mode]
    if release == "python" and (folder / source.python_meta).is_file():
        names = _unpickle(folder / source.python_meta).get(source.label_keys[mode][1])
        if isinstance(names, list) and len(names) == count:
            return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    if release == "binary" and path.is_file():
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == count:
            return names
    if source is CIFAR10:
        return list(CIFAR10_CLASSES)
    return [f"class_{i}" for i in range(count)]  # the name file ships with the archive; only tests lack it


def _download_release(
    source: CifarSource, target: Path, mirror: str | None, checksum: str | None, quiet: bool
) -> Path:
    """Download and unpack the release into ``target``; returns the unpacked folder."""
    url = mirror_url(BASE_URL, mirror) + source.archive
    archive = download(url, target / source.archive, checksum or source.md5, quiet=quiet)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # filter="data" refuses absolute paths, links out of the folder and device files.
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"Cannot unpack {archive}: {exc}. Delete it and download it again.") from exc
    archive.unlink()
    return target / source.folder


def load_cifar(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    label_mode: str = "fine",
    mirror: str | None = None,
    checksum: str | None = None,
    download_missing: bool = True,
    quiet: bool = False,
) -> ImageDataset:
    """Load CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, ``label_mode`` fine|coarse).

    A missing release is downloaded from ``mirror`` (default the Toronto page, or ``$CNNLAB_MIRROR``),
    checked against the published md5 (or ``checksum``) and unpacked into the cache.

    >>> load_cifar("cifar10", "test").images.shape  # doctest: +SKIP
    torch.Size([10000, 3, 32, 32])
    """
    source = SOURCES[name]
    if label_mode not in source.num_classes:
        raise ValueError(
            f"label_mode must be one of {sorted(source.num_classes)} for {name}; received "
            f"label_mode={label_mode!r}."
        )
    if split not in source.files:
        raise ValueError(f"split must be one of {sorted(source.files)}; received split={split!r}.")
    dirs = search_dirs(name, data_dir, ())
    found = _find_folder(source, split, dirs)
    if found is None:
        target = Path(data_dir).expanduser() / name if data_dir is not None else cache_dir(name)
        if not download_missing:
            raise DataError(_missing_message(source, dirs, "Downloading is switched off."))
        try:
            found = _download_release(source, target, mirror, checksum, quiet), "binary"
        except ChecksumError:
            raise
        except DataError as exc:
            raise DataError(_missing_message(source, dirs, str(exc))) from exc
    folder, release = found
    if release == "binary":
        label_index = 0 if label_mode == "coarse" or source.label_bytes == 1 else 1
        files = source.files[split]
        parts = [read_cifar_binary(folder / f, source.label_bytes, label_index) for f in files]
    else:
        files = source.python_files[split]
        parts = [read_cifar_python(folder / f, source.label_keys[label_mode][0]) for f in files]
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    num_classes = source.num_classes[label_mode]
    for f, (_, part_labels) in zip(files, parts):
        check_labels(part_labels, num_classes, f"CIFAR file {folder / f}")
    return ImageDataset(images, labels, _class_names(source, folder, label_mode, release), name)


def _missing_message(source: CifarSource, dirs: list[Path], reason: str) -> str:
    looked = ", ".join(str(d) for d in dirs)
    return (
        f"Dataset {source.name!r} (binary release, or the Python release in {source.python_folder}/) was not found "
        f"and could not be downloaded. {reason} "
        f"Looked in: {looked}. To fix: download {BASE_URL}{source.archive} (md5 {source.md5}), unpack "
        f"it so that {source.folder}/ lies in {cache_dir(source.name)}, or pass --data-dir DIR (or set "
        f"CNNLAB_DATA) pointing at the folder that holds {source.folder}/."
    )

"""Datasets held in memory as one uint8 tensor, and batched augmentation.

``load_dataset(name, split)`` returns an :class:`ImageDataset` for these names:

- ``"fashion-mnist"`` (the default) and ``"mnist"``: IDX files, found locally or downloaded;
- ``"cifar10"`` and ``"cifar100"``: the binary release (never unpickled);
- ``"folder:PATH"``: one sub-folder of PNG/JPEG images per class;
- ``"shapes"``: generated circles/squares/triangles with per-pixel masks (segmentation);
- ``"rot-<name>"``: randomly rotated images of any classification set above.

>>> from cnnlab.data import load_dataset, split_train_val
>>> train, val = split_train_val(load_dataset("shapes", n=20, size=32), 0.2, seed=0)
>>> len(train), len(val)
(16, 4)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.split import split_train_val

DEFAULT_DATASET = "fashion-mnist"
SPLITS = ("train", "test")

Loader = Callable[..., ImageDataset]


def _load_idx(name: str) -> Loader:
    def load(split: str, data_dir: str | Path | None, **opts: Any) -> ImageDataset:
        from cnnlab.data.idx import load_idx_dataset

        return load_idx_dataset(name, split, data_dir, **opts)

    return load


def _load_cifar(name: str) -> Loader:
    def load(split: str, data_dir: str | Path | None, **opts: Any) -> ImageDataset:
        from cnnlab.data.cifar import load_cifar

        return load_cifar(name, split, data_dir, **opts)

    return load


def _load_shapes(split: str, data_dir: str | Path | None, **opts: Any) -> ImageDataset:
    from cnnlab.data.shapes import load_shapes

    return load_shapes(split, **opts)


# name -> loader(split, data_dir, **opts); "folder:PATH" and "rot-<name>" are parsed in load_dataset.
_REGISTRY: dict[str, Loader] = {
    "fashion-mnist": _load_idx("fashion-mnist"),
    "mnist": _load_idx("mnist"),
    "cifar10": _load_cifar("cifar10"),
    "cifar100": _load_cifar("cifar100"),
    "shapes": _load_shapes,
}
_PATTERNS = ("folder:PATH", "rot-<name>")


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (patterns written with placeholders).

    >>> list_datasets()[:2]
    ['fashion-mnist', 'mnist']
    """
    return [*_REGISTRY, *_PATTERNS]


def load_dataset(
    name: str = DEFAULT_DATASET, split: str = "train", data_dir: str | Path | None = None, **opts: Any
) -> ImageDataset:
    """Load one split of a dataset into memory (see the module docstring for the names).

    ``opts`` go to the source: for example ``mirror=`` for the IDX sets, ``size=``/``grayscale=``/
    ``on_error=`` for folders, ``n=``/``size=``/``seed=`` for shapes, ``seed=``/``rot90_only=`` for
    rotated sets. Raises :class:`~cnnlab.errors.DataError` for missing or corrupt files and
    ``ValueError`` for an unknown name or split.

    >>> load_dataset("shapes", "test", n=8, size=32).masks.shape
    torch.Size([8, 32, 32])
    """
    if split not in SPLITS:
        raise ValueError(
            f"split must be one of {list(SPLITS)}; received split={split!r}. Validation data comes "
            "from the training split: use split_train_val(load_dataset(name, 'train'), fraction, seed)."
        )
    if name.startswith("folder:"):
        from cnnlab.data.folder import load_folder

        return load_folder(name[len("folder:") :], split, **opts)
    if name.startswith("rot-"):
        from cnnlab.data.rotated import load_rotated

        base = name[len("rot-") :]
        return load_rotated(base, split, data_dir, **opts)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"dataset must be one of {', '.join(list_datasets())}; received {name!r}.{hint}"
        )
    return _REGISTRY[name](split, data_dir, **opts)


__all__ = ["DEFAULT_DATASET", "ImageDataset", "list_datasets", "load_dataset", "split_train_val"]

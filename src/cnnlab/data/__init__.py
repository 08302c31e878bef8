"""Datasets held in memory as one uint8 tensor, and batched augmentation.

``load_dataset(name, split)`` returns an :class:`ImageDataset` for these names:

- ``"fashion-mnist"`` (the default) and ``"mnist"``: IDX files, found locally or downloaded;
- ``"cifar10"`` and ``"cifar100"``: the binary release (never unpickled);
- ``"folder:PATH"``: one sub-folder of images (PNG, JPEG, BMP, TIFF, WebP, ...) per class;
- ``"shapes"``: generated circles/squares/triangles with per-pixel masks (segmentation);
- ``"rot-<name>"``: randomly rotated images of any classification set above.

>>> from cnnlab.data import load_dataset, split_train_val
>>> train, val = split_train_val(load_dataset("shapes", n=20, size=32), 0.2, seed=0)
>>> len(train), len(val)
(16, 4)
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.split import split_train_val

DEFAULT_DATASET = "fashion-mnist"
SPLITS = ("train", "test")

# name -> (module, function, leading positional arguments); modules are imported on first use.
_REGISTRY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fashion-mnist": ("cnnlab.data.idx", "load_idx_dataset", ("fashion-mnist",)),
    "mnist": ("cnnlab.data.idx", "load_idx_dataset", ("mnist",)),
    "cifar10": ("cnnlab.data.cifar", "load_cifar", ("cifar10",)),
    "cifar100": ("cnnlab.data.cifar", "load_cifar", ("cifar100",)),
    "shapes": ("cnnlab.data.shapes", "load_shapes", ()),
}
_PATTERNS = ("folder:PATH", "rot-<name>")


def _check_options(fn: Callable[..., Any], opts: dict[str, Any], dataset: str) -> None:
    """Reject options the loader does not take, listing those it does (instead of a TypeError)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # forwards its options (rot-<name>): the base loader checks them
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(
            f"dataset {dataset!r} does not take the option(s) {', '.join(unknown)}; it accepts "
            f"{', '.join(allowed) or 'no options'}. Fix the options given to load_dataset (data_opts "
            "in the training config)."
        )


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_base_name(base: str) -> None:
    """Raise if ``base`` (the name after ``rot-``) is not one dataset name that ``rot-`` can rotate.

    >>> check_base_name("rot-mnist")
    Traceback (most recent call last):
    ValueError: dataset 'rot-rot-mnist' is not valid: rot- must be followed by one base dataset name, ...
    """
    if base in _REGISTRY or (base.startswith("folder:") and base[len("folder:") :].strip()):
        return
    raise ValueError(
        f"dataset 'rot-{base}' is not valid: rot- must be followed by one base dataset name, one of "
        f"{', '.join(_REGISTRY)} or folder:PATH; received {base!r}.{_did_you_mean(base)} "
        "For example rot-fashion-mnist or rot-mnist."
    )


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
    args: tuple[str | Path | None, ...]
    if name.startswith("folder:"):
        if not name[len("folder:") :].strip():
            raise ValueError(
                f"dataset {name!r} names no folder: folder:PATH needs the path of a folder with one "
                "sub-folder of images per class. Use e.g. folder:my_images (folder:. for this folder)."
            )
        module, function, args = "cnnlab.data.folder", "load_folder", (name[len("folder:") :], split)
    elif name.startswith("rot-"):
        module, function, args = "cnnlab.data.rotated", "load_rotated", (name[len("rot-") :], split, data_dir)
    elif name in _REGISTRY:
        module, function, leading = _REGISTRY[name]
        args = (*leading, split) if name == "shapes" else (*leading, split, data_dir)
    else:
        hint = _did_you_mean(name)
        raise ValueError(f"dataset must be one of {', '.join(list_datasets())}; received {name!r}.{hint}")
    loader = getattr(importlib.import_module(module), function)
    _check_options(loader, opts, name)
    dataset: ImageDataset = loader(*args, **opts)
    return dataset


__all__ = ["DEFAULT_DATASET", "ImageDataset", "list_datasets", "load_dataset", "split_train_val"]

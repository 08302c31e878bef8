"""What the ``cnnlab viz`` pictures are drawn from: a model (a run directory or any TARGET) and an image.

A *model source* is a run directory written by ``cnnlab train`` (trained weights, classes and the
normalisation it was trained with) or any TARGET that ``cnnlab inspect`` takes: a registered name or a
spec file (freshly initialised weights) or ``file.py:factory`` (the weights the factory returns, which
may be the user's own trained ones).

An *image source* is an image file, checked by :func:`cnnlab.viz.images.load_image`, or a test image
of a dataset written ``DATASET:INDEX`` (``fashion-mnist:0``, ``cifar10:12``, ``folder:PATH:3``).

>>> parse_sample("fashion-mnist:7")
('fashion-mnist', 7)
>>> parse_sample("photo.png") is None
True
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnlab.errors import ImageError
from cnnlab.viz.images import no_image_has, read_image

__all__ = ["ModelSource", "Picture", "load_model_source", "load_picture", "parse_sample", "sample_error"]


@dataclass
class ModelSource:
    """A model ready for pictures: eval mode, CPU, with what is known about its input."""

    model: nn.Module
    name: str
    meta: dict[str, Any]  # model.json of a run; {} for a TARGET
    input_size: tuple[int, ...] | None  # (C, H, W)
    run_dir: Path | None  # None for a TARGET
    weights: str = "trained run"  # or "untrained model" (fresh weights) or "weights from FACTORY()"

    @property
    def in_chans(self) -> int | None:
        if self.input_size:
            return int(self.input_size[0])
        first = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        return int(first.in_channels) if first is not None else None

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.meta.get("classes") or []]

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``uint8 (C, H, W)`` -> float ``(1, C, H, W)`` normalised as in training (0..1 without a run)."""
        from cnnlab.train.checkpoint import preprocess

        return preprocess(image, self.meta)


_TARGET_FORMS = (
    "a run directory of `cnnlab train` (or its model.safetensors), a registered model name (`cnnlab models`), "
    "a spec file (.toml/.yaml/.json) or path/to/file.py:FACTORY"
)


def _looks_like_path(text: str) -> bool:
    # registered names never hold a slash or start with '.' or '~'; such a TARGET was meant as a path
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def load_model_source(target: str | os.PathLike[str], *, allow_untrained: bool = False) -> ModelSource:
    """A run directory (or its ``.safetensors``), or with ``allow_untrained`` any TARGET of ``cnnlab inspect``.

    A run's ``model.json`` stands for its run directory. A TARGET that is not a run has no classes and
    no normalisation (images are scaled to 0..1); :attr:`ModelSource.weights` says where its weights
    come from.
    """
    from cnnlab.models.spec import SPEC_SUFFIXES
    from cnnlab.train.checkpoint import load_run, model_label

    p = Path(target).expanduser()
    if p.name == "model.json" and (p.parent / "model.safetensors").is_file():
        p = p.parent  # the run's own metadata file: the user means the run
    text = str(target)
    is_python = ".py:" in text or text.endswith(".py")
    if (
        p.is_dir()
        or p.suffix == ".safetensors"
        or not allow_untrained
        or (not p.exists() and not is_python and _looks_like_path(text) and p.suffix.lower() not in SPEC_SUFFIXES)
    ):
        if not p.exists():
            what = f"pass {_TARGET_FORMS}" if allow_untrained else "pass the --out directory of a `cnnlab train` run"
            label = "MODEL_OR_RUN" if allow_untrained else "RUN"
            raise FileNotFoundError(f"{label} {str(p)!r} does not exist; {what}.")
        loaded = load_run(p)
        size = loaded.meta.get("input_size")
        name = model_label(loaded.meta) if loaded.meta.get("model") or loaded.meta.get("spec") else p.name
        run = p if p.is_dir() else p.parent
        return ModelSource(loaded.model, name, dict(loaded.meta), tuple(size) if size else None, run)
    from cnnlab.analysis.target import load_target
    from cnnlab.models import create_model, list_models

    t = load_target(text)
    model = t.model
    weights = f"weights from {text.rpartition(':')[2]}()" if is_python else "untrained model"
    if any(w.is_meta for w in model.parameters()):  # the analysis builds registered models without weights
        model = create_model(text) if text in list_models() else _materialise(model)
        weights = "untrained model"
    model.eval()
    return ModelSource(model, t.name, {}, t.input_size, None, weights)


def _materialise(model: nn.Module) -> nn.Module:
    # a meta-device model gets real (freshly initialised) weights on the CPU
    model = model.to_empty(device="cpu")
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


def _dataset_names() -> list[str]:
    from cnnlab.data import list_datasets

    return [d for d in list_datasets() if "<" not in d and "PATH" not in d]


def parse_sample(text: str) -> tuple[str, int] | None:
    """``(dataset, index)`` for ``DATASET:INDEX`` when ``text`` is not an existing file, else None."""
    if Path(text).expanduser().exists():
        return None
    name, sep, index = text.rpartition(":")
    if not sep or not name or not index.isdigit():
        return None
    if name in _dataset_names() or name.startswith(("folder:", "rot-")):
        return name, int(index)
    return None


def sample_error(text: str) -> ImageError | None:
    """The error for ``text`` (not a file) that reads as a failed ``DATASET:INDEX``, else None.

    A known dataset with a bad index, or an index after a name that is no dataset, is a mistyped
    sample, not a missing file.

    >>> print(sample_error("fashion-mnist:-1"))  # doctest: +ELLIPSIS
    image 'fashion-mnist:-1': INDEX must be a whole number from 0 (the form is DATASET:INDEX, ...
    >>> sample_error("notes:draft.png") is None
    True
    """
    name, sep, index = text.rpartition(":")
    if not sep or not name:
        return None
    known = _dataset_names()
    if name in known or name.startswith(("folder:", "rot-")):
        return ImageError(
            f"image {text!r}: INDEX must be a whole number from 0 (the form is DATASET:INDEX, e.g. {name}:0); "
            f"received {index!r}."
        )
    if not index.lstrip("-").isdigit():
        return None  # a file name with a colon in it: "does not exist" says it best
    lower = {k.lower(): k for k in known}
    close = [lower[name.lower()]] if name.lower() in lower else difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]}:{index}?" if close else ""
    return ImageError(
        f"image {text!r} is neither an existing file nor a dataset test image: {name!r} is not a dataset name "
        f"(names are case-sensitive). The form is DATASET:INDEX with DATASET one of {', '.join(known)}, "
        f"folder:PATH or rot-<name>.{hint}"
    )


@dataclass
class Picture:
    """An image for a picture: ``uint8 (C, H, W)``, where it came from and what was done to it."""

    image: torch.Tensor
    source: str
    label: str | None = None
    resized_from: tuple[int, int] | None = None  # (H, W) before resizing to the model's input size
    notes: list[str] = field(default_factory=list)  # silent changes the user should hear of (conversions)


def _dataset_sample(name: str, index: int, data_dir: str | None) -> tuple[torch.Tensor, str, list[str]]:
    """Test image ``index`` of ``name``, its class name, and what the loader warned of (as notes)."""
    from cnnlab.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:  # e.g. a folder resizing images of mixed sizes
        warnings.simplefilter("always")
        ds = load_dataset(name, "test", data_dir)
    notes = [" ".join(str(w.message).split()) for w in caught]
    if index >= len(ds):
        raise ValueError(
            f"--image {name}:{index} asks for test image {index}, but the test split of {name!r} has "
            f"{len(ds)} images; pass an index from 0 to {len(ds) - 1}."
        )
    return ds.images[index], str(ds.classes[int(ds.labels[index])]), notes


def _match_channels(image: torch.Tensor, channels: int | None, source: str) -> tuple[torch.Tensor, list[str]]:
    c = image.shape[0]
    if channels is None or c == channels:
        return image, []
    note = f"converted {source} from {c} to {channels} channel(s) for the model (--no-convert refuses instead)."
    if c == 1 and channels == 3:
        return image.expand(3, -1, -1).contiguous(), [note]
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (image.float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8), [note]
    if channels not in (1, 3):
        raise ImageError(f"image {source} has {c} channels but the model expects {channels}. " + no_image_has(channels))
    raise ImageError(
        f"image {source} has {c} channels but the model expects {channels}; pick a dataset with "
        f"{channels}-channel images or a model with in_chans={c}."
    )


def load_picture(
    spec: str,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    convert: bool = True,
    data_dir: str | None = None,
) -> Picture:
    """The image named by ``spec`` (a file or ``DATASET:INDEX``) with ``channels`` channels.

    ``size`` ((H, W), e.g. the model's input size) resizes the image when it differs (bilinear); the
    original size is kept in :attr:`Picture.resized_from`. ``data_dir`` is where the dataset files of
    ``DATASET:INDEX`` lie (default: ``$CNNLAB_DATA``, then the cache). Bad files raise :class:`ImageError`.
    """
    sample = parse_sample(spec)
    if sample is None and not Path(spec).expanduser().exists():
        mistyped = sample_error(spec)
        if mistyped is not None:
            raise mistyped
    if sample is not None:
        image, label, loader_notes = _dataset_sample(*sample, data_dir)
        if not convert and channels in (1, 3) and image.shape[0] != channels:  # others: _match_channels says why
            raise ImageError(
                f"image {spec!r} has {image.shape[0]} channels but the model expects {channels}; "
                "allow conversion (drop --no-convert) or use a matching dataset."
            )
        image, notes = _match_channels(image, channels, repr(spec))
        pic = Picture(image, spec, label, notes=loader_notes + notes)
    else:
        image, notes = read_image(spec, channels=channels, convert=convert)
        pic = Picture(image, spec, notes=notes)
    h, w = pic.image.shape[1:]
    if size is not None and (h, w) != tuple(size):
        resized = torch.nn.functional.interpolate(
            pic.image[None].float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True
        )[0]
        pic.image = resized.round().clamp(0, 255).to(torch.uint8)
        pic.resized_from = (int(h), int(w))
    return pic
